"""``EntraClientAuth``: an ``httpx.Auth`` that sends a client's app token to an API.

The flow does its own I/O (acquiring the token), so it overrides ``sync_auth_flow`` and
``async_auth_flow`` separately, as httpx recommends, rather than the generic ``auth_flow``. A
401 from the API means the token was refused (revoked, or signed with a key the API has not
seen yet): the token is renewed once, bypassing the cache, and the request sent once more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from entra_guard.client.confidential import ConfidentialClient
    from entra_guard.client.tokens import AccessToken

__all__ = ["EntraClientAuth"]


class EntraClientAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>`` for one scope; get one from ``client.auth()``.

    A request is sent at most twice, so a request whose body is a one-shot stream cannot be
    retried after a 401: give such requests a body httpx can replay (bytes, a form, JSON).
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, client: ConfidentialClient, scope: str) -> None:
        self._client = client
        self.scope = scope

    def __repr__(self) -> str:
        return f"EntraClientAuth(scope={self.scope!r}, client={self._client!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        token = self._client._acquire_sync(self.scope, rejected=None)
        response = yield _authorized(request, token)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            token = self._client._acquire_sync(self.scope, rejected=token)
            yield _authorized(request, token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._client._acquire_async(self.scope, rejected=None)
        response = yield _authorized(request, token)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            token = await self._client._acquire_async(self.scope, rejected=token)
            yield _authorized(request, token)


def _authorized(request: httpx.Request, token: AccessToken) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token.token}"
    return request

"""``GraphGroups``: the groups of an overage user, from Microsoft Graph, as that user.

When a user is in more groups than fit in a token, Entra leaves ``groups`` out and points at
Graph instead (``_claim_names``/``_claim_sources``; reference ``users-and-downstream.md`` §3).
``GraphGroups`` is the ready-made :class:`~entra_guard.authorization.GroupResolver` for that:
it trades the caller's token for a Graph token through on-behalf-of and asks
``POST {graph_url}/me/getMemberGroups`` with ``{"securityEnabledOnly": false}``, which answers
every group the user is in, transitively, in one response ``{"value": ["<group id>", ...]}``.
Graph's ``/me`` asks about the signed-in user of the Graph token, so the API needs no directory
permission over other users.

    groups = GraphGroups(OnBehalfOfClient(ConfidentialClient(...)))
    @app.get("/sales", dependencies=[Depends(require_groups(SALES, resolver=groups))])
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from entra_guard.authorization import (
    DEFAULT_GROUPS_CACHE_SIZE,
    DEFAULT_GROUPS_TTL,
    GroupResolver,
)
from entra_guard.client.challenges import CAE_CAPABILITY

if TYPE_CHECKING:
    from entra_guard.bearer import IncomingToken
    from entra_guard.client.on_behalf_of import OnBehalfOfClient
    from entra_guard.principal import EntraPrincipal

__all__ = ["GRAPH_GROUPS_SCOPE", "GRAPH_URL", "GraphGroups", "GraphGroupsError"]

#: Microsoft Graph v1.0 in the global cloud; sovereign clouds have their own host.
GRAPH_URL = "https://graph.microsoft.com/v1.0"
#: The delegated permission Graph documents for reading a user's group memberships.
GRAPH_GROUPS_SCOPE = "https://graph.microsoft.com/GroupMember.Read.All"


class GraphGroupsError(RuntimeError):
    """Graph answered the membership request with something other than a list of group ids.

    ``status`` is the HTTP status; ``code`` Graph's ``error.code`` when it sent one. The
    message holds neither token nor response body beyond that code.
    """

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"Microsoft Graph answered getMemberGroups with {status} ({code})")
        self.status, self.code = status, code


class GraphGroups(GroupResolver):
    """Looks up an overage user's groups at Microsoft Graph on behalf of the user.

    - ``client``: this API's :class:`OnBehalfOfClient` (its registration needs a secret or
      certificate and consent to ``scopes`` at Graph).
    - ``graph_url``: Graph's base URL including the version, ``https://graph.microsoft.com/v1.0``
      by default (the emulator: ``idp.graph_url``).
    - ``scopes``: what the on-behalf-of token is for, :data:`GRAPH_GROUPS_SCOPE` by default.
    - ``http_client``: an ``httpx.AsyncClient`` to call Graph with (not closed here); without
      one each look-up opens its own with ``verify`` and ``timeout`` (seconds).
    - ``ttl``, ``maxsize``, ``clock``: the per-user memory of :class:`GroupResolver`.

    A look-up that fails (Graph unreachable or refusing, ``TokenRequestError`` from Entra)
    becomes 503 ``groups_unavailable``; a claims challenge from Entra or Graph reaches the
    caller as 401 ``insufficient_claims``. A route without ``EntraAuthMiddleware`` in front
    has no caller's token, and gets the 503 too (the cause, logged, says so).
    """

    def __init__(
        self,
        client: OnBehalfOfClient,
        *,
        graph_url: str = GRAPH_URL,
        scopes: str | Sequence[str] = GRAPH_GROUPS_SCOPE,
        http_client: httpx.AsyncClient | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        ttl: float = DEFAULT_GROUPS_TTL,
        maxsize: int = DEFAULT_GROUPS_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(_needs_the_callers_token, ttl=ttl, maxsize=maxsize, clock=clock)
        url = httpx.URL(graph_url.rstrip("/") if isinstance(graph_url, str) else "")
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError(f"graph_url must be Graph's https URL, got {graph_url!r}")
        self.client = client
        self.graph_url = str(url)
        self.scopes = scopes
        self._http = http_client
        self._verify = verify
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"GraphGroups(graph_url={self.graph_url!r}, scopes={self.scopes!r})"

    async def lookup(
        self, principal: EntraPrincipal, incoming: IncomingToken | None
    ) -> frozenset[str]:
        if incoming is None:
            raise RuntimeError(
                "GraphGroups needs the caller's token: put EntraAuthMiddleware in front"
            )
        auth = self.client.auth(
            incoming.value,
            self.scopes,
            capabilities=(CAE_CAPABILITY,) if principal.is_cae_capable else (),
        )
        url = f"{self.graph_url}/me/getMemberGroups"
        body = {"securityEnabledOnly": False}
        if self._http is not None:
            response = await self._http.post(url, json=body, auth=auth)
        else:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout) as http:
                response = await http.post(url, json=body, auth=auth)
        return _group_ids(response)


def _group_ids(response: httpx.Response) -> frozenset[str]:
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    values = answer.get("value") if isinstance(answer, dict) else None
    if response.status_code != httpx.codes.OK or not isinstance(values, list):
        error = answer.get("error") if isinstance(answer, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        raise GraphGroupsError(response.status_code, code if isinstance(code, str) else None)
    if not all(isinstance(v, str) for v in values):
        raise GraphGroupsError(response.status_code, "value holds something other than ids")
    return frozenset(values)


async def _needs_the_callers_token(principal: EntraPrincipal) -> frozenset[str]:
    raise RuntimeError("GraphGroups looks groups up through lookup(), with the caller's token")

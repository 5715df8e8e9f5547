"""One tenant's token endpoint, spoken to over httpx, with retries; no caching here.

The sync and async paths are the same loop around a different ``send`` and ``sleep``: what an
answer means and whether to try again is decided by shared, I/O-free functions.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING

import httpx

from entra_guard.client.errors import TokenRequestError, error_from_exception, error_from_response
from entra_guard.client.retry import RetryPolicy
from entra_guard.client.tokens import CacheEntry, read_token_response

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from entra_guard.client.credentials import ClientCredential

__all__ = ["TokenEndpoint"]

logger = logging.getLogger("entra_guard.client")

_HEADERS = {"Accept": "application/json"}


class TokenEndpoint:
    """Sends client-credentials requests to ``url`` and turns answers into cache entries."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        credential: ClientCredential,
        http_client: httpx.AsyncClient | None,
        sync_http_client: httpx.Client | None,
        verify: ssl.SSLContext | bool,
        timeout: float,
        retry: RetryPolicy,
        renew_before: float,
        clock: Callable[[], float],
    ) -> None:
        self.url = url
        self._client_id = client_id
        self._credential = credential
        self._async = http_client
        self._sync = sync_http_client
        self._owns_async = http_client is None
        self._owns_sync = sync_http_client is None
        self._verify = verify
        self._timeout = timeout
        self._retry = retry
        self._renew_before = renew_before
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    # -- one request, the shared part ---------------------------------------------------------

    def _form(self, scope: str, grant: Mapping[str, str] | None) -> dict[str, str]:
        fields = self._credential.form_fields(client_id=self._client_id, token_endpoint=self.url)
        return {
            "grant_type": "client_credentials",
            **(grant or {}),
            "client_id": self._client_id,
            "scope": scope,
            **fields,
        }

    def _outcome(
        self, response: httpx.Response, scope: str, grant: Mapping[str, str] | None
    ) -> CacheEntry | TokenRequestError:
        if response.status_code != httpx.codes.OK:
            return error_from_response(response, self._redactor(grant))
        return read_token_response(
            response, scope=scope, now=self._clock(), renew_before=self._renew_before
        )

    def _redactor(self, grant: Mapping[str, str] | None) -> Callable[[str], str]:
        """Blank out the secret and, for an on-behalf-of grant, the user's token as well."""
        assertion = (grant or {}).get("assertion")
        if not assertion:
            return self._credential.redact
        return lambda text: self._credential.redact(text).replace(assertion, "[redacted]")

    def _next_delay(self, retries_done: int, error: TokenRequestError, scope: str) -> float:
        delay = self._retry.delay(retries_done, error)
        if delay is None:
            raise error
        logger.info(
            "token request for %s failed (%s); retry %d of %d in %.2f s",
            scope,
            error,
            retries_done + 1,
            self._retry.max_retries,
            delay,
        )
        return delay

    # -- sync ---------------------------------------------------------------------------------

    def fetch_sync(self, scope: str, *, grant: Mapping[str, str] | None = None) -> CacheEntry:
        """A new token for ``scope``, or ``TokenRequestError`` once retries are spent.

        ``grant`` replaces ``grant_type=client_credentials`` by another grant's fields (the
        on-behalf-of grant's ``grant_type``, ``assertion`` and ``requested_token_use``).
        """
        client = self._sync_client()
        retries_done = 0
        while True:
            try:
                response = client.post(
                    self.url, data=self._form(scope, grant), headers=_HEADERS, timeout=self._timeout
                )
            except httpx.HTTPError as exc:
                outcome: CacheEntry | TokenRequestError = error_from_exception(exc)
            else:
                outcome = self._outcome(response, scope, grant)
            if isinstance(outcome, CacheEntry):
                return outcome
            time.sleep(self._next_delay(retries_done, outcome, scope))
            retries_done += 1

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            self._check_open()
            if self._sync is None:
                self._sync = httpx.Client(
                    verify=self._verify, timeout=self._timeout, follow_redirects=False
                )
            return self._sync

    # -- async --------------------------------------------------------------------------------

    async def fetch_async(
        self, scope: str, *, grant: Mapping[str, str] | None = None
    ) -> CacheEntry:
        """The async twin of :meth:`fetch_sync`."""
        client = self._async_client()
        retries_done = 0
        while True:
            try:
                response = await client.post(
                    self.url, data=self._form(scope, grant), headers=_HEADERS, timeout=self._timeout
                )
            except httpx.HTTPError as exc:
                outcome: CacheEntry | TokenRequestError = error_from_exception(exc)
            else:
                outcome = self._outcome(response, scope, grant)
            if isinstance(outcome, CacheEntry):
                return outcome
            await asyncio.sleep(self._next_delay(retries_done, outcome, scope))
            retries_done += 1

    def _async_client(self) -> httpx.AsyncClient:
        with self._lock:
            self._check_open()
            if self._async is None:
                self._async = httpx.AsyncClient(
                    verify=self._verify, timeout=self._timeout, follow_redirects=False
                )
            return self._async

    # -- lifecycle ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ConfidentialClient is closed")

    def close(self) -> None:
        """Close the sync client we made; an async one needs :meth:`aclose`."""
        with self._lock:
            self._closed = True
            sync, self._sync = (self._sync, None) if self._owns_sync else (None, self._sync)
        if sync is not None:
            sync.close()

    async def aclose(self) -> None:
        """Close every client we made; clients passed in stay open, they are the caller's."""
        self.close()
        with self._lock:
            owned, self._async = (self._async, None) if self._owns_async else (None, self._async)
        if owned is not None:
            await owned.aclose()

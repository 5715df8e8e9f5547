"""``ConfidentialClient``: app tokens for a daemon or service, cached and shared per scope.

A token is reused until ``renew_before`` ahead of its expiry. Then one caller renews while
everyone else keeps using the still-valid token; if the renewal fails, the old token keeps
serving (with a warning) until it really expires, and renewal is tried again after a pause.
Callers who have no valid token at all share a single request per scope: one asyncio task in
async code, one lock in threaded code. Sync and async callers share the cache itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import threading
import time
from typing import TYPE_CHECKING

from entra_guard.client.auth import EntraClientAuth
from entra_guard.client.endpoint import TokenEndpoint
from entra_guard.client.errors import TokenRequestError
from entra_guard.client.retry import RetryPolicy
from entra_guard.client.scopes import check_scope
from entra_guard.client.tokens import CacheEntry
from entra_guard.config import DEFAULT_INSTANCE, check_instance, is_guid

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import httpx

    from entra_guard.client.credentials import ClientCertificate, ClientSecret
    from entra_guard.client.tokens import AccessToken

__all__ = ["ConfidentialClient"]

logger = logging.getLogger("entra_guard.client")

_TENANTLESS = frozenset({"common", "organizations", "consumers"})
_DOMAIN = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
#: After a failed renewal, the still-valid token serves this long before renewal is tried again.
RENEW_RETRY_INTERVAL = 30.0
#: A token this close to expiry is no longer handed out: it could expire on its way.
EXPIRY_MARGIN = 5.0


class ConfidentialClient:
    """Acquires app-only tokens with the client-credentials grant, for one app in one tenant.

    ``clock`` drives the cache only (tests move it); ``retry_delay`` is the first backoff
    between transient failures, doubled each time unless the server sends ``Retry-After``.
    ``verify`` and ``timeout`` configure the httpx clients made here; clients passed in are
    used as they are (``timeout`` still bounds each token request) and are not closed.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        credential: ClientSecret | ClientCertificate,
        instance: str = DEFAULT_INSTANCE,
        http_client: httpx.AsyncClient | None = None,
        sync_http_client: httpx.Client | None = None,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
        max_retries: int = 3,
        renew_before: float = 300.0,
        retry_delay: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = _check_tenant(tenant_id)
        if not isinstance(client_id, str) or not is_guid(client_id):
            raise ValueError(
                f"client_id {client_id!r} must be the app's 'Application (client) ID' (a GUID)"
            )
        self.client_id = client_id.lower()
        self.instance = check_instance(instance)
        self.credential = credential
        _check_number("timeout", timeout, low=0.01)
        _check_number("renew_before", renew_before, low=0.0)
        _check_number("retry_delay", retry_delay, low=0.0)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        self._clock = clock
        self._endpoint = TokenEndpoint(
            url=f"{self.instance}/{self.tenant_id}/oauth2/v2.0/token",
            client_id=self.client_id,
            credential=credential,
            http_client=http_client,
            sync_http_client=sync_http_client,
            verify=_ssl_verify(verify),
            timeout=float(timeout),
            retry=RetryPolicy(max_retries=max_retries, first_delay=float(retry_delay)),
            renew_before=float(renew_before),
            clock=clock,
        )
        self._cache: dict[str, CacheEntry] = {}
        self._tasks: dict[str, asyncio.Task[AccessToken]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def token_endpoint(self) -> str:
        return self._endpoint.url

    def __repr__(self) -> str:
        return (
            f"ConfidentialClient(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, "
            f"credential={self.credential!r}, instance={self.instance!r})"
        )

    def auth(self, scope: str) -> EntraClientAuth:
        """An ``httpx.Auth`` sending this client's tokens for ``scope`` to an API."""
        return EntraClientAuth(self, check_scope(scope))

    # -- acquiring ----------------------------------------------------------------------------

    async def acquire_token(self, scope: str, *, force_refresh: bool = False) -> AccessToken:
        """A token for ``scope`` (``{resource}/.default``), from the cache when it is fresh."""
        scope = check_scope(scope)
        return await self._acquire_async(scope, rejected=self._cached(scope, force_refresh))

    def acquire_token_sync(self, scope: str, *, force_refresh: bool = False) -> AccessToken:
        """The blocking twin of :meth:`acquire_token`, safe to call from many threads."""
        scope = check_scope(scope)
        return self._acquire_sync(scope, rejected=self._cached(scope, force_refresh))

    def _cached(self, scope: str, force_refresh: bool) -> AccessToken | None:
        entry = self._cache.get(scope)
        return entry.token if force_refresh and entry is not None else None

    def _usable(self, scope: str, rejected: AccessToken | None) -> CacheEntry | None:
        """The cached entry if its token may still be handed out."""
        entry = self._cache.get(scope)
        if entry is None or (rejected is not None and entry.token.token == rejected.token):
            return None
        return entry if self._clock() < entry.token.expires_at - EXPIRY_MARGIN else None

    def _due(self, entry: CacheEntry) -> bool:
        now = self._clock()
        return now >= entry.renew_at and now >= entry.retry_at

    async def _acquire_async(self, scope: str, *, rejected: AccessToken | None) -> AccessToken:
        """:meth:`acquire_token` for a checked scope; a ``rejected`` token is never reused."""
        entry = self._usable(scope, rejected)
        if entry is not None and not self._due(entry):
            return entry.token
        loop = asyncio.get_running_loop()
        task = self._tasks.get(scope)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._renew_async(scope, entry))
            self._tasks[scope] = task
            task.add_done_callback(lambda done: self._forget_task(scope, done))
        elif entry is not None:
            return entry.token  # someone is renewing; the current token still serves
        # shield: a caller giving up must not cancel the request others are waiting on
        return await asyncio.shield(task)

    def _forget_task(self, scope: str, task: asyncio.Task[AccessToken]) -> None:
        if self._tasks.get(scope) is task:
            del self._tasks[scope]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not logged

    async def _renew_async(self, scope: str, entry: CacheEntry | None) -> AccessToken:
        try:
            fresh = await self._endpoint.fetch_async(scope)
        except TokenRequestError as error:
            return self._fall_back(scope, entry, error)
        return self._store(scope, fresh)

    def _acquire_sync(self, scope: str, *, rejected: AccessToken | None) -> AccessToken:
        """:meth:`acquire_token_sync` for a checked scope; a ``rejected`` token is never reused."""
        entry = self._usable(scope, rejected)
        if entry is not None and not self._due(entry):
            return entry.token
        lock = self._lock(scope)
        if entry is None:
            lock.acquire()
        elif not lock.acquire(blocking=False):
            return entry.token  # another thread is renewing; the current token still serves
        try:
            # Another thread may have renewed while this one waited for the lock.
            entry = self._usable(scope, rejected)
            if entry is not None and not self._due(entry):
                return entry.token
            try:
                fresh = self._endpoint.fetch_sync(scope)
            except TokenRequestError as error:
                return self._fall_back(scope, entry, error)
            return self._store(scope, fresh)
        finally:
            lock.release()

    def _lock(self, scope: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(scope, threading.Lock())

    def _store(self, scope: str, entry: CacheEntry) -> AccessToken:
        self._cache[scope] = entry
        token = entry.token
        logger.debug(
            "acquired a token for %s (fingerprint %s, expires in %.0f s)",
            scope,
            token.fingerprint,
            token.expires_at - self._clock(),
        )
        return token

    def _fall_back(
        self, scope: str, entry: CacheEntry | None, error: TokenRequestError
    ) -> AccessToken:
        """Keep serving a still-valid token when renewing it failed; otherwise raise."""
        now = self._clock()
        if entry is None or now >= entry.token.expires_at - EXPIRY_MARGIN:
            raise error
        if self._cache.get(scope) is entry:
            self._cache[scope] = CacheEntry(
                token=entry.token, renew_at=entry.renew_at, retry_at=now + RENEW_RETRY_INTERVAL
            )
        logger.warning(
            "renewing the token for %s failed (%s); the cached token (fingerprint %s) stays in "
            "use for %.0f s more",
            scope,
            error,
            entry.token.fingerprint,
            entry.token.expires_at - now,
        )
        return entry.token

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync HTTP client made here; in async code use :meth:`aclose`."""
        self._endpoint.close()

    async def aclose(self) -> None:
        """Close every HTTP client made here."""
        await self._endpoint.aclose()

    def __enter__(self) -> ConfidentialClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> ConfidentialClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _check_tenant(tenant_id: str) -> str:
    tenant = tenant_id.strip().lower() if isinstance(tenant_id, str) else ""
    if tenant in _TENANTLESS:
        raise ValueError(
            f"tenant_id {tenant_id!r}: the client-credentials grant needs the tenant the app "
            "acts in, as its GUID or a verified domain (Entra answers AADSTS9001023 otherwise)"
        )
    if not (is_guid(tenant) or _DOMAIN.match(tenant)):
        raise ValueError(
            f"tenant_id {tenant_id!r} must be the tenant GUID ('Directory (tenant) ID') or one "
            "of its domains, e.g. 'contoso.onmicrosoft.com'"
        )
    return tenant


def _ssl_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """httpx deprecates a CA path for ``verify``; load it into a context once, here."""
    if not isinstance(verify, str):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"verify: cannot load the CA bundle {verify!r}: {exc}") from None


def _check_number(name: str, value: float, *, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"{name} must be a number >= {low:g}, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite")

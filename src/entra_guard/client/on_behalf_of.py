"""``OnBehalfOfClient``: tokens for a downstream API, as the user who called this API.

The on-behalf-of grant (Microsoft identity platform, "OAuth 2.0 On-Behalf-Of flow") trades the
caller's access token for a token to another API, with the same user in it: the request is
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, ``requested_token_use=on_behalf_of``,
``assertion=<the caller's token>`` and the downstream ``scope``, authenticated with this API's
own credentials. It goes through the :class:`ConfidentialClient`'s token endpoint, so the
credential (secret or certificate), the retries and ``TokenRequestError`` are the same.

The cache rules:

- A token is kept per (SHA-256 of the caller's token, scope, declared capabilities), as
  MSAL.NET partitions its on-behalf-of cache by a hash of the incoming token: a user whose app
  fetched a new token (after a claims challenge, say) never gets a token made from the old one.
  The digest, not the token, is the key, so the cache holds no caller's token.
- An entry serves until ``renew_before`` ahead of its expiry (or half its life, if shorter), then
  the next caller fetches a new one; the cache holds at most ``max_entries`` tokens, the least
  recently used going first.
- Callers who need the same missing token share one request: one asyncio task per key in async
  code, one in-flight future per key in threaded code.
- A claims challenge in Entra's answer (``claims`` beside ``interaction_required`` or
  ``invalid_grant``) raises :class:`~entra_guard.errors.ClaimsChallenge`, which
  ``EntraAuthMiddleware`` answers with 401 ``insufficient_claims`` for the caller's app.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import httpx
from cachetools import TLRUCache

from entra_guard.client.challenges import (
    capability_claims,
    claims_from_challenge,
    minified_claims,
)
from entra_guard.client.errors import TokenRequestError
from entra_guard.errors import ClaimsChallenge

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from entra_guard.client.confidential import ConfidentialClient
    from entra_guard.client.tokens import AccessToken, CacheEntry

__all__ = ["JWT_BEARER", "OnBehalfOfAuth", "OnBehalfOfClient"]

logger = logging.getLogger("entra_guard.client")

#: RFC 7523's grant type, which Entra's on-behalf-of flow uses.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The most tokens kept at once by default; one is about 2 KB.
DEFAULT_MAX_ENTRIES = 10_000
_MAX_ASSERTION = 16_384
_Key = tuple[str, str, str]


class OnBehalfOfClient:
    """Acquires tokens on behalf of callers, through ``client`` (this API's own registration).

    ``client`` is a :class:`ConfidentialClient` for this API (its client id, its tenant, a
    secret or certificate); its HTTP clients and clock are shared, and closing it closes this.
    ``max_entries`` bounds the cache (``ValueError`` below 1).
    """

    def __init__(self, client: ConfidentialClient, *, max_entries: int = DEFAULT_MAX_ENTRIES):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a whole number >= 1, got {max_entries!r}")
        self.client = client
        self._endpoint = client._endpoint
        self._clock = client._clock
        self._cache: TLRUCache[_Key, CacheEntry] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, entry, _now: entry.renew_at, timer=self._clock
        )
        self._guard = threading.Lock()
        self._tasks: dict[_Key, asyncio.Task[AccessToken]] = {}
        self._flights: dict[_Key, concurrent.futures.Future[AccessToken]] = {}

    def __repr__(self) -> str:
        return f"OnBehalfOfClient(client={self.client!r}, max_entries={self._cache.maxsize!r})"

    @property
    def authorization_uri(self) -> str:
        """Where the caller's app signs the user in again: this tenant's ``/authorize``."""
        return f"{self.client.instance}/{self.client.tenant_id}/oauth2/v2.0/authorize"

    def auth(
        self, user_token: str, scopes: str | Sequence[str], *, capabilities: Iterable[str] = ()
    ) -> OnBehalfOfAuth:
        """An ``httpx.Auth`` calling a downstream API with tokens for ``scopes`` as the user.

        ``capabilities`` are declared in the request (``xms_cc``, e.g. ``["cp1"]`` when the
        caller's app can answer claims challenges). See :class:`OnBehalfOfAuth`.
        """
        return OnBehalfOfAuth(self, self._key(user_token, scopes, capabilities), user_token)

    async def acquire_token(
        self,
        user_token: str,
        scopes: str | Sequence[str],
        *,
        capabilities: Iterable[str] = (),
        force_refresh: bool = False,
    ) -> AccessToken:
        """A token for ``scopes`` (space-separated, or a list) as the user of ``user_token``.

        ``user_token`` is the access token this API received (its ``aud`` must be this API).
        Raises ``ClaimsChallenge`` when Entra asks the user to satisfy claims (conditional
        access), ``TokenRequestError`` for any other refusal or failure, ``ValueError`` for an
        empty token or scope.
        """
        key = self._key(user_token, scopes, capabilities)
        rejected = self._cached(key) if force_refresh else None
        return await self._acquire_async(key, user_token, rejected=rejected)

    def acquire_token_sync(
        self,
        user_token: str,
        scopes: str | Sequence[str],
        *,
        capabilities: Iterable[str] = (),
        force_refresh: bool = False,
    ) -> AccessToken:
        """The blocking twin of :meth:`acquire_token`, safe to call from many threads."""
        key = self._key(user_token, scopes, capabilities)
        rejected = self._cached(key) if force_refresh else None
        return self._acquire_sync(key, user_token, rejected=rejected)

    # -- the cache ----------------------------------------------------------------------------

    @staticmethod
    def _key(user_token: str, scopes: str | Sequence[str], capabilities: Iterable[str]) -> _Key:
        if not isinstance(user_token, str) or not user_token.strip():
            raise ValueError("user_token must be the caller's access token, a non-empty string")
        if len(user_token) > _MAX_ASSERTION or not user_token.isascii():
            raise ValueError("user_token is not an access token (too long, or not ASCII)")
        digest = hashlib.sha256(user_token.encode("ascii")).hexdigest()
        return digest, _scope(scopes), capability_claims(capabilities) or ""

    def _cached(self, key: _Key) -> AccessToken | None:
        with self._guard:
            entry = self._cache.get(key)
        return entry.token if entry is not None else None

    def _fresh(self, key: _Key, rejected: AccessToken | None) -> AccessToken | None:
        token = self._cached(key)
        if token is None or (rejected is not None and token.token == rejected.token):
            return None
        return token

    def _forget(self, key: _Key, token: AccessToken) -> None:
        """Drop ``token`` if it is still the cached one: the downstream API refused it."""
        with self._guard:
            entry = self._cache.get(key)
            if entry is not None and entry.token.token == token.token:
                del self._cache[key]

    # -- acquiring ----------------------------------------------------------------------------

    async def _acquire_async(
        self, key: _Key, user_token: str, *, rejected: AccessToken | None
    ) -> AccessToken:
        token = self._fresh(key, rejected)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        task = self._tasks.get(key)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._fetch_async(key, user_token))
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget_task(key, done))
        # shield: a caller giving up must not cancel the request others are waiting on
        return await asyncio.shield(task)

    def _forget_task(self, key: _Key, task: asyncio.Task[AccessToken]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not logged

    async def _fetch_async(self, key: _Key, user_token: str) -> AccessToken:
        try:
            entry = await self._endpoint.fetch_async(key[1], grant=self._grant(key, user_token))
        except TokenRequestError as error:
            failure = self._challenge_or(error)
            if failure is error:
                raise
            raise failure from error
        return self._store(key, entry)

    def _acquire_sync(
        self, key: _Key, user_token: str, *, rejected: AccessToken | None
    ) -> AccessToken:
        token = self._fresh(key, rejected)
        if token is not None:
            return token
        with self._guard:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = concurrent.futures.Future()
        if not leader:
            return flight.result()
        try:
            entry = self._endpoint.fetch_sync(key[1], grant=self._grant(key, user_token))
            flight.set_result(self._store(key, entry))
        except TokenRequestError as error:
            flight.set_exception(self._challenge_or(error))
        except BaseException as error:  # noqa: BLE001  # handed to every waiting thread
            flight.set_exception(error)
        finally:
            with self._guard:
                del self._flights[key]
        return flight.result()

    def _grant(self, key: _Key, user_token: str) -> dict[str, str]:
        grant = {
            "grant_type": JWT_BEARER,
            "requested_token_use": "on_behalf_of",
            "assertion": user_token,
        }
        if key[2]:
            grant["claims"] = key[2]
        return grant

    def _store(self, key: _Key, entry: CacheEntry) -> AccessToken:
        with self._guard:
            self._cache[key] = entry
        token = entry.token
        logger.debug(
            "acquired an on-behalf-of token for %s (fingerprint %s, expires in %.0f s)",
            key[1],
            token.fingerprint,
            token.expires_at - self._clock(),
        )
        return token

    def _challenge_or(self, error: TokenRequestError) -> Exception:
        """A ``ClaimsChallenge`` when Entra attached claims to its refusal, else ``error``."""
        claims = minified_claims(error.claims) if error.claims is not None else None
        if claims is None:
            return error
        code = f" ({error.aadsts})" if error.aadsts else ""
        challenge = self.challenge(
            "interaction_required",
            f"Entra ID requires the user to sign in again and satisfy a claims challenge{code}; "
            "retry with the claims of this challenge",
            claims=claims,
        )
        challenge.__cause__ = error
        return challenge

    def challenge(self, reason: str, description: str, *, claims: str) -> ClaimsChallenge:
        """A ``ClaimsChallenge`` naming this tenant's ``/authorize`` and this API's client id."""
        return ClaimsChallenge(
            reason,
            description,
            claims=claims,
            authorization_uri=self.authorization_uri,
            realm=self.client.tenant_id,
            client_id=self.client.client_id,
        )


class OnBehalfOfAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <on-behalf-of token>`` to requests to a downstream API.

    A 401 with a claims challenge (``error="insufficient_claims"``, ``claims=``) raises
    ``ClaimsChallenge`` carrying those claims, so that the caller's app signs the user in again;
    another 401 renews the token once, bypassing the cache, and sends the request once more.
    The repr names the scope, never the user's token.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, client: OnBehalfOfClient, key: _Key, user_token: str) -> None:
        self._client = client
        self._key = key
        self._user_token = user_token
        self.scope = key[1]

    def __repr__(self) -> str:
        return f"OnBehalfOfAuth(scope={self.scope!r}, client={self._client!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        token = self._client._acquire_sync(self._key, self._user_token, rejected=None)
        response = yield _authorized(request, token)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            self._raise_challenge(response, token)
            token = self._client._acquire_sync(self._key, self._user_token, rejected=token)
            response = yield _authorized(request, token)
            if response.status_code == httpx.codes.UNAUTHORIZED:
                self._raise_challenge(response, token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._client._acquire_async(self._key, self._user_token, rejected=None)
        response = yield _authorized(request, token)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            self._raise_challenge(response, token)
            token = await self._client._acquire_async(self._key, self._user_token, rejected=token)
            response = yield _authorized(request, token)
            if response.status_code == httpx.codes.UNAUTHORIZED:
                self._raise_challenge(response, token)

    def _raise_challenge(self, response: httpx.Response, token: AccessToken) -> None:
        claims = claims_from_challenge(response.headers.get_list("www-authenticate"))
        if claims is None:
            return
        self._client._forget(self._key, token)
        raise self._client.challenge(
            "insufficient_claims",
            f"{response.request.url.host} requires the user to sign in again and satisfy a "
            "claims challenge; retry with the claims of this challenge",
            claims=claims,
        )


def _authorized(request: httpx.Request, token: AccessToken) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token.token}"
    return request


def _scope(scopes: str | Sequence[str]) -> str:
    """``scopes`` as the space-separated form value; ``ValueError`` if none or malformed."""
    names = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not names or not all(isinstance(n, str) and n and not any(c.isspace() for c in n)
                            for n in names):  # fmt: skip
        raise ValueError(
            f"scopes must name the downstream API's scopes, such as "
            f"'https://graph.microsoft.com/User.Read' or 'api://orders/.default'; got {scopes!r}"
        )
    return " ".join(dict.fromkeys(names))

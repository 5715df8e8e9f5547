"""Signing keys from the tenant's OpenID configuration, cached and refreshed safely.

One ``KeyStore`` serves one ``EntraConfig``: a key set per token version (v1 and v2 tokens are
checked against their own metadata document). The rules, each learned from an outage somebody
had:

- single flight: concurrent requests that need the same document share one fetch, and the fetch
  runs in its own task, so a client that disconnects does not cancel it for the others;
- stale-while-revalidate: after ``refresh_interval`` the current keys keep serving while exactly
  one background refresh runs;
- an unknown ``kid`` forces at most one refresh per ``min_refresh_interval``, so tokens with
  random ``kid`` values cannot cause a fetch storm;
- last known good: a failed refresh never discards good keys; they serve for
  ``last_known_good_lifetime`` after the last successful fetch. Only with no usable keys at
  all is ``KeysUnavailable`` raised;
- with no keys, failed fetches back off (1 s doubling to 30 s) and requests fail fast meanwhile;
- bounded time, bounded size, no redirects, strict shapes: an identity provider answering
  garbage is treated as unavailable, never as a crash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import PyJWTError

from entra_guard.config import EntraConfig, TokenVersion, is_loopback_host
from entra_guard.errors import KeysUnavailable

__all__ = ["KeySet", "KeyStore", "SigningKey"]

logger = logging.getLogger("entra_guard.discovery")

_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_MIN_RSA_BITS = 2048
_MAX_KEYS = 1000
_MAX_KEY_ID_CHARS = 256
_MAX_ABSENT = 1024
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_JITTER = 0.05  # like Microsoft's ConfigurationManager, so that replicas do not refresh in step


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RSA public key from a JWKS, parsed once."""

    kid: str | None
    x5t: str | None
    public_key: RSAPublicKey
    #: The v2 JWKS ``issuer`` member (may hold ``{tenantid}``); ``None`` in v1 key sets.
    issuer: str | None
    #: The JWK ``alg`` member, when the key is pinned to one algorithm.
    alg: str | None
    #: Identifies what the key is (``n``, ``e``, ``issuer``, ``alg``), so that a refresh which
    #: publishes the same key again is seen to keep it.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class KeySet:
    """What one metadata document and its JWKS say, as fetched at one moment."""

    version: TokenVersion
    #: The metadata ``issuer``; multi-tenant documents hold the ``{tenantid}`` placeholder.
    issuer: str
    jwks_uri: str
    by_kid: Mapping[str, SigningKey]
    by_x5t: Mapping[str, SigningKey]

    def find(self, kid: str | None, x5t: str | None) -> SigningKey | None:
        """Look a key up by ``kid``, or by ``x5t`` for old v1 tokens that carry no ``kid``."""
        if kid is not None:
            return self.by_kid.get(kid)
        if x5t is not None:
            return self.by_x5t.get(x5t)
        return None

    def __len__(self) -> int:
        return len(self.by_kid) + sum(1 for k in self.by_x5t.values() if k.kid is None)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self.by_kid) | frozenset(self.by_x5t)


class _FetchError(Exception):
    """A document could not be had or made no sense; the message is safe to log."""


class KeyStore:
    """Metadata and signing keys for one configuration. Create once, share, ``aclose()`` at exit.

    ``http_client`` lets you bring your own ``httpx.AsyncClient`` (custom CA, proxy); the store
    then leaves closing it to you. ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        config: EntraConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clock = clock
        self._owns_client = http_client is None
        self._client = http_client
        self._client_loop: asyncio.AbstractEventLoop | None = None
        # Plain dicts with explicit deadlines: this is read on every request, and the two
        # deadlines (refresh, last known good) are the whole policy, so they stay in sight.
        self._keysets: dict[TokenVersion, KeySet] = {}
        self._usable_until: dict[TokenVersion, float] = {}
        self._refresh_at: dict[TokenVersion, float] = {}
        self._forced_at: dict[TokenVersion, float] = {}
        self._retry_at: dict[TokenVersion, float] = {}
        self._failures: dict[TokenVersion, int] = {}
        self._inflight: dict[TokenVersion, asyncio.Task[KeySet | None]] = {}
        # Key ids a fetch has shown to be unpublished (an insertion-ordered, bounded set); it is
        # forgotten whenever the published key ids change.
        self._absent: dict[TokenVersion, dict[tuple[str | None, str | None], None]] = {}

    def metadata_url(self, version: TokenVersion) -> str:
        base = f"{self._config.instance}/{self._config.tenant_id}"
        suffix = "/v2.0" if version == "2.0" else ""
        return f"{base}{suffix}/.well-known/openid-configuration"

    def current(self, version: TokenVersion) -> KeySet | None:
        """The key set in hand, without waiting (``None``: it must be fetched first).

        A stale key set is returned as it is, and one background refresh is started.
        """
        keyset = self._keysets.get(version)
        if keyset is None:
            return None
        now = self._clock()
        if now >= self._usable_until[version]:  # last known good for too long: drop it
            del self._keysets[version]
            return None
        if now >= self._refresh_at[version] and self._refreshing(version) is None:
            self._start_refresh(version)
        return keyset

    def is_current(self, version: TokenVersion, keyset: KeySet, key: SigningKey) -> bool:
        """Whether ``key`` of ``keyset`` is still published (the same key under the same id)."""
        current = self.current(version)
        if current is keyset:  # nothing was refreshed since: the common case
            return True
        if current is None:
            return False
        now = current.find(key.kid, None if key.kid else key.x5t)
        return now is not None and now.fingerprint == key.fingerprint

    async def get_key_set(self, version: TokenVersion) -> KeySet:
        """The key set for ``version``; fetches on first use and refreshes when stale."""
        keyset = self.current(version)
        if keyset is None:
            now = self._clock()
            if now < self._retry_at.get(version, -math.inf):
                raise self._unavailable(version, now)
            keyset = await self._join_refresh(version)
            if keyset is None:
                raise self._unavailable(version, self._clock())
        return keyset

    async def find_key(
        self, version: TokenVersion, kid: str | None, x5t: str | None
    ) -> tuple[KeySet, SigningKey | None]:
        """Find the key a token names, forcing one refresh per interval for an unknown one."""
        keyset = await self.get_key_set(version)
        key = keyset.find(kid, x5t)
        if key is not None or (kid is None and x5t is None):
            return keyset, key
        key_id = (kid, x5t)
        absent = self._absent.setdefault(version, {})
        if key_id in absent:
            # A fetch already showed this key is not published: tokens of a removed key must
            # not use up the forced refresh that a newly rotated-in key may need.
            return keyset, None
        now = self._clock()
        if self._refreshing(version) is not None:
            refreshed = await self._join_refresh(version)
        elif now - self._forced_at.get(version, -math.inf) >= self._config.min_refresh_interval:
            self._forced_at[version] = now
            logger.info("unknown signing key id; refreshing the %s key set", version)
            refreshed = await self._join_refresh(version)
        else:
            return keyset, None
        if refreshed is None:
            return keyset, keyset.find(kid, x5t)
        key = refreshed.find(kid, x5t)
        if key is None:
            if len(absent) >= _MAX_ABSENT:
                absent.pop(next(iter(absent)))  # the oldest goes first
            absent[key_id] = None
        return refreshed, key

    async def prefetch(self) -> None:
        """Fetch every accepted version's keys now (at start-up), so first requests are fast."""
        await asyncio.gather(*(self.get_key_set(v) for v in self._config.token_versions))

    async def aclose(self) -> None:
        """Stop refreshing and close the HTTP client made here (the keys stay in hand).

        The store stays usable: a later fetch opens a new client. Test suites rely on that when
        one app serves several ``TestClient`` blocks, each running (and shutting down) the app
        in an event loop of its own.
        """
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client; an owned one is made anew for a new event loop (or after aclose)."""
        if not self._owns_client:
            assert self._client is not None  # given at construction
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            # Fetches are hours apart: no connection is kept alive, so nothing is left open
            # when an event loop goes away (as it does between test cases).
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(self._config.fetch_timeout),
                headers={"Accept": "application/json"},
                limits=httpx.Limits(max_keepalive_connections=0),
                verify=self._config.ssl_context or True,
            )
            self._client_loop = loop
        return self._client

    # -- refreshing ---------------------------------------------------------------------------

    def _refreshing(self, version: TokenVersion) -> asyncio.Task[KeySet | None] | None:
        """The refresh running for ``version`` in this event loop, if there is one."""
        task = self._inflight.get(version)
        if task is not None and (task.done() or task.get_loop() is not asyncio.get_running_loop()):
            del self._inflight[version]  # finished, or left behind by an event loop now gone
            return None
        return task

    def _start_refresh(self, version: TokenVersion) -> asyncio.Task[KeySet | None]:
        task = self._refreshing(version)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(version))
            self._inflight[version] = task
            task.add_done_callback(lambda done: self._forget(version, done))
        return task

    def _forget(self, version: TokenVersion, task: asyncio.Task[KeySet | None]) -> None:
        if self._inflight.get(version) is task:
            del self._inflight[version]

    async def _join_refresh(self, version: TokenVersion) -> KeySet | None:
        # shield: a cancelled request must not cancel the fetch the others are waiting for
        return await asyncio.shield(self._start_refresh(version))

    async def _refresh(self, version: TokenVersion) -> KeySet | None:
        """Fetch and install a key set; on failure keep what we have and schedule a retry."""
        try:
            keyset = await asyncio.wait_for(self._fetch(version), self._config.fetch_timeout)
        except (_FetchError, httpx.HTTPError) as exc:
            self._record_failure(version, f"{type(exc).__name__}: {exc}")
            return None
        except asyncio.TimeoutError:
            self._record_failure(version, f"timed out after {self._config.fetch_timeout:g} s")
            return None
        except Exception as exc:  # noqa: BLE001  # whatever the IdP sends, we keep serving
            self._record_failure(version, f"unexpected {type(exc).__name__}")
            return None
        now = self._clock()
        interval = self._config.refresh_interval
        previous = self._keysets.get(version)
        if previous is None or previous.key_ids != keyset.key_ids:
            self._absent.pop(version, None)
        self._keysets[version] = keyset
        self._usable_until[version] = now + self._config.last_known_good_lifetime
        self._refresh_at[version] = now + interval + random.uniform(0, _JITTER * interval)  # noqa: S311
        self._failures.pop(version, None)
        self._retry_at.pop(version, None)
        logger.info(
            "fetched %d signing keys for %s tokens from %s", len(keyset), version, keyset.jwks_uri
        )
        return keyset

    def _record_failure(self, version: TokenVersion, reason: str) -> None:
        now = self._clock()
        if self.current(version) is not None:
            # Keys in hand keep serving; try again after the forced-refresh interval. These
            # failures do not count towards the back-off for when no keys are left at all.
            self._failures.pop(version, None)
            self._refresh_at[version] = now + self._config.min_refresh_interval
            logger.warning(
                "refreshing %s signing keys failed (%s); serving the last known good keys",
                version,
                reason,
            )
        else:
            failures = self._failures.get(version, 0) + 1
            self._failures[version] = failures
            backoff = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (failures - 1))
            self._retry_at[version] = now + backoff
            logger.error(
                "cannot fetch %s signing keys (%s); retrying in %g s", version, reason, backoff
            )

    def _unavailable(self, version: TokenVersion, now: float) -> KeysUnavailable:
        retry = max(1, math.ceil(self._retry_at.get(version, now) - now))
        return KeysUnavailable(
            "keys_unavailable",
            "The signing keys of the identity provider are unavailable; try again later",
            retry_after=retry,
        )

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self, version: TokenVersion) -> KeySet:
        metadata = await self._get_json(self.metadata_url(version))
        issuer = metadata.get("issuer")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(issuer, str) or not issuer:
            raise _FetchError("metadata has no 'issuer' string")
        if not isinstance(jwks_uri, str) or not _acceptable_url(jwks_uri):
            raise _FetchError("metadata 'jwks_uri' is missing or not an https URL")
        keys = parse_jwks(await self._get_json(jwks_uri))
        if not keys:
            raise _FetchError(f"{jwks_uri} holds no usable RSA signing keys")
        return KeySet(
            version=version,
            issuer=issuer,
            jwks_uri=jwks_uri,
            by_kid=MappingProxyType({k.kid: k for k in keys if k.kid is not None}),
            by_x5t=MappingProxyType({k.x5t: k for k in keys if k.x5t is not None}),
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        limit = self._config.max_document_bytes
        async with self._http().stream("GET", url) as response:
            if response.status_code != 200:
                raise _FetchError(f"GET {url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _FetchError(f"GET {url} is larger than {limit} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _FetchError(f"GET {url} is larger than {limit} bytes")
        try:
            document = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise _FetchError(f"GET {url} did not answer JSON") from None
        if not isinstance(document, dict):
            raise _FetchError(f"GET {url} did not answer a JSON object")
        return document


def parse_jwks(document: Mapping[str, Any]) -> list[SigningKey]:
    """The usable RSA signing keys of a JWKS; anything else in it is skipped, not fatal."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        return []
    keys = []
    for entry in entries[:_MAX_KEYS]:
        key = _parse_jwk(entry) if isinstance(entry, dict) else None
        if key is not None:
            keys.append(key)
    return keys


def _parse_jwk(jwk: Mapping[str, Any]) -> SigningKey | None:
    if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
        return None
    kid, x5t = jwk.get("kid"), jwk.get("x5t")
    if not (_is_key_id(kid) or _is_key_id(x5t)) or (kid is not None and not _is_key_id(kid)):
        return None
    n, e = jwk.get("n"), jwk.get("e")
    if not (isinstance(n, str) and isinstance(e, str) and _B64URL.match(n) and _B64URL.match(e)):
        return None  # e.g. standard base64 with '+', '/' or '=': not a JWK
    try:
        loaded = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": e})
    except (PyJWTError, ValueError):
        return None
    public = loaded.public_key() if isinstance(loaded, RSAPrivateKey) else loaded
    if public.key_size < _MIN_RSA_BITS:
        return None
    issuer, alg = jwk.get("issuer"), jwk.get("alg")
    issuer = issuer if isinstance(issuer, str) and issuer else None
    alg = alg if isinstance(alg, str) else None
    return SigningKey(
        kid=kid,
        x5t=x5t if _is_key_id(x5t) else None,
        public_key=public,
        issuer=issuer,
        alg=alg,
        fingerprint=hashlib.sha256(f"{n}.{e}.{issuer}.{alg}".encode()).hexdigest(),
    )


def _is_key_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_KEY_ID_CHARS


def _acceptable_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

"""Signing keys from the tenant's OpenID configuration, cached and refreshed safely.

One ``KeyStore`` serves one ``EntraConfig``: a key set per token version (v1 and v2 tokens are
checked against their own metadata document), and per version the app-specific key sets of the
API's own client ids (the metadata asked with ``?appid=``), consulted for a key the tenant does
not publish. Each document has one small state record, and the same rules hold for every one,
each rule learned from an outage somebody had:

- single flight: concurrent requests that need the same document share one fetch, and the fetch
  runs in its own task, so a client that disconnects does not cancel it for the others;
- stale-while-revalidate: after ``refresh_interval`` the current keys keep serving while exactly
  one background refresh runs;
- an unknown ``kid`` forces at most one refresh per ``min_refresh_interval``, so tokens with
  random ``kid`` values cannot cause a fetch storm. A ``kid`` a fetch showed unpublished is
  refused without a fetch for one interval after the latest fetch; after that it may force a
  refresh again (a rollover can drop a key for a moment and list it again), from a budget of
  one per interval of its own, so that stale clients cannot starve a newly rotated-in key;
- last known good: a failed refresh never discards good keys; they serve for
  ``last_known_good_lifetime`` after the last successful fetch. Only with no usable keys at
  all is ``KeysUnavailable`` raised;
- with no keys, failed fetches back off (1 s doubling to 30 s) and requests fail fast meanwhile;
- a metadata URL answering 404 (External ID publishes no v1 metadata) is not an outage: its
  tokens are invalid, it is logged once, and asked again at most once per interval;
- bounded time, bounded size, no redirects, strict shapes: an identity provider answering
  garbage is treated as unavailable, never as a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx

from entra_guard.config import EntraConfig, TokenVersion, is_guid, is_loopback_host
from entra_guard.errors import InvalidToken, KeysUnavailable
from entra_guard.jwks import KeySet, SigningKey, could_be_published, parse_jwks

__all__ = ["KeySet", "KeyStore", "SigningKey", "parse_jwks"]

logger = logging.getLogger("entra_guard.discovery")

_MAX_ABSENT = 1024
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_JITTER = 0.05  # like Microsoft's ConfigurationManager, so that replicas do not refresh in step


class _FetchError(Exception):
    """A document could not be had or made no sense; the message is safe to log."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status when the server answered with an error.
        self.status = status


class _NotServed(_FetchError):
    """The metadata URL answered 404: the authority publishes no such document.

    External ID (``*.ciamlogin.com``) authorities, for one, publish v2 metadata only.
    """


@dataclass(eq=False, slots=True)
class _Source:
    """One metadata document and its key set: everything the refresh policy remembers of it.

    Deadlines are monotonic seconds from the store's clock; ``-inf`` means "never set".
    """

    version: TokenVersion
    metadata_url: str
    #: The API client id whose app-specific keys these are, or ``None`` for the tenant's.
    app_id: str | None = None
    #: The key set in hand (``None``: nothing fetched yet, or dropped after last known good).
    keyset: KeySet | None = None
    #: Last known good ends here: the keys are dropped rather than served any longer.
    usable_until: float = -math.inf
    #: Fresh until here; afterwards one background refresh runs while the keys keep serving.
    refresh_at: float = -math.inf
    #: When an unknown key id last forced a refresh.
    forced_at: float = -math.inf
    #: With no keys in hand: no new attempt before this (the back-off after failures).
    retry_at: float = -math.inf
    #: Failed fetches in a row with no keys in hand; sets the back-off.
    failures: int = 0
    #: The refresh running now, shared by everyone who waits for it (single flight).
    task: asyncio.Task[KeySet | None] | None = None
    #: When the key set in hand was fetched.
    fetched_at: float = -math.inf
    #: When a key id in ``absent`` last forced a refresh to look again.
    rechecked_at: float = -math.inf
    #: Key ids a fetch has shown to be unpublished (an insertion-ordered, bounded set). Every
    #: fetch that publishes the same key ids shows them absent again, so the set is as fresh
    #: as ``fetched_at``; it is forgotten whenever the published key ids change.
    absent: dict[tuple[str | None, str | None], None] = field(default_factory=dict)
    #: The metadata URL answered 404 and no keys are in hand (``retry_at`` says when to ask
    #: again). Tokens for it are invalid, not a reason for a 503.
    not_served: bool = False

    @property
    def label(self) -> str:
        """What log lines call this key set."""
        if self.app_id is None:
            return self.version
        return f"{self.version} app-specific ({self.app_id})"


class KeyStore:
    """Metadata and signing keys for one configuration. Create once, share, ``aclose()`` at exit.

    Besides the tenant's key set per token version, it knows the app-specific key sets of the
    API itself: an app registration with a claims-mapping policy (or SAML single sign-on)
    gets tokens signed with a key of its own, published only at the metadata URL with
    ``?appid=<client id>`` (Microsoft's access-token documentation, "Validate the signature").
    The API's client ids are the GUIDs among ``config.audiences`` (:attr:`app_ids`). A token
    whose key is not in the tenant's set is looked for there; that set is fetched on first
    need and follows every rule the tenant's set follows. It is safe without a setting: the
    document comes from the same authority and tenant, its issuer is checked the same way, and
    Entra publishes there only keys it signs this very API's tokens with.

    ``http_client`` lets you bring your own ``httpx.AsyncClient`` (custom CA, proxy); the store
    then leaves closing it to you. ``clock`` is monotonic seconds, injectable for tests.

    A fetch cut short by ``fetch_timeout`` is cancelled inside httpx, and httpcore 1.0 can then
    leave that request's connection in its pool for good, open and never reused (encode/httpcore
    issues 658, 830, 1093): one socket per timed-out fetch, without bound. So after a timed-out
    fetch the store's own client is retired and closed (which closes those connections) as soon
    as no other fetch is using it; the next fetch opens a new one. A client you bring is yours:
    it is never closed here.
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
        self._ssl_context: ssl.SSLContext | None = None
        #: Owned clients retired after a timed-out fetch, closed once no fetch is running.
        self._retired: list[httpx.AsyncClient] = []
        #: The API's client ids (the GUIDs among the audiences), lower case: their app-specific
        #: key sets are consulted for keys the tenant does not publish.
        self.app_ids: tuple[str, ...] = tuple(
            dict.fromkeys(a.lower() for a in config.audiences if is_guid(a))
        )
        # One record per document, made up front: this is read on every request.
        versions: tuple[TokenVersion, ...] = ("1.0", "2.0")
        self._sources: dict[TokenVersion, _Source] = {
            version: _Source(version, self.metadata_url(version)) for version in versions
        }
        self._app_sources: dict[tuple[TokenVersion, str], _Source] = {
            (version, app_id): _Source(version, self.metadata_url(version, app_id), app_id)
            for version in versions
            for app_id in self.app_ids
        }

    def metadata_url(self, version: TokenVersion, app_id: str | None = None) -> str:
        """The openid-configuration URL; with ``app_id``, that of the app-specific keys."""
        base = f"{self._config.instance}/{self._config.tenant_id}"
        suffix = "/v2.0" if version == "2.0" else ""
        query = "" if app_id is None else f"?appid={app_id}"
        return f"{base}{suffix}/.well-known/openid-configuration{query}"

    def current(self, version: TokenVersion, app_id: str | None = None) -> KeySet | None:
        """The key set in hand, without waiting (``None``: it must be fetched first).

        ``app_id`` (one of :attr:`app_ids`) asks for that app-specific key set instead of the
        tenant's. A stale key set is returned as it is, and one background refresh is started.
        """
        source = self._sources[version] if app_id is None else self._app_sources[version, app_id]
        keyset = source.keyset
        if keyset is None:
            return None
        now = self._clock()
        if now >= source.usable_until:  # last known good for too long: drop it
            source.keyset = None
            return None
        if now >= source.refresh_at and self._refreshing(source) is None:
            self._start_refresh(source)
        return keyset

    def is_current(self, version: TokenVersion, keyset: KeySet, key: SigningKey) -> bool:
        """Whether ``key`` of ``keyset`` is still published (the same key under the same id)."""
        current = self.current(version, keyset.app_id)
        if current is keyset:  # nothing was refreshed since: the common case
            return True
        if current is None:
            return False
        now = current.find(key.kid, None if key.kid else key.x5t)
        return now is not None and now.fingerprint == key.fingerprint

    async def get_key_set(self, version: TokenVersion) -> KeySet:
        """The key set for ``version``; fetches on first use and refreshes when stale.

        Raises ``KeysUnavailable`` (503) when no keys can be had, and ``InvalidToken``
        (``version_not_served``, 401) when the authority publishes no metadata for ``version``
        (it answers 404).
        """
        keyset = await self._key_set(self._sources[version])
        if keyset is None:
            raise InvalidToken(
                "version_not_served",
                "The token's version ('ver') is not one this API's identity provider issues",
            )
        return keyset

    async def _key_set(self, source: _Source) -> KeySet | None:
        """The key set in hand or fetched now; ``None`` when its metadata answers 404."""
        keyset = self.current(source.version, source.app_id)
        if keyset is None:
            now = self._clock()
            if now < source.retry_at:
                if source.not_served:
                    return None
                raise self._unavailable(source, now)
            keyset = await self._join_refresh(source)
            if keyset is None:
                if source.not_served:
                    return None
                raise self._unavailable(source, self._clock())
        return keyset

    async def find_key(
        self, version: TokenVersion, kid: str | None, x5t: str | None
    ) -> tuple[KeySet, SigningKey | None]:
        """Find the key a token names: in the tenant's key set, then the app-specific ones.

        Returns the key set that holds the key (or the tenant's) and the key, ``None`` when
        no set publishes it. An unknown key forces at most one refresh per
        ``min_refresh_interval`` of each set. Raises ``KeysUnavailable`` when the tenant's set
        has no keys and cannot be fetched (an app-specific set that cannot be had, with the
        tenant's keys in hand, only means the key is not found), and ``InvalidToken``
        (``version_not_served``) when the authority publishes no metadata for ``version``.
        """
        tenant = self._sources[version]
        just_fetched = self.current(version) is None
        keyset = await self.get_key_set(version)
        key = keyset.find(kid, x5t)
        if key is not None or not could_be_published(kid, x5t):
            # None, or longer than any key id a JWKS may hold: no refresh, nothing remembered
            return keyset, key
        apps = [self._app_sources[version, app_id] for app_id in self.app_ids]
        for app in apps:  # app-specific keys in hand: no fetch, no tenant refresh spent
            held = self.current(version, app.app_id)
            key = held.find(kid, x5t) if held is not None else None
            if held is not None and key is not None:
                return held, key
        found = await self._look_again(tenant, keyset, kid, x5t, just_fetched=just_fetched)
        for app in apps:
            if found[1] is not None:
                break
            just_fetched = self.current(version, app.app_id) is None
            try:
                appset = await self._key_set(app)
            except KeysUnavailable:
                # The tenant's keys are in hand and lack this key. An app-specific set never
                # had and unreachable now says nothing about the token, and turning an
                # unknown key id into a 503 would let any junk token report an outage. Its
                # failure is logged, and its back-off spares the IdP a retry per token.
                continue
            if appset is not None:  # None: no app-specific document (404)
                again = await self._look_again(app, appset, kid, x5t, just_fetched=just_fetched)
                if again[1] is not None:
                    found = again
        return found

    async def _look_again(
        self,
        source: _Source,
        keyset: KeySet,
        kid: str | None,
        x5t: str | None,
        *,
        just_fetched: bool,
    ) -> tuple[KeySet, SigningKey | None]:
        """Look for a key ``keyset`` lacks, refreshing it if the policy allows."""
        # Looked up again: an app-specific set may have been replaced by a background refresh
        # since the caller looked in the one it held.
        key = keyset.find(kid, x5t)
        if key is not None:
            return keyset, key
        key_id = (kid, x5t)
        absent = source.absent
        now = self._clock()
        interval = self._config.min_refresh_interval
        seen_absent = key_id in absent
        refreshed: KeySet | None
        if just_fetched:
            refreshed = keyset  # fetched for this very lookup: as fresh as it gets
        elif seen_absent and now - source.fetched_at < interval:
            # A fetch has just shown this key is not published: tokens of a removed key must
            # not use up the forced refresh that a newly rotated-in key may need.
            return keyset, None
        elif self._refreshing(source) is not None:
            refreshed = await self._join_refresh(source)
        elif seen_absent and now - source.rechecked_at >= interval:
            # Absent for a whole interval: a rollover may have listed it again. Keys once
            # seen absent have a refresh budget of their own, so the one for never-seen
            # keys stays free for a key that has just been rotated in.
            source.rechecked_at = now
            logger.info("a signing key id seen unpublished; refreshing the %s keys", source.label)
            refreshed = await self._join_refresh(source)
        elif not seen_absent and now - source.forced_at >= interval:
            source.forced_at = now
            logger.info("unknown signing key id; refreshing the %s keys", source.label)
            refreshed = await self._join_refresh(source)
        else:
            return keyset, None
        if refreshed is None:  # the refresh failed: nothing new to look in (looked above)
            return keyset, None
        key = refreshed.find(kid, x5t)
        if key is None:
            if len(absent) >= _MAX_ABSENT and key_id not in absent:
                absent.pop(next(iter(absent)))  # the oldest goes first
            absent[key_id] = None  # pragma: no mutate  # an ordered set: values are never read
        return refreshed, key

    async def prefetch(self) -> None:
        """Fetch every accepted version's keys now (at start-up), so first requests are fast.

        Raises ``KeysUnavailable`` if some version's keys cannot be had; a version whose
        metadata answers 404 is only logged (once), since its tokens are simply invalid.
        """
        versions = self._config.token_versions
        await asyncio.gather(*(self._key_set(self._sources[v]) for v in versions))

    async def aclose(self) -> None:
        """Stop refreshing and close the HTTP client made here (the keys stay in hand).

        The store stays usable: a later fetch opens a new client. Test suites rely on that when
        one app serves several ``TestClient`` blocks, each running (and shutting down) the app
        in an event loop of its own.
        """
        for source in self._all_sources():
            if source.task is not None:
                source.task.cancel()
                source.task = None
        self._retire_client()
        await self._close_retired()

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client; an owned one is made anew for a new event loop (or after aclose)."""
        if not self._owns_client:
            assert self._client is not None  # given at construction
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            # Fetches are hours apart: no connection is kept alive, so nothing is left open
            # when an event loop goes away (as it does between test cases).
            # Not mutated (MUTATION.md): False is httpx's default, stated for the reader; the
            # timeout is also the whole fetch's, by wait_for; no server needs the Accept header.
            self._client = httpx.AsyncClient(
                follow_redirects=False,  # pragma: no mutate
                timeout=httpx.Timeout(self._config.fetch_timeout),  # pragma: no mutate
                headers={"Accept": "application/json"},  # pragma: no mutate
                limits=httpx.Limits(max_keepalive_connections=0),
                verify=self._tls(),
            )
            self._client_loop = loop
        return self._client

    def _tls(self) -> ssl.SSLContext:
        """One TLS context for every client the store makes: loading the CA bundle costs
        about a megabyte of OpenSSL memory, not to be paid again for each client."""
        if self._ssl_context is None:
            self._ssl_context = self._config.ssl_context or httpx.create_ssl_context()
        return self._ssl_context

    def _retire_client(self) -> None:
        """After a timed-out fetch (and at close): fetches from now on use a new client, and
        the old one is closed once no fetch uses it (see the class)."""
        if self._owns_client and self._client is not None:
            self._retired.append(self._client)
            self._client = None

    async def _close_retired(self) -> None:
        """Close the retired clients, and with them any connection a cancelled fetch left."""
        while self._retired:  # one retired while closing the others is closed too
            retired, self._retired = self._retired, []
            for client in retired:
                if client is not self._client:
                    try:
                        await client.aclose()
                    except (RuntimeError, OSError):  # made in an event loop that is gone
                        # Not mutated: no test makes httpx fail to close (MUTATION.md).
                        # pragma: no mutate block
                        logger.debug("a retired HTTP client could not be closed", exc_info=True)

    def _refreshes_running(self) -> bool:
        """Whether a refresh is in flight (tests wait for background refreshes with this)."""
        return any(self._refreshing(source) is not None for source in self._all_sources())

    def _others_refreshing(self) -> bool:
        """Whether a refresh other than the one in this task is in flight."""
        current = asyncio.current_task()
        return any(
            (task := self._refreshing(source)) is not None and task is not current
            for source in self._all_sources()
        )

    def _all_sources(self) -> list[_Source]:
        return [*self._sources.values(), *self._app_sources.values()]

    # -- refreshing ---------------------------------------------------------------------------

    def _refreshing(self, source: _Source) -> asyncio.Task[KeySet | None] | None:
        """The refresh running for ``source`` in this event loop, if there is one."""
        task = source.task
        if task is not None and (task.done() or task.get_loop() is not asyncio.get_running_loop()):
            source.task = None  # finished, or left behind by an event loop now gone
            return None
        return task

    def _start_refresh(self, source: _Source) -> asyncio.Task[KeySet | None]:
        task = self._refreshing(source)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(source))
            source.task = task  # cleared by _refreshing once done
        return task

    async def _join_refresh(self, source: _Source) -> KeySet | None:
        # shield: a cancelled request must not cancel the fetch the others are waiting for
        return await asyncio.shield(self._start_refresh(source))

    async def _refresh(self, source: _Source) -> KeySet | None:
        """Fetch and install a key set; on failure keep what we have and schedule a retry."""
        timeout = self._config.fetch_timeout
        try:
            keyset = await asyncio.wait_for(self._fetch(source), timeout)
        except _NotServed as exc:
            self._record_not_served(source, str(exc))
            return None
        except (_FetchError, httpx.HTTPError) as exc:
            self._record_failure(source, f"{type(exc).__name__}: {exc}")
            return None
        except asyncio.TimeoutError:
            self._retire_client()  # it may hold the cancelled fetch's connection for good
            self._record_failure(source, f"timed out after {timeout:g} s")
            return None
        except Exception as exc:  # noqa: BLE001  # whatever the IdP sends, we keep serving
            self._record_failure(source, f"unexpected {type(exc).__name__}")
            return None
        finally:
            if self._retired and not self._others_refreshing():
                await self._close_retired()
        now = self._clock()
        interval = self._config.refresh_interval
        if source.keyset is None or source.keyset.key_ids != keyset.key_ids:
            source.absent.clear()
        source.keyset = keyset
        source.fetched_at = now
        source.usable_until = now + self._config.last_known_good_lifetime
        source.refresh_at = now + interval + random.uniform(0, _JITTER * interval)  # noqa: S311
        source.failures = 0
        source.retry_at = -math.inf
        source.not_served = False
        logger.info(
            "fetched %d signing keys for %s tokens from %s",
            len(keyset),
            source.label,
            keyset.jwks_uri,
        )
        return keyset

    def _record_failure(self, source: _Source, reason: str) -> None:
        now = self._clock()
        if self.current(source.version, source.app_id) is not None:
            # Keys in hand keep serving; try again after the forced-refresh interval. These
            # failures do not count towards the back-off for when no keys are left at all.
            source.failures = 0
            source.refresh_at = now + self._config.min_refresh_interval
            logger.warning(
                "refreshing the %s signing keys failed (%s); serving the last known good keys",
                source.label,
                reason,
            )
        else:
            source.not_served = False  # pragma: no mutate  # read as a truth value only
            source.failures += 1
            backoff = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (source.failures - 1))
            source.retry_at = now + backoff
            logger.error(
                "cannot fetch the %s signing keys (%s); retrying in %g s",
                source.label,
                reason,
                backoff,
            )

    def _record_not_served(self, source: _Source, reason: str) -> None:
        if self.current(source.version, source.app_id) is not None:
            # After good answers, a 404 is a fault of the moment (a proxy, a deployment), not
            # a fact about the authority: keep the keys, as for any failed refresh.
            self._record_failure(source, reason)
            return
        # Not an outage: no back-off, and one new look per interval in case that changes.
        source.failures = 0
        source.retry_at = self._clock() + self._config.min_refresh_interval
        if not source.not_served and source.app_id is not None:
            source.not_served = True
            logger.info("no %s metadata is published (%s)", source.label, reason)
        elif not source.not_served:
            source.not_served = True  # logged when this becomes true, not per request
            logger.warning(
                "the authority publishes no %s metadata (%s): tokens that say ver %s are "
                "refused as invalid; leave %s out of token_versions if this is expected",
                source.version,
                reason,
                source.version,
                source.version,
            )

    def _unavailable(self, source: _Source, now: float) -> KeysUnavailable:
        retry = max(1, math.ceil(max(source.retry_at, now) - now))
        return KeysUnavailable(
            "keys_unavailable",
            "The signing keys of the identity provider are unavailable; try again later",
            retry_after=retry,
        )

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self, source: _Source) -> KeySet:
        try:
            metadata = await self._get_json(source.metadata_url)
        except _FetchError as exc:
            if exc.status == 404 or (source.app_id is not None and _refused(exc.status)):
                # No such document. For the app-specific one any refusal means the same: most
                # APIs have no keys of their own, and junk tokens must not become 503s.
                raise _NotServed(str(exc)) from None
            raise
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
            version=source.version,
            issuer=issuer,
            jwks_uri=jwks_uri,
            by_kid=MappingProxyType({k.kid: k for k in keys if k.kid is not None}),
            by_x5t=MappingProxyType({k.x5t: k for k in keys if k.x5t is not None}),
            app_id=source.app_id,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        limit = self._config.max_document_bytes
        async with self._http().stream("GET", url) as response:
            if response.status_code != 200:
                status = response.status_code
                said = await _error_said(response)
                raise _FetchError(f"GET {url} answered HTTP {status}{said}", status=status)
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


_MAX_ERROR_BYTES = 4096
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


async def _error_said(response: httpx.Response) -> str:
    """What an error answer says, for the log: `` (error: AADSTS...: first line)``, else ``""``.

    Entra explains a refused discovery in an OAuth error body (AADSTS90002 for a tenant that
    does not exist); without it an operator sees only "HTTP 400". Read at most 4 KiB, printable
    ASCII only, and a hint where the cause is a setting of ours.
    """
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_ERROR_BYTES:
            return ""
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(document, dict):
        return ""
    error, description = document.get("error"), document.get("error_description")
    if not isinstance(error, str) or not isinstance(description, str):
        return ""
    first_line = description.strip().splitlines()[0] if description.strip() else ""
    said = _UNPRINTABLE.sub(" ", f"{error}: {first_line}")[:300]
    if description.startswith("AADSTS90002:"):  # Entra: "Tenant '...' not found."
        said += "; check tenant_id (ENTRA_TENANT_ID)"
    return f" ({said})"


def _refused(status: int | None) -> bool:
    """A 4xx that is an answer about the request, not a passing condition (408, 429)."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def _acceptable_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # pragma: no mutate  # the caller words the error

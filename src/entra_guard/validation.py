"""``TokenValidator``: authenticate first (parse, find the key, verify), authorize after.

PyJWT is the JOSE library underneath, used at the level where it does not cost more than the
signature itself: its algorithm objects verify, its JWK loader builds keys. Parsing and the claim
rules are ours because Entra's rules (issuer templates, versions, client claims) are not PyJWT's
defaults, and because a strict parser is the cheapest guard against hostile input.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from hashlib import sha256
from types import TracebackType
from typing import Any, TypeAlias

import httpx
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.exceptions import PyJWTError

from entra_guard.async_cache import AsyncTTLCache
from entra_guard.claims import check_claims
from entra_guard.config import EntraConfig, TokenVersion, is_guid
from entra_guard.discovery import KeyStore, SigningKey
from entra_guard.errors import InvalidToken, ServiceUnavailable
from entra_guard.parsing import decode_json, decode_parts, dots, load_object, token_bytes
from entra_guard.principal import EntraPrincipal
from entra_guard.token_cache import VerifiedToken, VerifiedTokenCache

__all__ = ["TokenValidator"]

_Header: TypeAlias = tuple[Algorithm, str, "str | None", "str | None"]
_MAX_HEADERS = 256
_MAX_TENANT_DECISIONS = 10_000

logger = logging.getLogger("entra_guard.validation")


class TokenValidator:
    """Validates Entra ID access tokens for one API. Create once and share; it is async-safe.

    ``clock`` gives wall-clock seconds for the lifetime checks and the age of remembered tenant
    decisions; ``validate(now=...)`` overrides
    it per call, so tests never need to freeze global time.
    """

    def __init__(
        self,
        config: EntraConfig,
        *,
        key_store: KeyStore | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if key_store is not None and http_client is not None:
            raise ValueError("give either key_store or http_client, not both")
        self.config = config
        self.key_store = key_store or KeyStore(config, http_client=http_client)
        self._clock = clock
        available = get_default_algorithms()
        self._algorithms: dict[str, Algorithm] = {
            name: available[name] for name in config.algorithms
        }
        self.cache = (
            VerifiedTokenCache(config.token_cache_size, leeway=config.leeway)
            if config.token_cache_size
            else None
        )
        # Checked headers by their base64url text: every token a key signs has the same header.
        self._headers: dict[bytes, _Header] = {}
        self._tenant_decisions: AsyncTTLCache[str, bool] | None = None
        if config.tenant_allowed is not None:
            self._tenant_decisions = AsyncTTLCache(
                ttl=config.tenant_decision_ttl, maxsize=_MAX_TENANT_DECISIONS, clock=clock
            )

    async def validate(self, token: str | bytes, *, now: float | None = None) -> EntraPrincipal:
        """Return the caller for a valid token, or raise an ``EntraGuardError``.

        ``InvalidToken`` (401), ``InsufficientPermissions`` (403), ``KeysUnavailable`` (503),
        or ``ServiceUnavailable`` (503, ``tenant_decision_unavailable``) when
        ``config.tenant_allowed`` raised.
        """
        max_bytes = self.config.max_token_bytes
        if isinstance(token, bytes):
            if not token.isascii():
                raise InvalidToken(
                    "malformed_token", "The token is malformed: it contains non-ASCII bytes"
                )
            if len(token) > max_bytes:
                raise InvalidToken("token_too_large", f"The token is longer than {max_bytes} bytes")
            data = token
        else:
            data = token_bytes(token, max_bytes=max_bytes)
        when = self._clock() if now is None else now
        cache = self.cache
        if cache is None:
            return (await self._validate(data, when)).principal
        digest = sha256(data).digest()  # the cache's key: the whole token, nothing less
        principal = cache.get(digest, now=when, keys=self.key_store)
        if principal is not None:
            # A remembered token is honoured only while its tenant still is: a tenant the app
            # removes stops working within the decision's TTL, not at the token's exp.
            if (
                self._tenant_decisions is not None
                and not self.config.accepts_tenant(principal.tenant_id)
                and not await self._decide_tenant(principal.tenant_id)
            ):
                cache.forget(digest)
                raise _tenant_not_allowed()
            return principal
        verified = await self._validate(data, when)
        cache.put(digest, verified)
        return verified.principal

    async def _validate(self, data: bytes, now: float) -> VerifiedToken:
        first, second = dots(data)
        algorithm, alg, kid, x5t = self._header(data[:first])
        payload, signature = decode_parts(data, first, second)
        claims = load_object(payload, "payload")
        version = self.token_version(claims)

        keyset = self.key_store.current(version)
        key = keyset.find(kid, x5t) if keyset is not None else None
        if keyset is None or key is None:  # first use, or an unknown key: may fetch
            keyset, key = await self.key_store.find_key(version, kid, x5t)
            if key is None:
                raise InvalidToken("key_not_found", "The signature key was not found")
        self.verify_signature(data[:second], signature, algorithm, alg, key)

        tid = claims.get("tid")
        # After the signature: only tokens Entra signed make the app's function run.
        decided = (
            self._tenant_decisions is not None
            and isinstance(tid, str)
            and is_guid(tid)
            and not self.config.accepts_tenant(tid)
            and await self._decide_tenant(tid)
        )
        principal = check_claims(
            claims,
            config=self.config,
            keyset=keyset,
            key=key,
            version=version,
            now=now,
            tenant_decided=decided,
            payload=payload,
        )
        nbf, iat = claims.get("nbf", -math.inf), claims.get("iat", -math.inf)
        return VerifiedToken(principal, keyset, key, float(max(nbf, iat)))  # a float is smaller

    async def _decide_tenant(self, tid: str) -> bool:
        decide, decisions = self.config.tenant_allowed, self._tenant_decisions
        assert decide is not None  # only called when configured
        assert decisions is not None
        tid = tid.lower()

        async def ask() -> bool:
            try:
                return await decide(tid)
            except Exception:
                # Once per call, not once per request waiting on it.
                logger.exception("the tenant_allowed function failed")
                raise

        try:
            answer = await decisions.get(tid, ask)
        except Exception as exc:  # logged where it was raised, once per call
            raise ServiceUnavailable(
                "tenant_decision_unavailable",
                "Whether the token's tenant is allowed could not be decided now",
            ) from exc
        return answer is True

    def _header(self, header_b64: bytes) -> _Header:
        checked = self._headers.get(header_b64)
        if checked is None:
            checked = self.check_header(decode_json(header_b64, "header"))
            if len(self._headers) >= _MAX_HEADERS:
                self._headers.clear()  # many distinct headers: odd traffic, start over
            self._headers[header_b64] = checked
        return checked

    def check_header(self, header: dict[str, Any]) -> _Header:
        """The header rules; returns the algorithm, its name, and the ``kid`` and ``x5t``."""
        alg = header.get("alg")
        if not isinstance(alg, str) or (algorithm := self._algorithms.get(alg)) is None:
            raise InvalidToken(
                "algorithm_not_allowed", "The token's signing algorithm is not accepted"
            )
        if "crit" in header:
            raise InvalidToken(
                "unsupported_header",
                "The token has critical header parameters this API does not support",
            )
        if "nonce" in header:
            # Graph tokens carry a nonce whose hash, not the nonce, is signed: never ours.
            raise InvalidToken(
                "graph_token",
                "The token is meant for Microsoft Graph, not for this API: request a token with "
                "this API's scope",
            )
        kid, x5t = header.get("kid"), header.get("x5t")
        if not (kid is None or isinstance(kid, str)) or not (x5t is None or isinstance(x5t, str)):
            raise InvalidToken(
                "malformed_token", "The token is malformed: 'kid' or 'x5t' is not a string"
            )
        if not kid and not x5t:
            raise InvalidToken("key_not_found", "The token names no signing key ('kid')")
        # jku, x5u, jwk and x5c are never read: keys come only from the tenant's own metadata.
        return algorithm, alg, kid or None, x5t or None

    def token_version(self, payload: dict[str, Any]) -> TokenVersion:
        """The token's ``ver``, if this API accepts it."""
        # Unverified here, but it only picks which of our own key sets to verify against.
        version = payload.get("ver")
        if version not in self.config.token_versions:
            raise InvalidToken(
                "version_not_accepted", "The token's version ('ver') is not accepted"
            )
        # Our own constant, not the token's string: a cached principal keeps no copy of it.
        return "2.0" if version == "2.0" else "1.0"

    @staticmethod
    def verify_signature(
        signing_input: bytes, signature: bytes, algorithm: Algorithm, alg: str, key: SigningKey
    ) -> None:
        """Raise ``InvalidToken`` unless ``key`` signed ``signing_input`` with ``alg``."""
        if key.alg is not None and key.alg != alg:
            raise InvalidToken("invalid_signature", "The token's signature is invalid")
        try:
            if algorithm.verify(signing_input, key.public_key, signature):
                return
        except (PyJWTError, ValueError, TypeError):  # the one place PyJWT's errors are translated
            pass  # a key of another type raises rather than answering no: the same refusal
        raise InvalidToken("invalid_signature", "The token's signature is invalid")

    async def prefetch(self) -> None:
        """Fetch the signing keys now (call at start-up) instead of on the first request."""
        await self.key_store.prefetch()

    async def aclose(self) -> None:
        await self.key_store.aclose()

    async def __aenter__(self) -> TokenValidator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _tenant_not_allowed() -> InvalidToken:
    return InvalidToken("tenant_not_allowed", "The token's tenant is not allowed by this API")

"""What a JSON Web Key Set holds for us: RSA signing keys, parsed once, looked up by key id.

Pure values and parsing, no I/O: :mod:`entra_guard.discovery` fetches the documents and keeps
them fresh. Anything in a JWKS that is not a usable RSA signing key (other key types, ``use:
enc``, standard base64 instead of base64url, keys under 2048 bits, odd key ids) is skipped, not
fatal, so one strange entry never costs the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import PyJWTError

from entra_guard.config import TokenVersion

__all__ = ["KeySet", "SigningKey", "could_be_published", "parse_jwks"]

_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_MIN_RSA_BITS = 2048
_MAX_KEYS = 1000
_MAX_KEY_ID_CHARS = 256


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
    #: The API client id of an app-specific key set (metadata asked with ``?appid=``), or
    #: ``None`` for the tenant's own.
    app_id: str | None = None

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


def could_be_published(kid: str | None, x5t: str | None) -> bool:
    """Whether a token's ``kid`` (or, without one, its ``x5t``) could name a key that
    :func:`parse_jwks` keeps: a key id nobody can publish is never worth a fetch."""
    return _is_key_id(kid if kid is not None else x5t)


def _is_key_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_KEY_ID_CHARS

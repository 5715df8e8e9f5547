"""Access tokens with the claim sets Entra really issues, and a signer that refuses nothing.

The four shapes (v1/v2, app-only/delegated) follow Microsoft's claims reference. The signer
assembles the JWS itself and only borrows PyJWT's algorithms for the signature: ``jwt.encode``
rejects a non-string ``iss`` or ``kid``, and tests of a validator need exactly such tokens.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import secrets
import uuid
from typing import TYPE_CHECKING, Any, Final

import jwt

from entra_guard.testing.keys import b64url
from entra_guard.testing.tenants import V1_ISSUER_HOST, issuer

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from entra_guard.testing.keys import EmulatorKey
    from entra_guard.testing.tenants import Version
    from entra_guard.testing.users import EmulatorUser

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SCOPES",
    "REMOVE",
    "build_claims",
    "build_header",
    "build_id_token_claims",
    "merge",
    "pairwise_subject",
    "sign",
]

#: The protected API's application (client) id: the ``aud`` of emulated tokens by default.
DEFAULT_AUDIENCE: Final = "952f2f29-d25f-4ff1-81a7-072ef079f60b"
#: The calling application's client id (``azp`` / ``appid``) by default.
DEFAULT_CLIENT_ID: Final = "d4fdf040-9e25-42ca-99d0-13fcd08a6775"
#: What a delegated token grants when the test names no scopes.
DEFAULT_SCOPES: Final = ("access_as_user",)
#: The most groups a JWT carries; a user in more gets the overage form instead.
GROUPS_CLAIM_LIMIT: Final = 200

# Object ids are derived, not random, so every token of one client (or the user) in one
# tenant names the same principal, as in Entra.
_ID_NAMESPACE = uuid.UUID("1f5059c8-e7e5-4d83-854d-6630e4ef54f9")
_USER_GIVEN_NAME = "Test"
_USER_FAMILY_NAME = "User"
_USER_UPN = "test.user@entra-emulator.example"
_HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class _Remove(enum.Enum):
    REMOVE = "REMOVE"

    def __repr__(self) -> str:
        return "REMOVE"


#: A claim or header value meaning "leave this member out".
REMOVE: Final = _Remove.REMOVE


def _object_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(parts)))


def build_claims(
    *,
    version: Version,
    app_only: bool,
    instance: str,
    tid: str,
    audience: str,
    client_id: str,
    roles: Sequence[str],
    scopes: Sequence[str],
    now: float,
    lifetime: float,
    user: EmulatorUser | None = None,
) -> dict[str, Any]:
    """The payload of one of the four token shapes.

    A delegated token is about ``user`` (their ``oid``, ``name``, UPN, ``groups``; a guest's
    ``idp`` names their home tenant and v1 carries no ``upn``), or about a fixed test user
    when ``user`` is ``None``. Entra writes ``aud``, ``iss``, ``iat``, ``nbf``, ``exp`` first
    and the rest in alphabetical order; the emulator does the same, so tokens look alike when
    decoded side by side.
    """
    if version not in ("1.0", "2.0"):
        raise ValueError(f"version must be '1.0' or '2.0', got {version!r}")
    for name, values in (("roles", roles), ("scopes", scopes)):
        if isinstance(values, str):
            raise ValueError(f"{name} must be a sequence of strings, not the string {values!r}")
    _check_times(now, lifetime)
    if app_only and scopes:
        raise ValueError(
            "app-only tokens carry roles, not scopes; pass app_only=False, or forge one "
            "with claims={'scp': ...}"
        )
    iss = issuer(instance, version, tid)
    if app_only:
        oid = _object_id(tid, "service-principal", client_id)
        sub = oid
    else:
        oid = user.object_id if user is not None else _object_id(tid, "user", _USER_UPN)
        sub = pairwise_subject(oid, audience)
    body: dict[str, Any] = {
        "aio": secrets.token_urlsafe(64),
        "oid": oid,
        "rh": f"0.{secrets.token_urlsafe(48)}",
        "sub": sub,
        "tid": tid,
        "uti": secrets.token_urlsafe(16),
        "ver": version,
    }
    client_auth = "1" if app_only else "0"  # a secret for daemons, a public client for users
    if version == "2.0":
        body |= {"azp": client_id, "azpacr": client_auth}
    else:
        body |= {"appid": client_id, "appidacr": client_auth}
    if app_only:
        body["idp"] = f"{V1_ISSUER_HOST}/{tid}/" if version == "1.0" else iss
    else:
        body["scp"] = " ".join(scopes or DEFAULT_SCOPES)
        body |= _user_claims(version, user, instance)
        if user is not None and user.guest:
            body["idp"] = f"{V1_ISSUER_HOST}/{user.home_tenant_id}/"
    if roles:
        body["roles"] = list(roles)
    issued_at = math.floor(now)
    head = {"aud": audience, "iss": iss, "iat": issued_at, "nbf": issued_at}
    head["exp"] = math.floor(now + lifetime)
    return head | dict(sorted(body.items()))


def pairwise_subject(oid: str, audience: str) -> str:
    """``sub``: the same user has a different one at every application."""
    return b64url(hashlib.sha256(f"{oid}|{audience}".encode()).digest())


def _user_claims(version: Version, user: EmulatorUser | None, instance: str) -> dict[str, Any]:
    upn = user.upn if user is not None else _USER_UPN
    given = user.given_name if user is not None else _USER_GIVEN_NAME
    family = user.family_name if user is not None else _USER_FAMILY_NAME
    claims: dict[str, Any] = {"name": user.name if user is not None else f"{given} {family}"}
    if user is not None and len(user.groups) > GROUPS_CLAIM_LIMIT:
        # Overage, as Entra does for a JWT: no groups, a pointer to where they can be read.
        claims["_claim_names"] = {"groups": "src1"}
        endpoint = f"{instance}/v1.0/users/{user.object_id}/getMemberGroups"
        claims["_claim_sources"] = {"src1": {"endpoint": endpoint}}
    elif user is not None and user.groups:
        claims["groups"] = list(user.groups)
    if version == "2.0":
        claims["preferred_username"] = upn
        return claims
    claims |= {"amr": ["pwd"], "ipaddr": "127.0.0.1", "unique_name": upn}
    if family:
        claims["family_name"] = family
    if given:
        claims["given_name"] = given
    if user is None or not user.guest:  # a guest's v1 token has no upn (unique_name only)
        claims["upn"] = upn
    else:
        claims["email"] = upn
    return claims


def build_id_token_claims(
    *,
    instance: str,
    tid: str,
    client_id: str,
    user: EmulatorUser,
    nonce: str | None,
    email: bool,
    now: float,
    lifetime: float,
) -> dict[str, Any]:
    """A v2 ID token's payload (from ``/token``: no ``c_hash``/``at_hash``): ``aud`` is the
    client, ``nonce`` is echoed as sent, ``email`` with the ``email`` scope."""
    _check_times(now, lifetime)
    iss = issuer(instance, "2.0", tid)
    body: dict[str, Any] = {
        "aio": secrets.token_urlsafe(64),
        "name": user.name,
        "oid": user.object_id,
        "preferred_username": user.upn,
        "rh": f"0.{secrets.token_urlsafe(48)}",
        "sid": _object_id(tid, "session", user.object_id),
        "sub": pairwise_subject(user.object_id, client_id),
        "tid": tid,
        "uti": secrets.token_urlsafe(16),
        "ver": "2.0",
    }
    if nonce is not None:
        body["nonce"] = nonce
    if email:
        body["email"] = user.upn
    if user.guest:
        body["idp"] = f"{V1_ISSUER_HOST}/{user.home_tenant_id}/"
    issued_at = math.floor(now)
    head = {"aud": client_id, "iss": iss, "iat": issued_at, "nbf": issued_at}
    head["exp"] = math.floor(now + lifetime)
    return head | dict(sorted(body.items()))


def _check_times(now: float, lifetime: float) -> None:
    """Refuse times that would make a token broken in a way the caller did not ask for.

    A lifetime under one second puts ``exp`` at or before ``nbf``: validators refuse that as an
    invalid lifetime, not as expired, so it cannot stand in for an expired token.
    """
    for name, value in (("now", now), ("lifetime", lifetime)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number of seconds, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if lifetime < 1:
        raise ValueError(
            f"lifetime must be at least 1 second, got {lifetime!r}: for an expired token give "
            "now= in the past (exp is now + lifetime); to forge exp before nbf, use claims="
        )


def build_header(key: EmulatorKey, *, version: Version, algorithm: str) -> dict[str, Any]:
    """``typ``, ``alg`` and ``kid``; v1 tokens repeat the thumbprint as ``x5t``, as Entra does."""
    header: dict[str, Any] = {"typ": "JWT", "alg": algorithm}
    if version == "1.0":
        header["x5t"] = key.x5t
    header["kid"] = key.kid
    return header


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; a ``REMOVE`` value deletes the member."""
    merged = dict(base)
    for name, value in (overrides or {}).items():
        if value is REMOVE:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def sign(
    header: Mapping[str, Any], claims: Mapping[str, Any], key: EmulatorKey, algorithm: str
) -> str:
    """A compact JWS of exactly this header and payload, signed with ``algorithm``.

    ``algorithm`` need not match the header's ``alg``, so mismatches can be forged too.
    ``none`` gives an empty signature; ``HS*`` keys the HMAC with the public key's PEM (the
    classic algorithm-confusion forgery); anything else goes to PyJWT's implementation.
    """
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    if algorithm.lower() == "none":
        signature = b""
    elif algorithm in _HMAC_HASHES:
        signature = hmac.new(key.public_pem(), signing_input, _HMAC_HASHES[algorithm]).digest()
    else:
        implementation = jwt.get_algorithm_by_name(algorithm)
        signature = implementation.sign(signing_input, implementation.prepare_key(key.private_key))
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def _segment(member: Mapping[str, Any]) -> str:
    return b64url(json.dumps(member, separators=(",", ":")).encode("utf-8"))

"""Verifying an access token this emulator issued: what its own Graph and on-behalf-of see.

Both need "did I sign this, for my tenant, and is it current?" before their own rules (an
audience, a user, a scope). The library's ``TokenValidator`` cannot serve: it refuses Graph's
audiences by design, and it fetches keys over HTTP where the emulator holds them. The checks
run in the order a verifier must use: shape, then signature with a published key (RS256
only), then times and issuer, so a forged token learns nothing about the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from entra_guard.testing.jws import number_claim, signed_claims
from entra_guard.testing.tenants import issuer

if TYPE_CHECKING:
    from entra_guard.testing.state import EmulatorState

__all__ = ["IssuedTokenError", "Reason", "verify_issued_token"]

#: Why a token was refused: ``malformed`` (not a JWS, or claims of the wrong type),
#: ``signature`` (no published key of that ``kid``, or it does not verify), ``expired``,
#: ``not_yet_valid``, ``issuer`` (another issuer or tenant).
Reason: TypeAlias = Literal["malformed", "signature", "expired", "not_yet_valid", "issuer"]

# Entra's tokens are a few kilobytes; a larger one is hostile input, not a token.
_MAX_BYTES = 16 * 1024


class IssuedTokenError(Exception):
    """A token this emulator will not accept; ``reason`` says which check failed."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


def verify_issued_token(state: EmulatorState, token: str, *, now: float) -> dict[str, Any]:
    """The claims of ``token`` if this emulator signed it for its own tenant and it is current.

    The audience is the caller's to check. ``now`` is Unix seconds; ``exp`` is exclusive and
    ``nbf`` inclusive, with no leeway (the emulator's clock is the token's).
    Raises :class:`IssuedTokenError`.
    """
    if len(token) > _MAX_BYTES or token.count(".") != 2:
        raise IssuedTokenError("malformed", "The token is not a compact JWS.")
    try:
        header = jwt.get_unverified_header(token)
    except PyJWTError:
        raise IssuedTokenError("malformed", "The token header is not valid.") from None
    kid = header.get("kid")
    key = next((k for k in state.published_keys if k.kid == kid), None)
    if header.get("alg") != "RS256" or key is None:
        raise IssuedTokenError("signature", "The token is not signed with a published key.")
    try:
        claims = signed_claims(token, key.private_key.public_key(), "RS256")
    except InvalidSignatureError:
        raise IssuedTokenError("signature", "The token's signature does not verify.") from None
    except PyJWTError:
        raise IssuedTokenError("malformed", "The token payload is not valid.") from None
    exp, nbf = _number(claims, "exp"), _number(claims, "nbf")
    if exp is None:
        raise IssuedTokenError("malformed", "The token has no 'exp' claim.")
    if now >= exp:
        raise IssuedTokenError("expired", "The token is expired.")
    if nbf is not None and now < nbf:
        raise IssuedTokenError("not_yet_valid", "The token is not yet valid.")
    version, tid = claims.get("ver"), claims.get("tid")
    if version not in ("1.0", "2.0") or tid != state.tenant_id:
        raise IssuedTokenError("issuer", "The token is not from this tenant.")
    if claims.get("iss") != issuer(state.instance, version, tid):
        raise IssuedTokenError("issuer", "The token's issuer is not this tenant's.")
    return claims


def _number(claims: dict[str, Any], name: str) -> float | None:
    try:
        return number_claim(claims, name)
    except ValueError as exc:
        raise IssuedTokenError("malformed", str(exc)) from None

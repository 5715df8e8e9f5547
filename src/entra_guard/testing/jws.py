"""What the emulator's own checks of a JWS share: the signature, then the claims left to the caller.

The emulator verifies two kinds of token it receives, client assertions and tokens it issued
itself (on-behalf-of assertions, Graph calls). Each has its own time and issuer rules and its own
Entra error texts, so PyJWT is asked for the signature alone and the rest is checked by the
caller; this module keeps that one call and the one number rule in one place.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:  # typing only: older PyJWT releases we accept may lack the module
    from jwt.types import Options

__all__ = ["number_claim", "signed_claims"]

# Signature only: the callers check times, issuer and audience with Entra's own rules and texts.
_SIGNATURE_ONLY: Options = {
    "verify_aud": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
}


def signed_claims(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    """The claims of ``token`` once its signature by ``key`` verifies with ``algorithm``.

    Raises PyJWT's ``InvalidSignatureError`` for a bad signature, another ``PyJWTError`` for a
    token that cannot be decoded.
    """
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[algorithm], options=_SIGNATURE_ONLY)
    return claims


def number_claim(claims: dict[str, Any], name: str) -> float | None:
    """The claim ``name`` as seconds, ``None`` when absent; ``ValueError`` unless a finite JSON
    number (a boolean is not one)."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"The '{name}' claim is not a number.")
    return float(value)

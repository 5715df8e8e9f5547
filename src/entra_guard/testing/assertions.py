"""Checking a certificate client assertion (``private_key_jwt``) as Entra does.

The header names the certificate by thumbprint: ``x5t#S256`` (SHA-256) with PS256, or the
legacy ``x5t`` (SHA-1) with RS256. The signature must verify with that registered certificate,
``aud`` must be the token endpoint the request was sent to, ``iss`` and ``sub`` the client id,
and the assertion must be current and short-lived.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from jwt.exceptions import InvalidSignatureError, PyJWTError

from entra_guard.testing.jws import number_claim, signed_claims
from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from entra_guard.testing.registrations import ClientRegistration

__all__ = ["MAX_ASSERTION_LIFETIME", "verify_assertion"]

#: Entra wants ``exp`` no more than ten minutes after ``nbf``.
MAX_ASSERTION_LIFETIME = 600
#: Tolerance for the client's clock, on ``nbf`` and ``exp`` alike.
CLOCK_SKEW = 300
_MAX_BYTES = 16 * 1024
# alg -> (header member, hash of the certificate DER it carries)
_THUMBPRINTS = {"PS256": ("x5t#S256", "sha256"), "RS256": ("x5t", "sha1")}


def verify_assertion(
    assertion: str, *, client: ClientRegistration, endpoint: str, now: float
) -> None:
    """Return if ``assertion`` proves ``client``; raise :class:`TokenError` otherwise."""
    if len(assertion) > _MAX_BYTES:
        raise TokenError.malformed_assertion("The assertion is too large.")
    header = _header(assertion)
    alg = header.get("alg")
    if alg not in _THUMBPRINTS:
        raise TokenError.malformed_assertion(f"Unsupported signing algorithm {alg!r}.")
    member, hash_name = _THUMBPRINTS[alg]
    digest = _thumbprint(header.get(member))
    if digest is None:
        raise TokenError.malformed_assertion(
            f"No certificate thumbprint specified in token header ('{member}' for {alg})."
        )
    certificate = client.certificate_by_thumbprint(digest, hash_name)
    if certificate is None:
        raise TokenError.assertion_signature("The key was not found.", digest.hex().upper())
    try:
        claims = signed_claims(
            assertion,
            certificate.public_key(),
            alg,  # an RSA key: checked by PyJWT
        )
    except InvalidSignatureError:
        raise TokenError.assertion_signature(
            "The provided signature value did not match the expected signature value.",
            digest.hex().upper(),
        ) from None
    except PyJWTError:
        raise TokenError.malformed_assertion("The assertion could not be decoded.") from None
    _check_claims(claims, client_id=client.client_id, endpoint=endpoint, now=now)


def _header(assertion: str) -> dict[str, Any]:
    try:
        encoded = assertion.split(".", maxsplit=1)[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        raise TokenError.malformed_assertion("The token header is not valid JSON.") from None
    if not isinstance(header, dict) or assertion.count(".") != 2:
        raise TokenError.malformed_assertion("The token is not a compact JWS.")
    return header


def _thumbprint(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return None


def _check_claims(claims: dict[str, Any], *, client_id: str, endpoint: str, now: float) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if endpoint not in audiences:
        raise TokenError.malformed_assertion(
            f"The audience claim must be the token endpoint '{endpoint}'."
        )
    for name in ("iss", "sub"):
        if not isinstance(claims.get(name), str):
            raise TokenError.malformed_assertion(f"The '{name}' claim is missing.")
        if claims[name].lower() != client_id:
            raise TokenError.assertion_client_mismatch()
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise TokenError.malformed_assertion("The 'jti' claim is missing.")
    exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise TokenError.malformed_assertion("The 'exp' claim is missing.")
    if exp < now - CLOCK_SKEW:
        raise TokenError.assertion_time(now, nbf, exp, "")
    if nbf is not None and nbf > now + CLOCK_SKEW:
        raise TokenError.assertion_time(now, nbf, exp, "")
    start = nbf if nbf is not None else iat if iat is not None else now
    if exp - start > MAX_ASSERTION_LIFETIME:
        raise TokenError.assertion_time(
            now, nbf, exp, f" (its lifetime exceeds {MAX_ASSERTION_LIFETIME // 60} minutes)"
        )


def _number(claims: dict[str, Any], name: str) -> float | None:
    try:
        return number_claim(claims, name)
    except ValueError as exc:
        raise TokenError.malformed_assertion(str(exc)) from None

"""Signing keys shaped like Entra's own.

Entra signs with 2048-bit RSA keys and publishes each one with a self-signed certificate; the
key id (``kid``) and ``x5t`` are both the base64url SHA-1 thumbprint of that certificate. Clients
look keys up by either, and some read ``n``/``e`` while others read ``x5c``, so the emulator
publishes all of them, consistent with one another.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["EmulatorKey", "b64url", "b64url_uint"]

_KEY_BITS = 2048
_PUBLIC_EXPONENT = 65537
# The subject Entra's signing certificates carry; nobody checks it, but it costs nothing.
_CERT_SUBJECT = "accounts.accesscontrol.windows.net"
_CERT_LIFETIME = datetime.timedelta(days=2 * 365)
# A small backdate keeps the certificate valid for clients whose clock runs a little behind.
_CERT_BACKDATE = datetime.timedelta(days=1)


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_uint(value: int) -> str:
    """A JWK integer (``n``, ``e``): big-endian, minimal length, base64url."""
    return b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


@dataclass(frozen=True, slots=True)
class EmulatorKey:
    """One RSA signing key with its certificate.

    Equality and hashing go by ``kid`` only, and the repr shows nothing but the ``kid``: a key
    printed in a failing test's output must not leak private material into CI logs.
    """

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)
    certificate: x509.Certificate = field(repr=False, compare=False)

    @classmethod
    def generate(cls, common_name: str = _CERT_SUBJECT) -> EmulatorKey:
        """A fresh key and self-signed certificate; ``kid`` is its SHA-1 thumbprint.

        The emulator signs tokens with these; registered clients' certificates are made the
        same way, with the client's name as ``common_name``.
        """
        private_key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=_KEY_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CERT_BACKDATE)
            .not_valid_after(now + _CERT_LIFETIME)
            .sign(private_key, hashes.SHA256())
        )
        return cls(kid=_thumbprint(certificate), private_key=private_key, certificate=certificate)

    @property
    def x5t(self) -> str:
        """The certificate thumbprint; equal to ``kid``, as in Entra."""
        return self.kid

    def public_jwk(self, issuer: str | None = None) -> dict[str, Any]:
        """The JWKS entry, members in Entra's order; v2 key sets add the key's ``issuer``."""
        numbers = self.private_key.public_key().public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        jwk: dict[str, Any] = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.x5t,
            "n": b64url_uint(numbers.n),
            "e": b64url_uint(numbers.e),
            "x5c": [base64.b64encode(der).decode("ascii")],
        }
        if issuer is not None:
            jwk["issuer"] = issuer
        return jwk

    def private_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM, for tools that want the key as a file."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM: what verifiers load, and what HS256 forgeries abuse."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _thumbprint(certificate: x509.Certificate) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der, usedforsecurity=False).digest())

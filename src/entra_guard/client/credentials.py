"""How a confidential client proves who it is: a secret, or a certificate's signed assertion.

Each credential only knows the form fields it adds to a token request. Neither ever shows its
secret or key in a repr or str, so a credential printed in a log or a traceback leaks nothing.
"""

from __future__ import annotations

import abc
import base64
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    import os

__all__ = ["ASSERTION_TYPE", "ClientCertificate", "ClientCredential", "ClientSecret"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Entra accepts assertions that live at most ten minutes; MSAL makes them that long too.
ASSERTION_LIFETIME = 600
#: An assertion is reused until this long before it expires, as MSAL does.
_ASSERTION_REUSE_MARGIN = 60
_MIN_KEY_BITS = 2048
_REDACTED = "[redacted]"


class ClientCredential(abc.ABC):
    """The proof part of a token request."""

    @abc.abstractmethod
    def form_fields(self, *, client_id: str, token_endpoint: str) -> dict[str, str]:
        """The parameters to add to the token request's form."""

    def redact(self, text: str) -> str:
        """``text`` with anything secret this credential holds blanked out."""
        return text


class ClientSecret(ClientCredential):
    """A client secret (the *value* shown once in the portal, not its id)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str) or not secret.strip():
            raise ValueError("secret must be a non-empty string (the client secret's value)")
        self._secret = secret

    def __repr__(self) -> str:
        return f"ClientSecret({_REDACTED})"

    __str__ = __repr__

    def form_fields(self, *, client_id: str, token_endpoint: str) -> dict[str, str]:
        return {"client_secret": self._secret}

    def redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED)


@dataclass(frozen=True, slots=True)
class _Assertion:
    audience: str
    client_id: str
    jwt: str
    expires_at: float


class ClientCertificate(ClientCredential):
    """A certificate registered on the app, and its RSA private key, for signed assertions.

    ``algorithm`` PS256 names the certificate by ``x5t#S256`` (Entra's current form); RS256 by
    the legacy SHA-1 ``x5t``. Assertion times come from the real clock, whatever clock the
    client uses for its cache: the identity provider checks them against its own.
    """

    def __init__(
        self,
        private_key_pem: bytes,
        certificate_pem: bytes,
        *,
        password: bytes | None = None,
        algorithm: Literal["PS256", "RS256"] = "PS256",
    ) -> None:
        if algorithm not in ("PS256", "RS256"):
            raise ValueError(f"algorithm must be 'PS256' or 'RS256', got {algorithm!r}")
        self._key = _load_key(private_key_pem, password)
        certificate = _matching_certificate(certificate_pem, self._key)
        sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303  # a name, not a signature
        self.algorithm: Literal["PS256", "RS256"] = algorithm
        #: The SHA-1 thumbprint in upper-case hex, as the portal lists the certificate.
        self.thumbprint = sha1.hex().upper()
        self._header = (
            {"x5t#S256": _b64url(certificate.fingerprint(hashes.SHA256()))}
            if algorithm == "PS256"
            else {"x5t": _b64url(sha1)}
        )
        self._lock = threading.Lock()
        self._assertion: _Assertion | None = None

    @classmethod
    def from_files(
        cls,
        key_path: str | os.PathLike[str],
        cert_path: str | os.PathLike[str] | None = None,
        *,
        password: bytes | None = None,
        algorithm: Literal["PS256", "RS256"] = "PS256",
    ) -> ClientCertificate:
        """Load PEM files; without ``cert_path`` the key file must hold the certificate too."""
        key_pem = Path(key_path).read_bytes()
        cert_pem = Path(cert_path).read_bytes() if cert_path is not None else key_pem
        return cls(key_pem, cert_pem, password=password, algorithm=algorithm)

    def __repr__(self) -> str:
        return f"ClientCertificate(thumbprint={self.thumbprint!r}, algorithm={self.algorithm!r})"

    __str__ = __repr__

    def form_fields(self, *, client_id: str, token_endpoint: str) -> dict[str, str]:
        return {
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(client_id=client_id, audience=token_endpoint),
        }

    def assertion(self, *, client_id: str, audience: str) -> str:
        """A signed assertion for ``audience`` (the token endpoint), reused while fresh."""
        now = time.time()
        with self._lock:
            cached = self._assertion
            if (
                cached is not None
                and (cached.audience, cached.client_id) == (audience, client_id)
                and now < cached.expires_at - _ASSERTION_REUSE_MARGIN
            ):
                return cached.jwt
            issued = int(now)
            expires = issued + ASSERTION_LIFETIME
            claims = {
                "aud": audience,
                "iss": client_id,
                "sub": client_id,
                "jti": str(uuid.uuid4()),
                "nbf": issued,
                "iat": issued,
                "exp": expires,
            }
            token = jwt.encode(claims, self._key, algorithm=self.algorithm, headers=self._header)
            self._assertion = _Assertion(audience, client_id, token, expires)
            return token

    def redact(self, text: str) -> str:
        cached = self._assertion
        return text.replace(cached.jwt, _REDACTED) if cached is not None else text


def _load_key(pem: bytes, password: bytes | None) -> rsa.RSAPrivateKey:
    if not isinstance(pem, bytes):
        raise ValueError("private_key_pem must be bytes (the PEM file's content)")
    try:
        key = serialization.load_pem_private_key(pem, password)
    except TypeError:
        # cryptography's wording: a password was given for a plain key, or none for an encrypted
        raise ValueError(
            "private key: the password does not fit (the key is encrypted and needs one, or is "
            "not and must be loaded without)"
        ) from None
    except ValueError:
        raise ValueError("private key: not a PEM private key, or the password is wrong") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private key: Entra certificate credentials need an RSA key")
    if key.key_size < _MIN_KEY_BITS:
        raise ValueError(f"private key: {key.key_size}-bit RSA is too weak; use at least 2048")
    return key


def _matching_certificate(pem: bytes, key: rsa.RSAPrivateKey) -> x509.Certificate:
    if not isinstance(pem, bytes):
        raise ValueError("certificate_pem must be bytes (the PEM file's content)")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError("certificate: no PEM certificate found") from None
    wanted = key.public_key().public_numbers()
    for certificate in certificates:
        public_key = certificate.public_key()
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.public_numbers() == wanted:
            return certificate
    raise ValueError("certificate: none of the certificates given belongs to the private key")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

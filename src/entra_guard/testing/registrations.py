"""App registrations the token endpoint knows: the APIs tokens are for and the clients asking.

An API is what a ``scope`` names (by App ID URI or client id), decides the token version and
exposes delegated scopes; a client is confidential (credentials: secrets, certificates), public
(a native app) or an SPA, has redirect URIs for sign-ins, and holds the app roles an admin
granted it and the delegated scopes it was consented to on each API. Both are immutable
values; the :class:`Registry` swaps them under a lock, so the server thread never sees half a
registration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from entra_guard.config import is_guid
from entra_guard.testing.keys import EmulatorKey

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CLIENT_TYPES",
    "MICROSOFT_GRAPH",
    "ApiRegistration",
    "ClientRegistration",
    "ClientType",
    "Registry",
    "generate_certificate",
    "generate_secret",
    "load_certificates",
]


#: ``confidential`` (a web app or daemon with credentials), ``public`` (a native or command-line
#: app: "Mobile and desktop" redirect URIs) or ``spa`` (a browser app: "Single-page application"
#: redirect URIs, redeemed cross-origin with PKCE).
ClientType: TypeAlias = Literal["confidential", "public", "spa"]
CLIENT_TYPES: tuple[ClientType, ...] = ("confidential", "public", "spa")


def generate_secret() -> str:
    """A secret shaped like Entra's: 40 characters with ``Q~`` in it, so encoding is tested."""
    token = secrets.token_urlsafe(30)
    return f"{token[:3]}8Q~{token[3:37]}"


def generate_certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed RSA certificate and its unencrypted PKCS#8 key, both PEM."""
    key = EmulatorKey.generate(common_name=name)
    return key.certificate.public_bytes(serialization.Encoding.PEM), key.private_pem()


def load_certificates(pem: bytes | str) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM text (private keys beside them are ignored)."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise ValueError("certificate: not a PEM certificate") from None


@dataclass(frozen=True, slots=True)
class ApiRegistration:
    """A protected API: what a ``scope`` (or v1 ``resource``) names."""

    client_id: str
    app_id_uri: str | None
    roles: tuple[str, ...]
    #: The manifest's ``accessTokenAcceptedVersion``: the version of every token issued for it.
    access_token_version: Literal["1.0", "2.0"]
    #: Delegated scopes it exposes, by short name (``Orders.Read``; the full name is
    #: ``{app_id_uri}/Orders.Read``).
    scopes: tuple[str, ...] = ()
    #: An app-specific signing key (a claims-mapping policy or SAML single sign-on gives one):
    #: its tokens are signed with it, and it is published only at the metadata URL with
    #: ``?appid=<client id>``. ``None``: tokens are signed with the tenant's current key.
    signing_key: EmulatorKey | None = field(default=None, repr=False, compare=False)

    def named_by(self, resource: str) -> bool:
        """Whether ``resource`` names this API (Entra compares both without regard to case)."""
        wanted = resource.lower().removesuffix("/")
        uri = (self.app_id_uri or "").lower().removesuffix("/")
        return wanted == self.client_id or (bool(uri) and wanted == uri)

    def exposes(self, scope: str) -> bool:
        """Whether ``scope`` (a short name) is one of its delegated scopes; Entra ignores case."""
        return scope.lower() in {exposed.lower() for exposed in self.scopes}


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    """A client application. Secrets and keys stay out of the repr, whatever prints it."""

    client_id: str
    name: str
    #: Roles granted, keyed by the API's client id.
    roles: Mapping[str, tuple[str, ...]]
    type: ClientType = "confidential"
    #: Where sign-ins may return to; exact matches only, as Entra compares them.
    redirect_uris: tuple[str, ...] = ()
    #: Delegated scopes (short names) it is consented to, keyed by the API's client id.
    scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    #: The key of a certificate the emulator generated, for the test to sign with.
    private_key_pem: bytes | None = field(default=None, repr=False)

    @property
    def secret(self) -> str | None:
        """The first secret, or ``None``."""
        return self.secrets[0] if self.secrets else None

    @property
    def certificate_pem(self) -> bytes | None:
        """The first certificate as PEM, or ``None``."""
        if not self.certificates:
            return None
        return self.certificates[0].public_bytes(serialization.Encoding.PEM)

    @property
    def certificate_thumbprint(self) -> str | None:
        """SHA-1 thumbprint of the first certificate in upper-case hex, as the portal shows it."""
        if not self.certificates:
            return None
        return self.certificates[0].fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303

    @property
    def redirect_origins(self) -> frozenset[str]:
        """``scheme://host[:port]`` of each redirect URI: the origins a browser calls from."""
        origins = set()
        for uri in self.redirect_uris:
            parts = urlsplit(uri)
            if parts.scheme and parts.netloc:
                origins.add(f"{parts.scheme}://{parts.netloc}".lower())
        return frozenset(origins)

    def accepts_redirect(self, uri: str) -> bool:
        """Whether ``uri`` is a registered redirect URI.

        Exact (case-sensitive) comparison, except that the port of an ``http`` loopback URI
        (``localhost``, ``127.0.0.1``, ``[::1]``) is ignored, as Entra does for native apps'
        ephemeral ports (Microsoft: "Redirect URI restrictions", RFC 8252 7.3).
        """
        if uri in self.redirect_uris:
            return True
        asked = _loopback_without_port(uri)
        return asked is not None and any(
            _loopback_without_port(registered) == asked for registered in self.redirect_uris
        )

    def consented(self, api: ApiRegistration, scope: str) -> bool:
        """Whether the client was consented to ``scope`` (a short name) of ``api``."""
        wanted = scope.lower()
        return any(name.lower() == wanted for name in self.scopes.get(api.client_id, ()))

    def has_secret(self, candidate: str) -> bool:
        """Constant-time comparison against every registered secret."""
        given = candidate.encode("utf-8")
        return any(hmac.compare_digest(given, s.encode("utf-8")) for s in self.secrets)

    def certificate_by_thumbprint(self, digest: bytes, algorithm: str) -> x509.Certificate | None:
        """The registered certificate whose DER ``sha1``/``sha256`` digest is ``digest``."""
        for certificate in self.certificates:
            der = certificate.public_bytes(serialization.Encoding.DER)
            if hmac.compare_digest(hashlib.new(algorithm, der).digest(), digest):
                return certificate
        return None


#: Microsoft Graph as every tenant knows it: its well-known app id, v1 tokens (Microsoft's
#: OBO example), and the permissions the Graph stand-in (:mod:`entra_guard.testing.graph`)
#: checks. Delegated permissions are its scopes, application permissions its app roles, so a
#: client is consented with ``scopes={"https://graph.microsoft.com": ["User.Read"]}`` and
#: granted with ``roles={"https://graph.microsoft.com": ["User.Read.All"]}``.
MICROSOFT_GRAPH = ApiRegistration(
    client_id="00000003-0000-0000-c000-000000000000",
    app_id_uri="https://graph.microsoft.com",
    roles=("User.Read.All", "GroupMember.Read.All", "Directory.Read.All"),
    access_token_version="1.0",  # noqa: S106  # a version, not a secret
    scopes=(
        "User.Read",
        "User.ReadBasic.All",
        "User.Read.All",
        "GroupMember.Read.All",
        "Directory.Read.All",
    ),
)

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _loopback_without_port(uri: str) -> str | None:
    """``uri`` without its port if it is an ``http`` loopback URI, else ``None``."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # "http://[::1" and the like: no URI at all
        return None
    host = parts.hostname
    if parts.scheme != "http" or host not in _LOOPBACK_HOSTS:
        return None
    return parts._replace(netloc=f"[{host}]" if ":" in host else host).geturl()


class Registry:
    """The registered APIs and clients of one emulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apis: tuple[ApiRegistration, ...] = ()
        self._clients: dict[str, ClientRegistration] = {}

    def add_api(
        self,
        *,
        app_id_uri: str | None,
        roles: Iterable[str],
        scopes: Iterable[str] = (),
        access_token_version: str,
        client_id: str | None,
        custom_signing_key: bool = False,
    ) -> ApiRegistration:
        if access_token_version not in ("1.0", "2.0"):
            raise ValueError(
                f"access_token_version must be '1.0' or '2.0', got {access_token_version!r}"
            )
        if not isinstance(custom_signing_key, bool):
            raise ValueError(
                f"custom_signing_key must be true or false, got {custom_signing_key!r}"
            )
        if app_id_uri is not None and (not isinstance(app_id_uri, str) or not app_id_uri.strip()):
            raise ValueError(f"app_id_uri must be a non-empty string or None, got {app_id_uri!r}")
        api = ApiRegistration(
            client_id=_client_id(client_id),
            app_id_uri=app_id_uri,
            roles=_names("roles", roles),
            access_token_version=access_token_version,  # type: ignore[arg-type]  # checked
            scopes=_names("scopes", scopes),
            signing_key=EmulatorKey.generate() if custom_signing_key else None,
        )
        with self._lock:
            for other in self._apis:
                if other.client_id == api.client_id or (
                    app_id_uri is not None and other.named_by(app_id_uri)
                ):
                    raise ValueError(f"an API with client id or App ID URI {app_id_uri!r} exists")
            self._apis = (*self._apis, api)
        return api

    def add_client(
        self,
        *,
        name: str,
        roles: Mapping[str, Iterable[str]],
        secrets: Iterable[str],
        certificates: Iterable[x509.Certificate],
        private_key_pem: bytes | None,
        client_id: str | None,
        type: str = "confidential",  # the registration's own word
        redirect_uris: Iterable[str] = (),
        scopes: Mapping[str, Iterable[str]] | None = None,
    ) -> ClientRegistration:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if type not in CLIENT_TYPES:
            raise ValueError(f"type must be one of {CLIENT_TYPES}, got {type!r}")
        uris = _names("redirect_uris", redirect_uris)
        for uri in uris:
            parts = urlsplit(uri)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise ValueError(
                    f"redirect_uris: {uri!r} is not an absolute URI without a fragment"
                )
        kept_secrets, kept_certificates = _names("secrets", secrets), tuple(certificates)
        if type != "confidential" and (kept_secrets or kept_certificates):
            raise ValueError(f"a {type} client has no credentials; register it without them")
        client = ClientRegistration(
            client_id=_client_id(client_id),
            name=name,
            roles=self._grants(roles),
            type=type,
            redirect_uris=uris,
            scopes=self._consents(scopes or {}),
            secrets=kept_secrets,
            certificates=kept_certificates,
            private_key_pem=private_key_pem,
        )
        with self._lock:
            if client.client_id in self._clients:
                raise ValueError(f"a client with client id {client.client_id!r} exists")
            self._clients = {**self._clients, client.client_id: client}
        return client

    def _grants(self, roles: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
        """Grants keyed by API client id; an API must exist and define every role granted."""
        grants: dict[str, tuple[str, ...]] = {}
        for resource, names in roles.items():
            api = self.find_api(resource)
            if api is None:
                raise ValueError(f"roles: no API is registered as {resource!r}; register it first")
            granted = _names(f"roles[{resource!r}]", names)
            undefined = sorted(set(granted) - set(api.roles))
            if undefined:
                raise ValueError(f"roles: {resource!r} defines no app roles {undefined}")
            grants[api.client_id] = tuple(dict.fromkeys((*grants.get(api.client_id, ()), *granted)))
        return grants

    def _consents(self, scopes: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
        """Consents keyed by API client id; an API must exist and expose every scope."""
        if not hasattr(scopes, "items"):
            raise ValueError(f"scopes must map an API to scope names, got {scopes!r}")
        consents: dict[str, tuple[str, ...]] = {}
        for resource, names in scopes.items():
            api = self.find_api(resource)
            if api is None:
                raise ValueError(f"scopes: no API is registered as {resource!r}; register it first")
            granted = _names(f"scopes[{resource!r}]", names)
            unexposed = sorted(name for name in granted if not api.exposes(name))
            if unexposed:
                raise ValueError(f"scopes: {resource!r} exposes no delegated scopes {unexposed}")
            merged = (*consents.get(api.client_id, ()), *granted)
            consents[api.client_id] = tuple(dict.fromkeys(merged))
        return consents

    def find_api(self, resource: str) -> ApiRegistration | None:
        """The registered API ``resource`` names, else Microsoft Graph if it names Graph (every
        tenant has Graph; it is not listed in :attr:`apis`)."""
        found = next((api for api in self._apis if api.named_by(resource)), None)
        if found is None and MICROSOFT_GRAPH.named_by(resource):
            return MICROSOFT_GRAPH
        return found

    def app_signing_key(self, client_id: str) -> EmulatorKey | None:
        """The app-specific signing key of the API with ``client_id``, if it has one."""
        wanted = client_id.lower()
        api = next((api for api in self._apis if api.client_id == wanted), None)
        return None if api is None else api.signing_key

    def client(self, client_id: str) -> ClientRegistration | None:
        return self._clients.get(client_id.lower())

    @property
    def apis(self) -> tuple[ApiRegistration, ...]:
        return self._apis

    @property
    def clients(self) -> tuple[ClientRegistration, ...]:
        return tuple(self._clients.values())

    def allows_spa_origin(self, origin: str) -> bool:
        """Whether the token endpoint allows CORS from ``origin``: a redirect origin of an SPA
        client, the port of an ``http`` loopback origin ignored as for its redirect URIs (the
        authorize endpoint accepts Swagger UI on any local port, so its redemption must too)."""
        wanted = origin.lower()
        loopback = _loopback_without_port(wanted)
        return any(
            allowed == wanted
            or (loopback is not None and _loopback_without_port(allowed) == loopback)
            for client in self._clients.values()
            if client.type == "spa"
            for allowed in client.redirect_origins
        )


def _client_id(value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    if not isinstance(value, str) or not is_guid(value):
        raise ValueError(f"client_id must be a GUID (or None to generate one), got {value!r}")
    return value.lower()


def _names(what: str, values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(f"{what} must be a list of strings, not the string {values!r}")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str) or not item or item != item.strip():
            raise ValueError(f"{what}: {item!r} is not a non-empty string without spaces")
    return tuple(dict.fromkeys(items))

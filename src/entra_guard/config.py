"""``EntraConfig``: everything entra-guard needs to know, checked once at construction.

A mistake in security configuration must stop the application at start-up, not surface as a
confusing 401 on the first request, so every field is validated here and a bad value raises
``ValueError`` with a message that says what to change. Messages name the field; from
:meth:`EntraConfig.from_env` they name the environment variable, which is what the user edits.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_INSTANCE",
    "ENV_VARIABLES",
    "MULTI_TENANT_IDS",
    "EntraConfig",
    "TokenVersion",
]

TokenVersion: TypeAlias = Literal["1.0", "2.0"]

DEFAULT_INSTANCE = "https://login.microsoftonline.com"
#: Tenant ids an app registration uses for its multi-tenant account types.
MULTI_TENANT_IDS = frozenset({"organizations", "common"})
#: The tenant of personal Microsoft accounts; ``consumers`` tokens always carry it.
MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Asymmetric RSA algorithms only: Entra signs with RSA keys, and anything symmetric would let a
# public key be used as an HMAC secret.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_VERSIONS: frozenset[str] = frozenset({"1.0", "2.0"})
_MAX_LEEWAY = 300.0  # Microsoft's own default clock skew; more than that hides real clock faults

DEFAULT_LEEWAY = 60.0
DEFAULT_REFRESH_INTERVAL = 12 * 3600.0
DEFAULT_MIN_REFRESH_INTERVAL = 300.0
DEFAULT_LAST_KNOWN_GOOD_LIFETIME = 24 * 3600.0
DEFAULT_FETCH_TIMEOUT = 5.0
DEFAULT_MAX_DOCUMENT_BYTES = 512 * 1024
# Real tokens with 200 group ids reach about 12 KB; uvicorn refuses larger headers anyway.
DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_TOKEN_CACHE_SIZE = 10_000
DEFAULT_TENANT_DECISION_TTL = 60.0

#: ``async def tenant_allowed(tid: str) -> bool``: the application's run-time tenant decision.
TenantDecision: TypeAlias = Callable[[str], Awaitable[bool]]


def is_guid(value: str) -> bool:
    return _GUID.match(value) is not None


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _FieldError(ValueError):
    """A refused value, tagged with the fields to change; ``from_env`` names their variables."""

    def __init__(self, fields: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.fields = fields


@contextmanager
def _checking(*fields: str) -> Iterator[None]:
    """Tag a ``ValueError`` raised inside with the fields it is about."""
    try:
        yield
    except _FieldError:
        raise
    except ValueError as exc:
        raise _FieldError(fields, str(exc)) from None


def _strings(name: str, value: str | Iterable[str]) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item.strip() or item != item.strip():
            raise ValueError(f"{name}: {item!r} is not a non-empty string without spaces")
    return tuple(dict.fromkeys(items))


def _guids(name: str, value: str | Iterable[str]) -> tuple[str, ...]:
    items = _strings(name, value)
    for item in items:
        if not is_guid(item):
            raise ValueError(f"{name}: {item!r} is not a GUID")
    return tuple(dict.fromkeys(item.lower() for item in items))


@dataclass(frozen=True, kw_only=True, slots=True)
class EntraConfig:
    """How this API accepts Entra ID access tokens.

    ``tenant_id`` is the app registration's account type: a tenant GUID (single tenant),
    ``organizations`` or ``common`` (multi-tenant: give ``allowed_tenants``, or set
    ``allow_any_tenant=True`` knowingly), or ``consumers`` (personal Microsoft accounts).
    """

    tenant_id: str
    #: Accepted ``aud`` values: the API's client id and/or App ID URIs (``api://...``).
    audiences: Sequence[str]
    #: The authority host; change it for sovereign clouds or the local emulator.
    instance: str = DEFAULT_INSTANCE
    #: Multi-tenant only: tenants whose tokens are accepted.
    allowed_tenants: Sequence[str] = ()
    #: Multi-tenant only: accept every tenant in the world. Off unless asked for by name.
    allow_any_tenant: bool = False
    #: Multi-tenant only: an async function deciding at run time whether a tenant (its GUID,
    #: lower-case) not in ``allowed_tenants`` is allowed, for SaaS APIs that add customer
    #: tenants without a restart. Asked only once a token's signature verified; its answers
    #: are remembered ``tenant_decision_ttl`` seconds (at most 10,000 tenants) and concurrent
    #: first requests share one call. When it raises, the request gets 503
    #: ``tenant_decision_unavailable``, never a 401 blaming the token.
    tenant_allowed: TenantDecision | None = None
    #: How long an answer of ``tenant_allowed`` (yes or no) is remembered, in seconds.
    tenant_decision_ttl: float = DEFAULT_TENANT_DECISION_TTL
    #: Accept users homed in another tenant or identity provider (B2B guests, see
    #: ``EntraPrincipal.is_guest``). On by default, as Entra lets guests sign in; ``False``
    #: refuses their tokens with 403 ``guest_not_allowed`` on every route.
    allow_guests: bool = True
    #: Calling applications (``appid`` / ``azp``) allowed; empty means any.
    allowed_client_ids: Sequence[str] = ()
    #: Accept tokens that carry neither ``scp`` nor ``roles``. Any app in a tenant can get such
    #: a token, so this is only allowed together with ``allowed_client_ids``.
    allow_tokens_without_permissions: bool = False
    token_versions: Sequence[TokenVersion] = ("1.0", "2.0")
    leeway: float = DEFAULT_LEEWAY
    algorithms: Sequence[str] = ("RS256",)
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    #: Validated tokens remembered (by a SHA-256 digest of the whole token) so that a repeated
    #: token skips the signature; never past its ``exp``. 0 turns the cache off.
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    #: Keys are fresh this long; afterwards they keep serving while one refresh runs.
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    #: Minimum time between refreshes forced by an unknown ``kid``, per tenant and version.
    min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL
    #: How long the last good keys keep serving while the identity provider cannot be reached.
    last_known_good_lifetime: float = DEFAULT_LAST_KNOWN_GOOD_LIFETIME
    #: Upper bound on one metadata or JWKS fetch, connection included.
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    #: Path of a PEM file of CA certificates: the only ones trusted for metadata and key
    #: fetches (the emulator's CA, a company's TLS-inspecting proxy). ``None``: the public CAs
    #: httpx trusts (certifi). Read once, here; an injected ``http_client`` keeps its own TLS.
    ca_bundle: str | None = None

    # Derived once, used on every request.
    _normalized_audiences: frozenset[str] = field(init=False, repr=False, compare=False)
    # The certificates of ca_bundle as read at construction (PEM text), or None.
    _ca_certificates: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # the documented way to normalise a frozen dataclass

        with _checking("tenant_id"):
            tenant = self.tenant_id.strip() if isinstance(self.tenant_id, str) else ""
            if tenant.lower() in MULTI_TENANT_IDS | {"consumers"} or is_guid(tenant):
                tenant = tenant.lower()
            else:
                raise ValueError(
                    f"tenant_id {self.tenant_id!r} must be the tenant GUID (the 'Directory "
                    "(tenant) ID' of the app registration) or one of 'organizations', 'common', "
                    "'consumers'"
                )
            setattr_(self, "tenant_id", tenant)

        with _checking("audiences"):
            audiences = _strings("audiences", self.audiences)
            if not audiences:
                raise ValueError("audiences must name at least one accepted 'aud' value")
            setattr_(self, "audiences", audiences)
            setattr_(
                self, "_normalized_audiences", frozenset(a.removesuffix("/") for a in audiences)
            )

        with _checking("instance"):
            setattr_(self, "instance", check_instance(self.instance))
        self._check_tenants_and_clients()
        self._check_algorithms_and_limits()

    def _check_tenants_and_clients(self) -> None:
        setattr_ = object.__setattr__
        tenant = self.tenant_id
        with _checking("allowed_tenants"):
            allowed_tenants = _guids("allowed_tenants", self.allowed_tenants)
            setattr_(self, "allowed_tenants", allowed_tenants)
        with _checking("allowed_tenants", "allow_any_tenant"):
            if self.is_multi_tenant:
                decided = self.tenant_allowed is not None
                if (allowed_tenants or decided) and self.allow_any_tenant:
                    raise ValueError(
                        "give allowed_tenants and/or tenant_allowed, or allow_any_tenant=True, "
                        "not both"
                    )
                if not allowed_tenants and not decided and not self.allow_any_tenant:
                    raise ValueError(
                        f"tenant_id={tenant!r} accepts tokens from other tenants: list them in "
                        "allowed_tenants, decide at run time with tenant_allowed, or set "
                        "allow_any_tenant=True to accept every tenant"
                    )
            elif allowed_tenants or self.allow_any_tenant or self.tenant_allowed is not None:
                raise ValueError(
                    "allowed_tenants, tenant_allowed and allow_any_tenant apply only to "
                    f"tenant_id 'organizations' or 'common', not to {tenant!r}"
                )
        with _checking("tenant_allowed"):
            if self.tenant_allowed is not None and not callable(self.tenant_allowed):
                raise ValueError(
                    f"tenant_allowed must be an async function of a tenant id, got "
                    f"{self.tenant_allowed!r}"
                )
        with _checking("allow_guests"):
            if not isinstance(self.allow_guests, bool):
                raise ValueError(f"allow_guests must be True or False, got {self.allow_guests!r}")

        with _checking("allowed_client_ids"):
            client_ids = _guids("allowed_client_ids", self.allowed_client_ids)
            setattr_(self, "allowed_client_ids", client_ids)
        with _checking("allow_tokens_without_permissions", "allowed_client_ids"):
            if self.allow_tokens_without_permissions and not client_ids:
                raise ValueError(
                    "allow_tokens_without_permissions=True needs allowed_client_ids: without "
                    "roles or scopes, the client allow-list is the only thing that authorizes "
                    "a caller"
                )

        with _checking("token_versions"):
            versions = _strings("token_versions", self.token_versions)
            if not versions or not set(versions) <= _VERSIONS:
                raise ValueError(
                    f"token_versions must be a non-empty subset of ('1.0', '2.0'), got {versions!r}"
                )
            setattr_(self, "token_versions", versions)

    def _check_algorithms_and_limits(self) -> None:
        setattr_ = object.__setattr__
        with _checking("algorithms"):
            algorithms = _strings("algorithms", self.algorithms)
            bad = [a for a in algorithms if a not in _RSA_ALGORITHMS]
            if not algorithms or bad:
                raise ValueError(
                    f"algorithms must be RSA signature algorithms from {sorted(_RSA_ALGORITHMS)}; "
                    f"refused: {bad or 'an empty list'}"
                )
            setattr_(self, "algorithms", algorithms)

        _check_number("leeway", self.leeway, low=0.0, high=_MAX_LEEWAY)
        _check_number("max_token_bytes", self.max_token_bytes, low=1024, high=1024 * 1024)
        _check_number("token_cache_size", self.token_cache_size, low=0, high=10_000_000)
        if not isinstance(self.token_cache_size, int):
            raise _FieldError(
                ("token_cache_size",),
                f"token_cache_size must be a whole number, got {self.token_cache_size!r}",
            )
        _check_number("min_refresh_interval", self.min_refresh_interval, low=1.0)
        _check_number("refresh_interval", self.refresh_interval, low=self.min_refresh_interval)
        _check_number(
            "last_known_good_lifetime", self.last_known_good_lifetime, low=self.refresh_interval
        )
        _check_number("fetch_timeout", self.fetch_timeout, low=0.05, high=120.0)
        _check_number("tenant_decision_ttl", self.tenant_decision_ttl, low=1.0, high=86400.0)
        _check_number("max_document_bytes", self.max_document_bytes, low=1024)

        with _checking("ca_bundle"):
            pem = None if self.ca_bundle is None else _read_ca_bundle(self.ca_bundle)
            setattr_(self, "_ca_certificates", pem)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A new client TLS context trusting exactly the certificates ``ca_bundle`` held at
        construction (the file may be gone since); ``None`` without ``ca_bundle``: use the HTTP
        client's default trust."""
        if self._ca_certificates is None:
            return None
        return ssl.create_default_context(cadata=self._ca_certificates)

    @property
    def is_multi_tenant(self) -> bool:
        return self.tenant_id in MULTI_TENANT_IDS

    def accepts_audience(self, aud: str) -> bool:
        """Exact match, ignoring one trailing ``/`` as Microsoft's libraries do."""
        return aud.removesuffix("/") in self._normalized_audiences

    def accepts_tenant(self, tid: str) -> bool:
        """Whether a token of tenant ``tid`` may be accepted (the issuer check comes on top)."""
        if self.tenant_id == "consumers":
            return tid == MSA_TENANT_ID
        if not self.is_multi_tenant:
            return tid == self.tenant_id
        if self.allow_any_tenant:
            return is_guid(tid)
        return tid in self.allowed_tenants

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EntraConfig:
        """Build a config from ``ENTRA_*`` environment variables (see ``ENV_VARIABLES``).

        Lists are comma-separated; booleans are ``true``/``false``. Unset optional variables
        keep the defaults. Raises ``ValueError`` whose message starts with the variable(s) to
        change, e.g. ``ENTRA_INSTANCE: ...``.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_VARIABLES[name], "").strip()
            return value or None

        def refuse(name: str, value: str, what: str) -> ValueError:
            return ValueError(f"{ENV_VARIABLES[name]}: {value!r} is not {what}")

        def listed(name: str) -> tuple[str, ...]:
            value = get(name)
            return tuple(p.strip() for p in value.split(",") if p.strip()) if value else ()

        def flag(name: str, default: bool = False) -> bool:
            value = get(name)
            if value is None:
                return default
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise refuse(name, value, "a boolean (true/false)")

        def number(name: str, default: float) -> float:
            value = get(name)
            if value is None:
                return default
            try:
                return float(value)
            except ValueError:
                raise refuse(name, value, "a number") from None

        def whole(name: str, default: int) -> int:
            value = get(name)
            if value is None:
                return default
            try:
                return int(value)
            except ValueError:
                raise refuse(name, value, "a whole number") from None

        tenant = get("tenant_id")
        if tenant is None:
            raise ValueError(
                f"{ENV_VARIABLES['tenant_id']}: not set; give the tenant GUID, or "
                "'organizations', 'common' or 'consumers'"
            )
        audiences = listed("audiences")
        if not audiences:
            raise ValueError(
                f"{ENV_VARIABLES['audiences']}: not set; give the accepted 'aud' values, "
                "comma-separated"
            )
        try:
            return cls(
                tenant_id=tenant,
                audiences=audiences,
                instance=get("instance") or DEFAULT_INSTANCE,
                allowed_tenants=listed("allowed_tenants"),
                allow_any_tenant=flag("allow_any_tenant"),
                allow_guests=flag("allow_guests", default=True),
                allowed_client_ids=listed("allowed_client_ids"),
                allow_tokens_without_permissions=flag("allow_tokens_without_permissions"),
                token_versions=listed("token_versions") or ("1.0", "2.0"),  # type: ignore[arg-type]
                leeway=number("leeway", DEFAULT_LEEWAY),
                token_cache_size=whole("token_cache_size", DEFAULT_TOKEN_CACHE_SIZE),
                max_token_bytes=whole("max_token_bytes", DEFAULT_MAX_TOKEN_BYTES),
                max_document_bytes=whole("max_document_bytes", DEFAULT_MAX_DOCUMENT_BYTES),
                algorithms=listed("algorithms") or ("RS256",),
                refresh_interval=number("refresh_interval", DEFAULT_REFRESH_INTERVAL),
                min_refresh_interval=number("min_refresh_interval", DEFAULT_MIN_REFRESH_INTERVAL),
                last_known_good_lifetime=number(
                    "last_known_good_lifetime", DEFAULT_LAST_KNOWN_GOOD_LIFETIME
                ),
                fetch_timeout=number("fetch_timeout", DEFAULT_FETCH_TIMEOUT),
                tenant_decision_ttl=number("tenant_decision_ttl", DEFAULT_TENANT_DECISION_TTL),
                ca_bundle=get("ca_bundle"),
            )
        except _FieldError as exc:
            variables = ", ".join(ENV_VARIABLES[name] for name in exc.fields)
            raise ValueError(f"{variables}: {exc}") from None


#: The environment variable :meth:`EntraConfig.from_env` reads for each field.
ENV_VARIABLES: Mapping[str, str] = {
    "tenant_id": "ENTRA_TENANT_ID",
    "audiences": "ENTRA_AUDIENCES",
    "instance": "ENTRA_INSTANCE",
    "allowed_tenants": "ENTRA_ALLOWED_TENANTS",
    "allow_any_tenant": "ENTRA_ALLOW_ANY_TENANT",
    "allow_guests": "ENTRA_ALLOW_GUESTS",
    "allowed_client_ids": "ENTRA_ALLOWED_CLIENT_IDS",
    "allow_tokens_without_permissions": "ENTRA_ALLOW_TOKENS_WITHOUT_PERMISSIONS",
    "token_versions": "ENTRA_TOKEN_VERSIONS",
    "leeway": "ENTRA_LEEWAY_SECONDS",
    "algorithms": "ENTRA_ALGORITHMS",
    "max_token_bytes": "ENTRA_MAX_TOKEN_BYTES",
    "token_cache_size": "ENTRA_TOKEN_CACHE_SIZE",
    "refresh_interval": "ENTRA_REFRESH_INTERVAL_SECONDS",
    "min_refresh_interval": "ENTRA_MIN_REFRESH_INTERVAL_SECONDS",
    "last_known_good_lifetime": "ENTRA_LAST_KNOWN_GOOD_SECONDS",
    "fetch_timeout": "ENTRA_FETCH_TIMEOUT_SECONDS",
    "max_document_bytes": "ENTRA_MAX_DOCUMENT_BYTES",
    "ca_bundle": "ENTRA_CA_BUNDLE",
    "tenant_decision_ttl": "ENTRA_TENANT_DECISION_TTL_SECONDS",
}


def check_instance(instance: str) -> str:
    """The authority URL without a trailing slash: scheme, host and port, nothing else.

    https, or http on a loopback host only (the emulator). The tenant and the ``/v2.0`` are
    added per request, so a path (``https://login.microsoftonline.com/<tenant>/v2.0``, the
    authority of other libraries) is refused here rather than answered 404 later. Messages
    show the URL with any user info (a password) replaced by ``***``.
    """
    if not isinstance(instance, str):
        raise ValueError(f"instance must be a URL string, got {instance!r}")
    url = instance.strip().rstrip("/")
    parts = urlsplit(url)
    shown = without_user_info(instance)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError(f"instance {shown!r} must be an absolute https:// URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"instance {shown!r} must not carry a query, fragment or credentials")
    if parts.path:
        raise ValueError(
            f"instance {shown!r} must be only a scheme and host (and port), such as "
            f"{DEFAULT_INSTANCE}: leave out the path {parts.path!r}; the tenant comes from "
            "tenant_id, the version from the token"
        )
    try:
        parts.port  # noqa: B018  # urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f"instance {shown!r} has an invalid port") from None
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"instance {shown!r} uses http://, which is only allowed for a loopback host "
            "(the local emulator); use https://"
        )
    return url


def without_user_info(url: str) -> str:
    """``url`` for an error message: user info (``user:password@``) becomes ``***@``."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<not a URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----"
)


def _read_ca_bundle(ca_bundle: str) -> str:
    """The PEM certificates of the file ``ca_bundle``, checked to load as trust anchors.

    Kept as text rather than as an ``SSLContext`` so that a config stays a plain value (it
    pickles and copies) and keeps working if the file goes away (the emulator's does at stop).
    Text around the certificates (the comments of certifi's bundle, say) is left out.
    """
    if not isinstance(ca_bundle, str) or not ca_bundle.strip():
        raise ValueError(f"ca_bundle must be the path of a PEM file, got {ca_bundle!r}")
    if not os.path.isfile(ca_bundle):
        raise ValueError(f"ca_bundle {ca_bundle!r} is not a file (a PEM file of CA certificates)")
    try:
        with open(ca_bundle, "rb") as file:
            blocks = _PEM_CERTIFICATE.findall(file.read())
    except OSError as exc:
        raise ValueError(f"ca_bundle {ca_bundle!r} cannot be read: {exc.strerror or exc}") from None
    if not blocks:
        raise ValueError(f"ca_bundle {ca_bundle!r} holds no usable PEM certificate (none found)")
    pem = "\n".join(block.decode("ascii") for block in blocks)
    try:
        ssl.create_default_context(cadata=pem)
    except ssl.SSLError as exc:
        raise ValueError(
            f"ca_bundle {ca_bundle!r} holds no usable PEM certificate ({exc.reason or exc})"
        ) from None
    return pem


def _check_number(name: str, value: float, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _FieldError((name,), f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise _FieldError((name,), f"{name} must be {bound}, got {value!r}")

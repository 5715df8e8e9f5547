"""Delegated scopes and the grants a sign-in leaves behind: codes and refresh tokens.

A ``scope`` parameter names OpenID Connect scopes (``openid profile email offline_access``)
and delegated scopes of APIs by full name (``api://orders/Orders.Read``; ``.default`` means
every scope the client is consented to); a name without a resource is Microsoft Graph's, as
in Entra. A code binds the sign-in to the client, the redirect URI, the PKCE challenge, the
user, the scopes and the nonce; it is redeemed once, within :data:`CODE_LIFETIME` seconds.
A refresh token stands for the user's consent to the client: it may be redeemed for any
consented scope, any number of times, until it expires (24 hours for SPA clients).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration, Registry
    from entra_guard.testing.users import EmulatorUser

__all__ = [
    "CODE_LIFETIME",
    "OIDC_SCOPES",
    "SPA_REFRESH_LIFETIME",
    "GrantStore",
    "RefreshGrant",
    "ScopeRequest",
    "SignIn",
    "parse_scopes",
]

#: Seconds an authorization code can be redeemed (Microsoft: "about 10 minutes").
CODE_LIFETIME = 600
#: Seconds a refresh token of an SPA client lives, fixed (Microsoft: 24 hours).
SPA_REFRESH_LIFETIME = 24 * 3600
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH = "https://graph.microsoft.com"
_DEFAULT = ".default"
# Redeemed codes remembered to answer AADSTS54005 rather than "malformed"; bounded.
_REDEEMED_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """What one ``scope`` parameter asks for."""

    #: The API of the first resource named: the access token is for it.
    api: ApiRegistration
    #: The resource as the client named it (a v1 token's ``aud``).
    resource: str
    #: Short names of the delegated scopes asked of ``api``, in request order.
    scopes: tuple[str, ...]
    #: The OpenID Connect scopes asked for.
    oidc: frozenset[str]
    #: How many distinct resources were named (the token endpoint takes only one).
    resource_count: int

    @property
    def full_names(self) -> tuple[str, ...]:
        """``{resource}/{scope}`` for each scope: what a token response's ``scope`` lists."""
        return tuple(f"{self.resource.removesuffix('/')}/{name}" for name in self.scopes)


def parse_scopes(
    registry: Registry, client: ClientRegistration, scope: str, tenant_id: str
) -> ScopeRequest:
    """Read a ``scope`` parameter; ``TokenError`` with Entra's code for what it cannot grant.

    An unknown resource is AADSTS500011 (``invalid_resource``); a scope the API does not
    expose, or a request naming no API at all, AADSTS70011 (``invalid_scope``); a scope the
    client was not consented to, AADSTS65001 (``consent_required``). The emulator has no
    consent screen: a client's consent is what it was registered with.
    """
    items = scope.split()
    oidc = frozenset(item.lower() for item in items if item.lower() in OIDC_SCOPES)
    named: dict[str, tuple[ApiRegistration, str, list[str]]] = {}
    for item in items:
        if item.lower() in OIDC_SCOPES:
            continue
        resource, slash, name = item.rpartition("/")
        if not slash:
            resource, name = GRAPH, item
        if not resource or not name:
            raise TokenError.unexposed_scope(item)
        api = registry.find_api(resource)
        if api is None:
            raise TokenError.resource_not_found(resource, tenant_id)
        entry = named.setdefault(api.client_id, (api, resource, []))
        if name == _DEFAULT:
            entry[2].extend(client.scopes.get(api.client_id, ()))
        elif not api.exposes(name):
            raise TokenError.unexposed_scope(item)
        else:
            entry[2].append(name)
    if not named:
        raise TokenError.unexposed_scope(
            scope, note=" The emulator issues access tokens for registered APIs only."
        )
    api, resource, names = next(iter(named.values()))
    request = ScopeRequest(
        api=api,
        resource=resource,
        scopes=tuple(dict.fromkeys(names)),
        oidc=oidc,
        resource_count=len(named),
    )
    for other_api, _, other_names in named.values():
        missing = [n for n in other_names if not client.consented(other_api, n)]
        if missing or not other_names:
            raise TokenError.consent_required(client)
    return request


@dataclass(frozen=True, slots=True)
class SignIn:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    user: EmulatorUser
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """What a refresh token stands for: the user's consent to a client."""

    client_id: str
    user: EmulatorUser
    scope: str
    #: Unix seconds, or ``None`` for no fixed end (web and native clients).
    expires_at: float | None


class GrantStore:
    """Outstanding codes and refresh tokens of one emulator, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, SignIn] = {}
        self._redeemed: OrderedDict[str, None] = OrderedDict()
        self._refresh: dict[str, RefreshGrant] = {}

    def issue_code(self, sign_in: SignIn, now: float) -> str:
        """A new code for ``sign_in``; codes expired by ``now`` are forgotten (as unknown)."""
        code = _opaque()
        with self._lock:
            self._codes = {c: s for c, s in self._codes.items() if s.expires_at > now}
            self._codes[code] = sign_in
        return code

    def redeem_code(self, code: str, now: float) -> SignIn:
        """The sign-in of ``code``, which is then spent; ``TokenError`` as Entra answers."""
        with self._lock:
            sign_in = self._codes.pop(code, None)
            if sign_in is None:
                if code in self._redeemed:
                    raise TokenError.code_redeemed()
                raise TokenError.malformed_grant()
            self._redeemed[code] = None
            while len(self._redeemed) > _REDEEMED_KEPT:
                self._redeemed.popitem(last=False)
        if now >= sign_in.expires_at:
            raise TokenError.grant_expired()
        return sign_in

    def issue_refresh_token(self, grant: RefreshGrant) -> str:
        token = _opaque()
        with self._lock:
            self._refresh[token] = grant
        return token

    def refresh_grant(self, token: str, now: float) -> RefreshGrant:
        """The grant behind ``token``; it stays valid (Entra does not revoke on use)."""
        grant = self._refresh.get(token)
        if grant is None:
            raise TokenError.malformed_grant()
        if grant.expires_at is not None and now >= grant.expires_at:
            raise TokenError.spa_refresh_expired()
        return grant


def _opaque() -> str:
    # Entra's codes and refresh tokens are opaque and start with a version marker like this.
    return f"1.A{secrets.token_urlsafe(96)}"

"""Claim checks for a token whose signature has already been verified.

Pure functions of (claims, configuration, key set, time): no I/O and no global clock, so every
rule is testable at its exact boundary. Authentication rules raise ``InvalidToken``; the
authorization rules that follow (client allow-list, a token that grants nothing) raise
``InsufficientPermissions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entra_guard.config import EntraConfig, TokenVersion, is_guid
from entra_guard.discovery import KeySet, SigningKey
from entra_guard.errors import InsufficientPermissions, InvalidToken
from entra_guard.principal import EntraPrincipal, guest_by_claims

__all__ = [
    "GRAPH_AUDIENCES",
    "check_audience",
    "check_claims",
    "check_client",
    "check_issuer",
    "check_lifetime",
    "check_permissions",
]

#: Microsoft Graph and Azure AD Graph: tokens for them are not for any other API to accept.
GRAPH_AUDIENCES = frozenset(
    {
        "00000003-0000-0000-c000-000000000000",
        "https://graph.microsoft.com",
        "00000002-0000-0000-c000-000000000000",
        "https://graph.windows.net",
    }
)
_TENANT_PLACEHOLDER = "{tenantid}"
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def check_claims(
    claims: Mapping[str, Any],
    *,
    config: EntraConfig,
    keyset: KeySet,
    key: SigningKey,
    version: TokenVersion,
    now: float,
    tenant_decided: bool = False,
    payload: bytes | None = None,
) -> EntraPrincipal:
    """Check lifetime, issuer, audience, client and permissions; return the principal.

    ``tenant_decided=True``: the app's run-time decision (``config.tenant_allowed``) has
    allowed the token's tenant, on top of ``config.allowed_tenants``. ``payload``: the JSON
    text ``claims`` was parsed from; the principal then keeps that text instead of the dict
    (see ``EntraPrincipal.from_payload``).
    """
    check_lifetime(claims, leeway=config.leeway, now=now)
    check_issuer(claims, config=config, keyset=keyset, key=key, tenant_decided=tenant_decided)
    check_audience(claims, config)
    if keyset.app_id is not None:
        check_app_key_audience(claims, keyset.app_id, config)
    client_id = check_client(claims, version)
    # Authenticated. What follows decides whether the caller may use this API at all.
    return check_permissions(
        claims, config=config, version=version, client_id=client_id, payload=payload
    )


def check_client(claims: Mapping[str, Any], version: TokenVersion) -> str:
    """The client id (``azp``/``appid``); also checks the types of ``scp`` and ``roles``."""
    client_id = claims.get("azp" if version == "2.0" else "appid")
    if not isinstance(client_id, str) or not client_id:
        raise InvalidToken(
            "not_an_access_token",
            "The token names no client application (azp/appid): it is not an access token",
        )
    scp, roles = claims.get("scp"), claims.get("roles")
    if scp is not None and not isinstance(scp, str):
        raise InvalidToken("invalid_claim", "The 'scp' claim is not a string")
    if roles is not None and not (
        isinstance(roles, list) and all(isinstance(r, str) for r in roles)
    ):
        raise InvalidToken("invalid_claim", "The 'roles' claim is not a list of strings")
    return client_id


def check_permissions(
    claims: Mapping[str, Any],
    *,
    config: EntraConfig,
    version: TokenVersion,
    client_id: str,
    payload: bytes | None = None,
) -> EntraPrincipal:
    """The client allow-list, guests when refused, and a token that grants nothing; returns
    the principal (keeping ``payload``, the claims' JSON text, when given)."""
    if config.allowed_client_ids and client_id.lower() not in config.allowed_client_ids:
        raise InsufficientPermissions(
            "client_not_allowed", "The calling application is not allowed to use this API"
        )
    if payload is not None and isinstance(claims, dict):
        principal = EntraPrincipal.from_payload(
            claims, payload, version=version, client_id=client_id
        )
    else:
        principal = EntraPrincipal.from_claims(claims, version=version, client_id=client_id)
    # The rule of principal.is_guest, read from the dict at hand rather than the kept text.
    if not config.allow_guests and guest_by_claims(claims, principal.tenant_id):
        raise InsufficientPermissions(
            "guest_not_allowed", "This API does not accept guest users (users of another tenant)"
        )
    if not principal.scopes and not principal.roles and not config.allow_tokens_without_permissions:
        raise InsufficientPermissions(
            "no_permissions",
            "The token grants no scope and no app role: ask for a scope or an app role of this API",
        )
    return principal


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    # A JSON number only: a numeric string is not a time, and neither is a boolean (its type is
    # bool, not int). Between 1970 and the year 9999: beyond that no datetime can hold it, and a
    # 400-digit integer cannot even become a float.
    if type(value) is int and 0 <= value <= _MAX_TIME:  # the usual case first
        return value
    if value is None and name not in claims:
        return None
    if type(value) is not float or not 0 <= value <= _MAX_TIME:  # NaN fails this too
        raise InvalidToken("invalid_claim", f"The '{name}' claim is not a NumericDate")
    return value


def check_lifetime(claims: Mapping[str, Any], *, leeway: float, now: float) -> None:
    exp = _time(claims, "exp")
    nbf = _time(claims, "nbf")
    iat = _time(claims, "iat")
    if exp is None:
        raise InvalidToken("missing_claim", "The token has no expiration ('exp')")
    if nbf is not None and nbf > exp:
        raise InvalidToken("invalid_lifetime", "The token's 'nbf' is after its 'exp'")
    if now >= exp + leeway:
        raise InvalidToken("token_expired", "The token has expired")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken("token_not_yet_valid", "The token is not valid yet ('nbf')")
    if iat is not None and iat > now + leeway:
        raise InvalidToken("token_not_yet_valid", "The token was issued in the future ('iat')")


def check_issuer(
    claims: Mapping[str, Any],
    *,
    config: EntraConfig,
    keyset: KeySet,
    key: SigningKey,
    tenant_decided: bool = False,
) -> None:
    tid, iss = claims.get("tid"), claims.get("iss")
    if not isinstance(tid, str) or not is_guid(tid):
        raise InvalidToken("invalid_claim", "The token has no tenant id ('tid') GUID")
    if not isinstance(iss, str):
        raise InvalidToken("missing_claim", "The token has no issuer ('iss')")
    # The issuer comes from the metadata of the token's version; in multi-tenant documents it
    # is a template. Filling it with the token's own tid makes 'tid' and 'iss' agree by force.
    expected = keyset.issuer.replace(_TENANT_PLACEHOLDER, tid)
    if iss != expected:
        raise InvalidToken("invalid_issuer", "The token's issuer is not accepted by this API")
    if not (tenant_decided or config.accepts_tenant(tid)):
        raise InvalidToken("tenant_not_allowed", "The token's tenant is not allowed by this API")
    # v2 keys name the issuer they sign for: a tenant's token must not verify with a key that
    # belongs to another issuer (personal-account keys, for instance).
    if key.issuer is not None and key.issuer.replace(_TENANT_PLACEHOLDER, tid) != iss:
        raise InvalidToken("invalid_issuer", "The token was signed by another issuer's key")


def check_app_key_audience(claims: Mapping[str, Any], app_id: str, config: EntraConfig) -> None:
    """A key from the ``?appid=<app_id>`` document signs that application's tokens only.

    Its private key may be the application owner's own (a claims-mapping policy's signing
    certificate), so it must not vouch for another API among ``audiences``. ``aud`` must be
    ``app_id``; an App ID URI (v1 tokens) is accepted only when ``app_id`` is the one client id
    among the audiences, as it cannot be told whose URI it is otherwise. Call after
    :func:`check_audience`. Raises ``InvalidToken("invalid_audience")``.
    """
    aud = claims["aud"]
    values = [aud] if isinstance(aud, str) else aud
    if any(a.lower() == app_id for a in values):
        return
    client_ids = {a.lower() for a in config.audiences if is_guid(a)}
    if client_ids == {app_id} and any(
        not is_guid(a) and config.accepts_audience(a) for a in values
    ):
        return
    raise InvalidToken(
        "invalid_audience",
        "The token's audience is not the application whose own signing key signed it",
    )


def check_audience(claims: Mapping[str, Any], config: EntraConfig) -> None:
    aud = claims.get("aud")
    if aud is None:
        raise InvalidToken("missing_claim", "The token has no audience ('aud')")
    if isinstance(aud, str):  # the usual shape: one string, checked without building a list
        if config.accepts_audience(aud):
            return
        values = [aud]
    else:
        if not isinstance(aud, list) or not aud or not all(isinstance(a, str) for a in aud):
            raise InvalidToken(
                "invalid_claim", "The 'aud' claim is not a string or list of strings"
            )
        if any(config.accepts_audience(a) for a in aud):
            return
        values = aud
    if any(a.removesuffix("/") in GRAPH_AUDIENCES for a in values):
        raise InvalidToken(
            "graph_token",
            "The token is meant for Microsoft Graph, not for this API: request a token with "
            "this API's scope",
        )
    raise InvalidToken("invalid_audience", "The token's audience is not this API")

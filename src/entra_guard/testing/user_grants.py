"""The token endpoint's user grants: ``authorization_code`` (with PKCE) and ``refresh_token``.

Client authentication follows the client's type, as Entra's does: a confidential client must
prove itself (secret or certificate assertion) and may not redeem from a browser (AADSTS9002326
when an ``Origin`` header comes); a public client must not send a credential (AADSTS700025);
an SPA client must not either, and must redeem cross-origin (AADSTS9002327 without ``Origin``)
with PKCE (AADSTS9002325). Token responses to a browser whose origin is a redirect origin of a
registered SPA client carry CORS headers; so does the preflight.

Tokens come from the same builders and signer as every other emulator token
(:mod:`entra_guard.testing.tokens`): the access token for the first API the scopes name, in
that API's ``access_token_version``; an ID token when ``openid`` was asked (with the sign-in's
``nonce``); a refresh token when ``offline_access`` was asked.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from entra_guard.testing.authorize import VERIFIER, client_info, s256
from entra_guard.testing.client_auth import PUBLIC, authenticate, required
from entra_guard.testing.delegated import SPA_REFRESH_LIFETIME, RefreshGrant, parse_scopes
from entra_guard.testing.token_errors import TokenError
from entra_guard.testing.tokens import build_claims, build_header, build_id_token_claims, sign

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from entra_guard.testing.delegated import ScopeRequest
    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.state import EmulatorState
    from entra_guard.testing.tenants import Tenant
    from entra_guard.testing.users import EmulatorUser

__all__ = ["USER_GRANTS", "cors_headers", "preflight", "user_grant", "user_tokens"]

USER_GRANTS = frozenset({"authorization_code", "refresh_token"})
_CORS_MAX_AGE = "86400"


def user_grant(
    state: EmulatorState,
    form: Mapping[str, str],
    *,
    tenant: Tenant,
    grant_type: str,
    basic: tuple[str, str] | None,
    endpoint: str,
    origin: str | None,
) -> dict[str, Any]:
    """The token response of one user grant; ``TokenError`` with Entra's code otherwise."""
    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        raise TokenError.missing_parameter("client_id")
    home = tenant.tid in (None, state.tenant_id)
    client = state.registry.client(client_id) if home else None
    if client is None:
        raise TokenError.unknown_client(client_id, tenant.tid or tenant.segment)
    acr = _authenticate(client, form, basic, endpoint, origin)
    now = time.time()
    if grant_type == "authorization_code":
        return _redeem_code(state, client, form, acr=acr, now=now)
    return _redeem_refresh_token(state, client, form, acr=acr, now=now)


def _authenticate(
    client: ClientRegistration,
    form: Mapping[str, str],
    basic: tuple[str, str] | None,
    endpoint: str,
    origin: str | None,
) -> str:
    """The ``azpacr``/``appidacr`` value, once the client's type rules are met."""
    if client.type == "confidential":
        if origin is not None:
            raise TokenError.cross_origin_not_spa(origin)
        return authenticate(client, form, basic, endpoint)
    if form.get("client_secret") or form.get("client_assertion") or basic is not None:
        raise TokenError.public_client_credential()
    if client.type == "spa" and origin is None:
        raise TokenError.spa_without_origin()
    if client.type == "public" and origin is not None:
        raise TokenError.cross_origin_not_spa(origin)
    return PUBLIC


def _redeem_code(
    state: EmulatorState,
    client: ClientRegistration,
    form: Mapping[str, str],
    *,
    acr: str,
    now: float,
) -> dict[str, Any]:
    code = required(form, "code")
    redirect_uri = required(form, "redirect_uri")
    sign_in = state.grants.redeem_code(code, now)
    if sign_in.client_id != client.client_id:
        raise TokenError.grant_not_for_client("code")
    if redirect_uri != sign_in.redirect_uri:
        raise TokenError.grant_not_for_client("redirect_uri")
    verifier = form.get("code_verifier")
    if sign_in.code_challenge is None:
        if client.type == "spa":
            raise TokenError.pkce_required()
        if verifier:
            raise TokenError.verifier_mismatch()
    else:
        if not verifier:
            raise TokenError.missing_parameter("code_verifier")
        if not VERIFIER.fullmatch(verifier):
            raise TokenError.verifier_mismatch()
        expected = s256(verifier) if sign_in.code_challenge_method == "S256" else verifier
        if not hmac.compare_digest(expected.encode(), sign_in.code_challenge.encode()):
            raise TokenError.verifier_mismatch()
    granted = parse_scopes(state.registry, client, sign_in.scope, state.tenant_id)
    request = _token_scope(state, client, form, default=granted)
    lifetime = SPA_REFRESH_LIFETIME if client.type == "spa" else None
    return user_tokens(
        state,
        client,
        sign_in.user,
        request,
        oidc=granted.oidc,
        acr=acr,
        nonce=sign_in.nonce,
        grant=RefreshGrant(
            client_id=client.client_id,
            user=sign_in.user,
            scope=sign_in.scope,
            expires_at=None if lifetime is None else now + lifetime,
        ),
        form=form,
        now=now,
    )


def _redeem_refresh_token(
    state: EmulatorState,
    client: ClientRegistration,
    form: Mapping[str, str],
    *,
    acr: str,
    now: float,
) -> dict[str, Any]:
    grant = state.grants.refresh_grant(required(form, "refresh_token"), now)
    if grant.client_id != client.client_id:
        raise TokenError.grant_not_for_client("refresh_token")
    original = parse_scopes(state.registry, client, grant.scope, state.tenant_id)
    request = _token_scope(state, client, form, default=original)
    # A new refresh token keeps the old one's end: an SPA's 24 hours are not extended.
    return user_tokens(
        state,
        client,
        grant.user,
        request,
        oidc=original.oidc | request.oidc,
        acr=acr,
        nonce=None,
        grant=grant,
        form=form,
        now=now,
    )


def _token_scope(
    state: EmulatorState,
    client: ClientRegistration,
    form: Mapping[str, str],
    *,
    default: ScopeRequest,
) -> ScopeRequest:
    """The ``scope`` of the token request (one resource only), or the grant's first resource."""
    scope = form.get("scope", "").strip()
    if not scope:
        return default
    request = parse_scopes(state.registry, client, scope, state.tenant_id)
    if request.resource_count > 1:
        raise TokenError.several_resources(scope)
    return request


def user_tokens(
    state: EmulatorState,
    client: ClientRegistration,
    user: EmulatorUser,
    request: ScopeRequest,
    *,
    oidc: frozenset[str],
    acr: str,
    nonce: str | None,
    grant: RefreshGrant,
    form: Mapping[str, str],
    now: float,
) -> dict[str, Any]:
    """The token response for ``user`` at ``client``: an access token for ``request.api``,
    plus a refresh token (``offline_access`` in ``oidc``, standing for ``grant``), an ID token
    (``openid``) and ``client_info`` when the form asks for it."""
    api = request.api
    version = api.access_token_version
    lifetime = state.token_lifetime
    claims = build_claims(
        version=version,
        app_only=False,
        instance=state.instance,
        tid=state.tenant_id,
        # v2 tokens name the API by client id; v1 tokens by whatever the client asked for.
        audience=api.client_id if version == "2.0" else request.resource,
        client_id=client.client_id,
        roles=user.roles.get(api.client_id, ()),
        scopes=request.scopes,
        now=now,
        lifetime=lifetime,
        user=user,
    )
    claims["azpacr" if version == "2.0" else "appidacr"] = acr
    key = api.signing_key or state.current_key
    answer: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(request.full_names),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": sign(
            build_header(key, version=version, algorithm="RS256"), claims, key, "RS256"
        ),
    }
    if "offline_access" in oidc:
        answer["refresh_token"] = state.grants.issue_refresh_token(grant)
    if "openid" in oidc:
        id_claims = build_id_token_claims(
            instance=state.instance,
            tid=state.tenant_id,
            client_id=client.client_id,
            user=user,
            nonce=nonce,
            email="email" in oidc,
            now=now,
            lifetime=lifetime,
        )
        tenant_key = state.current_key  # ID tokens are signed with the tenant's keys
        header = build_header(tenant_key, version="2.0", algorithm="RS256")
        answer["id_token"] = sign(header, id_claims, tenant_key, "RS256")
    if form.get("client_info") == "1":
        answer["client_info"] = client_info(user, state.tenant_id)
    return answer


def cors_headers(state: EmulatorState, origin: str | None) -> dict[str, str]:
    """CORS headers for a browser at ``origin`` if an SPA client redirects there, else none."""
    if origin is None or not state.registry.allows_spa_origin(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(state: EmulatorState, request: Request) -> Response:
    """The answer to a CORS preflight of the token endpoint."""
    headers = cors_headers(state, request.headers.get("origin"))
    if headers:
        headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        asked = request.headers.get("access-control-request-headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        headers["Access-Control-Max-Age"] = _CORS_MAX_AGE
    return Response(status_code=204, headers=headers)

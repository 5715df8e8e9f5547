"""The on-behalf-of grant: a middle-tier API trades its caller's token for one to call further.

``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with
``requested_token_use=on_behalf_of``, ``assertion`` (the user's access token for the calling
API) and ``scope`` (v2) or ``resource`` (v1), sent by the calling API with its own credentials
(Microsoft: "On-behalf-of flow", reference ``users-and-downstream.md`` section 5).

The emulator's model: the calling API is one registration seen from two sides, as in Entra.
It is an API (``register_api``: what the user's token is for) *and* a confidential client
with the same client id (``register_client(client_id=api.client_id, scopes={downstream:
[...]})``: its credentials and the delegated scopes it was consented to). Microsoft Graph is
known to every emulator (:data:`~entra_guard.testing.registrations.MICROSOFT_GRAPH`).

Checks, in order: the tenant, the client and its credential, then the assertion (issued by
this emulator and signed with a published key, AADSTS50013; current, AADSTS500133; from this
tenant, AADSTS50027; for the calling API by client id or App ID URI, AADSTS500131; a user's
token, not an application's, AADSTS50013 - a guess, the reference leaves that code open), then
the downstream scope (consented, else AADSTS65001 ``invalid_grant`` with ``suberror``
``consent_required``), then the claims challenge switched on by the test
(``interaction_required``, AADSTS50076, with ``claims``). The new token is minted by the same
code as a sign-in's: the same user (``oid``, ``name``, UPN, ``groups``), delegated ``scp``,
``azp``/``appid`` the calling API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from entra_guard.testing.client_auth import authenticate, required
from entra_guard.testing.delegated import RefreshGrant, parse_scopes
from entra_guard.testing.issued_tokens import IssuedTokenError, verify_issued_token
from entra_guard.testing.token_errors import TokenError
from entra_guard.testing.user_grants import user_tokens
from entra_guard.testing.users import EmulatorUser

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.state import EmulatorState
    from entra_guard.testing.tenants import Tenant

__all__ = ["JWT_BEARER", "on_behalf_of"]

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TENANTLESS = frozenset({"common", "organizations", "consumers"})


def on_behalf_of(
    state: EmulatorState,
    form: Mapping[str, str],
    *,
    tenant: Tenant,
    basic: tuple[str, str] | None,
    endpoint: str,
    version: str,
) -> dict[str, Any]:
    """The token response of one on-behalf-of request; ``TokenError`` with Entra's code."""
    if tenant.segment in _TENANTLESS:
        raise TokenError.tenantless_endpoint(tenant.segment)
    if form.get("requested_token_use") != "on_behalf_of":
        raise TokenError.missing_parameter("requested_token_use")
    assertion = required(form, "assertion")
    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        raise TokenError.missing_parameter("client_id")
    home = tenant.tid == state.tenant_id
    client = state.registry.client(client_id) if home else None
    if client is None:
        raise TokenError.unknown_client(client_id, tenant.tid or tenant.segment)
    acr = authenticate(client, form, basic, endpoint)
    now = time.time()
    user = _user(state, _assertion_claims(state, assertion, client, now))
    scope = (
        required(form, "scope") if version == "2.0" else f"{required(form, 'resource')}/.default"
    )
    try:
        request = parse_scopes(state.registry, client, scope, state.tenant_id)
    except TokenError as error:
        if error.code == 65001:  # OBO answers consent as invalid_grant, not consent_required
            raise TokenError.obo_consent_required(client) from None
        raise
    if request.resource_count > 1:
        raise TokenError.several_resources(scope)
    claims_challenge = state.faults.take_obo_claims_challenge()
    if claims_challenge is not None:
        raise TokenError.obo_claims_challenge(claims_challenge)
    grant = RefreshGrant(client_id=client.client_id, user=user, scope=scope, expires_at=None)
    answer = user_tokens(
        state,
        client,
        user,
        request,
        oidc=request.oidc,
        acr=acr,
        nonce=None,
        grant=grant,
        form=form,
        now=now,
    )
    if version == "1.0":  # the v1 endpoint answers numbers as strings, and names the resource
        for name in ("expires_in", "ext_expires_in"):
            answer[name] = str(answer[name])
        answer["resource"] = request.resource
    return answer


def _assertion_claims(
    state: EmulatorState, assertion: str, client: ClientRegistration, now: float
) -> dict[str, Any]:
    """The assertion's claims once it is a current user token of this tenant for ``client``."""
    try:
        claims = verify_issued_token(state, assertion, now=now)
    except IssuedTokenError as error:
        if error.reason == "signature":
            raise TokenError.obo_bad_assertion(error.message) from None
        if error.reason in ("expired", "not_yet_valid"):
            raise TokenError.obo_assertion_expired() from None
        raise TokenError.obo_malformed_assertion(error.message) from None
    aud = claims.get("aud")
    api = state.registry.find_api(aud) if isinstance(aud, str) else None
    named = aud.lower() == client.client_id if isinstance(aud, str) else False
    if not named and (api is None or api.client_id != client.client_id):
        raise TokenError.obo_audience_mismatch()
    scp = claims.get("scp")
    if claims.get("idtyp") == "app" or not isinstance(scp, str) or not scp.strip():
        raise TokenError.obo_app_only_assertion()
    if not isinstance(claims.get("oid"), str):
        raise TokenError.obo_malformed_assertion("The assertion has no 'oid' claim.")
    return claims


def _user(state: EmulatorState, claims: Mapping[str, Any]) -> EmulatorUser:
    """The directory's user of ``oid``; else the user the assertion describes (a token minted
    with ``issue_token(app_only=False)`` names a user the directory need not hold)."""
    oid = str(claims["oid"])
    user = state.users.by_object_id(oid)
    if user is not None:
        return user
    upn = next(
        (
            claims[name]
            for name in ("preferred_username", "upn", "unique_name")
            if isinstance(claims.get(name), str)
        ),
        "",
    )
    groups = claims.get("groups")
    name = claims.get("name")
    return EmulatorUser(
        upn=upn,
        password="",
        name=name if isinstance(name, str) else upn,
        object_id=oid,
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        guest=isinstance(claims.get("idp"), str),
    )

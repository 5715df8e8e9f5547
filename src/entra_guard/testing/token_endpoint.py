"""The token endpoints ``/{tenant}/oauth2/v2.0/token`` and ``/{tenant}/oauth2/token``.

This module answers the client-credentials grant and hands the user grants (authorization
code, refresh token; v2 endpoint only) to :mod:`entra_guard.testing.user_grants` and the
on-behalf-of grant to :mod:`entra_guard.testing.on_behalf_of`.

Checks run in Entra's order: the tenant, the grant, the parameters, the client and its
credential, and only then the resource, so an unauthenticated caller learns nothing about the
APIs registered. The token comes from the same builder as :meth:`EntraEmulator.issue_token`;
its version is the API's ``access_token_version``, never the endpoint's. The v1 endpoint takes
``resource`` instead of ``scope`` and answers its numbers as strings, as Entra's does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from starlette.responses import JSONResponse, Response

from entra_guard.testing.client_auth import (
    ASSERTION_TYPE,
    authenticate,
    basic_credentials,
    parse_form,
    required,
)
from entra_guard.testing.on_behalf_of import JWT_BEARER, on_behalf_of
from entra_guard.testing.tenants import resolve_tenant
from entra_guard.testing.token_errors import TokenError
from entra_guard.testing.tokens import build_claims, build_header, sign
from entra_guard.testing.user_grants import USER_GRANTS, cors_headers, user_grant

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from entra_guard.testing.state import EmulatorState

__all__ = ["ASSERTION_TYPE", "EndpointVersion", "token_path", "token_response"]

EndpointVersion: TypeAlias = Literal["1.0", "2.0"]

_TENANTLESS = frozenset({"common", "organizations", "consumers"})
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
_DEFAULT_SUFFIX = "/.default"


def token_path(segment: str, version: EndpointVersion) -> str:
    infix = "/v2.0" if version == "2.0" else ""
    return f"/{segment}/oauth2{infix}/token"


async def token_response(
    state: EmulatorState, request: Request, version: EndpointVersion
) -> Response:
    """Answer one token request (faults were applied by the caller)."""
    form = parse_form(await request.body())
    endpoint = str(request.url.replace(query="", fragment=""))
    origin = request.headers.get("origin")
    cors = cors_headers(state, origin)
    try:
        answer = _grant(
            state,
            form,
            segment=str(request.path_params["tenant"]),
            endpoint=endpoint,
            basic=basic_credentials(request.headers.get("authorization")),
            version=version,
            origin=origin,
        )
    except TokenError as error:
        response: Response = error.response(state.instance)
        response.headers.update(cors)
        return response
    return JSONResponse(answer, headers={**_NO_STORE, **cors})


def _grant(
    state: EmulatorState,
    form: Mapping[str, str],
    *,
    segment: str,
    endpoint: str,
    basic: tuple[str, str] | None,
    version: EndpointVersion,
    origin: str | None = None,
) -> dict[str, Any]:
    tenant = resolve_tenant(segment)
    if tenant is None or not state.knows(tenant):
        raise TokenError.unknown_tenant(segment)
    grant_type = required(form, "grant_type")
    if grant_type in USER_GRANTS and version == "2.0":
        return user_grant(
            state,
            form,
            tenant=tenant,
            grant_type=grant_type,
            basic=basic,
            endpoint=endpoint,
            origin=origin,
        )
    if grant_type == JWT_BEARER:
        return on_behalf_of(
            state, form, tenant=tenant, basic=basic, endpoint=endpoint, version=version
        )
    if grant_type != "client_credentials":
        raise TokenError.unsupported_grant(grant_type)
    if tenant.segment in _TENANTLESS:
        raise TokenError.tenantless_endpoint(tenant.segment)

    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        raise TokenError.missing_parameter("client_id")
    resource = _resource(form, version)
    # Registrations live in the emulator's own tenant; another tenant has none of them.
    home = tenant.tid == state.tenant_id
    client = state.registry.client(client_id) if home else None
    if client is None:
        raise TokenError.unknown_client(client_id, tenant.tid or tenant.segment)
    acr = authenticate(client, form, basic, endpoint)
    api = state.registry.find_api(resource)
    if api is None:
        raise TokenError.resource_not_found(resource, state.tenant_id)
    return _issue(state, client, api, resource=resource, acr=acr, version=version)


def _resource(form: Mapping[str, str], version: EndpointVersion) -> str:
    """The resource a v2 ``scope`` or a v1 ``resource`` names."""
    if version == "1.0":
        return required(form, "resource")
    if "resource" in form:
        raise TokenError.resource_parameter_on_v2()
    scope = required(form, "scope")
    items = scope.split()
    if any(not item.endswith(_DEFAULT_SUFFIX) for item in items):
        raise TokenError.scope_without_default(scope)
    resources = list(dict.fromkeys(item.removesuffix(_DEFAULT_SUFFIX) for item in items))
    if len(resources) > 1:
        raise TokenError.several_resources(scope)
    if not resources or not resources[0]:
        raise TokenError.invalid_scope(scope)
    return resources[0]


def _issue(
    state: EmulatorState,
    client: ClientRegistration,
    api: ApiRegistration,
    *,
    resource: str,
    acr: str,
    version: EndpointVersion,
) -> dict[str, Any]:
    issued_version = api.access_token_version
    v2_token = issued_version == "2.0"
    lifetime = state.token_lifetime
    claims = build_claims(
        version=issued_version,
        app_only=True,
        instance=state.instance,
        tid=state.tenant_id,
        # v2 tokens name the API by client id; v1 tokens by whatever the client asked for.
        audience=api.client_id if v2_token else resource,
        client_id=client.client_id,
        roles=client.roles.get(api.client_id, ()),
        scopes=(),
        now=time.time(),
        lifetime=lifetime,
    )
    claims["azpacr" if v2_token else "appidacr"] = acr
    key = api.signing_key or state.current_key
    token = sign(build_header(key, version=issued_version, algorithm="RS256"), claims, key, "RS256")
    if version == "2.0":
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
    return {
        "token_type": "Bearer",
        "expires_in": str(lifetime),
        "ext_expires_in": str(lifetime),
        "expires_on": str(claims["exp"]),
        "not_before": str(claims["nbf"]),
        "resource": resource,
        "access_token": token,
    }

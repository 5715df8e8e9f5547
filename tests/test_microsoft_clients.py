"""Microsoft's own clients (MSAL Python, azure-identity) get tokens from the emulator over HTTPS.

If they work unchanged against it, the emulator speaks Entra's protocol, not just ours: MSAL
discovers the tenant's metadata, follows its ``token_endpoint``, signs assertions its own way
(PS256 with ``x5t#S256`` and an ``x5c`` chain, or RS256 with ``x5t``) and reads the answer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential, OnBehalfOfCredential
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from entra_guard import EntraAuthMiddleware, TokenValidator
from entra_guard.starlette import require_roles, require_scopes
from tests.support import user_token

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from entra_guard.testing import EntraEmulator
    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from entra_guard.testing.users import EmulatorUser

SCOPE = "api://orders/.default"


@dataclass(frozen=True)
class Tenant:
    idp: EntraEmulator
    orders: ApiRegistration
    legacy: ApiRegistration
    app: ClientRegistration

    @property
    def authority(self) -> str:
        return f"{self.idp.instance}/{self.idp.tenant_id}"

    @property
    def ca_bundle(self) -> str:
        assert self.idp.ca_bundle is not None
        return self.idp.ca_bundle


@pytest.fixture
def tenant(entra_emulator_https: EntraEmulator, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    # requests lets these variables override a Session's own ``verify`` (psf/requests#3829),
    # and MSAL passes our CA as exactly that; unset, MSAL's ``verify=`` is what counts.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    idp = entra_emulator_https
    orders = idp.register_api(app_id_uri="api://orders", roles=["Orders.Read"])
    legacy = idp.register_api(app_id_uri="api://legacy", access_token_version="1.0")
    app = idp.register_client(
        name="daemon", roles={"api://orders": ["Orders.Read"]}, certificate=True
    )
    return Tenant(idp, orders, legacy, app)


@pytest.fixture
def msal_app(tenant: Tenant) -> Iterator[Any]:
    """Builds MSAL confidential clients that trust the emulator's CA; closes them after."""
    made: list[msal.ConfidentialClientApplication] = []

    def build(credential: Any) -> msal.ConfidentialClientApplication:
        app = msal.ConfidentialClientApplication(
            tenant.app.client_id,
            authority=tenant.authority,
            client_credential=credential,
            instance_discovery=False,
            verify=tenant.ca_bundle,
        )
        made.append(app)
        return app

    yield build
    for app in made:
        app.http_client.close()  # a kept-alive connection would stall the emulator's stop


async def validate(tenant: Tenant, token: str, audience: str) -> dict[str, Any]:
    config = tenant.idp.config(audiences=[audience])
    async with (
        httpx.AsyncClient(verify=tenant.idp.ssl_context()) as http,
        TokenValidator(config, http_client=http) as validator,
    ):
        principal = await validator.validate(token)
    assert principal.client_id == tenant.app.client_id
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def test_msal_with_a_secret(tenant: Tenant, msal_app: Any) -> None:
    app = msal_app(tenant.app.secret)
    result = app.acquire_token_for_client(scopes=[SCOPE])
    assert "access_token" in result, result.get("error_description")
    assert (result["token_type"], result["expires_in"]) == ("Bearer", 3599)
    assert result["token_source"] == "identity_provider"
    claims = await validate(tenant, result["access_token"], tenant.orders.client_id)
    assert (claims["azpacr"], claims["roles"]) == ("1", ["Orders.Read"])

    again = app.acquire_token_for_client(scopes=[SCOPE])
    assert again["token_source"] == "cache"
    assert again["access_token"] == result["access_token"]
    assert tenant.idp.token_request_count() == 1


@pytest.mark.parametrize("form", ["public_certificate", "sha1_thumbprint"])
async def test_msal_with_a_certificate(tenant: Tenant, msal_app: Any, form: str) -> None:
    assert tenant.app.private_key_pem is not None
    assert tenant.app.certificate_pem is not None
    credential: dict[str, str] = {"private_key": tenant.app.private_key_pem.decode()}
    if form == "public_certificate":  # MSAL signs PS256, names x5t#S256, sends x5c
        credential["public_certificate"] = tenant.app.certificate_pem.decode()
    else:  # the legacy form: RS256 and the SHA-1 x5t
        assert tenant.app.certificate_thumbprint is not None
        credential["thumbprint"] = tenant.app.certificate_thumbprint
    result = msal_app(credential).acquire_token_for_client(scopes=[SCOPE])
    assert "access_token" in result, result.get("error_description")
    claims = await validate(tenant, result["access_token"], tenant.orders.client_id)
    assert claims["azpacr"] == "2"


async def test_msal_v1_api_and_errors(tenant: Tenant, msal_app: Any) -> None:
    result = msal_app(tenant.app.secret).acquire_token_for_client(scopes=["api://legacy/.default"])
    assert "access_token" in result, result.get("error_description")
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert (claims["ver"], claims["aud"], claims["appidacr"]) == ("1.0", "api://legacy", "1")

    refused = msal_app("not-the-secret").acquire_token_for_client(scopes=[SCOPE])
    assert refused["error"] == "invalid_client"
    assert refused["error_codes"] == [7000215]
    assert refused["error_description"].startswith("AADSTS7000215: ")
    assert refused["correlation_id"]


def test_msal_refuses_an_authority_whose_tenant_does_not_exist(tenant: Tenant) -> None:
    unknown = "3c9d2e1f-8a7b-4c6d-9e5f-0a1b2c3d4e5f"
    # As against Entra: tenant discovery answers 400 AADSTS90002 and MSAL gives up at once.
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            tenant.app.client_id,
            authority=f"{tenant.idp.instance}/{unknown}",
            client_credential=tenant.app.secret,
            instance_discovery=False,
            verify=tenant.ca_bundle,
        )
    assert tenant.idp.fetch_count("metadata", unknown) == 1
    assert tenant.idp.token_request_count() == 0


async def test_azure_identity_with_a_secret(tenant: Tenant) -> None:
    with ClientSecretCredential(
        tenant.idp.tenant_id,
        tenant.app.client_id,
        tenant.app.secret or "",
        authority=tenant.idp.instance,
        disable_instance_discovery=True,
        connection_verify=tenant.ca_bundle,
    ) as credential:
        token = credential.get_token(SCOPE)
    claims = await validate(tenant, token.token, tenant.orders.client_id)
    assert token.expires_on == claims["exp"]
    assert claims["roles"] == ["Orders.Read"]


async def test_azure_identity_with_a_certificate(tenant: Tenant, tmp_path: Path) -> None:
    assert tenant.app.private_key_pem is not None
    assert tenant.app.certificate_pem is not None
    pem = tmp_path / "daemon.pem"
    pem.write_bytes(tenant.app.private_key_pem + tenant.app.certificate_pem)
    with CertificateCredential(
        tenant.idp.tenant_id,
        tenant.app.client_id,
        certificate_path=str(pem),
        authority=tenant.idp.instance,
        disable_instance_discovery=True,
        connection_verify=tenant.ca_bundle,
    ) as credential:
        token = credential.get_token(SCOPE)
    claims = await validate(tenant, token.token, tenant.orders.client_id)
    assert claims["azpacr"] == "2"


def test_azure_identity_reports_entra_errors(tenant: Tenant) -> None:
    with (
        ClientSecretCredential(
            tenant.idp.tenant_id,
            tenant.app.client_id,
            "not-the-secret",
            authority=tenant.idp.instance,
            disable_instance_discovery=True,
            connection_verify=tenant.ca_bundle,
        ) as credential,
        pytest.raises(ClientAuthenticationError, match="AADSTS7000215"),
    ):
        credential.get_token(SCOPE)


def test_the_middleware_accepts_tokens_from_microsofts_clients(
    tenant: Tenant, msal_app: Any
) -> None:
    msal_token = msal_app(tenant.app.secret).acquire_token_for_client(scopes=[SCOPE])
    with ClientSecretCredential(
        tenant.idp.tenant_id,
        tenant.app.client_id,
        tenant.app.secret or "",
        authority=tenant.idp.instance,
        disable_instance_discovery=True,
        connection_verify=tenant.ca_bundle,
    ) as credential:
        azure_token = credential.get_token(SCOPE).token

    @require_roles("Orders.Read")
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"client_id": request.user.client_id})

    config = tenant.idp.config(audiences=[tenant.orders.client_id, "api://orders"])
    http = httpx.AsyncClient(verify=tenant.idp.ssl_context())  # trusts the emulator's CA
    validator = TokenValidator(config, http_client=http)
    app = Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(EntraAuthMiddleware, validator=validator)],
    )
    with TestClient(app) as client:
        for token in (msal_token["access_token"], azure_token):
            response = client.get("/orders", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
            assert response.json() == {"client_id": tenant.app.client_id}
        assert client.portal is not None
        client.portal.call(http.aclose)  # in the loop that opened its connections


# -- signed-in users: MSAL's authorization-code flow against the emulator's sign-in page --------

REDIRECT = "http://localhost:8400/callback"


@dataclass(frozen=True)
class Users:
    tenant: Tenant
    api: ApiRegistration
    native: ClientRegistration
    web: ClientRegistration
    user: EmulatorUser


@pytest.fixture
def users(tenant: Tenant) -> Users:
    idp = tenant.idp
    orders = "api://users-orders"
    api = idp.register_api(app_id_uri=orders, scopes=["Orders.Read"], roles=["Orders.Admin"])
    consent = {orders: ["Orders.Read"]}
    native = idp.register_client(
        name="cli", type="public", redirect_uris=[REDIRECT], scopes=consent
    )
    web = idp.register_client(name="web", redirect_uris=[REDIRECT], scopes=consent)
    user = idp.register_user(
        upn="adele@contoso.test", name="Adele Vance", roles={orders: ["Orders.Admin"]}
    )
    return Users(tenant, api, native, web, user)


def play_browser(users: Users, auth_uri: str) -> dict[str, str]:
    """Sign in on the emulator's page as a browser would, and read what it posts back.

    MSAL asks for ``response_mode=form_post`` (as Microsoft recommends): the answer is a page
    whose form posts ``code`` and ``state`` to the redirect URI.
    """
    with httpx.Client(verify=users.tenant.idp.ssl_context()) as browser:
        page = browser.get(auth_uri)
        assert page.status_code == 200, page.text
        answer = browser.post(
            auth_uri, data={"login": users.user.upn, "passwd": users.user.password}
        )
    assert answer.status_code == 200, answer.text
    assert f'action="{REDIRECT}"' in answer.text
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', answer.text)
    return {html.unescape(name): html.unescape(value) for name, value in fields}


def msal_user_app(users: Users, confidential: bool) -> Any:
    common = {
        "authority": users.tenant.authority,
        "instance_discovery": False,
        "verify": users.tenant.ca_bundle,
    }
    if confidential:
        return msal.ConfidentialClientApplication(
            users.web.client_id, client_credential=users.web.secret, **common
        )
    return msal.PublicClientApplication(users.native.client_id, **common)


async def user_token_is_accepted(users: Users, token: str) -> None:
    @require_scopes("Orders.Read")
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"oid": request.user.object_id})

    config = users.tenant.idp.config(audiences=[users.api.client_id])
    app = Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(EntraAuthMiddleware, config=config)],
    )
    with TestClient(app) as client:
        response = client.get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"oid": users.user.object_id}


@pytest.mark.parametrize("confidential", [False, True], ids=["public", "confidential"])
async def test_msal_auth_code_flow_signs_a_user_in(users: Users, confidential: bool) -> None:
    app = msal_user_app(users, confidential)
    scopes = ["api://users-orders/Orders.Read"]
    try:
        flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT, response_mode="form_post")
        result = app.acquire_token_by_auth_code_flow(flow, play_browser(users, flow["auth_uri"]))
        assert "access_token" in result, result.get("error_description")
        claims = jwt.decode(result["access_token"], options={"verify_signature": False})
        client = users.web if confidential else users.native
        assert (claims["azp"], claims["azpacr"]) == (client.client_id, "1" if confidential else "0")
        assert (claims["scp"], claims["roles"]) == ("Orders.Read", ["Orders.Admin"])
        # MSAL checked the nonce it sent against the ID token, and keyed the account by it.
        assert result["id_token_claims"]["preferred_username"] == users.user.upn
        await user_token_is_accepted(users, result["access_token"])

        (account,) = app.get_accounts()
        assert account["username"] == users.user.upn
        assert account["home_account_id"] == f"{users.user.object_id}.{users.tenant.idp.tenant_id}"
        cached = app.acquire_token_silent(scopes, account=account)
        assert cached["token_source"] == "cache"
        before = users.tenant.idp.token_request_count()
        refreshed = app.acquire_token_silent(scopes, account=account, force_refresh=True)
        assert refreshed["token_source"] == "identity_provider"  # redeemed the refresh token
        assert users.tenant.idp.token_request_count() == before + 1
        await user_token_is_accepted(users, refreshed["access_token"])

        again = app.acquire_token_by_refresh_token(result["refresh_token"], scopes)
        assert "access_token" in again, again.get("error_description")
    finally:
        app.http_client.close()


def test_msal_reports_entra_errors_of_the_code_flow(users: Users) -> None:
    app = msal_user_app(users, confidential=False)
    try:
        flow = app.initiate_auth_code_flow(
            ["api://users-orders/Orders.Read"], redirect_uri=REDIRECT, response_mode="form_post"
        )
        response = play_browser(users, flow["auth_uri"])
        tampered = dict(flow, code_verifier="x" * 43)
        result = app.acquire_token_by_auth_code_flow(tampered, response)
        assert result["error"] == "invalid_grant"
        assert 501481 in result["error_codes"]
    finally:
        app.http_client.close()


# -- on-behalf-of: a middle-tier API calls Graph and another API as the signed-in user -------

GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"
CLAIMS_CHALLENGE = '{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'


@dataclass(frozen=True)
class MiddleTier:
    users: Users
    #: The middle tier as an API (what the user's token is for) and as a confidential client
    #: with the same client id (its credentials and consents), as one Entra registration is.
    api: ApiRegistration
    client: ClientRegistration
    assertion: str  # the user's token for the middle tier, from the real sign-in


@pytest.fixture
def middle(users: Users) -> MiddleTier:
    idp = users.tenant.idp
    api = idp.register_api(app_id_uri="api://middle", scopes=["access_as_user"])
    client = idp.register_client(
        name="middle",
        client_id=api.client_id,
        certificate=True,
        scopes={
            "https://graph.microsoft.com": ["User.Read"],
            "api://users-orders": ["Orders.Read"],
        },
    )
    front = idp.register_client(
        name="front",
        type="public",
        redirect_uris=[REDIRECT],
        scopes={"api://middle": ["access_as_user"]},
    )
    assertion = user_token(
        idp, front, users.user, "api://middle/access_as_user", verify=idp.ssl_context()
    )
    return MiddleTier(users, api, client, assertion)


def graph_me(middle: MiddleTier, token: str) -> dict[str, Any]:
    idp = middle.users.tenant.idp
    with httpx.Client(verify=idp.ssl_context()) as http:
        response = http.get(f"{idp.graph_url}/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


async def test_msal_on_behalf_of_gets_tokens_for_graph_and_an_api(middle: MiddleTier) -> None:
    tenant = middle.users.tenant
    app = msal.ConfidentialClientApplication(
        middle.client.client_id,
        client_credential=middle.client.secret,
        authority=tenant.authority,
        instance_discovery=False,
        verify=tenant.ca_bundle,
    )
    try:
        result = app.acquire_token_on_behalf_of(middle.assertion, [GRAPH_USER_READ])
        assert "access_token" in result, result.get("error_description")
        claims = jwt.decode(result["access_token"], options={"verify_signature": False})
        assert (claims["aud"], claims["appid"]) == (
            "https://graph.microsoft.com",
            middle.api.client_id,
        )
        assert graph_me(middle, result["access_token"])["id"] == middle.users.user.object_id

        orders = app.acquire_token_on_behalf_of(
            middle.assertion, ["api://users-orders/Orders.Read"]
        )
        assert "access_token" in orders, orders.get("error_description")
        await user_token_is_accepted(middle.users, orders["access_token"])

        tenant.idp.next_obo_claims_challenge(claims=CLAIMS_CHALLENGE)
        challenged = app.acquire_token_on_behalf_of(middle.assertion, [GRAPH_USER_READ])
        assert challenged["error"] == "interaction_required"
        assert challenged["claims"] == CLAIMS_CHALLENGE
        assert 50076 in challenged["error_codes"]
    finally:
        app.http_client.close()


def test_msal_on_behalf_of_with_a_certificate_and_entras_refusals(middle: MiddleTier) -> None:
    tenant = middle.users.tenant
    assert middle.client.private_key_pem is not None
    app = msal.ConfidentialClientApplication(
        middle.client.client_id,
        client_credential={
            "private_key": middle.client.private_key_pem.decode(),
            "thumbprint": middle.client.certificate_thumbprint,
        },
        authority=tenant.authority,
        instance_discovery=False,
        verify=tenant.ca_bundle,
    )
    try:
        result = app.acquire_token_on_behalf_of(middle.assertion, [GRAPH_USER_READ])
        assert "access_token" in result, result.get("error_description")
        assert (
            jwt.decode(result["access_token"], options={"verify_signature": False})["appidacr"]
            == "2"
        )
        app_only = tenant.idp.issue_token(audience=middle.api.client_id)
        refused = app.acquire_token_on_behalf_of(app_only, [GRAPH_USER_READ])
        assert (refused["error"], refused["error_codes"]) == ("invalid_grant", [50013])
        not_consented = app.acquire_token_on_behalf_of(
            middle.assertion, ["api://users-orders/Orders.Admin"]
        )
        assert not_consented["error"] == "invalid_scope"  # Orders.Admin is a role, not a scope
    finally:
        app.http_client.close()


def test_azure_identity_on_behalf_of_credential(middle: MiddleTier) -> None:
    tenant = middle.users.tenant

    def credential() -> OnBehalfOfCredential:
        return OnBehalfOfCredential(
            tenant.idp.tenant_id,
            middle.client.client_id,
            client_secret=middle.client.secret or "",
            user_assertion=middle.assertion,
            authority=tenant.idp.instance,
            disable_instance_discovery=True,
            connection_verify=tenant.ca_bundle,
        )

    with credential() as obo:
        token = obo.get_token(GRAPH_USER_READ)
        assert graph_me(middle, token.token)["userPrincipalName"] == middle.users.user.upn
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert token.expires_on == claims["exp"]
        before = tenant.idp.token_request_count()
        assert obo.get_token(GRAPH_USER_READ).token == token.token  # from its cache
        assert tenant.idp.token_request_count() == before
    tenant.idp.next_obo_claims_challenge(claims=CLAIMS_CHALLENGE)
    with credential() as obo, pytest.raises(ClientAuthenticationError, match="AADSTS50076"):
        obo.get_token(GRAPH_USER_READ)

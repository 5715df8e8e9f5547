"""The emulator's on-behalf-of grant: a middle-tier API trades its caller's token for another.

The user's token comes from the real sign-in (page, form, code, PKCE); the middle tier is one
registration seen as an API and as a confidential client with the same client id.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from entra_guard.client import ClientCertificate
from entra_guard.testing import EntraEmulator
from tests.support import user_token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from entra_guard.testing.users import EmulatorUser

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REDIRECT = "http://localhost:8400/callback"
GROUPS = ["6b9a1c52-3f0e-4c59-9e7b-2f1b4d1c8a11", "0f4c7a5e-1d2b-4e8f-9a3c-5b6d7e8f9a0b"]
CHALLENGE = '{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'


@dataclass(frozen=True)
class Tenant:
    idp: EntraEmulator
    middle: ApiRegistration
    middle_client: ClientRegistration  # the middle tier's own credentials and consents
    downstream: ApiRegistration
    front: ClientRegistration  # a public client that signs the user in
    adele: EmulatorUser


@pytest.fixture(scope="module")
def tenant() -> Iterator[Tenant]:
    with EntraEmulator() as idp:
        middle = idp.register_api(app_id_uri="api://middle", scopes=["access_as_user"])
        downstream = idp.register_api(
            app_id_uri="api://downstream",
            scopes=["Data.Read", "Data.Write"],
            roles=["Data.Admin"],
        )
        middle_client = idp.register_client(
            name="middle",
            client_id=middle.client_id,
            certificate=True,
            scopes={
                "api://downstream": ["Data.Read"],
                "https://graph.microsoft.com": ["User.Read"],
            },
        )
        front = idp.register_client(
            name="front",
            type="public",
            redirect_uris=[REDIRECT],
            scopes={"api://middle": ["access_as_user"]},
        )
        adele = idp.register_user(
            "adele@contoso.test",
            name="Adele Vance",
            groups=GROUPS,
            roles={"api://downstream": ["Data.Admin"]},
        )
        yield Tenant(idp, middle, middle_client, downstream, front, adele)


def signed_in(tenant: Tenant) -> str:
    return user_token(tenant.idp, tenant.front, tenant.adele, "api://middle/access_as_user")


def obo(
    tenant: Tenant, assertion: str, scope: str = "api://downstream/Data.Read", **extra: str
) -> httpx.Response:
    form = {
        "grant_type": JWT_BEARER,
        "requested_token_use": "on_behalf_of",
        "client_id": tenant.middle_client.client_id,
        "client_secret": tenant.middle_client.secret or "",
        "assertion": assertion,
        "scope": scope,
        **extra,
    }
    return httpx.post(tenant.idp.token_endpoint(), data=form)


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def refused(response: httpx.Response) -> tuple[int, str, int]:
    body = response.json()
    return response.status_code, body["error"], body["error_codes"][0]


def test_the_middle_tier_gets_a_token_for_the_downstream_api_as_the_user(tenant: Tenant) -> None:
    response = obo(tenant, signed_in(tenant))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["token_type"] == "Bearer"
    assert answer["scope"] == "api://downstream/Data.Read"
    assert answer["expires_in"] == tenant.idp.token_lifetime
    claims = claims_of(answer["access_token"])
    assert claims["aud"] == tenant.downstream.client_id
    assert claims["scp"] == "Data.Read"
    assert claims["azp"] == tenant.middle.client_id  # the middle tier is now the client
    assert claims["azpacr"] == "1"  # it proved itself with a secret
    assert claims["oid"] == tenant.adele.object_id
    assert claims["tid"] == tenant.idp.tenant_id
    assert claims["name"] == "Adele Vance"
    assert claims["preferred_username"] == "adele@contoso.test"
    assert claims["groups"] == GROUPS
    assert claims["roles"] == ["Data.Admin"]  # the user's roles on the downstream API
    # The token is signed with the tenant's published key: the library validates it.
    key = tenant.idp.current_key.private_key.public_key()
    jwt.decode(
        answer["access_token"], key, algorithms=["RS256"], audience=tenant.downstream.client_id
    )


def test_a_graph_token_is_v1_with_graphs_audience(tenant: Tenant) -> None:
    response = obo(tenant, signed_in(tenant), scope="https://graph.microsoft.com/User.Read")
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{tenant.idp.tenant_id}/"
    assert claims["appid"] == tenant.middle.client_id
    assert claims["scp"] == "User.Read"
    assert claims["upn"] == "adele@contoso.test"


def test_default_scope_and_oidc_scopes_as_msal_sends_them(tenant: Tenant) -> None:
    response = obo(
        tenant, signed_in(tenant), scope="api://downstream/.default openid profile offline_access"
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["scope"] == "api://downstream/Data.Read"
    assert answer["refresh_token"]
    assert claims_of(answer["id_token"])["aud"] == tenant.middle.client_id


def test_a_certificate_assertion_authenticates_the_middle_tier(tenant: Tenant) -> None:
    pem, certificate = tenant.middle_client.private_key_pem, tenant.middle_client.certificate_pem
    assert pem is not None
    assert certificate is not None
    fields = ClientCertificate(pem, certificate).form_fields(
        client_id=tenant.middle_client.client_id, token_endpoint=tenant.idp.token_endpoint()
    )
    form = {
        "grant_type": JWT_BEARER,
        "requested_token_use": "on_behalf_of",
        "client_id": tenant.middle_client.client_id,
        **fields,
        "assertion": signed_in(tenant),
        "scope": "api://downstream/Data.Read",
    }
    response = httpx.post(tenant.idp.token_endpoint(), data=form)
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["azpacr"] == "2"


def test_a_minted_user_token_for_a_user_the_directory_does_not_hold(tenant: Tenant) -> None:
    assertion = tenant.idp.issue_token(
        app_only=False, audience="api://middle", scopes=["access_as_user"]
    )
    response = obo(tenant, assertion)
    assert response.status_code == 200, response.text
    before, after = claims_of(assertion), claims_of(response.json()["access_token"])
    for name in ("oid", "name", "preferred_username", "tid"):
        assert after[name] == before[name], name


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("app-only token", (400, "invalid_grant", 50013)),
        ("token for another API", (400, "invalid_grant", 500131)),
        ("token for Graph", (400, "invalid_grant", 500131)),
        ("expired", (400, "invalid_grant", 500133)),
        ("forged signature", (400, "invalid_grant", 50013)),
        ("another tenant", (400, "invalid_grant", 50027)),
        ("not a JWT", (400, "invalid_grant", 50027)),
    ],
)
def test_assertions_entra_refuses(
    tenant: Tenant, case: str, expected: tuple[int, str, int]
) -> None:
    idp, middle = tenant.idp, tenant.middle.client_id
    user: dict[str, Any] = {"app_only": False, "scopes": ["access_as_user"]}
    makers: dict[str, Callable[[], str]] = {
        "app-only token": lambda: idp.issue_token(audience=middle, roles=[]),
        "token for another API": lambda: idp.issue_token(
            audience=tenant.downstream.client_id, **user
        ),
        "token for Graph": lambda: idp.issue_token(
            audience="https://graph.microsoft.com", version="1.0", **user
        ),
        "expired": lambda: idp.issue_token(audience=middle, now=time.time() - 7200, **user),
        "forged signature": lambda: idp.issue_token(
            audience=middle, key=idp.generate_key(), **user
        ),
        "another tenant": lambda: idp.issue_token(
            audience=middle, tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47", **user
        ),
        "not a JWT": lambda: "not-a-token",
    }
    assertion = makers[case]()
    assert refused(obo(tenant, assertion)) == expected


def test_the_middle_tier_must_be_consented_to_the_downstream_scope(tenant: Tenant) -> None:
    response = obo(tenant, signed_in(tenant), scope="api://downstream/Data.Write")
    assert refused(response) == (400, "invalid_grant", 65001)
    assert response.json()["suberror"] == "consent_required"


def test_the_middle_tier_must_authenticate(tenant: Tenant) -> None:
    assertion = signed_in(tenant)
    assert refused(obo(tenant, assertion, client_secret="wrong")) == (
        401,
        "invalid_client",
        7000215,
    )
    # The public front client cannot trade the token: it has no credential (and is not the aud).
    response = obo(tenant, assertion, client_id=tenant.front.client_id, client_secret="")
    assert refused(response) == (401, "invalid_client", 7000218)


def test_requested_token_use_must_be_on_behalf_of(tenant: Tenant) -> None:
    response = obo(tenant, signed_in(tenant), requested_token_use="something")
    assert refused(response) == (400, "invalid_request", 900144)


def test_the_claims_challenge_switch_answers_the_next_request_only(tenant: Tenant) -> None:
    assertion = signed_in(tenant)
    tenant.idp.next_obo_claims_challenge(claims=CHALLENGE)
    challenged = obo(tenant, assertion)
    assert refused(challenged) == (400, "interaction_required", 50076)
    assert challenged.json()["claims"] == CHALLENGE
    assert json.loads(challenged.json()["claims"])["access_token"]["nbf"]["essential"] is True
    assert obo(tenant, assertion).status_code == 200  # only the next one
    with pytest.raises(ValueError, match="JSON object"):
        tenant.idp.next_obo_claims_challenge(claims="not json")


def test_the_v1_endpoint_takes_a_resource(tenant: Tenant) -> None:
    form = {
        "grant_type": JWT_BEARER,
        "requested_token_use": "on_behalf_of",
        "client_id": tenant.middle_client.client_id,
        "client_secret": tenant.middle_client.secret or "",
        "assertion": signed_in(tenant),
        "resource": "api://downstream",
    }
    response = httpx.post(tenant.idp.token_endpoint(version="1.0"), data=form)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["resource"] == "api://downstream"
    assert answer["expires_in"] == str(tenant.idp.token_lifetime)
    assert claims_of(answer["access_token"])["scp"] == "Data.Read"

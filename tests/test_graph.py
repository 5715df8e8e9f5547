"""The emulator's Microsoft Graph stand-in: users and their groups, to tokens it issued for Graph.

Tokens come from the emulator's own endpoints (sign-in, client credentials, on-behalf-of) where
the flow matters, and from ``issue_token`` where only a claim is under test.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from entra_guard.testing import EntraEmulator
from tests.support import user_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.users import EmulatorUser

GRAPH = "https://graph.microsoft.com"
GRAPH_ID = "00000003-0000-0000-c000-000000000000"
REDIRECT = "http://localhost:8400/callback"
ADELE_GROUPS = ["6b9a1c52-3f0e-4c59-9e7b-2f1b4d1c8a11", "0f4c7a5e-1d2b-4e8f-9a3c-5b6d7e8f9a0b"]
MANY_GROUPS = [str(uuid.UUID(int=n + 1)) for n in range(250)]  # past the 200 of a JWT


@dataclass(frozen=True)
class Tenant:
    idp: EntraEmulator
    front: ClientRegistration  # public, consented to Graph's User.Read
    reader: ClientRegistration  # a daemon granted User.Read.All
    members: ClientRegistration  # a daemon granted GroupMember.Read.All
    nothing: ClientRegistration  # a daemon granted nothing on Graph
    adele: EmulatorUser
    busy: EmulatorUser  # in 250 groups


@pytest.fixture(scope="module")
def tenant() -> Iterator[Tenant]:
    with EntraEmulator() as idp:
        front = idp.register_client(
            name="front", type="public", redirect_uris=[REDIRECT], scopes={GRAPH: ["User.Read"]}
        )
        reader = idp.register_client(name="reader", roles={GRAPH: ["User.Read.All"]})
        members = idp.register_client(name="members", roles={GRAPH_ID: ["GroupMember.Read.All"]})
        nothing = idp.register_client(name="nothing")
        adele = idp.register_user("adele@contoso.test", name="Adele Vance", groups=ADELE_GROUPS)
        busy = idp.register_user("busy@contoso.test", name="Busy Bee", groups=MANY_GROUPS)
        yield Tenant(idp, front, reader, members, nothing, adele, busy)


def app_token(tenant: Tenant, client: ClientRegistration, scope: str = f"{GRAPH}/.default") -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.secret or "",
        "scope": scope,
    }
    response = httpx.post(tenant.idp.token_endpoint(), data=form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def user_graph_token(tenant: Tenant, user: EmulatorUser, scopes: list[str]) -> str:
    return tenant.idp.issue_token(
        app_only=False,
        version="1.0",
        audience=GRAPH,
        scopes=scopes,
        claims={"oid": user.object_id},
    )


def get(tenant: Tenant, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(tenant.idp.graph_url + path, headers=headers, **kwargs)


def post(tenant: Tenant, path: str, token: str, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(tenant.idp.graph_url + path, headers=headers, json=body)


def error_code(response: httpx.Response) -> tuple[int, str]:
    body = response.json()["error"]
    assert set(body["innerError"]) == {"date", "request-id", "client-request-id"}
    return response.status_code, body["code"]


def every_page(tenant: Tenant, path: str, token: str) -> tuple[list[dict[str, Any]], int]:
    """Follow ``@odata.nextLink`` (bounded) and gather ``value``; also the number of pages."""
    url: str | None = tenant.idp.graph_url + path
    items: list[dict[str, Any]] = []
    pages = 0
    while url is not None and pages < 20:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        url = body.get("@odata.nextLink")
        pages += 1
    assert url is None
    return items, pages


def test_me_answers_a_signed_in_users_graph_token(tenant: Tenant) -> None:
    token = user_token(tenant.idp, tenant.front, tenant.adele, "User.Read openid profile")
    response = get(tenant, "/me", token)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["@odata.context"] == f"{tenant.idp.graph_url}/$metadata#users/$entity"
    assert me["id"] == tenant.adele.object_id
    assert me["displayName"] == "Adele Vance"
    assert me["givenName"] == "Adele"
    assert me["surname"] == "Vance"
    assert me["userPrincipalName"] == me["mail"] == "adele@contoso.test"


def test_graphs_app_id_as_audience_is_accepted_too(tenant: Tenant) -> None:
    token = tenant.idp.issue_token(
        app_only=False,
        audience=GRAPH_ID,
        scopes=["User.Read"],
        claims={"oid": tenant.adele.object_id},
    )
    assert get(tenant, "/me", token).json()["id"] == tenant.adele.object_id


@pytest.mark.parametrize(
    "case", ["no token", "another API's token", "forged", "expired", "another tenant", "garbage"]
)
def test_tokens_graph_does_not_accept_are_401(tenant: Tenant, case: str) -> None:
    idp, oid = tenant.idp, {"oid": tenant.adele.object_id}
    user: dict[str, Any] = {"app_only": False, "scopes": ["User.Read"], "claims": oid}
    token = {
        "no token": None,
        "another API's token": idp.issue_token(audience="api://orders", **user),
        "forged": idp.issue_token(audience=GRAPH, key=idp.generate_key(), **user),
        "expired": idp.issue_token(audience=GRAPH, now=time.time() - 7200, **user),
        "another tenant": idp.issue_token(
            audience=GRAPH, tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47", **user
        ),
        "garbage": "a.b.c",
    }[case]
    response = get(tenant, "/me", token)
    assert error_code(response) == (401, "InvalidAuthenticationToken")
    assert response.headers["www-authenticate"].startswith('Bearer realm=""')


def test_me_needs_a_delegated_permission(tenant: Tenant) -> None:
    no_user_read = user_graph_token(tenant, tenant.adele, ["Mail.Read"])
    assert error_code(get(tenant, "/me", no_user_read)) == (403, "Authorization_RequestDenied")
    app_only = app_token(tenant, tenant.reader)
    assert error_code(get(tenant, "/me", app_only)) == (400, "BadRequest")


def test_client_credentials_with_graphs_default_scope_reads_users(tenant: Tenant) -> None:
    token = app_token(tenant, tenant.reader)
    listed = get(tenant, "/users", token)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["@odata.context"] == f"{tenant.idp.graph_url}/$metadata#users"
    assert [u["userPrincipalName"] for u in body["value"]] == [
        "adele@contoso.test",
        "busy@contoso.test",
    ]
    items, pages = every_page(tenant, "/users?$top=1", token)
    assert (len(items), pages) == (2, 2)
    by_id = get(tenant, f"/users/{tenant.busy.object_id}", token).json()
    by_upn = get(tenant, "/users/BUSY@contoso.test", token).json()
    assert by_id["id"] == by_upn["id"] == tenant.busy.object_id
    unknown = get(tenant, f"/users/{uuid.uuid4()}", token)
    assert error_code(unknown) == (404, "Request_ResourceNotFound")


def test_reading_other_users_needs_a_directory_permission(tenant: Tenant) -> None:
    delegated = user_graph_token(tenant, tenant.adele, ["User.Read"])
    assert error_code(get(tenant, "/users", delegated)) == (403, "Authorization_RequestDenied")
    nothing = app_token(tenant, tenant.nothing)
    assert error_code(get(tenant, "/users", nothing)) == (403, "Authorization_RequestDenied")
    members = app_token(tenant, tenant.members)  # GroupMember.Read.All: membership, not users
    assert error_code(get(tenant, "/users", members)) == (403, "Authorization_RequestDenied")
    assert get(tenant, f"/users/{tenant.busy.object_id}/transitiveMemberOf", members).is_success


def test_transitive_member_of_pages_through_every_group(tenant: Tenant) -> None:
    token = user_graph_token(tenant, tenant.busy, ["User.Read"])
    first = get(tenant, "/me/transitiveMemberOf", token).json()
    assert first["@odata.context"] == f"{tenant.idp.graph_url}/$metadata#directoryObjects"
    assert len(first["value"]) == 100  # Graph's default page
    assert first["value"][0] == {
        "@odata.type": "#microsoft.graph.group",
        "id": MANY_GROUPS[0],
        "displayName": f"Group {MANY_GROUPS[0][:8]}",
        "groupTypes": [],
        "mailEnabled": False,
        "securityEnabled": True,
    }
    groups, pages = every_page(tenant, "/me/transitiveMemberOf", token)
    assert ([g["id"] for g in groups], pages) == (MANY_GROUPS, 3)
    groups, pages = every_page(tenant, "/me/transitiveMemberOf?$top=999", token)
    assert (len(groups), pages) == (250, 1)
    too_big = get(tenant, "/me/transitiveMemberOf?$top=1000", token)
    assert error_code(too_big) == (400, "Request_UnsupportedQuery")
    assert error_code(get(tenant, "/me/transitiveMemberOf?$top=x", token))[0] == 400


def test_get_member_groups_returns_all_of_an_overage_users_groups(tenant: Tenant) -> None:
    delegated = user_graph_token(tenant, tenant.busy, ["User.Read"])
    mine = post(tenant, "/me/getMemberGroups", delegated, {"securityEnabledOnly": True})
    assert mine.status_code == 200, mine.text
    assert mine.json()["value"] == MANY_GROUPS
    assert mine.json()["@odata.context"].endswith("$metadata#Collection(Edm.String)")
    app = app_token(tenant, tenant.members)
    theirs = post(
        tenant,
        f"/users/{tenant.busy.object_id}/getMemberGroups",
        app,
        {"securityEnabledOnly": False},
    )
    assert theirs.json()["value"] == MANY_GROUPS
    assert error_code(post(tenant, "/me/getMemberGroups", delegated, {}))[0] == 400
    user_read_only = post(
        tenant,
        f"/users/{tenant.adele.object_id}/getMemberGroups",
        delegated,
        {"securityEnabledOnly": True},
    )
    assert error_code(user_read_only) == (403, "Authorization_RequestDenied")


def test_check_member_groups_answers_the_ids_the_user_is_in(tenant: Tenant) -> None:
    token = user_graph_token(tenant, tenant.adele, ["User.Read"])
    asked = [ADELE_GROUPS[1], MANY_GROUPS[0], ADELE_GROUPS[0].upper()]
    response = post(tenant, "/me/checkMemberGroups", token, {"groupIds": asked})
    assert response.status_code == 200, response.text
    assert response.json()["value"] == [ADELE_GROUPS[1], ADELE_GROUPS[0].upper()]
    too_many = post(tenant, "/me/checkMemberGroups", token, {"groupIds": MANY_GROUPS[:21]})
    assert error_code(too_many) == (400, "Request_BadRequest")
    not_json = httpx.post(
        tenant.idp.graph_url + "/me/checkMemberGroups",
        headers={"Authorization": f"Bearer {token}"},
        content=b"{",
    )
    assert error_code(not_json) == (400, "BadRequest")


def test_on_behalf_of_a_user_the_middle_tier_reads_me(tenant: Tenant) -> None:
    idp = tenant.idp
    middle = idp.register_api(app_id_uri="api://graph-middle", scopes=["access_as_user"])
    middle_client = idp.register_client(
        name="graph-middle", client_id=middle.client_id, scopes={GRAPH: ["User.Read"]}
    )
    assertion = idp.issue_token(
        app_only=False, audience=middle.client_id, claims={"oid": tenant.adele.object_id}
    )
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "requested_token_use": "on_behalf_of",
        "client_id": middle_client.client_id,
        "client_secret": middle_client.secret or "",
        "assertion": assertion,
        "scope": f"{GRAPH}/User.Read",
    }
    response = httpx.post(idp.token_endpoint(), data=form)
    assert response.status_code == 200, response.text
    me = get(tenant, "/me", response.json()["access_token"])
    assert me.json()["userPrincipalName"] == "adele@contoso.test"

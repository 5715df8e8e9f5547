"""Who the user is, at the route: groups and overage, guests, optional routes, run-time tenants."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from entra_guard import (
    AuthOutcome,
    EntraAuthMiddleware,
    EntraConfig,
    EntraPrincipal,
    TokenValidator,
)
from entra_guard import starlette as guard_starlette
from entra_guard.authorization import GroupResolver
from entra_guard.client import ClientSecret, ConfidentialClient, OnBehalfOfClient
from entra_guard.errors import EntraGuardError
from entra_guard.fastapi import OptionalPrincipal, Principal, require_groups
from entra_guard.groups import GraphGroups
from entra_guard.testing import EntraEmulator
from entra_guard.testing.registrations import ClientRegistration
from entra_guard.testing.users import EmulatorUser
from tests.conftest import FakeClock
from tests.test_signin import pkce, redirected, sign_in

SALES = "6b0e1f2a-1111-4c5b-9c55-3f2d6a3f7e11"
ADMINS = "7c1f2a3b-2222-4c5b-9c55-3f2d6a3f7e11"
OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"
THIRD_TENANT = "b1c2d3e4-7269-41f4-8841-b63c95564420"


def user_token(emulator: EntraEmulator, **claims: Any) -> str:
    return emulator.issue_token(app_only=False, scopes=["Orders.Read"], claims=claims)


def groups_app(
    idp: EntraEmulator,
    resolver: Any = None,
    outcomes: list[AuthOutcome] | None = None,
    **config: Any,
) -> FastAPI:
    app = FastAPI()

    @app.get("/sales", dependencies=[Depends(require_groups(SALES.upper(), resolver=resolver))])
    async def sales() -> str:
        return "sales"

    either_group = require_groups(SALES, ADMINS, any_of=True, resolver=resolver)

    @app.get("/either", dependencies=[Depends(either_group)])
    async def either(principal: Principal) -> list[str]:
        return list(principal.groups)

    @app.get("/both", dependencies=[Depends(require_groups(SALES, ADMINS, resolver=resolver))])
    async def both() -> str:
        return "both"

    @app.get("/me")
    async def me(principal: Principal) -> dict[str, Any]:
        return {"guest": principal.is_guest}

    @app.get("/welcome")
    async def welcome(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"who": principal.object_id if principal else None}

    app.add_middleware(
        EntraAuthMiddleware,
        config=idp.config(**config),
        optional_paths=["/welcome"],
        on_outcome=None if outcomes is None else outcomes.append,
    )
    return app


@pytest.fixture
def outcomes() -> list[AuthOutcome]:
    return []


@pytest.fixture
def client(entra_emulator: EntraEmulator, outcomes: list[AuthOutcome]) -> Iterator[TestClient]:
    with TestClient(groups_app(entra_emulator, outcomes=outcomes)) as client:
        yield client


def call(client: TestClient, path: str, token: str | None) -> Any:  # TestClient's Response
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


def test_principal_reads_the_claims_apis_commonly_need(entra_emulator: EntraEmulator) -> None:
    claims = {
        "groups": [SALES.upper(), ADMINS],
        "acct": 0,
        "ipaddr": "203.0.113.7",
        "idtyp": "user",
        "wids": ["62E90394-69F5-4237-9190-012177145E10"],
        "xms_cc": ["CP1"],
    }
    principal = EntraPrincipal.from_claims(
        {"tid": entra_emulator.tenant_id, "exp": 1, **claims}, version="2.0", client_id="c"
    )
    assert principal.groups == (SALES, ADMINS)  # lower-case, in order
    assert principal.in_group(ADMINS.upper())
    assert not principal.has_groups_overage
    assert (principal.acct, principal.ipaddr, principal.idtyp) == (0, "203.0.113.7", "user")
    assert principal.wids == {"62e90394-69f5-4237-9190-012177145e10"}
    assert principal.is_cae_capable
    assert principal.claims["groups"] == [SALES.upper(), ADMINS]  # the raw claims stay
    assert "groups" not in repr(principal)
    assert "claims" not in repr(principal)
    hasgroups = EntraPrincipal.from_claims(
        {"tid": entra_emulator.tenant_id, "exp": 1, "hasgroups": True}, version="2.0", client_id="c"
    )
    assert hasgroups.has_groups_overage
    assert hasgroups.groups == ()


@pytest.mark.parametrize(
    ("claims", "guest"),
    [
        ({}, False),  # no idp: a member
        ({"idp": "https://sts.windows.net/{tid}/"}, False),  # the tenant's own STS
        ({"idp": f"https://sts.windows.net/{OTHER_TENANT}/"}, True),  # another tenant's user
        ({"idp": "live.com"}, True),  # a personal Microsoft account
        ({"idp": "google.com"}, True),
        ({"idp": "live.com", "acct": 0}, False),  # acct decides when present
        ({"acct": 1}, True),
    ],
)
def test_is_guest(entra_emulator: EntraEmulator, claims: dict[str, Any], guest: bool) -> None:
    tid = entra_emulator.tenant_id
    claims = {k: v.format(tid=tid) if isinstance(v, str) else v for k, v in claims.items()}
    principal = EntraPrincipal.from_claims(
        {"tid": tid, "exp": 1, "iss": f"https://login.microsoftonline.com/{tid}/v2.0", **claims},
        version="2.0",
        client_id="c",
    )
    assert principal.is_guest is guest


def test_group_requirements_all_of_and_any_of(
    client: TestClient, entra_emulator: EntraEmulator, outcomes: list[AuthOutcome]
) -> None:
    sales_only = user_token(entra_emulator, groups=[SALES])
    assert call(client, "/sales", sales_only).text == '"sales"'  # ids compare case-insensitively
    assert call(client, "/either", sales_only).json() == [SALES]
    refused = call(client, "/both", sales_only)
    assert refused.status_code == 403
    assert refused.json()["error_description"].startswith("This operation requires membership")
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert outcomes[-1].reason == "missing_group"
    assert (
        call(client, "/both", user_token(entra_emulator, groups=[ADMINS, SALES])).text == '"both"'
    )
    assert call(client, "/either", user_token(entra_emulator)).status_code == 403  # no groups


def overage_token(idp: EntraEmulator, **claims: Any) -> str:
    source = {"src1": {"endpoint": f"{idp.instance}/v1.0/users/x/getMemberGroups"}}
    return user_token(idp, _claim_names={"groups": "src1"}, _claim_sources=source, **claims)


def test_overage_without_a_resolver_is_refused_with_its_own_reason(
    client: TestClient, entra_emulator: EntraEmulator, outcomes: list[AuthOutcome]
) -> None:
    refused = call(client, "/sales", overage_token(entra_emulator))
    assert refused.status_code == 403
    assert outcomes[-1].reason == "groups_overage"  # not "missing_group": we do not know
    body = refused.json()
    assert body["error"] == "insufficient_scope"
    assert "groups overage" in body["error_description"]
    assert "resolver" in body["error_description"]  # says what to configure
    # a route that does not need groups serves the same user
    assert call(client, "/me", overage_token(entra_emulator)).status_code == 200


def signed_in(idp: EntraEmulator, cli: ClientRegistration, user: EmulatorUser) -> str:
    """A user's access token for api://orders, from a sign-in at the emulator (code + PKCE)."""
    verifier, challenge = pkce()
    query = {
        "client_id": cli.client_id, "response_type": "code",
        "redirect_uri": "http://localhost", "scope": "api://orders/Orders.Read",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    url = f"{idp.authorize_endpoint()}?{httpx.QueryParams(query)}"
    code = redirected(sign_in(url, user.upn, user.password))["code"]
    form = {
        "grant_type": "authorization_code", "client_id": cli.client_id, "code": code,
        "redirect_uri": "http://localhost", "code_verifier": verifier,
        "scope": "api://orders/Orders.Read",
    }  # fmt: skip
    answer = httpx.post(idp.token_endpoint(), data=form)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def test_a_user_in_more_than_200_groups_gets_the_overage_form(
    entra_emulator: EntraEmulator,
) -> None:
    idp = entra_emulator
    api = idp.register_api(app_id_uri="api://orders", scopes=["Orders.Read"])
    cli = idp.register_client(
        name="cli", type="public", redirect_uris=["http://localhost"],
        scopes={"api://orders": ["Orders.Read"]},
    )  # fmt: skip
    many = [str(uuid.uuid4()) for _ in range(201)]
    user = idp.register_user(upn="megan@contoso.test", groups=many)
    few = idp.register_user(upn="adele@contoso.test", groups=many[:200])

    async def resolve(principal: EntraPrincipal) -> frozenset[str]:
        return frozenset(many) if principal.object_id == user.object_id else frozenset()

    app = FastAPI()
    for name, resolver in (("plain", None), ("resolved", resolve)):
        needed = require_groups(many[200], resolver=resolver)
        app.add_api_route(f"/{name}", lambda: "ok", dependencies=[Depends(needed)])

    @app.get("/claims")
    async def claims(principal: Principal) -> dict[str, Any]:
        return dict(principal.claims)

    config = idp.config(audiences=[api.client_id])
    app.add_middleware(EntraAuthMiddleware, config=config)
    with TestClient(app) as client:
        over = signed_in(idp, cli, user)
        seen = call(client, "/claims", over).json()
        assert "groups" not in seen
        assert seen["_claim_names"] == {"groups": "src1"}
        endpoint = seen["_claim_sources"]["src1"]["endpoint"]
        assert endpoint == f"{idp.instance}/v1.0/users/{user.object_id}/getMemberGroups"
        assert (
            call(client, "/plain", over)
            .json()["error_description"]
            .startswith("The user is in more groups than fit")
        )
        assert call(client, "/resolved", over).status_code == 200
        under = call(client, "/claims", signed_in(idp, cli, few)).json()
        assert len(under["groups"]) == 200
        assert "_claim_names" not in under


def test_a_resolver_is_asked_once_per_user_while_remembered(entra_emulator: EntraEmulator) -> None:
    calls: list[str | None] = []
    now = [0.0]
    failing = [False]

    async def resolve(principal: EntraPrincipal) -> frozenset[str]:
        calls.append(principal.object_id)
        await asyncio.sleep(0.01)  # concurrent first requests overlap here
        if failing[0]:
            raise httpx.ConnectError("graph is down")
        return frozenset({SALES.upper()})

    resolver = GroupResolver(resolve, ttl=60, clock=lambda: now[0])
    outcomes: list[AuthOutcome] = []
    with TestClient(groups_app(entra_emulator, resolver, outcomes)) as client:
        token = overage_token(entra_emulator)
        assert call(client, "/sales", token).status_code == 200
        assert call(client, "/either", token).status_code == 200  # shared between routes
        assert call(client, "/both", token).status_code == 403  # not in ADMINS
        assert len(calls) == 1
        now[0] = 61.0
        failing[0] = True
        down = call(client, "/sales", token)
        assert down.status_code == 503  # never a 401/403 blaming the token
        assert outcomes[-1].reason == "groups_unavailable"
        assert down.json()["error"] == "temporarily_unavailable"
        assert "retry-after" in down.headers
        assert "www-authenticate" not in down.headers
        failing[0] = False
        assert call(client, "/sales", token).status_code == 200  # a failure is not remembered
        assert len(calls) == 3


async def test_concurrent_overage_requests_make_one_resolver_call(
    entra_emulator: EntraEmulator,
) -> None:
    calls = 0

    async def resolve(principal: EntraPrincipal) -> frozenset[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return frozenset({SALES})

    app = groups_app(entra_emulator, resolver=GroupResolver(resolve))
    token = overage_token(entra_emulator)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        headers = {"Authorization": f"Bearer {token}"}
        answers = await asyncio.gather(*(client.get("/sales", headers=headers) for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert calls == 1


def test_starlette_require_groups(entra_emulator: EntraEmulator) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(guard_starlette.principal_of(request).groups)

    async def welcome(request: Request) -> JSONResponse:
        principal = guard_starlette.optional_principal_of(request)
        return JSONResponse(principal.object_id if principal else None)

    app = Starlette(
        routes=[
            Route("/sales", guard_starlette.require_groups(SALES)(endpoint)),
            Route("/welcome", welcome),
        ],
        middleware=[
            Middleware(
                EntraAuthMiddleware, config=entra_emulator.config(), optional_paths=["/welcome"]
            )
        ],
    )
    with TestClient(app) as client:
        assert call(client, "/sales", user_token(entra_emulator, groups=[SALES])).json() == [SALES]
        assert call(client, "/sales", user_token(entra_emulator)).status_code == 403
        over = call(client, "/sales", overage_token(entra_emulator))
        assert "groups overage" in over.json()["error_description"]
        assert call(client, "/welcome", None).json() is None
        assert call(client, "/sales", None).status_code == 401


def test_guests_are_refused_when_the_config_says_so(entra_emulator: EntraEmulator) -> None:
    guest_idp = f"https://sts.windows.net/{OTHER_TENANT}/"
    outcomes: list[AuthOutcome] = []
    with TestClient(groups_app(entra_emulator, None, outcomes, allow_guests=False)) as client:
        refused = call(client, "/me", user_token(entra_emulator, idp=guest_idp))
        assert refused.status_code == 403
        assert outcomes[-1].reason == "guest_not_allowed"
        assert refused.json()["error_description"].startswith("This API does not accept guest")
        assert call(client, "/me", user_token(entra_emulator)).json() == {"guest": False}
    with TestClient(groups_app(entra_emulator)) as client:  # the default: guests welcome
        assert call(client, "/me", user_token(entra_emulator, idp=guest_idp)).json() == {
            "guest": True
        }


def test_guests_setting_from_the_environment() -> None:
    env = {"ENTRA_TENANT_ID": OTHER_TENANT, "ENTRA_AUDIENCES": "api://orders"}
    assert EntraConfig.from_env(env).allow_guests is True
    assert EntraConfig.from_env(env | {"ENTRA_ALLOW_GUESTS": "false"}).allow_guests is False


def test_optional_paths_serve_anonymous_and_signed_in_callers(client: TestClient) -> None:
    assert call(client, "/welcome", None).json() == {"who": None}
    bad = call(client, "/welcome", "not-a-token")
    assert bad.status_code == 401  # a token that is present must be valid
    assert call(client, "/me", None).status_code == 401  # the rest still requires a token


def test_optional_principal_with_a_token(client: TestClient, entra_emulator: EntraEmulator) -> None:
    token = user_token(entra_emulator)
    oid = EntraPrincipal.from_claims(
        jwt.decode(token, options={"verify_signature": False}), version="2.0", client_id="c"
    ).object_id
    assert oid is not None
    assert call(client, "/welcome", token).json() == {"who": oid}


async def test_tenants_decided_at_run_time(entra_emulator: EntraEmulator, clock: FakeClock) -> None:
    asked: list[str] = []
    allowed = {OTHER_TENANT}
    broken = [False]

    async def tenant_allowed(tid: str) -> bool:
        asked.append(tid)
        await asyncio.sleep(0.02)
        if broken[0]:
            raise RuntimeError("the customer database is down")
        return tid in allowed

    for tenant in (OTHER_TENANT, THIRD_TENANT):
        entra_emulator.add_tenant(tenant)
    config = entra_emulator.config(tenant_id="organizations", tenant_allowed=tenant_allowed)
    clock.advance(time.time() - clock())  # the tokens' lifetimes are on the real clock
    async with TokenValidator(config, clock=clock) as check:
        tokens = [
            entra_emulator.issue_token(tenant_id=OTHER_TENANT, roles=["r"], claims={"n": i})
            for i in range(6)
        ]
        principals = await asyncio.gather(*(check.validate(t) for t in tokens))
        assert {p.tenant_id for p in principals} == {OTHER_TENANT}
        assert asked == [OTHER_TENANT]  # single flight, then remembered
        stranger = entra_emulator.issue_token(tenant_id=THIRD_TENANT, roles=["r"])
        outcomes = await asyncio.gather(
            *(check.validate(stranger) for _ in range(3)), return_exceptions=True
        )
        assert all(
            isinstance(o, EntraGuardError) and o.reason == "tenant_not_allowed" for o in outcomes
        )
        assert asked == [OTHER_TENANT, THIRD_TENANT]
        # A tenant the app removes: its remembered tokens stop working once the answer ages.
        allowed.clear()
        assert (await check.validate(tokens[0])).tenant_id == OTHER_TENANT  # still remembered
        clock.advance(config.tenant_decision_ttl)
        with pytest.raises(EntraGuardError, match="tenant is not allowed"):
            await check.validate(tokens[0])
        assert asked == [OTHER_TENANT, THIRD_TENANT, OTHER_TENANT]
        broken[0] = True
        fourth = entra_emulator.add_tenant()
        with pytest.raises(EntraGuardError) as failed:
            await check.validate(entra_emulator.issue_token(tenant_id=fourth, roles=["r"]))
        assert (failed.value.reason, failed.value.status_code) == (
            "tenant_decision_unavailable",
            503,
        )


def test_tenant_allowed_config_rules(entra_emulator: EntraEmulator) -> None:
    async def anyone(tid: str) -> bool:
        return True

    with pytest.raises(ValueError, match="tenant_allowed"):
        entra_emulator.config(tenant_allowed=anyone)  # a single-tenant config
    with pytest.raises(ValueError, match="not both"):
        entra_emulator.config(
            tenant_id="organizations", tenant_allowed=anyone, allow_any_tenant=True
        )
    config = entra_emulator.config(
        tenant_id="organizations", allowed_tenants=[OTHER_TENANT], tenant_allowed=anyone
    )
    assert config.tenant_allowed is anyone


def test_a_signed_in_guest_is_a_guest_and_refused_when_configured(
    entra_emulator: EntraEmulator,
) -> None:
    idp = entra_emulator
    api = idp.register_api(app_id_uri="api://orders", scopes=["Orders.Read"])
    cli = idp.register_client(
        name="cli", type="public", redirect_uris=["http://localhost"],
        scopes={"api://orders": ["Orders.Read"]},
    )  # fmt: skip
    guest = idp.register_user(upn="megan@fabrikam.test", guest=True)
    member = idp.register_user(upn="adele@contoso.test")

    app = FastAPI()

    @app.get("/me")
    async def me(principal: Principal) -> dict[str, Any]:
        return {"guest": principal.is_guest, "home": principal.home_tenant_id}

    def serve(**config: Any) -> TestClient:
        built = FastAPI(routes=app.routes)
        settings = idp.config(audiences=[api.client_id], **config)
        built.add_middleware(EntraAuthMiddleware, config=settings)
        return TestClient(built)

    guest_token, member_token = signed_in(idp, cli, guest), signed_in(idp, cli, member)
    with serve() as client:
        assert call(client, "/me", guest_token).json() == {
            "guest": True,
            "home": guest.home_tenant_id,
        }
        assert call(client, "/me", member_token).json() == {"guest": False, "home": idp.tenant_id}
    with serve(allow_guests=False) as client:
        refused = call(client, "/me", guest_token)
        assert refused.status_code == 403
        assert "guest" in refused.json()["error_description"]
        assert call(client, "/me", member_token).status_code == 200


def test_group_requirement_arguments() -> None:
    with pytest.raises(ValueError, match="at least one group"):
        require_groups()
    with pytest.raises(ValueError, match="not a group object id"):
        require_groups(SALES, " ")
    with pytest.raises(ValueError, match="resolver"):
        require_groups(SALES, resolver="graph")  # type: ignore[arg-type]
    named = require_groups("CONTOSO\\Sales").groups  # on-premises names, if the app emits them
    assert named is not None
    assert named.groups == {"contoso\\sales"}


def closed_port() -> int:
    """A loopback port nothing listens on: a Graph that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_overage_resolved_at_graph_on_behalf_of_the_user(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    api = idp.register_api(app_id_uri="api://orders", scopes=["Orders.Read"])
    # the API is also a confidential client, consented to read memberships at Graph
    own = idp.register_client(
        name="orders", client_id=api.client_id,
        scopes={"https://graph.microsoft.com": ["GroupMember.Read.All"]},
    )  # fmt: skip
    cli = idp.register_client(
        name="cli", type="public", redirect_uris=["http://localhost"],
        scopes={"api://orders": ["Orders.Read"]},
    )  # fmt: skip
    many = [str(uuid.uuid4()) for _ in range(250)]
    user = idp.register_user(upn="megan@contoso.test", groups=many)
    obo = OnBehalfOfClient(
        ConfidentialClient(
            tenant_id=idp.tenant_id, client_id=api.client_id,
            credential=ClientSecret(own.secret or ""), instance=idp.instance,
        )
    )  # fmt: skip
    graph_calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        graph_calls.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [count]})
    graph = GraphGroups(obo, graph_url=idp.graph_url, http_client=http)
    down = GraphGroups(obo, graph_url=f"http://127.0.0.1:{closed_port()}/v1.0")
    # another scope, so that the on-behalf-of token is not already cached
    challenged = GraphGroups(
        obo, graph_url=idp.graph_url, scopes="https://graph.microsoft.com/.default"
    )
    outsider = str(uuid.uuid4())
    app = FastAPI()
    for path, needed in (
        ("/member", require_groups(many[137], resolver=graph)),
        ("/outsider", require_groups(outsider, resolver=graph)),
        ("/down", require_groups(many[0], resolver=down)),
        ("/challenged", require_groups(many[0], resolver=challenged)),
    ):
        app.add_api_route(path, lambda: "ok", dependencies=[Depends(needed)])

    @app.get("/claims")
    async def claims(principal: Principal) -> dict[str, Any]:
        return dict(principal.claims)

    outcomes: list[AuthOutcome] = []
    config = idp.config(audiences=[api.client_id])
    app.add_middleware(EntraAuthMiddleware, config=config, on_outcome=outcomes.append)
    with TestClient(app) as client:
        token = signed_in(idp, cli, user)
        seen = call(client, "/claims", token).json()
        assert "groups" not in seen
        assert seen["_claim_names"] == {"groups": "src1"}
        idp.reset_counts()
        assert call(client, "/member", token).status_code == 200
        assert graph_calls == ["/v1.0/me/getMemberGroups"]
        assert idp.token_request_count() == 1  # the on-behalf-of token for Graph
        refused = call(client, "/outsider", token)
        assert refused.status_code == 403
        assert outcomes[-1].reason == "missing_group"
        # remembered per user: neither Graph nor Entra is asked again
        assert call(client, "/member", token).status_code == 200
        assert len(graph_calls) == 1
        assert idp.token_request_count() == 1

        unavailable = call(client, "/down", token)
        assert unavailable.status_code == 503
        assert outcomes[-1].reason == "groups_unavailable"

        idp.next_obo_claims_challenge(claims='{"access_token":{"nbf":{"essential":true}}}')
        stepped_up = call(client, "/challenged", token)
        assert stepped_up.status_code == 401  # the caller's app can act on it; not a 503
        assert 'error="insufficient_claims"' in stepped_up.headers["www-authenticate"]

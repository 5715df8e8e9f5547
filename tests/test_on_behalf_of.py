"""On-behalf-of: the client, its cache, the route helpers and claims challenges, over loopback.

Two kinds of token endpoint serve these tests. The end-to-end shapes use the emulator's own
on-behalf-of grant. The client's finer points (cache keys, bounds, renewal, sharing one
request, refusals) run against ``StubEntra``, a tiny Starlette app on loopback under uvicorn that
speaks the grant's contract (form fields in, Entra's token response or error body out) and
records every form it gets: not a mock of the code under test, which talks to it over real
HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from entra_guard import EntraAuthMiddleware
from entra_guard.bearer import INCOMING_TOKEN
from entra_guard.client import (
    ClientSecret,
    ConfidentialClient,
    OnBehalfOfClient,
    TokenRequestError,
)
from entra_guard.client.challenges import claims_from_challenge
from entra_guard.client.on_behalf_of import JWT_BEARER
from entra_guard.errors import ClaimsChallenge
from entra_guard.fastapi import OnBehalfOf, Principal
from entra_guard.starlette import ON_BEHALF_OF_CLIENT, on_behalf_of_auth, principal_of
from entra_guard.testing import EntraEmulator
from entra_guard.testing.server import BackgroundServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from starlette.types import Lifespan

    from tests.conftest import FakeClock

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
TENANT = "11111111-2222-4333-8444-555555555555"
API_CLIENT_ID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
SECRET = "stub-secret-value-0123456789"  # the stub's test secret
GRAPH = "https://graph.microsoft.com/User.Read"
CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'
ENCODED = base64.b64encode(CLAIMS.encode()).decode()
#: The one line a route needs (module level: FastAPI resolves string annotations in globals).
GraphAsUser = Annotated[httpx.Auth, Depends(OnBehalfOf(GRAPH))]


class StubEntra:
    """A loopback token endpoint speaking the on-behalf-of contract (see the module docstring)."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.delay = 0.0
        self.lifetime = 3599
        self.answer: tuple[int, dict[str, Any]] | None = None
        self.app = Starlette(
            routes=[Route(f"/{TENANT}/oauth2/v2.0/token", self.token, methods=["POST"])]
        )

    def reset(self) -> None:
        self.forms.clear()
        self.delay, self.lifetime, self.answer = 0.0, 3599, None

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.forms.append(form)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.answer is not None:
            status, body = self.answer
            return JSONResponse(body, status)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "access_token": f"obo-token-{len(self.forms)}",
                "expires_in": self.lifetime,
                "ext_expires_in": self.lifetime,
                "scope": form.get("scope", ""),
            }
        )


class Downstream:
    """The API called as the user: echoes the bearer token, or answers a claims challenge."""

    def __init__(self) -> None:
        self.challenge_next = False
        self.refuse_next = False
        self.seen: list[str] = []
        self.app = Starlette(routes=[Route("/data", self.data)])

    async def data(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        if self.challenge_next:
            self.challenge_next = False
            encoded = base64.b64encode(CLAIMS.encode()).decode()
            header = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", error="insufficient_claims", claims="{encoded}"'
            )
            return JSONResponse({"error": "insufficient_claims"}, 401, {"WWW-Authenticate": header})
        if self.refuse_next:
            self.refuse_next = False
            return JSONResponse({"error": "invalid_token"}, 401, {"WWW-Authenticate": "Bearer"})
        return JSONResponse({"token": token})


@dataclass
class Env:
    idp: EntraEmulator
    stub: StubEntra
    stub_url: str
    downstream: Downstream
    downstream_url: str

    def confidential(self, **overrides: Any) -> ConfidentialClient:
        options: dict[str, Any] = {
            "tenant_id": TENANT,
            "client_id": API_CLIENT_ID,
            "credential": ClientSecret(SECRET),
            "instance": self.stub_url,
            "verify": NO_TLS,
            "retry_delay": 0.01,
        }
        return ConfidentialClient(**{**options, **overrides})

    def user_token(self, **claims: Any) -> str:
        return self.idp.issue_token(
            app_only=False, audience="api://middle", scopes=["access_as_user"], claims=claims
        )


@pytest.fixture(scope="module")
def shared() -> Iterator[Env]:
    stub, downstream = StubEntra(), Downstream()
    stub_server = BackgroundServer(stub.app, host="127.0.0.1", port=0, tls=None)
    api_server = BackgroundServer(downstream.app, host="127.0.0.1", port=0, tls=None)
    stub_server.start()
    api_server.start()
    try:
        with EntraEmulator() as idp:
            yield Env(
                idp,
                stub,
                f"http://127.0.0.1:{stub_server.port}",
                downstream,
                f"http://127.0.0.1:{api_server.port}",
            )
    finally:
        stub_server.stop()
        api_server.stop()


@pytest.fixture
def env(shared: Env) -> Env:
    shared.stub.reset()
    shared.downstream.challenge_next = shared.downstream.refuse_next = False
    shared.downstream.seen.clear()
    return shared


# -- the grant and its cache ------------------------------------------------------------------


async def test_the_request_is_the_on_behalf_of_grant_with_the_apps_own_credentials(
    env: Env,
) -> None:
    user = env.user_token()
    async with env.confidential() as app:
        token = await OnBehalfOfClient(app).acquire_token(user, [GRAPH])
    assert token.token == "obo-token-1"
    assert token.scope == GRAPH
    assert env.stub.forms == [
        {
            "grant_type": JWT_BEARER,
            "requested_token_use": "on_behalf_of",
            "assertion": user,
            "client_id": API_CLIENT_ID,
            "scope": GRAPH,
            "client_secret": SECRET,
        }
    ]


async def test_tokens_are_cached_per_callers_token_and_scope(env: Env) -> None:
    alice, bob = env.user_token(oid="a"), env.user_token(oid="b")
    async with env.confidential() as app:
        obo = OnBehalfOfClient(app)
        first = await obo.acquire_token(alice, GRAPH)
        assert await obo.acquire_token(alice, GRAPH) == first
        assert len(env.stub.forms) == 1  # the second call made no request
        assert (await obo.acquire_token(bob, GRAPH)).token != first.token
        assert (await obo.acquire_token(alice, "api://orders/.default")).token != first.token
        assert len(env.stub.forms) == 3
        forced = await obo.acquire_token(alice, GRAPH, force_refresh=True)
        assert forced.token != first.token
        assert len(env.stub.forms) == 4


async def test_a_token_is_renewed_near_its_expiry(env: Env, clock: FakeClock) -> None:
    env.stub.lifetime = 3600
    async with env.confidential(clock=clock) as app:
        obo = OnBehalfOfClient(app)
        user = env.user_token()
        first = await obo.acquire_token(user, GRAPH)
        clock.advance(3600 - 300 - 1)  # one second before the 5-minute renewal window
        assert await obo.acquire_token(user, GRAPH) == first
        clock.advance(2)
        assert (await obo.acquire_token(user, GRAPH)).token != first.token
    assert len(env.stub.forms) == 2


async def test_the_cache_holds_at_most_max_entries(env: Env) -> None:
    users = [env.user_token(oid=str(n)) for n in range(3)]
    async with env.confidential() as app:
        obo = OnBehalfOfClient(app, max_entries=2)
        for user in users:
            await obo.acquire_token(user, GRAPH)
        await obo.acquire_token(users[2], GRAPH)
        await obo.acquire_token(users[1], GRAPH)
        assert len(env.stub.forms) == 3  # the two most recent were kept
        await obo.acquire_token(users[0], GRAPH)  # the least recently used was dropped
        assert len(env.stub.forms) == 4
    with pytest.raises(ValueError, match="max_entries"):
        OnBehalfOfClient(env.confidential(), max_entries=0)


async def test_concurrent_async_callers_share_one_request(env: Env) -> None:
    env.stub.delay = 0.2
    user = env.user_token()
    async with env.confidential() as app:
        obo = OnBehalfOfClient(app)
        tokens = await asyncio.gather(*(obo.acquire_token(user, GRAPH) for _ in range(20)))
    assert len({t.token for t in tokens}) == 1
    assert len(env.stub.forms) == 1


def test_concurrent_threads_share_one_request(env: Env) -> None:
    env.stub.delay = 0.2
    user = env.user_token()
    with env.confidential() as app:
        obo = OnBehalfOfClient(app)
        with ThreadPoolExecutor(max_workers=8) as pool:
            tokens = list(pool.map(lambda _: obo.acquire_token_sync(user, GRAPH), range(8)))
    assert len({t.token for t in tokens}) == 1
    assert len(env.stub.forms) == 1


def test_a_failure_reaches_every_waiting_thread(env: Env) -> None:
    env.stub.delay = 0.2
    env.stub.answer = (400, {"error": "invalid_grant", "error_codes": [500133]})
    user = env.user_token()
    with env.confidential() as app:
        obo = OnBehalfOfClient(app)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(obo.acquire_token_sync, user, GRAPH) for _ in range(4)]
            errors = [f.exception() for f in futures]
    assert all(isinstance(e, TokenRequestError) and e.aadsts == "AADSTS500133" for e in errors)
    assert len(env.stub.forms) == 1


def test_bad_arguments_are_refused_before_any_request(env: Env) -> None:
    obo = OnBehalfOfClient(env.confidential())
    for token, scopes in [("", GRAPH), ("x" * 20_000, GRAPH), ("é", GRAPH), ("t", []), ("t", "")]:
        with pytest.raises(ValueError, match=r"user_token|scopes"):
            obo.acquire_token_sync(token, scopes)
    assert env.stub.forms == []


# -- claims challenges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"error": "interaction_required", "error_codes": [50079], "claims": CLAIMS},
        {"error": "invalid_grant", "suberror": "basic_action", "error_codes": [50076],
         "claims": CLAIMS},
    ],
)  # fmt: skip
async def test_entras_claims_challenge_raises_claims_challenge(
    env: Env, body: dict[str, Any]
) -> None:
    env.stub.answer = (400, {**body, "error_description": "AADSTS50079: MFA is required."})
    async with env.confidential() as app:
        with pytest.raises(ClaimsChallenge) as caught:
            await OnBehalfOfClient(app).acquire_token(env.user_token(), GRAPH)
    challenge = caught.value
    assert challenge.claims == CLAIMS
    assert challenge.reason == "interaction_required"
    assert challenge.realm == TENANT
    assert challenge.client_id == API_CLIENT_ID
    assert challenge.authorization_uri == f"{env.stub_url}/{TENANT}/oauth2/v2.0/authorize"
    assert isinstance(challenge.__cause__, TokenRequestError)


async def test_a_refusal_without_claims_stays_a_token_request_error(env: Env) -> None:
    env.stub.answer = (400, {"error": "invalid_grant", "suberror": "consent_required",
                             "error_codes": [65001]})  # fmt: skip
    async with env.confidential() as app:
        with pytest.raises(TokenRequestError) as caught:
            await OnBehalfOfClient(app).acquire_token(env.user_token(), GRAPH)
    assert caught.value.suberror == "consent_required"
    assert caught.value.claims is None


async def test_a_downstream_claims_challenge_raises_and_drops_the_cached_token(env: Env) -> None:
    user = env.user_token()
    async with env.confidential() as app, httpx.AsyncClient() as http:
        obo = OnBehalfOfClient(app)
        env.downstream.challenge_next = True
        with pytest.raises(ClaimsChallenge) as caught:
            await http.get(f"{env.downstream_url}/data", auth=obo.auth(user, GRAPH))
        assert caught.value.claims == CLAIMS
        assert caught.value.reason == "insufficient_claims"
        # The refused token is not handed out again.
        await http.get(f"{env.downstream_url}/data", auth=obo.auth(user, GRAPH))
    assert env.downstream.seen == ["obo-token-1", "obo-token-2"]


def test_a_plain_401_downstream_renews_the_token_once(env: Env) -> None:
    user = env.user_token()
    with env.confidential() as app, httpx.Client() as http:
        obo = OnBehalfOfClient(app)
        env.downstream.refuse_next = True
        answer = http.get(f"{env.downstream_url}/data", auth=obo.auth(user, GRAPH))
    assert answer.json() == {"token": "obo-token-2"}
    assert env.downstream.seen == ["obo-token-1", "obo-token-2"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f'Bearer error="insufficient_claims", claims="{ENCODED}"', CLAIMS),
        ('Bearer realm="", error="insufficient_claims", claims="'
         + base64.urlsafe_b64encode(b'{"access_token": {"acrs": {"essential": true}}}')
         .decode().rstrip("=") + '"', '{"access_token":{"acrs":{"essential":true}}}'),
        ('Bearer error="invalid_token", claims="e30="', None),
        ('Bearer error="insufficient_claims", claims="not base64!"', None),
        ('Bearer error="insufficient_claims", claims="WzFd"', None),  # [1]: not an object
        ('Bearer error="insufficient_claims"', None),
    ],
)  # fmt: skip
def test_reading_a_downstream_challenge(header: str, expected: str | None) -> None:
    assert claims_from_challenge([header]) == expected


# -- the route side -----------------------------------------------------------------------------


def with_client(make: Callable[[], ConfidentialClient] | None) -> Lifespan[Any]:
    """The documented set-up: one ``OnBehalfOfClient`` per app, made and closed in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if make is None:
            yield
            return
        async with make() as confidential:
            setattr(app.state, ON_BEHALF_OF_CLIENT, OnBehalfOfClient(confidential))
            yield

    return lifespan


def starlette_api(env: Env) -> Starlette:
    async def call(request: Request) -> Response:
        auth = on_behalf_of_auth(request, [GRAPH])
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{env.downstream_url}/data", auth=auth)
        return JSONResponse(answer.json())

    async def whoami(request: Request) -> Response:
        principal = principal_of(request)
        return JSONResponse(
            {
                "principal": repr(principal),
                "fields": [repr(getattr(principal, n)) for n in principal.__slots__],
                "kept": repr(request.scope[INCOMING_TOKEN]),
            }
        )

    routes = [Route("/call", call), Route("/whoami", whoami)]
    app = Starlette(routes=routes, lifespan=with_client(env.confidential))
    app.add_middleware(EntraAuthMiddleware, config=env.idp.config(audiences=["api://middle"]))
    return app


def test_a_starlette_route_calls_downstream_as_the_caller(env: Env) -> None:
    user = env.user_token()
    with TestClient(starlette_api(env)) as api:
        headers = {"Authorization": f"Bearer {user}"}
        assert api.get("/call", headers=headers).json() == {"token": "obo-token-1"}
        assert api.get("/call", headers=headers).json() == {"token": "obo-token-1"}
    assert [form["assertion"] for form in env.stub.forms] == [user]
    assert "claims" not in env.stub.forms[0]  # the caller's app declared no capability


def test_a_cae_capable_caller_is_declared_in_the_request(env: Env) -> None:
    user = env.user_token(xms_cc=["CP1"])
    with TestClient(starlette_api(env)) as api:
        assert api.get("/call", headers={"Authorization": f"Bearer {user}"}).status_code == 200
    assert json.loads(env.stub.forms[0]["claims"]) == {
        "access_token": {"xms_cc": {"values": ["cp1"]}}
    }


def test_the_principal_never_holds_the_callers_token(env: Env) -> None:
    user = env.user_token()
    with TestClient(starlette_api(env)) as api:
        body = api.get("/whoami", headers={"Authorization": f"Bearer {user}"}).json()
    signature = user.rsplit(".", 1)[1]
    assert signature not in body["principal"]
    assert not any(signature in field for field in body["fields"])
    assert body["kept"] == "IncomingToken([redacted])"


def expected_challenge(env: Env) -> str:
    encoded = base64.b64encode(CLAIMS.encode()).decode()
    return (
        f'Bearer realm="{TENANT}", authorization_uri="{env.stub_url}/{TENANT}/oauth2/v2.0/'
        f'authorize", client_id="{API_CLIENT_ID}", error="insufficient_claims", '
        f'claims="{encoded}"'
    )


def test_entras_challenge_reaches_the_caller_as_microsofts_401(env: Env) -> None:
    env.stub.answer = (400, {"error": "interaction_required", "error_codes": [50079],
                             "claims": CLAIMS.replace(",", ", ")})  # fmt: skip
    user = env.user_token()
    with TestClient(starlette_api(env)) as api:
        answer = api.get("/call", headers={"Authorization": f"Bearer {user}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == expected_challenge(env)
    assert answer.json()["error"] == "insufficient_claims"


def test_a_downstream_challenge_reaches_the_caller_as_microsofts_401(env: Env) -> None:
    env.downstream.challenge_next = True
    user = env.user_token()
    with TestClient(starlette_api(env)) as api:
        answer = api.get("/call", headers={"Authorization": f"Bearer {user}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == expected_challenge(env)


def fastapi_api(env: Env, *, configured: bool = True) -> FastAPI:
    api = FastAPI(lifespan=with_client(env.confidential if configured else None))
    api.add_middleware(EntraAuthMiddleware, config=env.idp.config(audiences=["api://middle"]))

    @api.get("/me")
    async def me(principal: Principal, auth: GraphAsUser) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{env.downstream_url}/data", auth=auth)
        return {"oid": principal.object_id, **answer.json()}

    return api


def test_a_fastapi_route_gets_an_auth_in_one_line(env: Env) -> None:
    user = env.user_token()
    with TestClient(fastapi_api(env)) as http:
        for _ in range(3):
            answer = http.get("/me", headers={"Authorization": f"Bearer {user}"})
            assert answer.json()["token"] == "obo-token-1"
    assert len(env.stub.forms) == 1


def test_without_a_configured_client_the_route_fails_loudly(env: Env) -> None:
    with (
        TestClient(fastapi_api(env, configured=False)) as http,
        pytest.raises(RuntimeError, match="entra_on_behalf_of"),
    ):
        http.get("/me", headers={"Authorization": f"Bearer {env.user_token()}"})


def test_no_token_or_secret_reaches_a_log_or_a_repr(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = env.user_token()
    with env.confidential() as app:
        obo = OnBehalfOfClient(app)
        token = obo.acquire_token_sync(user, GRAPH)
        other = env.user_token(oid="other")
        # An answer that echoes what it was sent: the description is redacted before it is kept.
        described = f"AADSTS50013: bad {SECRET} for {other}"
        env.stub.answer = (400, {"error": "invalid_grant", "error_description": described})
        with pytest.raises(TokenRequestError) as caught:
            obo.acquire_token_sync(other, GRAPH)
        shown = " ".join(
            [caplog.text, repr(obo), repr(obo.auth(user, GRAPH)), repr(token), str(caught.value),
             repr(caught.value), caught.value.description]
        )  # fmt: skip
    for secret in (user, other, SECRET, token.token):
        assert secret not in shown
    assert "[redacted]" in caught.value.description


# -- against the emulator's own on-behalf-of grant ------------------------------------------


@dataclass
class Tier:
    """The middle API (registered with a secret) and the API it calls as the user."""

    middle_id: str
    middle_secret: str
    user_token: str
    backend_id: str


def middle_tier(idp: EntraEmulator) -> Tier:
    backend = idp.register_api(app_id_uri="api://backend", scopes=["Data.Read"])
    middle = idp.register_api(app_id_uri="api://middle", scopes=["access_as_user"])
    app = idp.register_client(
        name="middle",
        client_id=middle.client_id,
        scopes={"api://backend": ["Data.Read"], "https://graph.microsoft.com": ["User.Read"]},
    )
    assert app.secret is not None
    user = idp.register_user("adele@contoso.test")
    token = idp.issue_token(
        app_only=False,
        audience=middle.client_id,
        scopes=["access_as_user"],
        claims={"oid": user.object_id, "preferred_username": user.upn},
    )
    return Tier(middle.client_id, app.secret, token, backend.client_id)


def emulator_client(idp: EntraEmulator, tier: Tier) -> OnBehalfOfClient:
    return OnBehalfOfClient(
        ConfidentialClient(
            tenant_id=idp.tenant_id,
            client_id=tier.middle_id,
            credential=ClientSecret(tier.middle_secret),
            instance=idp.instance,
            verify=NO_TLS,
        )
    )


def test_the_emulator_issues_an_on_behalf_of_token_for_graph() -> None:
    with EntraEmulator() as emulator:
        idp = emulator
        tier = middle_tier(idp)
        obo = emulator_client(idp, tier)
        with obo.client:
            auth = obo.auth(tier.user_token, GRAPH)
            with httpx.Client(base_url=idp.graph_url) as graph:
                me = graph.get("/me", auth=auth).raise_for_status().json()
                assert me["userPrincipalName"] == "adele@contoso.test"
                before = idp.token_request_count()
                graph.get("/me", auth=auth).raise_for_status()
                assert idp.token_request_count() == before  # within the token's life: cached


def test_the_emulators_claims_challenge_reaches_the_caller() -> None:
    with EntraEmulator() as emulator:
        idp = emulator
        tier = middle_tier(idp)
        obo = emulator_client(idp, tier)
        idp.next_obo_claims_challenge(claims=CLAIMS)
        with obo.client, pytest.raises(ClaimsChallenge) as caught:
            obo.acquire_token_sync(tier.user_token, GRAPH)
        assert json.loads(caught.value.claims) == json.loads(CLAIMS)


def test_two_apis_one_calling_the_other_as_the_user_under_uvicorn() -> None:
    """The issue's end-to-end shape: both APIs behind the middleware, served by uvicorn."""
    with EntraEmulator() as emulator:
        idp = emulator
        tier = middle_tier(idp)
        # v2 tokens carry the backend's client id as their audience
        backend_config = idp.config(audiences=[tier.backend_id, "api://backend"])

        async def data(request: Request) -> Response:
            principal = principal_of(request)
            return JSONResponse({"oid": principal.object_id, "app": principal.client_id})

        backend = Starlette(routes=[Route("/data", data)])
        backend.add_middleware(EntraAuthMiddleware, config=backend_config)
        backend_server = BackgroundServer(backend, host="127.0.0.1", port=0, tls=None)
        backend_server.start()
        middle = FastAPI(lifespan=with_client(lambda: emulator_client(idp, tier).client))
        middle.add_middleware(EntraAuthMiddleware, config=idp.config(audiences=[tier.middle_id]))

        @middle.get("/orders")
        async def orders(
            auth: Annotated[httpx.Auth, Depends(OnBehalfOf("api://backend/Data.Read"))],
        ) -> Any:
            async with httpx.AsyncClient() as http:
                answer = await http.get(f"http://127.0.0.1:{backend_server.port}/data", auth=auth)
            return answer.raise_for_status().json()

        middle_server = BackgroundServer(middle, host="127.0.0.1", port=0, tls=None, lifespan="on")
        middle_server.start()
        try:
            headers = {"Authorization": f"Bearer {tier.user_token}"}
            url = f"http://127.0.0.1:{middle_server.port}/orders"
            first = httpx.get(url, headers=headers)
            assert first.status_code == 200, first.text
            assert first.json()["app"] == tier.middle_id  # the backend saw the middle tier ...
            user_oid = first.json()["oid"]
            assert user_oid is not None  # ... acting as the user
            before = idp.token_request_count()
            assert httpx.get(url, headers=headers).json() == first.json()
            assert idp.token_request_count() == before  # no new token request

            idp.next_obo_claims_challenge(claims=CLAIMS)
            fresh = idp.issue_token(  # a new caller's token: not in the cache yet
                app_only=False,
                audience=tier.middle_id,
                scopes=["access_as_user"],
                claims={"oid": user_oid},
            )
            challenged = httpx.get(url, headers={"Authorization": f"Bearer {fresh}"})
            assert challenged.status_code == 401
            assert 'error="insufficient_claims"' in challenged.headers["www-authenticate"]
        finally:
            middle_server.stop()
            backend_server.stop()


def test_the_readme_example_runs_as_written(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's block, with only what a reader fills in and the loopback addresses."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Calling other APIs as the user\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    for placeholder, value in (
        ('"<Directory (tenant) ID>"', repr(TENANT)),
        ('"<this API\'s Application (client) ID>"', repr(API_CLIENT_ID)),
        ("ConfidentialClient(", f"ConfidentialClient(instance={env.stub_url!r},"),
        ("https://graph.microsoft.com/v1.0/me", f"{env.downstream_url}/data"),
    ):
        assert code.count(placeholder) == 1, placeholder
        code = code.replace(placeholder, value)
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("ENTRA_TENANT_ID", env.idp.tenant_id)
    monkeypatch.setenv("ENTRA_INSTANCE", env.idp.instance)
    monkeypatch.setenv("ENTRA_AUDIENCES", "api://middle")
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md (on-behalf-of)", "exec"), namespace)  # noqa: S102
    user = env.user_token()
    with TestClient(namespace["app"]) as api:
        for _ in range(2):
            answer = api.get("/me", headers={"Authorization": f"Bearer {user}"})
            assert answer.json() == {"token": "obo-token-1"}
    assert len(env.stub.forms) == 1


async def test_a_refusal_is_raised_as_it_came(env: Env) -> None:
    env.stub.answer = (400, {"error": "invalid_grant", "error_codes": [500131]})
    async with env.confidential() as app:
        with pytest.raises(TokenRequestError) as caught:
            await OnBehalfOfClient(app).acquire_token(env.user_token(), GRAPH)
    assert caught.value.aadsts == "AADSTS500131"
    assert caught.value.__cause__ is None  # not chained to itself

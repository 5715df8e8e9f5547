"""Security review of the session's changes (branch i11-review): attacks tried, as tests.

Tests marked ``xfail(strict=True)`` show a weakness still present (each ``reason`` says which
fix would make it pass); the others pin down what was tried and held.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket as StarletteWebSocket

from entra_guard import (
    EntraAuthMiddleware,
    EntraConfig,
    InvalidToken,
    KeyStore,
    ProtectedResource,
    TokenValidator,
)
from entra_guard import starlette as guard_starlette
from entra_guard.fastapi import Principal, require_roles
from entra_guard.middleware import STATE_KEY, AuthOutcome
from entra_guard.testing import EntraEmulator
from tests.asgi import denial_of
from tests.conftest import FakeClock
from tests.support import settle

#: What an attacker sends: a "CORS preflight" is just two headers anybody can set.
PREFLIGHT = {"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}


@pytest.fixture
def ran() -> list[Any]:
    return []


def starlette_app(config: EntraConfig, ran: list[Any]) -> Starlette:
    """A plain Starlette API relying on the middleware alone (no CORS middleware: a daemon API)."""

    async def delete_orders(request: Request) -> Response:
        ran.append(("delete_orders", request.method, request.user.is_authenticated))
        return PlainTextResponse("all orders deleted")

    class Orders(HTTPEndpoint):
        async def get(self, request: Request) -> Response:
            return PlainTextResponse("orders")

        async def options(self, request: Request) -> Response:
            ran.append(("Orders.options", request.method))
            return PlainTextResponse("orders endpoint ran")

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        # A mounted ASGI app that serves whatever method comes (as many small ASGI apps do).
        ran.append(("metrics", scope["method"]))
        await PlainTextResponse("internal metrics")(scope, receive, send)

    async def me(request: Request) -> Response:
        return PlainTextResponse("me")

    return Starlette(
        routes=[
            Route("/orders/purge", delete_orders, methods=["POST", "OPTIONS"]),
            Route("/orders", Orders),
            Route("/me", me),
            Mount("/internal/metrics", app=metrics),
        ],
        middleware=[Middleware(EntraAuthMiddleware, config=config)],
    )


@pytest.fixture
def starlette_client(entra_emulator: EntraEmulator, ran: list[Any]) -> Iterator[TestClient]:
    with TestClient(starlette_app(entra_emulator.config(), ran)) as client:
        yield client


# -- 1. CORS-preflight pass-through ----------------------------------------------------------
# Found: any OPTIONS with Origin and Access-Control-Request-Method reached the app without a
# token. Fixed: a preflight passes only to a Starlette CORSMiddleware inside the middleware,
# which answers it without calling the app.


def test_a_preflight_shaped_options_runs_a_starlette_handler_without_a_token(
    starlette_client: TestClient, ran: list[Any]
) -> None:
    response = starlette_client.options("/orders/purge", headers=PREFLIGHT)
    assert ran == []  # fails: the handler ran, with an anonymous user
    assert response.status_code == 401


def test_a_preflight_shaped_options_runs_an_http_endpoint_options_method_without_a_token(
    starlette_client: TestClient, ran: list[Any]
) -> None:
    response = starlette_client.options("/orders", headers=PREFLIGHT)
    assert ran == []
    assert response.status_code == 401


def test_a_preflight_shaped_options_reaches_a_mounted_app_without_a_token(
    starlette_client: TestClient, ran: list[Any]
) -> None:
    response = starlette_client.options("/internal/metrics", headers=PREFLIGHT)
    assert ran == []  # fails: [("metrics", "OPTIONS")], and the body is served
    assert response.status_code == 401
    assert "internal metrics" not in response.text


def test_a_preflight_shaped_options_runs_a_fastapi_route_without_a_dependency(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    app = FastAPI()
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config())

    @app.api_route("/reports", methods=["GET", "OPTIONS"])
    async def reports() -> dict[str, str]:  # protected by the middleware alone
        ran.append("reports")
        return {"report": "confidential"}

    with TestClient(app) as client:
        response = client.options("/reports", headers=PREFLIGHT)
    assert ran == []
    assert response.status_code == 401


def test_a_preflight_shaped_options_does_not_reveal_which_routes_exist(
    starlette_client: TestClient,
) -> None:
    existing = starlette_client.options("/me", headers=PREFLIGHT)
    missing = starlette_client.options("/no-such-route", headers=PREFLIGHT)
    assert (existing.status_code, missing.status_code) == (401, 401)  # fails: (405, 404)
    assert "allow" not in existing.headers  # fails: "GET, HEAD"


def test_held_preflight_routes_with_a_dependency_fail_closed(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    """FastAPI routes whose handler depends on ``Principal`` or a requirement answer 401."""
    app = FastAPI()
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config())

    @app.api_route("/principal", methods=["GET", "OPTIONS"])
    async def principal(caller: Principal) -> str:
        ran.append("principal")
        return caller.client_id

    @app.api_route(
        "/admin", methods=["GET", "OPTIONS"], dependencies=[Depends(require_roles("Admin"))]
    )
    async def admin() -> str:
        ran.append("admin")
        return "admin"

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, caller: Principal) -> None:
        ran.append("ws")
        await websocket.accept()
        await websocket.close()

    with TestClient(app) as client:
        for path in ("/principal", "/admin"):
            response = client.options(path, headers=PREFLIGHT)
            assert response.status_code == 401, path
            assert response.json()["error"] == "missing_token"
        # A WebSocket scope has no method: preflight headers on a handshake change nothing.
        status, _, _ = denial_of(client, "/ws", PREFLIGHT)
        assert status == 401
    assert ran == []


def test_held_preflight_headers_on_a_starlette_websocket_are_refused(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    async def ws(websocket: StarletteWebSocket) -> None:
        ran.append("ws")
        await websocket.accept()
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/ws", ws)],
        middleware=[Middleware(EntraAuthMiddleware, config=entra_emulator.config())],
    )
    with TestClient(app) as client:
        assert denial_of(client, "/ws", {**PREFLIGHT, "method": "OPTIONS"})[0] == 401
    assert ran == []


# -- 2. root_path stripping vs Starlette's router --------------------------------------------


def test_held_exclusions_never_cover_a_protected_route(entra_emulator: EntraEmulator) -> None:
    """Every crafted (root_path, path) pair: a request the middleware lets through untokened
    must land on a public handler or nowhere, in the router the app really uses."""
    reached: list[str] = []

    def handler(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            reached.append(name)
            return PlainTextResponse(name)

        return endpoint

    protected = Starlette(
        routes=[
            Route("/health", handler("public:health")),
            Route("/public/{rest:path}", handler("public:files")),
            Route("/admin", handler("protected:admin")),
            Route("/{anything:path}", handler("protected:catch-all")),
        ]
    )
    sub = Starlette(routes=[Route("/health", handler("public:sub-health")),
                            Route("/admin", handler("protected:sub-admin"))])  # fmt: skip
    protected.router.routes.insert(0, Mount("/sub", app=sub))
    app = EntraAuthMiddleware(
        protected, config=entra_emulator.config(), exclude_paths=["/health"],
        exclude_prefixes=["/public/"], prefetch_keys=False,
    )  # fmt: skip

    segments = ["", "/", "//", "/api", "/api/", "/sub", "/health", "/public", "/public/",
                "/..", "/.", "/admin", "%2F", "/api%2F", "x"]  # fmt: skip
    roots = ["", "/", "/api", "/api/", "/sub", "/health", "/public", "/ap", "//api", "/api/.."]
    paths = sorted({"".join(parts) for parts in itertools.product(segments, repeat=3)})

    async def sweep() -> int:
        tried = 0
        for root_path in roots:
            for path in paths:
                if not path.startswith("/") or not path.startswith(root_path):
                    continue  # a server gives a path that starts with "/" and its root_path
                reached.clear()
                status = await _call(app, path, root_path)
                assert not [r for r in reached if r.startswith("protected")], (root_path, path)
                assert status in (200, 401, 404, 307), (root_path, path, status)
                tried += 1
        return tried

    assert anyio.run(sweep) > 3000


async def _call(app: Any, path: str, root_path: str) -> int:
    """Drive the ASGI app with the scope a server builds (``path`` decoded, ``root_path`` in it)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": root_path,
        "query_string": b"", "headers": [(b"host", b"testserver")], "server": ("t", 80),
        "client": ("c", 1), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return int(sent[0]["status"])


# -- 3. the nested-middleware guard and the metadata path ------------------------------------


def test_held_the_nested_guard_never_lets_a_request_through(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    """An outer optional middleware, an inner strict one on a mounted app: refused, not served."""

    async def secret(request: Request) -> Response:
        ran.append("secret")
        return PlainTextResponse("secret")

    inner = Starlette(
        routes=[Route("/secret", secret)],
        middleware=[Middleware(EntraAuthMiddleware, config=entra_emulator.config())],
    )
    outer = Starlette(
        routes=[Mount("/v1", app=inner)],
        middleware=[Middleware(EntraAuthMiddleware, config=entra_emulator.config(),
                               optional=True)],
    )  # fmt: skip
    with TestClient(outer, raise_server_exceptions=False) as client:
        # the outer one's start-up check cannot see a mounted app (Mount runs no lifespan)
        assert client.get("/v1/secret").status_code == 500
        assert client.options("/v1/secret", headers=PREFLIGHT).status_code == 500
    assert ran == []


# -- 4. fastapi.py ----------------------------------------------------------------------------


def _admin_api() -> FastAPI:
    api = FastAPI()

    @api.get("/admin", dependencies=[Depends(require_roles("Admin"))])
    async def admin() -> str:
        return "admin"

    return api


@pytest.mark.parametrize("placement", ["mounted below it", "wrapped by it"])
def test_a_fastapi_app_the_middleware_is_not_in_answers_a_missing_role_with_403(
    entra_emulator: EntraEmulator, placement: str
) -> None:
    """Fixed: the app's own ServerErrorMiddleware answered the refusal with 500 before the
    middleware could see it. The dependency now raises it there as an HTTPException with the
    status, challenge and words the middleware sends for the same route in its own app."""
    config = entra_emulator.config()
    options: dict[str, Any] = {
        "config": config,
        "optional": True,  # so that the dependency raises the 401 for no token itself
        "resource_metadata": ProtectedResource(
            resource="https://api.contoso.test", scopes_supported=["api://orders/Orders.Read"]
        ),
    }
    direct = _admin_api()
    direct.add_middleware(EntraAuthMiddleware, **options)
    app: Any = EntraAuthMiddleware(_admin_api(), **options)
    if placement == "mounted below it":
        app = Starlette(
            routes=[Mount("/v1", app=_admin_api())],
            middleware=[Middleware(EntraAuthMiddleware, **options)],
        )
    path = "/v1/admin" if placement == "mounted below it" else "/admin"
    reader = {"Authorization": f"Bearer {entra_emulator.issue_token(roles=['Reader'])}"}
    admin = {"Authorization": f"Bearer {entra_emulator.issue_token(roles=['Admin'])}"}
    with TestClient(direct) as same_app, TestClient(app, raise_server_exceptions=False) as client:
        for headers, status in ((reader, 403), ({}, 401)):
            expected = same_app.get("/admin", headers=headers)
            response = client.get(path, headers=headers)
            assert (response.status_code, expected.status_code) == (status, status)
            for name in ("www-authenticate", "cache-control"):
                assert response.headers[name] == expected.headers[name]
            # The body is FastAPI's HTTPException answer, with the middleware's words.
            assert response.json() == {"detail": expected.json()["error_description"]}
        allowed = client.get(path, headers=admin)
        assert (allowed.status_code, allowed.json()) == (200, "admin")


def test_a_mounted_starlette_app_answers_a_missing_role_with_403(
    entra_emulator: EntraEmulator,
) -> None:
    """The Starlette decorator too: a 403 with the middleware's challenge, the body the text."""

    @guard_starlette.require_roles("Admin")
    async def admin(request: Request) -> Response:
        return PlainTextResponse("admin")

    outcomes: list[AuthOutcome] = []
    outer = Starlette(
        routes=[Mount("/v1", app=Starlette(routes=[Route("/admin", admin)]))],
        middleware=[Middleware(EntraAuthMiddleware, config=entra_emulator.config(),
                               on_outcome=outcomes.append)],
    )  # fmt: skip
    reader = entra_emulator.issue_token(roles=["Reader"])
    with TestClient(outer, raise_server_exceptions=False) as client:
        response = client.get("/v1/admin", headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert response.text in response.headers["www-authenticate"]  # the same words
    # The hook hears the refusal too, after the admission, as when the middleware answers.
    assert [(o.status, o.reason) for o in outcomes] == [
        (200, "authenticated"),
        (403, "missing_permission"),
    ]


def test_held_an_excluded_route_with_a_requirement_fails_closed(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    app = FastAPI()
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config(),
                       exclude_prefixes=["/open"])  # fmt: skip

    @app.get("/open/admin", dependencies=[Depends(require_roles("Admin"))])
    async def admin() -> str:
        ran.append("admin")
        return "admin"

    @app.websocket("/open/ws")
    async def ws(websocket: WebSocket, caller: Principal) -> None:
        ran.append("ws")
        await websocket.accept()

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/open/admin").status_code == 500
        with pytest.raises(RuntimeError, match="no Entra principal"):
            client.websocket_connect("/open/ws").__enter__()
    assert ran == []


def test_held_a_principal_in_lifespan_state_is_not_taken_for_the_callers(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    """State the app put under the principal's key (lifespan state is copied into every
    request) never stands in for a validated caller: the guard refuses the request."""
    app = FastAPI()
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config(),
                       exclude_paths=["/open"])  # fmt: skip

    @app.get("/open", dependencies=[Depends(require_roles("Admin"))])
    async def open_() -> str:
        ran.append("open")
        return "open"

    forged = {"type": "http", "method": "GET", "path": "/open", "root_path": "",
              "headers": [], "query_string": b"", "state": {STATE_KEY: object()}}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    async def request() -> None:
        await app(forged, receive, send)

    with pytest.raises(RuntimeError, match="inside another EntraAuthMiddleware"):
        anyio.run(request)
    assert ran == []


# -- 5. config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance",
    [
        "https://user:S3cretPassw0rd@login.microsoftonline.com",
        "http://user:S3cretPassw0rd@login.example.com",  # http off loopback
        "ftp://user:S3cretPassw0rd@login.example.com",  # not https
        "https://user:S3cretPassw0rd@login.example.com:99999",  # bad port
        "https://user:S3cretPassw0rd@login.example.com/tenant/v2.0",  # a path
        "https://:S3cretPassw0rd@login.example.com",
    ],
)
def test_an_instance_with_credentials_is_refused_without_echoing_them(instance: str) -> None:
    environ = {
        "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "ENTRA_AUDIENCES": "api://orders",
        "ENTRA_INSTANCE": instance,
    }
    with pytest.raises(ValueError, match="ENTRA_INSTANCE") as info:
        EntraConfig.from_env(environ)
    assert "S3cretPassw0rd" not in str(info.value)
    with pytest.raises(ValueError, match="instance") as direct:
        EntraConfig(tenant_id=environ["ENTRA_TENANT_ID"], audiences=["api://x"], instance=instance)
    assert "S3cretPassw0rd" not in str(direct.value)


# -- 6. discovery: app-specific key sets ------------------------------------------------------


class _RefuseAppSpecific(httpx.AsyncHTTPTransport):
    """The emulator, except that metadata asked with ``?appid=`` is refused as Entra refuses a
    request it finds wrong (HTTP 400 with an AADSTS error), while the tenant's keys serve."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"appid=" in request.url.query:
            return httpx.Response(
                400,
                json={"error": "invalid_request", "error_description": "AADSTS700016: nope"},
            )
        return await super().handle_async_request(request)


async def test_junk_tokens_are_not_turned_into_503s_by_the_app_specific_document(
    entra_emulator: EntraEmulator,
) -> None:
    api = entra_emulator.register_api(custom_signing_key=True)
    config = entra_emulator.config(audiences=[api.client_id])
    async with httpx.AsyncClient(transport=_RefuseAppSpecific()) as http:
        check = TokenValidator(config, http_client=http)
        good = entra_emulator.issue_token(audience=api.client_id, roles=["r"])
        assert (await check.validate(good)).roles == {"r"}  # the tenant's keys are in hand
        junk = entra_emulator.issue_token(
            key=EntraEmulator.generate_key(), audience=api.client_id, roles=["r"]
        )
        with pytest.raises(InvalidToken) as info:  # fails: KeysUnavailable (503)
            await check.validate(junk)
        assert info.value.reason == "key_not_found"


async def test_an_app_specific_key_of_one_api_does_not_sign_for_another_audience(
    entra_emulator: EntraEmulator,
) -> None:
    orders = entra_emulator.register_api(custom_signing_key=True)
    billing = entra_emulator.register_api()
    check = TokenValidator(entra_emulator.config(audiences=[orders.client_id, billing.client_id]))
    own = entra_emulator.issue_token(key=orders.signing_key, audience=orders.client_id, roles=["r"])
    assert (await check.validate(own)).roles == {"r"}
    crossed = entra_emulator.issue_token(
        key=orders.signing_key, audience=billing.client_id, roles=["Billing.Admin"]
    )
    with pytest.raises(InvalidToken) as info:  # fails: accepted
        await check.validate(crossed)
    assert info.value.reason == "invalid_audience"
    await check.aclose()


async def test_held_an_app_specific_key_gets_the_same_issuer_and_tenant_checks(
    entra_emulator: EntraEmulator,
) -> None:
    api = entra_emulator.register_api(custom_signing_key=True)
    check = TokenValidator(entra_emulator.config(audiences=[api.client_id]))
    other_tenant = "99999999-8888-7777-6666-555555555555"
    for claims, reason in [
        ({"iss": f"{entra_emulator.instance}/{other_tenant}/v2.0", "tid": other_tenant},
         "invalid_issuer"),
        ({"tid": other_tenant}, "tenant_not_allowed"),
        ({"iss": "https://sts.windows.net/" + entra_emulator.tenant_id + "/"}, "invalid_issuer"),
    ]:  # fmt: skip
        token = entra_emulator.issue_token(
            key=api.signing_key, audience=api.client_id, roles=["r"], claims=claims
        )
        with pytest.raises(InvalidToken) as info:
            await check.validate(token)
        assert info.value.reason == reason, claims
    # and a v1 token (its own metadata) signed with the v2 app key is looked up in v1 sets only
    v1 = entra_emulator.issue_token(
        version="1.0", key=api.signing_key, audience=api.client_id, roles=["r"]
    )
    assert (await check.validate(v1)).roles == {"r"}
    await check.aclose()


async def test_a_key_id_longer_than_any_published_one_forces_no_fetch_and_is_not_kept(
    entra_emulator: EntraEmulator,
) -> None:
    """Published key ids are at most 256 characters (``jwks._MAX_KEY_ID_CHARS``): a token naming
    a longer one can never verify, yet it spent the forced refresh and was remembered in the
    absent set, ~12 KB of attacker text per entry (1024 per key set, four key sets here)."""
    api = entra_emulator.register_api(custom_signing_key=True)
    check = TokenValidator(entra_emulator.config(audiences=[api.client_id]))
    good = entra_emulator.issue_token(audience=api.client_id, roles=["r"])
    await check.validate(good)
    fetched = entra_emulator.fetch_count("jwks")
    attacker = EntraEmulator.generate_key()
    entra_emulator.delay = 0.2  # the forced refresh stays in flight while the flood arrives
    flood = [
        entra_emulator.issue_token(
            key=attacker, headers={"kid": f"{n:04d}" + "k" * 8000}, audience=api.client_id,
            roles=["r"],
        )
        for n in range(200)
    ]  # fmt: skip
    results = await asyncio.gather(*(check.validate(t) for t in flood), return_exceptions=True)
    entra_emulator.delay = 0.0
    assert all(isinstance(r, InvalidToken) and r.reason == "key_not_found" for r in results)
    sources = check.key_store._all_sources()
    assert max((len(kid or "") for s in sources for kid, _ in s.absent), default=0) <= 256
    assert entra_emulator.fetch_count("jwks") == fetched  # the forced refresh is still unspent
    await check.aclose()


async def test_held_by_design_a_cold_start_404_refuses_that_version_for_one_interval(
    entra_emulator: EntraEmulator,
) -> None:
    """Only the authority (or a proxy on the way) can answer 404, and never with keys in hand:
    then a single 404 before the first keys refuses valid tokens of that version as invalid
    (401, not 503) until ``min_refresh_interval`` has passed, not for a 1 s back-off."""
    clock = FakeClock()
    config = entra_emulator.config()
    check = TokenValidator(config, key_store=KeyStore(config, clock=clock))
    token = entra_emulator.issue_token(roles=["r"])
    entra_emulator.served_versions = ("1.0",)  # the v2 metadata answers 404 once
    with pytest.raises(InvalidToken, match="version") as info:
        await check.validate(token)
    assert info.value.reason == "version_not_served"
    entra_emulator.served_versions = ("1.0", "2.0")  # back at once
    clock.advance(config.min_refresh_interval - 1)
    with pytest.raises(InvalidToken, match="version"):
        await check.validate(token)
    clock.advance(1)
    assert (await check.validate(token)).roles == {"r"}
    # with keys in hand, a 404 is an outage like any other: the keys keep serving
    entra_emulator.served_versions = ("1.0",)
    clock.advance(config.refresh_interval * 1.1)  # past the refresh time and its jitter
    assert (await check.validate(token)).roles == {"r"}  # stale: starts a refresh, which 404s
    await settle(check.key_store)
    assert entra_emulator.fetch_count("metadata", version="2.0") == 3
    assert (await check.validate(token)).roles == {"r"}
    await check.aclose()


def test_held_the_metadata_paths_never_reach_the_app(
    entra_emulator: EntraEmulator, ran: list[Any]
) -> None:
    """Every method, under a root_path, with exclusions over "/.well-known/": the document or a
    405, never the app."""

    async def catch_all(request: Request) -> Response:
        ran.append(request.url.path)
        return PlainTextResponse("app")

    resource = ProtectedResource(
        resource="https://api.contoso.com/orders", scopes_supported=["api://orders/Orders.Read"]
    )
    app = Starlette(
        routes=[
            Route("/{path:path}", catch_all, methods=["GET", "HEAD", "POST", "OPTIONS", "PUT"]),
        ],
        middleware=[
            Middleware(EntraAuthMiddleware, config=entra_emulator.config(),
                       resource_metadata=resource, exclude_prefixes=["/.well-known/"])
        ],
    )  # fmt: skip
    with TestClient(app, root_path="/api") as client:
        for path in (
            "/api/.well-known/oauth-protected-resource",
            "/api/.well-known/oauth-protected-resource/orders",
        ):
            for method in ("GET", "HEAD", "POST", "OPTIONS", "PUT"):
                response = client.request(method, path, headers=PREFLIGHT)
                assert response.status_code in (200, 204, 405), (method, path)
        # the document's paths exactly: a neighbour is the app's (here: excluded, so public)
        assert client.get("/api/.well-known/oauth-protected-resource/orders/x").text == "app"
    assert ran == ["/api/.well-known/oauth-protected-resource/orders/x"]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:S3cretPassw0rd@api.contoso.com",
        "https://user:S3cretPassw0rd@api.contoso.com:99999",
        "http://user:S3cretPassw0rd@api.contoso.com",
        "https://user:S3cretPassw0rd@api.contoso.com/a b",  # not RFC 3986 characters
    ],
)
def test_protected_resource_urls_with_credentials_are_refused_without_echoing_them(
    url: str,
) -> None:
    """``resource`` often comes from the environment (the public URL of a deployment)."""
    for field in ("resource", "authorization_servers", "resource_documentation"):
        values: dict[str, Any] = {
            "resource": "https://api.contoso.com",
            "scopes_supported": ["api://orders/Orders.Read"],
        }
        values[field] = [url] if field == "authorization_servers" else url
        with pytest.raises(ValueError, match=field) as info:
            ProtectedResource(**values)
        assert "S3cretPassw0rd" not in str(info.value), field

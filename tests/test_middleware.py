"""EntraAuthMiddleware at the ASGI interface (TestClient); keys come from the emulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message
from starlette.websockets import WebSocket

from entra_guard import AuthOutcome, EntraAuthMiddleware, EntraConfig, KeyStore, TokenValidator
from entra_guard.errors import InsufficientPermissions
from entra_guard.middleware import STATE_KEY
from entra_guard.starlette import principal_of, require_roles, require_scope_or_role
from entra_guard.testing import DEFAULT_CLIENT_ID, EntraEmulator
from tests.asgi import denial_of
from tests.conftest import FakeClock


async def me(request: Request) -> JSONResponse:
    principal = request.state.entra_principal
    return JSONResponse(
        {
            "client_id": principal.client_id if principal else None,
            "user": request.user.display_name if request.user.is_authenticated else None,
            "auth": sorted(request.auth.scopes),
        }
    )


@requires("Orders.Read")
async def starlette_requires(request: Request) -> Response:
    return Response("read")


@require_roles("Orders.Write")
async def write(request: Request) -> Response:
    return Response("written", status_code=201)


@require_scope_or_role(scopes=["Orders.Read"], roles=["Orders.Read"])
def sync_read(request: Request) -> Response:
    return Response("sync read")


async def health(request: Request) -> Response:
    return Response("ok")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"client_id": principal_of(websocket).client_id})
    await websocket.close()


@require_roles("Orders.Write")
async def ws_writer(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


ROUTES = [
    Route("/me", me),
    Route("/requires", starlette_requires),
    Route("/write", write, methods=["POST"]),
    Route("/write-options", write, methods=["OPTIONS"]),
    Route("/sync", sync_read),
    Route("/health", health),
    Route("/public/info", health),
    Route("/healthz", health),
    WebSocketRoute("/ws", ws_echo),
    WebSocketRoute("/ws/write", ws_writer),
]


def make_app(config: EntraConfig | None = None, **options: Any) -> Starlette:
    if "validator" not in options:
        options["config"] = config
    options.setdefault("exclude_paths", ["/health"])
    options.setdefault("exclude_prefixes", ["/public/"])
    return Starlette(routes=ROUTES, middleware=[Middleware(EntraAuthMiddleware, **options)])


@pytest.fixture
def client(entra_emulator: EntraEmulator) -> Iterator[TestClient]:
    with TestClient(make_app(entra_emulator.config())) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_puts_the_principal_in_the_request(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == DEFAULT_CLIENT_ID
    assert body["auth"] == ["Orders.Read", "authenticated"]
    assert body["user"] == body["client_id"]  # an app has no name: the client id is shown


def test_no_credentials_is_a_bare_bearer_challenge(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "missing_token"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("value", "reason_word"),
    [
        ("Bearer", "no token"),
        ("Bearer     ", "no token"),
        ("Bearer\tabc", "with a space"),
    ],
)
def test_malformed_credentials_are_an_invalid_request(
    client: TestClient, value: str, reason_word: str
) -> None:
    response = client.get("/me", headers={"Authorization": value})
    assert response.status_code == 400
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_request", error_description="')
    body = response.json()
    assert body["error"] == "invalid_request"
    assert reason_word in body["error_description"]
    assert body["error_description"] in challenge  # the same words in both places


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Token abc", "Bearerabc", "Negotiate", ""])
def test_another_scheme_is_answered_as_no_credentials_rfc_6750_3_1(
    client: TestClient, value: str
) -> None:
    """RFC 6750 §3.1: a request that uses an unsupported authentication method lacks
    authentication; the answer names the scheme to use and carries no error code."""
    response = client.get("/me", headers={"Authorization": value})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error"] == "unsupported_scheme"
    assert "Authorization: Bearer <token>" in body["error_description"]


def test_two_authorization_headers_are_refused(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    response = client.get(
        "/me", headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    )
    assert response.status_code == 400
    assert "exactly one" in response.json()["error_description"]


@pytest.mark.parametrize("template", ["bearer {}", "BEARER {}", "Bearer    {}", "  Bearer {}\t "])
def test_the_scheme_is_case_insensitive_and_whitespace_lenient(
    entra_emulator: EntraEmulator, client: TestClient, template: str
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert client.get("/me", headers={"Authorization": template.format(token)}).status_code == 200


def test_tokens_in_the_query_string(entra_emulator: EntraEmulator) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    seen: list[AuthOutcome] = []
    with TestClient(make_app(entra_emulator.config(), on_outcome=seen.append)) as client:
        refused = client.get("/me", params={"access_token": token})
    assert (refused.status_code, seen[-1].reason) == (400, "token_in_query")
    assert refused.json()["error"] == "invalid_request"
    assert "URL" in refused.json()["error_description"]
    lenient_app = make_app(entra_emulator.config(), accept_query_token=True, on_outcome=seen.append)
    with TestClient(lenient_app) as lenient:
        assert lenient.get("/me", params={"access_token": token}).status_code == 200
        both = lenient.get("/me", params={"access_token": token}, headers=bearer(token))
        assert (both.status_code, seen[-1].reason) == (400, "multiple_token_methods")
        # RFC 6749 §3.1: no parameter more than once; the first one does not win.
        twice = lenient.get("/me", params=[("access_token", token), ("access_token", "x")])
    assert (twice.status_code, seen[-1].reason) == (400, "multiple_query_tokens")
    assert twice.json()["error"] == "invalid_request"


def test_an_invalid_token_is_401_invalid_token(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    forged = entra_emulator.issue_token(
        roles=["Orders.Read"], key=EntraEmulator.generate_key(),
        headers={"kid": entra_emulator.current_key.kid},
    )  # fmt: skip
    response = client.get("/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token\'s signature is invalid"'
    )
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The token's signature is invalid",
    }


def test_an_expired_token(entra_emulator: EntraEmulator, client: TestClient) -> None:
    expired = entra_emulator.issue_token(roles=["Orders.Read"], now=1_000_000, lifetime=60)
    response = client.get("/me", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["error_description"] == "The token has expired"


def test_a_token_granting_nothing_is_403(entra_emulator: EntraEmulator, client: TestClient) -> None:
    response = client.get("/me", headers=bearer(entra_emulator.issue_token(roles=[])))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


def test_route_requirements_answer_403_with_the_scope(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    reader = entra_emulator.issue_token(roles=["Orders.Read"])
    response = client.post("/write", headers=bearer(reader))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="This operation requires app role '
        'Orders.Write", scope="Orders.Write"'
    )
    assert response.json()["error"] == "insufficient_scope"
    writer = entra_emulator.issue_token(roles=["Orders.Write"])
    assert client.post("/write", headers=bearer(writer)).status_code == 201


def test_scope_or_role_on_a_sync_endpoint(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    app = entra_emulator.issue_token(roles=["Orders.Read"])
    user = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
    other = entra_emulator.issue_token(app_only=False, scopes=["Profile.Read"])
    assert client.get("/sync", headers=bearer(app)).text == "sync read"
    assert client.get("/sync", headers=bearer(user)).text == "sync read"
    assert client.get("/sync", headers=bearer(other)).status_code == 403


def test_a_decorated_method_finds_its_request_after_self(entra_emulator: EntraEmulator) -> None:
    """An ``HTTPEndpoint`` method is called ``(self, request)``: the request is not the first
    argument, and the requirement must still be checked against its caller."""

    class Orders(HTTPEndpoint):
        @require_roles("Orders.Write")
        async def post(self, request: Request) -> Response:
            return Response("written", status_code=201)

    app = Starlette(
        routes=[Route("/orders", Orders)],
        middleware=[Middleware(EntraAuthMiddleware, config=entra_emulator.config())],
    )
    with TestClient(app) as client:
        reader = entra_emulator.issue_token(roles=["Orders.Read"])
        refused = client.post("/orders", headers=bearer(reader))
        assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")
        writer = entra_emulator.issue_token(roles=["Orders.Write"])
        assert client.post("/orders", headers=bearer(writer)).status_code == 201


async def test_a_decorated_function_without_a_request_is_a_type_error() -> None:
    @require_roles("Orders.Write")
    async def no_request(order_id: int) -> str:
        return "never"

    with pytest.raises(TypeError, match="no_request takes no Request or WebSocket"):
        await no_request(7)


def test_starlettes_own_requires_sees_roles_and_scopes(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    for token in (
        entra_emulator.issue_token(roles=["Orders.Read"]),
        entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"]),
    ):
        assert client.get("/requires", headers=bearer(token)).status_code == 200
    other = entra_emulator.issue_token(roles=["Orders.Write"])
    assert client.get("/requires", headers=bearer(other)).status_code == 403


def test_excluded_paths_need_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/public/info").status_code == 200
    assert client.get("/healthz").status_code == 401  # exact paths are exact


def test_optional_mode(entra_emulator: EntraEmulator) -> None:
    with TestClient(make_app(entra_emulator.config(), optional=True)) as client:
        anonymous = client.get("/me")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"client_id": None, "user": None, "auth": []}
        bad = client.get("/me", headers=bearer("not.a.token"))
        assert bad.status_code == 401  # a token that is present must still be valid
        basic = client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert (basic.status_code, basic.json()["error"]) == (401, "unsupported_scheme")
        assert client.post("/write").status_code == 401  # a guarded route still needs one
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/me", headers=bearer(token)).json()["client_id"]


def test_keys_unavailable_is_503_with_retry_after(entra_emulator: EntraEmulator) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    entra_emulator.fail_status = 500
    with TestClient(make_app(entra_emulator.config())) as client:
        response = client.get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "www-authenticate" not in response.headers
    assert response.json()["error"] == "temporarily_unavailable"


def test_websocket_accepts_a_valid_token(entra_emulator: EntraEmulator, client: TestClient) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    with client.websocket_connect("/ws", headers=bearer(token)) as ws:
        assert ws.receive_json()["client_id"]


def test_websocket_is_refused_before_accept(
    entra_emulator: EntraEmulator, client: TestClient
) -> None:
    status, headers, body = denial_of(client, "/ws", {})
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    reader = entra_emulator.issue_token(roles=["Orders.Read"])
    status, headers, body = denial_of(client, "/ws/write", bearer(reader))
    assert status == 403
    assert b"insufficient_scope" in body


async def test_websocket_without_the_denial_extension_closes_with_1008(
    entra_emulator: EntraEmulator,
) -> None:
    middleware = EntraAuthMiddleware(
        make_app(entra_emulator.config()), config=entra_emulator.config()
    )
    sent: list[Message] = []
    messages: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await middleware(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008
    await middleware.validator.aclose()


@pytest.mark.parametrize(
    ("kind", "first"),
    [("http", "http.response.start"), ("websocket", "websocket.accept")],
)
async def test_a_refusal_after_the_app_started_its_answer_is_raised_not_answered(
    entra_emulator: EntraEmulator, kind: str, first: str
) -> None:
    """Once the app has sent anything, a second answer would break the connection's protocol:
    the middleware re-raises instead of sending its 403."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": first, "status": 200, "headers": []})
        raise InsufficientPermissions("missing_permission", "raised while answering")

    middleware = EntraAuthMiddleware(app, config=entra_emulator.config())
    sent: list[Message] = []
    messages: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    token = entra_emulator.issue_token(roles=["Orders.Read"])
    headers = [(b"authorization", f"Bearer {token}".encode())]
    scope = {"type": kind, "path": "/x", "headers": headers, "query_string": b""}
    with pytest.raises(InsufficientPermissions):
        await middleware(scope, receive, send)
    assert [m["type"] for m in sent] == [first]
    await middleware.validator.aclose()


def owned_store(app: Starlette) -> Any:
    stack: Any = app.middleware_stack
    while not isinstance(stack, EntraAuthMiddleware):
        stack = stack.app
    return stack.validator.key_store


def test_lifespan_prefetches_keys_and_closes_the_client(entra_emulator: EntraEmulator) -> None:
    app = make_app(entra_emulator.config())
    with TestClient(app) as client:
        assert entra_emulator.fetch_count("jwks") == 2  # both versions, before any request
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/me", headers=bearer(token)).status_code == 200
        assert entra_emulator.fetch_count("jwks") == 2
        http = owned_store(app)._client
        assert not http.is_closed
    assert http.is_closed


def test_one_app_serves_several_test_clients(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    """Each TestClient runs the app in a new event loop (and shuts it down at the end)."""
    config = entra_emulator.config(min_refresh_interval=1)
    validator = TokenValidator(config, key_store=KeyStore(config, clock=clock))
    app = make_app(validator=validator)

    def new_key_token() -> str:
        clock.advance(1.0)  # past the forced-refresh interval: the new key can be fetched
        entra_emulator.rotate_keys()
        return entra_emulator.issue_token(roles=["Orders.Read"])

    for round_ in range(2):
        with TestClient(app) as client:
            token = new_key_token()  # the key must be fetched in this client's loop
            assert client.get("/me", headers=bearer(token)).status_code == 200, round_
    plain = TestClient(app)  # no lifespan, and a new event loop for every request
    for round_ in range(2):
        assert plain.get("/me", headers=bearer(new_key_token())).status_code == 200, round_
    assert entra_emulator.fetch_count("jwks", version="2.0") == 5  # prefetch, then each new key
    asyncio.run(validator.aclose())


def test_a_shared_validator_is_not_closed_by_the_middleware(entra_emulator: EntraEmulator) -> None:
    validator = TokenValidator(entra_emulator.config())
    with TestClient(make_app(validator=validator)) as client:
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/me", headers=bearer(token)).status_code == 200
    http = validator.key_store._client
    assert http is not None
    assert not http.is_closed
    assert client.portal is None  # the TestClient's loop is gone; close in a loop of our own
    asyncio.run(validator.aclose())
    assert http.is_closed


def test_outcome_hook_sees_every_decision_and_cannot_break_requests(
    entra_emulator: EntraEmulator,
) -> None:
    seen: list[AuthOutcome] = []

    async def hook(outcome: AuthOutcome) -> None:
        seen.append(outcome)
        if outcome.reason == "missing_token":
            raise RuntimeError("hook bug")

    with TestClient(make_app(entra_emulator.config(), on_outcome=hook)) as client:
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/me", headers=bearer(token)).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/health").status_code == 200
    assert [(o.status, o.reason, o.path) for o in seen] == [
        (200, "authenticated", "/me"),
        (401, "missing_token", "/me"),
    ]
    assert seen[0].principal is not None
    assert seen[0].method == "GET"


def test_an_unexpected_error_refuses_instead_of_500(entra_emulator: EntraEmulator) -> None:
    class Broken(TokenValidator):
        async def validate(self, token: str | bytes, *, now: float | None = None) -> Any:
            raise RuntimeError("a bug")

    broken = Broken(entra_emulator.config())
    with TestClient(make_app(validator=broken, prefetch_keys=False)) as client:
        response = client.get("/me", headers=bearer("x.y.z"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_failures_are_logged_with_reason_and_never_the_token(
    entra_emulator: EntraEmulator, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    expired = entra_emulator.issue_token(roles=["Orders.Read"], now=1_000_000, lifetime=60)
    with caplog.at_level(logging.DEBUG, logger="entra_guard"):
        client.get("/me", headers=bearer(expired))
    assert any("token_expired" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert expired not in record.getMessage()
        assert expired.split(".")[2] not in record.getMessage()


def test_the_state_key_is_documented_and_set() -> None:
    assert STATE_KEY == "entra_principal"


def test_configuration_mistakes_fail_at_construction(entra_emulator: EntraEmulator) -> None:
    app = Starlette()
    with pytest.raises(ValueError, match="exactly one"):
        EntraAuthMiddleware(app)
    with pytest.raises(ValueError, match="start with '/'"):
        EntraAuthMiddleware(app, config=entra_emulator.config(), exclude_paths=["health"])


async def test_other_scope_types_pass_through_untouched(entra_emulator: EntraEmulator) -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    middleware = EntraAuthMiddleware(inner, config=entra_emulator.config())
    scope = {"type": "custom.protocol", "path": "/me", "headers": []}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == [scope]
    assert "auth" not in scope
    await middleware.validator.aclose()


def test_exclusions_match_the_path_the_app_routes_on_under_a_root_path(
    entra_emulator: EntraEmulator,
) -> None:
    """ASGI's ``path`` includes ``root_path`` (``uvicorn --root-path /api``); routes do not."""
    seen: list[AuthOutcome] = []
    app = make_app(entra_emulator.config(), on_outcome=seen.append)
    with TestClient(app, root_path="/api") as client:
        assert client.get("/api/health").text == "ok"
        assert client.get("/api/public/info").text == "ok"
        assert client.get("/api/healthz").status_code == 401  # exact paths stay exact
        assert client.get("/api").status_code == 401  # routes as "", which no exclusion is
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/api/me", headers=bearer(token)).status_code == 200
        # "/api" is a prefix of "/apix" as a string only: Starlette routes "/apix/health" whole.
        assert client.get("/apix/health").status_code == 401
    # What the operator sees (the access log, the caller's URL) is the full path.
    assert [(o.status, o.path) for o in seen] == [
        (401, "/api/healthz"),
        (401, "/api"),
        (200, "/api/me"),
        (401, "/apix/health"),
    ]


def test_exclusions_inside_a_mounted_app(entra_emulator: EntraEmulator) -> None:
    """A ``Mount`` keeps the full path and extends ``root_path``: a proxy that keeps the prefix."""
    outer = Starlette(routes=[Mount("/api", app=make_app(entra_emulator.config()))])
    with TestClient(outer) as client:
        assert client.get("/api/health").text == "ok"
        assert client.get("/api/public/info").text == "ok"
        assert client.get("/api/me").status_code == 401


def preflight(origin: bool = True, method: bool = True) -> dict[str, str]:
    headers = {"Access-Control-Request-Headers": "authorization"}
    if origin:
        headers["Origin"] = "https://spa.example"
    if method:
        headers["Access-Control-Request-Method"] = "GET"
    return headers


def test_a_cors_preflight_passes_only_to_a_cors_middleware_inside(
    entra_emulator: EntraEmulator,
) -> None:
    """A preflight carries no token (Fetch standard). It is let through only where Starlette's
    CORSMiddleware, inside this one, will answer it: a preflight-shaped OPTIONS must never run a
    route without a token."""
    seen: list[AuthOutcome] = []
    bare = make_app(entra_emulator.config(), on_outcome=seen.append)
    with TestClient(bare) as client:
        for headers in (preflight(), {}, preflight(method=False), preflight(origin=False)):
            refused = client.options("/write-options", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"] == "missing_token"
    assert [o.reason for o in seen] == ["missing_token"] * 4

    seen.clear()
    behind_cors = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(EntraAuthMiddleware, config=entra_emulator.config(), on_outcome=seen.append),
            Middleware(CORSMiddleware, allow_origins=["https://spa.example"], allow_methods=["*"],
                       allow_headers=["authorization"]),
        ],
    )  # fmt: skip
    with TestClient(behind_cors) as client:
        answered = client.options("/write-options", headers=preflight())
        assert answered.status_code == 200  # CORSMiddleware's own answer; no route ran
        assert answered.headers["access-control-allow-origin"] == "https://spa.example"
        assert client.options("/write-options", headers=preflight(method=False)).status_code == 401
    assert [o.reason for o in seen] == ["anonymous", "missing_token"]


def test_added_twice_fails_start_up_and_fetches_no_keys(entra_emulator: EntraEmulator) -> None:
    app = make_app(entra_emulator.config())
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config())
    with (
        pytest.raises(RuntimeError, match="inside another EntraAuthMiddleware") as failure,
        TestClient(app),
    ):
        pass
    assert "Add it once" in str(failure.value)
    assert entra_emulator.fetch_count("jwks") == 0


def test_added_twice_fails_the_first_request_without_lifespan(
    entra_emulator: EntraEmulator,
) -> None:
    app = make_app(entra_emulator.config())
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config(), optional=True)
    client = TestClient(app)  # no lifespan: nothing runs before the first request
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    with pytest.raises(RuntimeError, match="exclude_paths, exclude_prefixes and optional="):
        client.get("/me", headers=bearer(token))
    assert entra_emulator.fetch_count("jwks") == 1  # the outer one's fetch only
    with pytest.raises(RuntimeError, match="inside another EntraAuthMiddleware"):
        client.get("/me")  # the outer optional one lets it in: the inner one still objects
    with (
        pytest.raises(RuntimeError, match="inside another EntraAuthMiddleware"),
        client.websocket_connect("/ws", headers=bearer(token)),
    ):
        pass


def test_a_mounted_app_may_have_its_own_middleware_where_the_parent_excludes_it(
    entra_emulator: EntraEmulator,
) -> None:
    """The supported way to protect one mount differently: the parent lets that prefix through."""
    inner = make_app(entra_emulator.config(), exclude_paths=[], exclude_prefixes=[])
    outer = Starlette(
        routes=[Mount("/inner", app=inner), Route("/me", me)],
        middleware=[
            Middleware(
                EntraAuthMiddleware, config=entra_emulator.config(), exclude_prefixes=["/inner/"]
            )
        ],
    )
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    with TestClient(outer) as client:
        assert client.get("/inner/me", headers=bearer(token)).status_code == 200
        assert client.get("/inner/health").status_code == 401  # its own rules: no exclusions
        assert client.get("/me", headers=bearer(token)).status_code == 200

"""Rules of ``middleware`` that mutation testing found untested (benchmarks/MUTATION.md)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from entra_guard import (
    AuthOutcome,
    EntraAuthMiddleware,
    InsufficientPermissions,
    InvalidToken,
    TokenValidator,
)
from entra_guard.bearer import INCOMING_TOKEN, IncomingToken
from entra_guard.middleware import _NESTED, _answers_preflights, _route_path
from entra_guard.testing import EntraEmulator
from tests.asgi import get_with_token


@pytest.mark.parametrize(
    ("path", "root_path", "routed"),
    [
        ("/api/health", "/api", "/health"),
        ("/api", "/api", ""),
        ("/apix/health", "/api", "/apix/health"),  # not a whole segment: left as it is
    ],
)
def test_the_root_path_is_removed_only_as_a_whole_segment(
    path: str, root_path: str, routed: str
) -> None:
    assert _route_path(path, root_path) == routed


class _Refusing(TokenValidator):
    """A validator whose every answer is one refusal with a long description."""

    async def validate(self, token: str | bytes, *, now: float | None = None) -> Any:
        raise InvalidToken("token_expired", "x" * 119 + "yz")


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a refused request must not reach the app")


async def _websocket_with_token(guard: EntraAuthMiddleware) -> list[Message]:
    """A WebSocket with a token, through ``guard``: what it received and sent, in order."""
    sent: list[Message] = []

    async def receive() -> Message:
        sent.append({"type": "(received websocket.connect)"})
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "websocket", "path": "/ws", "query_string": b"",
                    "headers": [(b"authorization", b"Bearer abc")]}  # fmt: skip
    await guard(scope, receive, send)
    return sent


async def test_a_websocket_without_the_denial_extension_is_closed_with_1008(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[AuthOutcome] = []
    validator = _Refusing(entra_emulator.config())
    guard = EntraAuthMiddleware(ok, validator=validator, on_outcome=seen.append)
    caplog.set_level(logging.INFO, logger="entra_guard.middleware")
    sent = await _websocket_with_token(guard)
    assert sent == [
        {"type": "(received websocket.connect)"},  # first, as ASGI asks, and once
        {"type": "websocket.close", "code": 1008, "reason": "x" * 119 + "y"},
    ]
    assert [(o.status, o.reason, o.method, o.path) for o in seen] == [
        (401, "token_expired", "WEBSOCKET", "/ws")
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "entra_guard.middleware"] == [
        "refused WS /ws: token_expired (401)"
    ]
    await validator.aclose()


async def test_a_bug_inside_validation_refuses_a_websocket_after_its_connect(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """As for HTTP (``test_rules``): ``validation_error``, refused only once the middleware
    has read ``websocket.connect``, as ASGI asks."""

    class Broken(TokenValidator):
        async def validate(self, token: str | bytes, *, now: float | None = None) -> Any:
            raise RuntimeError("a bug of ours")

    validator = Broken(entra_emulator.config())
    guard = EntraAuthMiddleware(ok, validator=validator)
    caplog.set_level(logging.CRITICAL, logger="entra_guard.middleware")  # logged: test_rules
    sent = await _websocket_with_token(guard)
    assert sent == [
        {"type": "(received websocket.connect)"},
        {"type": "websocket.close", "code": 1008, "reason": "The token could not be validated"},
    ]
    await validator.aclose()


async def test_an_http_refusal_is_one_info_line_naming_method_path_reason_and_status(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    validator = _Refusing(entra_emulator.config())
    guard = EntraAuthMiddleware(ok, validator=validator)
    caplog.set_level(logging.INFO, logger="entra_guard.middleware")
    status, _, _ = await get_with_token(guard, "abc", path="/orders/7")
    assert status == 401
    records = [r for r in caplog.records if r.name == "entra_guard.middleware"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "refused GET /orders/7: token_expired (401)")
    ]
    await validator.aclose()


@pytest.mark.parametrize("between", [0, 2], ids=["cors right inside", "two layers between"])
def test_with_cors_inside_only_a_true_preflight_passes_without_a_token(
    entra_emulator: EntraEmulator, between: int
) -> None:
    """``CORSMiddleware`` anywhere inside: the middleware walks the stack down to find it."""
    ran: list[str] = []

    async def orders(request: Request) -> Response:
        ran.append(request.method)
        return PlainTextResponse("orders")

    app = Starlette(
        routes=[Route("/orders", orders, methods=["GET", "POST"])],
        middleware=[
            Middleware(EntraAuthMiddleware, config=entra_emulator.config()),
            *[Middleware(GZipMiddleware) for _ in range(between)],
            Middleware(CORSMiddleware, allow_origins=["https://app.test"], allow_methods=["*"]),
        ],
    )
    preflight_headers = {"Origin": "https://app.test", "Access-Control-Request-Method": "POST"}
    with TestClient(app) as client:
        preflight = client.options("/orders", headers=preflight_headers)
        assert preflight.status_code == 200  # answered by CORSMiddleware, no route ran
        assert preflight.headers["access-control-allow-origin"] == "https://app.test"
        for method in ("GET", "POST"):  # preflight-shaped headers on another method
            refused = client.request(method, "/orders", headers=preflight_headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert client.options("/orders", headers={"Origin": "https://app.test"}).status_code == 401
    assert ran == []


class _Layer:
    """A pass-through middleware whose ``app`` is set afterwards."""

    app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def test_a_cycle_in_the_middleware_stack_ends_the_walk_with_no_cors_found() -> None:
    first, second = _Layer(), _Layer()
    first.app, second.app = second, first
    assert _answers_preflights(first) is False
    first.app = first
    assert _answers_preflights(first) is False
    second.app = CORSMiddleware(ok)
    assert _answers_preflights(second) is True


def test_exactly_one_of_config_or_validator(entra_emulator: EntraEmulator) -> None:
    said = "give exactly one of config= or validator="
    with pytest.raises(ValueError, match=f"^{said}$"):
        EntraAuthMiddleware(ok)
    config = entra_emulator.config()
    with pytest.raises(ValueError, match=f"^{said}$"):
        EntraAuthMiddleware(ok, config=config, validator=TokenValidator(config))


async def test_nested_the_inner_middleware_fails_the_startup_saying_why(
    entra_emulator: EntraEmulator,
) -> None:
    config = entra_emulator.config()
    inner = EntraAuthMiddleware(ok, config=config, prefetch_keys=False)
    outer = EntraAuthMiddleware(inner, config=config, prefetch_keys=False)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError) as failed:
        await outer({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert str(failed.value) == _NESTED
    assert sent == [{"type": "lifespan.startup.failed", "message": _NESTED}]
    await inner.validator.aclose()
    await outer.validator.aclose()


async def _validated_call(
    entra_emulator: EntraEmulator,
    app: Any,
    scope: Scope,
    receive: Receive,
    send: Send,
    **options: Any,
) -> None:
    validator = TokenValidator(entra_emulator.config())
    try:
        await EntraAuthMiddleware(app, validator=validator, **options)(scope, receive, send)
    finally:
        await validator.aclose()


async def test_the_app_finds_the_validated_token_for_on_behalf_of_calls(
    entra_emulator: EntraEmulator,
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    found: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        found.append(scope[INCOMING_TOKEN])
        await PlainTextResponse("ok")(scope, receive, send)

    status, _, _ = await get_with_token(
        EntraAuthMiddleware(app, config=entra_emulator.config()), token
    )
    assert status == 200
    assert isinstance(found[0], IncomingToken)
    assert found[0].value == token


async def test_a_websocket_refused_after_the_app_read_connect_is_refused_without_a_second_read(
    entra_emulator: EntraEmulator,
) -> None:
    """An app that consumed ``websocket.connect`` and then refuses: the middleware must not wait
    for another connect (none comes: it would hang), and closes with 1008 at once."""
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    messages = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        raise InsufficientPermissions("missing_role", "no", required="Orders.Admin")

    scope: Scope = {"type": "websocket", "path": "/ws", "query_string": b"",
                    "headers": [(b"authorization", f"Bearer {token}".encode())]}  # fmt: skip
    with anyio.fail_after(10):
        await _validated_call(entra_emulator, app, scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "no"}]


async def test_a_failing_outcome_hook_is_logged_with_its_traceback_and_the_request_goes_on(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(outcome: AuthOutcome) -> None:
        raise ValueError("the metrics backend is down")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    token = entra_emulator.issue_token(roles=["Orders.Read"])
    caplog.set_level(logging.INFO, logger="entra_guard.middleware")
    guard = EntraAuthMiddleware(app, config=entra_emulator.config(), on_outcome=hook)
    status, _, _ = await get_with_token(guard, token)
    assert status == 200
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["the on_outcome hook failed; the request goes on"]
    assert failures[0].exc_info is not None
    assert "the metrics backend is down" in str(failures[0].exc_info[1])


def test_an_app_starts_when_its_keys_cannot_be_prefetched_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with EntraEmulator() as idp:
        config = idp.config(fetch_timeout=2.0)
        idp.stop()  # the identity provider is down when the app starts
        app = Starlette(routes=[Route("/health", lambda request: PlainTextResponse("ok"))])
        app.add_middleware(EntraAuthMiddleware, config=config, exclude_paths=["/health"])
        caplog.set_level(logging.WARNING, logger="entra_guard.middleware")
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "entra_guard.middleware"]
    assert warnings == ["signing keys could not be prefetched; requests will retry"]


async def test_a_scope_of_another_type_reaches_the_app_untouched(
    entra_emulator: EntraEmulator,
) -> None:
    """Neither HTTP, WebSocket nor lifespan (an extension's scope): passed on as it came."""
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        raise AssertionError("not read")

    async def send(message: Message) -> None:
        raise AssertionError("not sent")

    scope: Scope = {"type": "example.custom"}
    await EntraAuthMiddleware(app, config=entra_emulator.config())(scope, receive, send)
    assert seen == [({"type": "example.custom"}, receive, send)]
    assert seen[0][2] is send


def test_an_excluded_route_reads_its_request_body(entra_emulator: EntraEmulator) -> None:
    async def hook(request: Request) -> Response:
        return PlainTextResponse(await request.body())

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config(), exclude_paths=["/hook"])
    with TestClient(app) as client:
        response = client.post("/hook", content=b"a webhook's payload")
    assert (response.status_code, response.content) == (200, b"a webhook's payload")

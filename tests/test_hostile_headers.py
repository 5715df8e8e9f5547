"""Hostile Authorization headers at the ASGI boundary: only ever 400 or 401, never 500."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from entra_guard import AuthOutcome, EntraAuthMiddleware
from entra_guard.testing import EntraEmulator
from tests.support import assemble, b64, segments


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


async def call(
    middleware: EntraAuthMiddleware, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http", "method": "GET", "path": "/orders", "headers": headers,
        "query_string": query, "asgi": {"version": "3.0"},
    }  # fmt: skip
    await middleware(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def assert_refused(status: int, headers: dict[bytes, bytes], body: bytes) -> None:
    assert status in (400, 401), (status, body)
    challenge = headers[b"www-authenticate"]
    assert challenge.startswith(b"Bearer")
    assert challenge.isascii()
    document = json.loads(body)
    assert set(document) == {"error", "error_description"}


header_values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.builds(
        lambda s, t: s + t.encode("latin-1", "replace"),
        st.sampled_from([b"Bearer ", b"bearer\t", b"BEARER   ", b" Bearer", b"Basic "]),
        st.text(max_size=200),
    ),
    st.builds(lambda n: b"Bearer " + b"a" * n, st.integers(0, 70_000)),
    st.builds(lambda n: b"Bearer " + b"e30." * n + b"x", st.integers(0, 3000)),
)


def test_hostile_headers_get_400_or_401(entra_emulator: EntraEmulator) -> None:
    loop = asyncio.new_event_loop()
    middleware = EntraAuthMiddleware(ok, config=entra_emulator.config())

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(header_values, min_size=1, max_size=3), st.binary(max_size=100))
    def check(values: list[bytes], query: bytes) -> None:
        headers = [(b"authorization", value) for value in values]
        status, response_headers, body = loop.run_until_complete(call(middleware, headers, query))
        assert_refused(status, response_headers, body)
        if len(values) > 1:
            assert status == 400

    try:
        check()
    finally:
        loop.run_until_complete(middleware.validator.aclose())
        loop.close()
    assert entra_emulator.fetch_count("jwks") == 0  # garbage never reached the key store


def test_specific_hostile_shapes(entra_emulator: EntraEmulator) -> None:
    async def run() -> None:
        outcomes: list[AuthOutcome] = []
        middleware = EntraAuthMiddleware(
            ok, config=entra_emulator.config(), on_outcome=outcomes.append
        )
        token = entra_emulator.issue_token(roles=["Orders.Read"]).encode()
        cases: list[tuple[list[tuple[bytes, bytes]], int, str]] = [
            ([(b"authorization", b"Bearer " + b"x" * 100_000)], 401, "token_too_large"),
            ([(b"authorization", "Bearer jéton".encode())], 401, "malformed_token"),
            ([(b"authorization", b"Bearer \xff\xfe")], 401, "malformed_token"),
            ([(b"authorization", b"Bearer " + token), (b"authorization", b"Bearer x")], 400,
             "multiple_authorization_headers"),
            ([(b"authorization", b"Bearer\t" + token)], 400, "malformed_authorization"),
            ([(b"authorization", b"Bearer " + token + b" extra")], 401, "malformed_token"),
            ([(b"authorization", b"Bearer " + token[:-1])], 401, "malformed_token"),  # 341 chars
            ([(b"authorization", b"Bearer " + token[:-2])], 401, "invalid_signature"),
            ([(b"authorization", b"Bearer " + token + b"\r\nX-Injected: 1")], 401,
             "malformed_token"),
            ([(b"authorization", b"")], 401, "unsupported_scheme"),
            ([(b"authorization", b"Basic YTpi")], 401, "unsupported_scheme"),
        ]  # fmt: skip
        for headers, expected, reason in cases:
            status, response_headers, body = await call(middleware, headers)
            assert (status, outcomes[-1].reason) == (expected, reason), headers[0][1][:40]
            assert_refused(status, response_headers, body)
        status, _, body = await call(middleware, [(b"authorization", b"Bearer " + token)])
        assert (status, body) == (200, b"ok")
        await middleware.validator.aclose()

    asyncio.run(run())


BEFORE_THE_SIGNATURE = {"malformed_token", "version_not_accepted", "invalid_signature"}


def test_hostile_tokens_at_the_asgi_boundary_get_401(entra_emulator: EntraEmulator) -> None:
    """Well-formed JWTs: the tenant's real header, arbitrary claims, a real or random signature;
    refused for the JSON, the version or the signature, never for a claim."""
    loop = asyncio.new_event_loop()
    outcomes: list[AuthOutcome] = []
    middleware = EntraAuthMiddleware(ok, config=entra_emulator.config(), on_outcome=outcomes.append)
    real = entra_emulator.issue_token(roles=["Orders.Read"])
    header, payload, signature = segments(real)
    values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    claims = st.dictionaries(st.sampled_from([*payload, "x", "nonce", "idtyp"]), values, max_size=8)
    signatures = st.one_of(st.just(signature), st.binary(min_size=1, max_size=300).map(b64))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(claims, signatures)
    def check(changes: dict[str, object], sig: str) -> None:
        forged = {**payload, **changes, "forged": True}  # never the signed claims
        token = assemble(header, forged, sig).encode()
        status, headers, body = loop.run_until_complete(
            call(middleware, [(b"authorization", b"Bearer " + token)])
        )
        assert status == 401, body
        assert_refused(status, headers, body)
        # Nothing in the claims is believed before the signature: only the refusals that
        # come before it (the JSON itself, and 'ver', which picks our key set) are possible.
        assert outcomes[-1].reason in BEFORE_THE_SIGNATURE, (changes, outcomes[-1].reason)

    try:
        check()
    finally:
        loop.run_until_complete(middleware.validator.aclose())
        loop.close()

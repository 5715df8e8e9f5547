"""Section 3: what authentication adds to a request, measured on the ASGI call itself.

No client and no server: the scope, ``receive`` and ``send`` are built here, so the only code
that runs is the app's (routing, middleware, endpoint, response). Every request carries the
same ``Authorization`` header shape, the unprotected apps included, so the difference between a
protected app and the same app without authentication is the authentication's overhead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Scope

from benchmarks.apps import PATH, PeerSettings, fastapi_app, peer_available, starlette_app
from benchmarks.common import Batch, Context, Cursor, Timing, compare, config_for
from benchmarks.report import Row, ratio, us

__all__ = ["Sink", "call", "headers_for", "lifespan", "request_scope", "run"]

SECTION = "inprocess"
OVERHEAD_TARGET = 0.15  # our overhead, repeated token, relative to the unprotected app
PEER_REPEATED_TARGET = 20.0  # the peer's overhead over ours, repeated token
PEER_FRESH_TARGET = 5.0  # the same, a fresh token per request

Headers = list[tuple[bytes, bytes]]
_LIFESPAN_TIMEOUT = 30.0

_SCOPE: Scope = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}
_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def headers_for(token: str) -> Headers:
    return [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer " + token.encode("ascii")),
    ]


def request_scope(headers: Headers) -> Scope:
    """A new scope per request: apps and middleware write into it."""
    return {**_SCOPE, "headers": headers}


async def _receive() -> Message:
    return _REQUEST


class Sink:
    """``send``: keeps the status of the last response and counts those that were not 200."""

    def __init__(self) -> None:
        self.status = 0
        self.failures = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status != 200:
                self.failures += 1


async def call(app: ASGIApp, headers: Headers) -> int:
    """One request; its status."""
    sink = Sink()
    await app(request_scope(headers), _receive, sink)
    return sink.status


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's lifespan around the block, as a server would (the middleware prefetches
    the signing keys at start-up and closes its validator at shutdown)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, inbox.get, outbox.put)

    task = asyncio.create_task(serve())
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), _LIFESPAN_TIMEOUT)
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app failed to start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), _LIFESPAN_TIMEOUT)
        await asyncio.wait_for(task, _LIFESPAN_TIMEOUT)


def _requests(app: ASGIApp, headers: Callable[[int], Iterable[Headers]], sink: Sink) -> Batch:
    async def batch(n: int) -> None:
        for each in headers(n):
            await app({**_SCOPE, "headers": each}, _receive, sink)

    return batch


def run(ctx: Context) -> list[Row]:
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> list[Row]:
    batch, repeats = ctx.options.scaled(100, 40), ctx.options.scaled(41, 5)
    fresh = [headers_for(t) for t in ctx.fresh_tokens(batch * (repeats + 1))]
    repeated = headers_for(ctx.token)
    idp = ctx.idp
    config = config_for(idp)
    peer = PeerSettings(
        client_id=config.audiences[0],
        tenant_id=idp.tenant_id,
        openid_config_url=idp.metadata_url(version="2.0"),
    )
    has_peer = peer_available()
    if not has_peer:
        ctx.note(
            "fastapi-azure-auth is not installed (`pip install -e '.[bench]'`): peer rows skipped."
        )

    def same(n: int) -> Iterable[Headers]:
        return itertools.repeat(repeated, n)

    def fresh_each() -> Callable[[int], Sequence[Headers]]:
        return Cursor(fresh).take  # every app reads the list once, with its own validator

    # name -> (app, headers); one app instance per case, so no case warms another's cache
    setups: dict[str, dict[str, tuple[ASGIApp, Callable[[int], Iterable[Headers]]]]] = {
        "Starlette": {
            "none": (starlette_app(), same),
            "repeated": (starlette_app(config=config), same),
            "fresh": (starlette_app(config=config), fresh_each()),
        },
        "FastAPI": {
            "none": (fastapi_app(), same),
            "repeated": (fastapi_app(config=config), same),
            "fresh": (fastapi_app(config=config), fresh_each()),
        },
    }
    if has_peer:
        setups["FastAPI"]["peer repeated"] = (fastapi_app(peer=peer), same)
        setups["FastAPI"]["peer fresh"] = (fastapi_app(peer=peer), fresh_each())

    rows: list[Row] = []
    for framework, cases in setups.items():
        sinks = {name: Sink() for name in cases}
        async with AsyncExitStack() as stack:
            for app, _ in cases.values():
                await stack.enter_async_context(lifespan(app))
            for name, (app, _) in cases.items():
                status = await call(app, repeated)
                if status != 200:
                    raise RuntimeError(f"{framework} {name}: the repeated token got {status}")
            batches = {
                name: _requests(app, headers, sinks[name]) for name, (app, headers) in cases.items()
            }
            timings = await compare(batches, batch=batch, repeats=repeats)
        failed = {name: sink.failures for name, sink in sinks.items() if sink.failures}
        if failed:
            raise RuntimeError(f"{framework}: responses other than 200 while timing: {failed}")
        rows += _rows(framework, timings)
    return rows


def _rows(framework: str, t: dict[str, Timing]) -> list[Row]:
    bare = t["none"].us

    def data(*keys: str, **extra: Any) -> dict[str, Any]:
        return {**{k: t[k].as_dict() for k in ("none", *keys)}, **extra}

    ours = {kind: t[kind].us - bare for kind in ("repeated", "fresh")}
    rows = [
        Row(SECTION, f"{framework}, no auth, per request", us(bare), data=data()),
        Row(
            SECTION,
            f"{framework} + entra-guard, repeated token, per request",
            us(t["repeated"].us),
            baseline=f"no auth {us(bare)}",
            ratio=ratio(t["repeated"].us / bare),
            data=data("repeated"),
        ),
        Row(
            SECTION,
            f"{framework} + entra-guard overhead, repeated token",
            us(ours["repeated"]),
            baseline=f"no auth {us(bare)}",
            ratio=f"{ours['repeated'] / bare:.1%}",
            target=f"<= {OVERHEAD_TARGET:.0%} of no auth",
            met=ours["repeated"] / bare <= OVERHEAD_TARGET,
            data=data("repeated", overhead_us=ours["repeated"]),
        ),
        Row(
            SECTION,
            f"{framework} + entra-guard overhead, fresh token per request",
            us(ours["fresh"]),
            baseline=f"no auth {us(bare)}",
            ratio=f"{ours['fresh'] / bare:.1%}",
            data=data("fresh", overhead_us=ours["fresh"]),
        ),
    ]
    for kind, target in (("repeated", PEER_REPEATED_TARGET), ("fresh", PEER_FRESH_TARGET)):
        key = f"peer {kind}"
        if key not in t:
            continue
        theirs = t[key].us - bare
        times = theirs / ours[kind] if ours[kind] > 0 else float("inf")
        rows.append(
            Row(
                SECTION,
                f"{framework} + fastapi-azure-auth overhead, {kind} token (vs entra-guard's)",
                us(theirs),
                baseline=f"entra-guard {us(ours[kind])}",
                ratio=f"{ratio(times)} lower" if times != float("inf") else "ours within noise",
                target=f">= {target:.0f}x lower",
                met=times >= target,
                data=data(key, kind, overhead_us=theirs, entra_guard_overhead_us=ours[kind]),
            )
        )
    return rows

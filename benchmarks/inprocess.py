"""Section 3: what authentication adds to a request, measured on the ASGI call itself.

No client and no server: the scope, ``receive`` and ``send`` are built here, so the only code
that runs is the app's (routing, middleware, dependencies, endpoint, response). Every request
carries the same ``Authorization`` header shape, the unprotected apps included, so the
difference between a protected app and the same app without authentication is the
authentication's overhead. Each framework's cases take turns with one bare RSA-2048 verify (the
floor), so every overhead is also given in verifies measured in the same rounds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.types import ASGIApp, Message, Scope

from benchmarks.apps import (
    PATH,
    PeerSettings,
    fastapi_app,
    peer_app,
    peer_available,
    starlette_app,
)
from benchmarks.common import (
    BENCH_ROLE,
    Batch,
    Context,
    Cursor,
    Timing,
    compare,
    config_for,
    split_token,
)
from benchmarks.report import Row, ratio, us

__all__ = ["Sink", "call", "headers_for", "lifespan", "request_scope", "run"]

SECTION = "inprocess"
# Our overhead over the same app without authentication, in bare RSA verifies of this run.
STARLETTE_TARGET = 0.15  # the middleware, repeated token
FASTAPI_REPEATED_TARGET = 0.4  # the middleware and the route's requirement, repeated token
FASTAPI_FRESH_TARGET = 2.0  # the same, a fresh token per request
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
# A baseline whose batches spread wider than this (IQR over median) is noted in the report.
_WIDE_SPREAD = 0.25
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


@dataclass(frozen=True, slots=True)
class _Case:
    """One way of serving the route: what runs, and the target on its overhead, if any."""

    label: str
    app: ASGIApp
    headers: Callable[[int], Iterable[Headers]]
    #: Most our overhead may be, in RSA verifies.
    target: float | None = None
    #: For the peer: our case it is compared with.
    versus: str | None = None
    #: Whether the route demands ``BENCH_ROLE`` (checked before timing).
    policy: bool = True


async def _run(ctx: Context) -> list[Row]:
    batch, repeats = ctx.options.scaled(100, 40), ctx.options.scaled(41, 5)
    tokens = ctx.fresh_tokens(batch * (repeats + 1))
    fresh = [headers_for(t) for t in tokens]
    repeated = headers_for(ctx.token)
    # The same token shape without the role both guarded routes require.
    refused = headers_for(ctx.idp.issue_token(roles=["Orders.Other"]))
    idp = ctx.idp
    config = config_for(idp)
    peer = PeerSettings(
        client_id=config.audiences[0],
        tenant_id=idp.tenant_id,
        openid_config_url=idp.metadata_url(version="2.0"),
    )
    if not peer_available():
        ctx.note(
            "fastapi-azure-auth is not installed (`pip install -e '.[bench]'`): peer rows skipped."
        )

    def same(n: int) -> Iterable[Headers]:
        return itertools.repeat(repeated, n)

    def fresh_each() -> Callable[[int], Sequence[Headers]]:
        return Cursor(fresh).take  # every app reads the list once, with its own validator

    # One app instance per case, so no case warms another's cache.
    groups: dict[str, dict[str, _Case]] = {
        "Starlette": {
            "none": _Case("no auth", starlette_app(), same, policy=False),
            "mw": _Case(
                "middleware, route without a policy",
                starlette_app(config=config),
                same,
                STARLETTE_TARGET,
                policy=False,
            ),
            "decorated": _Case(
                "middleware + @require_scope_or_role on the endpoint",
                starlette_app(config=config, decorated=True),
                same,
            ),
            "decorated fresh": _Case(
                "middleware + @require_scope_or_role, fresh token per request",
                starlette_app(config=config, decorated=True),
                fresh_each(),
            ),
        },
        "FastAPI": {
            "none": _Case("no auth", fastapi_app(), same, policy=False),
            "mw": _Case(
                "middleware, route without a requirement",
                fastapi_app(config=config, requirement="none"),
                same,
                policy=False,
            ),
            "empty": _Case(
                "middleware + a do-nothing dependency level (FastAPI's own cost of one)",
                fastapi_app(config=config, requirement="empty"),
                same,
                policy=False,
            ),
            "req": _Case(
                "middleware + Depends(require_scope_or_role)",
                fastapi_app(config=config),
                same,
                FASTAPI_REPEATED_TARGET,
            ),
            "req fresh": _Case(
                "middleware + Depends(require_scope_or_role), fresh token per request",
                fastapi_app(config=config),
                fresh_each(),
                FASTAPI_FRESH_TARGET,
            ),
        },
    }
    if peer_available():
        groups["FastAPI"]["peer"] = _Case(
            "fastapi-azure-auth, repeated token", peer_app(peer), same, versus="req"
        )
        groups["FastAPI"]["peer fresh"] = _Case(
            "fastapi-azure-auth, fresh token per request",
            peer_app(peer),
            fresh_each(),
            versus="req fresh",
        )

    public_key = idp.current_key.private_key.public_key()
    rows: list[Row] = []
    for framework, cases in groups.items():
        sinks = {name: Sink() for name in cases}
        async with AsyncExitStack() as stack:
            for case in cases.values():
                await stack.enter_async_context(lifespan(case.app))
            await _check_policies(framework, cases, repeated, refused)
            batches: dict[str, Batch] = {"floor": _verifies(public_key, tokens)}
            for name, case in cases.items():
                batches[name] = _requests(case.app, case.headers, sinks[name])
            timings = await compare(batches, batch=batch, repeats=repeats)
        failed = {name: sink.failures for name, sink in sinks.items() if sink.failures}
        if failed:
            raise RuntimeError(f"{framework}: responses other than 200 while timing: {failed}")
        bare = timings["none"]
        if bare.spread > _WIDE_SPREAD:
            ctx.note(
                f"In-process: {framework} without auth took {min(bare.runs_ns) / 1000:.1f} to "
                f"{max(bare.runs_ns) / 1000:.1f} µs per request from batch to batch (interquartile "
                f"range {bare.spread:.0%} of the median): the machine ran at changing speed, and "
                "Python slows down more than the RSA floor, so the ratios are worse than on a "
                "steady machine."
            )
        rows += _rows(framework, cases, timings)
    return rows


def _verifies(public_key: rsa.RSAPublicKey, tokens: Sequence[str]) -> Batch:
    """The floor: one bare RSA-2048 PKCS#1 v1.5 SHA-256 verify of each token's signing input."""
    inputs = Cursor([split_token(t) for t in tokens])
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    async def batch(n: int) -> None:
        for signing_input, signature in inputs.take(n):
            public_key.verify(signature, signing_input, pkcs1, sha256)

    return batch


async def _check_policies(
    framework: str, cases: dict[str, _Case], allowed: Headers, refused: Headers
) -> None:
    """Before timing: every app answers the benchmark's token, and every route with a policy
    refuses a token without the role, so the apps compared really enforce the same rule."""
    for name, case in cases.items():
        status = await call(case.app, allowed)
        if status != 200:
            raise RuntimeError(f"{framework} {name}: the benchmark's token got {status}")
        if case.policy:
            status = await call(case.app, refused)
            if status != 403:
                raise RuntimeError(
                    f"{framework} {name}: a token without {BENCH_ROLE} got {status}, not 403"
                )


def _rows(framework: str, cases: dict[str, _Case], t: dict[str, Timing]) -> list[Row]:
    floor, bare = t["floor"].us, t["none"].us
    overhead = {name: t[name].us - bare for name in cases if name != "none"}
    base = f"no auth {us(bare)}, RSA verify {us(floor)}"

    def data(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "floor": t["floor"].as_dict(),
            "none": t["none"].as_dict(),
            name: t[name].as_dict(),
            "overhead_us": overhead[name],
            "overhead_in_rsa_verifies": overhead[name] / floor,
            **extra,
        }

    rows = [
        Row(SECTION, f"{framework}: floor, one bare RSA-2048 verify (same rounds)", us(floor),
            data={"floor": t["floor"].as_dict()}),
        Row(SECTION, f"{framework}, no auth, per request", us(bare),
            data={"none": t["none"].as_dict()}),
    ]  # fmt: skip
    for name, case in cases.items():
        if name == "none" or case.versus is not None:
            continue
        in_verifies = overhead[name] / floor
        rows.append(
            Row(
                SECTION,
                f"{framework} + {case.label}: overhead",
                us(overhead[name]),
                baseline=base,
                ratio=f"{ratio(in_verifies, case.target)} RSA verify",
                target="-" if case.target is None else f"<= {case.target}x RSA verify",
                # a negative overhead is noise, not a result: no verdict
                met=None if case.target is None or in_verifies <= 0 else in_verifies <= case.target,
                data=data(name),
            )
        )
    for name, case in cases.items():
        if case.versus is None:
            continue
        theirs, ours = overhead[name], overhead[case.versus]
        times = theirs / ours if ours > 0 else float("inf")
        target = PEER_FRESH_TARGET if "fresh" in name else PEER_REPEATED_TARGET
        rows.append(
            Row(
                SECTION,
                f"{framework} + {case.label}: overhead (vs entra-guard's)",
                us(theirs),
                baseline=f"entra-guard {us(ours)}",
                ratio=(
                    f"entra-guard's {ratio(times, target)} lower"
                    if times != float("inf")
                    else "ours within noise"
                ),
                target=f">= {target:.0f}x lower",
                met=times >= target if times != float("inf") else None,
                data=data(name, entra_guard=t[case.versus].as_dict(), times_lower=times),
            )
        )
    return rows

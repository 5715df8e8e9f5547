"""Section 5: a thousand concurrent first requests to a protected app that has no keys yet.

A fresh emulator (its fetch counters at zero) and a fresh app whose keys were not prefetched:
the requests must share one metadata and one JWKS fetch per token version, not start one each.
Half the tokens are v1 and half v2, since each version has its own metadata document.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.types import ASGIApp

from benchmarks.apps import starlette_app
from benchmarks.common import Context, config_for, mint_tokens
from benchmarks.inprocess import call, headers_for
from benchmarks.report import Row, ms, ratio
from entra_guard import TokenValidator
from entra_guard.config import TokenVersion
from entra_guard.testing import EntraEmulator

__all__ = ["run"]

SECTION = "coldstart"
VERSIONS: tuple[TokenVersion, ...] = ("1.0", "2.0")


@dataclass(frozen=True, slots=True)
class _Wave:
    seconds: float
    ok: int


def run(ctx: Context) -> list[Row]:
    per_version = ctx.options.scaled(500, 50)
    with EntraEmulator() as idp:
        cold = [t for v in VERSIONS for t in mint_tokens(idp, per_version, version=v)]
        warm = [t for v in VERSIONS for t in mint_tokens(idp, per_version, version=v)]
        first, second = asyncio.run(_waves(idp, cold, warm))
        fetches = {
            kind: {v: idp.fetch_count(kind, version=v) for v in VERSIONS}
            for kind in ("metadata", "jwks")
        }
    total = len(cold)
    rows = [
        Row(
            SECTION,
            f"Cold start: {total:,} concurrent first requests, until all answered",
            ms(first.seconds * 1000),
            baseline=f"warm {ms(second.seconds * 1000)}",
            ratio=ratio(first.seconds / second.seconds),
            target=f"all {total:,} answered 200",
            met=first.ok == total and second.ok == total,
            data={
                "cold_s": first.seconds,
                "warm_s": second.seconds,
                "cold_ok": first.ok,
                "warm_ok": second.ok,
                "requests": total,
            },
        )
    ]
    for kind, label in (("metadata", "metadata"), ("jwks", "JWKS")):
        counts = fetches[kind]
        rows.append(
            Row(
                SECTION,
                f"Cold start: {label} fetches ({per_version} v1 + {per_version} v2 tokens)",
                f"{sum(counts.values())} (v1 {counts['1.0']}, v2 {counts['2.0']})",
                target="1 per version used (2)",
                met=all(count == 1 for count in counts.values()),
                data={"fetches": counts},
            )
        )
    return rows


async def _waves(idp: EntraEmulator, cold: list[str], warm: list[str]) -> tuple[_Wave, _Wave]:
    # The validator is ours so that it can be closed; no lifespan runs, so nothing prefetches.
    async with TokenValidator(config_for(idp)) as validator:
        app = starlette_app(validator=validator)
        return await _wave(app, cold), await _wave(app, warm)


async def _wave(app: ASGIApp, tokens: list[str]) -> _Wave:
    requests = [headers_for(t) for t in tokens]
    started = time.perf_counter()
    statuses = await asyncio.gather(*(call(app, h) for h in requests))
    return _Wave(time.perf_counter() - started, sum(status == 200 for status in statuses))

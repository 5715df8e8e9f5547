"""The single-flight TTL memory behind run-time tenant decisions and group resolution."""

from __future__ import annotations

import asyncio

import pytest

from entra_guard.async_cache import AsyncTTLCache


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    now = [0.0]
    cache: AsyncTTLCache[str, int] = AsyncTTLCache(ttl=10, maxsize=2, clock=lambda: now[0])
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    first = asyncio.ensure_future(cache.get("t", compute))
    second = asyncio.ensure_future(cache.get("t", compute))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 1
    assert first.cancelled()
    assert await cache.get("t", compute) == 1  # remembered
    now[0] = 10.0
    assert await cache.get("t", compute) == 2  # aged out: asked again
    assert calls == 2


async def test_failures_reach_every_waiter_and_are_not_remembered() -> None:
    cache: AsyncTTLCache[str, int] = AsyncTTLCache(ttl=10, maxsize=2)
    calls = 0

    async def broken() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    outcomes = await asyncio.gather(
        *(cache.get("t", broken) for _ in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [RuntimeError] * 3
    assert calls == 1
    with pytest.raises(RuntimeError):
        await cache.get("t", broken)
    assert calls == 2
    assert len(cache) == 0


def test_bounds_are_required() -> None:
    with pytest.raises(ValueError, match="positive"):
        AsyncTTLCache(ttl=0, maxsize=1)

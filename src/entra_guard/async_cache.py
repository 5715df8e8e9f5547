"""A bounded, time-limited memory of an async function's answers, with single flight.

Shared by the two run-time decisions the library asks the application for: whether a tenant is
allowed, and which groups an overage token's user belongs to. The rules:

- an answer is kept ``ttl`` seconds (by the injected clock), at most ``maxsize`` answers (the
  oldest go first: ``cachetools.TTLCache``);
- only answers are kept: a call that raised is asked again by the next request;
- concurrent first requests for one key share one call (single flight); when it fails, every
  one of them sees the failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

__all__ = ["AsyncTTLCache"]

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class AsyncTTLCache(Generic[Key, Value]):
    """``await cache.get(key, compute)``: ``compute()``'s answer, remembered for ``ttl`` seconds."""

    def __init__(
        self,
        *,
        ttl: float,
        maxsize: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0 or not maxsize > 0:
            raise ValueError(f"ttl and maxsize must be positive, got {ttl!r} and {maxsize!r}")
        self._answers: TTLCache[Key, Value] = TTLCache(maxsize=maxsize, ttl=ttl, timer=clock)
        self._pending: dict[Key, asyncio.Future[Value]] = {}

    async def get(self, key: Key, compute: Callable[[], Awaitable[Value]]) -> Value:
        """The remembered answer, or the one call's answer; raises what ``compute`` raised."""
        try:
            return self._answers[key]
        except KeyError:
            pass
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._call(key, compute))
            # Read the outcome even if every waiter was cancelled: no "never retrieved" warning.
            pending.add_done_callback(_consume)
            self._pending[key] = pending
        # shield: one caller giving up (its request cancelled) must not cancel the others' call.
        return await asyncio.shield(pending)

    async def _call(self, key: Key, compute: Callable[[], Awaitable[Value]]) -> Value:
        try:
            value = await compute()
            self._answers[key] = value
            return value
        finally:
            self._pending.pop(key, None)

    def __len__(self) -> int:
        return len(self._answers)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

"""What the server thread reads while the test thread changes it.

Keys and replayed documents are immutable values swapped under a lock, so a request sees either
the old set or the new one, never half of a rotation. Faults are plain attributes: one
assignment is atomic, and a request that races a switch may go either way, as it would in life.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entra_guard.testing.keys import EmulatorKey

__all__ = ["DocumentKind", "EmulatorState", "Faults", "Replay"]

DocumentKind: TypeAlias = Literal["metadata", "jwks"]


class Faults:
    """Switches that make the identity provider misbehave; add new ones here."""

    def __init__(self) -> None:
        self._fail_status: int | None = None
        self._delay = 0.0

    @property
    def fail_status(self) -> int | None:
        """When set, document requests get this HTTP status and an Entra-style error body."""
        return self._fail_status

    @fail_status.setter
    def fail_status(self, status: int | None) -> None:
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599
        ):
            raise ValueError(f"fail_status must be None or an HTTP status 200-599, got {status!r}")
        self._fail_status = status

    @property
    def delay(self) -> float:
        """Seconds every document request waits before it is answered."""
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"delay must be a number of seconds, got {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be finite and not negative, got {seconds!r}")
        self._delay = float(seconds)


@dataclass(frozen=True, slots=True)
class Replay:
    """Documents to serve verbatim for one (tenant, version) in place of generated ones."""

    metadata: Mapping[str, Any]
    jwks: Mapping[str, Any]


class EmulatorState:
    """Keys, replayed documents, request counts and faults of one emulator."""

    def __init__(self, key: EmulatorKey) -> None:
        self._lock = threading.Lock()
        self._current = key
        self._published: tuple[EmulatorKey, ...] = (key,)
        self._replays: dict[tuple[str, str], Replay] = {}
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self.faults = Faults()
        #: The emulator's own base URL, known once the socket is bound.
        self.instance = ""
        #: Set while stop() runs, so that delayed requests give up waiting.
        self.stopping = False

    @property
    def current_key(self) -> EmulatorKey:
        return self._current

    @property
    def published_keys(self) -> tuple[EmulatorKey, ...]:
        return self._published

    def rotate(self, key: EmulatorKey, *, keep_previous: bool) -> None:
        """Publish ``key`` and sign with it; optionally unpublish the key it replaces."""
        with self._lock:
            previous = self._current
            kept = self._published if keep_previous else self._without(previous.kid)
            self._published = (*kept, key)
            self._current = key

    def publish(self, key: EmulatorKey) -> None:
        with self._lock:
            self._published = (*self._published, key)

    def unpublish(self, kid: str) -> None:
        with self._lock:
            remaining = self._without(kid)
            if len(remaining) == len(self._published):
                raise KeyError(f"no published key has kid {kid!r}")
            self._published = remaining

    def _without(self, kid: str) -> tuple[EmulatorKey, ...]:
        return tuple(key for key in self._published if key.kid != kid)

    def replay(self, segment: str, version: str, replay: Replay) -> None:
        # Deep copies: a test mutating its dict afterwards must not change what is served.
        frozen = Replay(
            metadata=copy.deepcopy(dict(replay.metadata)), jwks=copy.deepcopy(dict(replay.jwks))
        )
        with self._lock:
            self._replays = {**self._replays, (segment, version): frozen}

    def replayed(self, segment: str, version: str) -> Replay | None:
        return self._replays.get((segment, version))

    def record_fetch(self, kind: DocumentKind, segment: str, version: str) -> None:
        with self._lock:
            self._counts[(kind, segment, version)] += 1

    def fetch_count(self, kind: DocumentKind, segment: str | None, version: str | None) -> int:
        with self._lock:
            return sum(
                count
                for (k, s, v), count in self._counts.items()
                if k == kind and segment in (None, s) and version in (None, v)
            )

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

"""The soak's memory verdict (``benchmarks.soak_report.memory_verdict``) on synthetic samples.

These test the rule that judges a soak's RSS series, not anybody's memory: the series are made
up, so that a growth which continues (even slowing, as issue 14's did) is shown to fail and a
series that has levelled off is shown to pass.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest
from benchmarks.soak_report import FLAT_FLOOR_BYTES, memory_verdict

MB = 1024 * 1024


def series(
    duration: float, rss: Callable[[float], float], *, every: float = 5.0
) -> list[tuple[float, int]]:
    return [(at, int(rss(at))) for at in (i * every for i in range(int(duration / every) + 1))]


def test_issue_14_shape_slowing_but_not_stopping_is_growing() -> None:
    # The 3,300 s run of issue 14, interpolated: +6.5 MB, slowing, still rising at the end.
    points = [
        (0, 61.7),
        (276, 64.3),
        (551, 65.6),
        (827, 66.4),
        (1103, 66.9),
        (1654, 67.0),
        (2206, 67.5),
        (2757, 68.6),
        (3033, 68.8),
        (3300, 69.0),
    ]

    def rss(at: float) -> float:
        for (t0, m0), (t1, m1) in itertools.pairwise(points):
            if t0 <= at <= t1:
                return (m0 + (m1 - m0) * (at - t0) / (t1 - t0)) * MB
        return points[-1][1] * MB

    verdict = memory_verdict(series(3300, rss), warmup=5, duration=3300)
    assert verdict is not None
    assert not verdict.flat
    assert verdict.since == pytest.approx(1655, abs=10)  # the last half after warm-up


def test_long_run_with_sqrt_growth_fails_its_final_hour() -> None:
    # Growth that keeps slowing but never stops: +1.5 MB over the last hour of two.
    verdict = memory_verdict(
        series(7200, lambda t: 60 * MB + 0.05 * MB * math.sqrt(t) * 9), warmup=5, duration=7200
    )
    assert verdict is not None
    assert verdict.since == pytest.approx(3600, abs=5)
    assert verdict.growth > verdict.allowed == 1 * MB
    assert not verdict.flat


def test_long_run_settling_early_then_flat_passes_despite_total_growth() -> None:
    # +8 MB in the first 20 minutes (warm caches, allocator settling), then noise only.
    noise = random.Random(14)

    def rss(at: float) -> float:
        settled = 60 * MB + 8 * MB * min(1.0, at / 1200)
        return settled + noise.uniform(-0.2, 0.2) * MB

    verdict = memory_verdict(series(7500, rss), warmup=5, duration=7500)
    assert verdict is not None
    assert verdict.flat
    assert abs(verdict.growth) < verdict.allowed


def test_steady_linear_growth_of_2_mb_an_hour_fails_every_run_long_enough_to_show_it() -> None:
    # Small, but 48 MB a day. The old rule (5 MB from start to end) passed two hours of it.
    for duration in (3300.0, 7200.0, 21600.0):
        verdict = memory_verdict(
            series(duration, lambda t: 60 * MB + 2 * MB * t / 3600), warmup=5, duration=duration
        )
        assert verdict is not None
        assert not verdict.flat, duration
        assert verdict.growth == pytest.approx(2 * MB * (verdict.until - verdict.since) / 3600)


def test_short_flat_run_passes_and_its_window_is_the_last_half() -> None:
    verdict = memory_verdict(series(600, lambda t: 65 * MB), warmup=10, duration=600)
    assert verdict is not None
    assert verdict.flat
    assert verdict.growth == 0
    assert verdict.allowed == FLAT_FLOOR_BYTES
    assert verdict.since == pytest.approx(305, abs=5)


def test_too_few_samples_are_not_judged() -> None:
    assert memory_verdict([(0.0, MB), (10.0, 2 * MB)], warmup=0, duration=20) is None
    assert memory_verdict([], warmup=0, duration=20) is None

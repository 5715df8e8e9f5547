from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import pytest

pytest_plugins = ["entra_guard.testing.pytest_plugin"]

#: Real Entra-issued tokens and documents, shared by the team beside the repository (never copied).
REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "entra-real"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def fixture_missing(reason: str) -> NoReturn:
    """Skip a test whose shared fixture is not there; with ``CI`` set, fail it instead.

    CI's clean clone has ``../shared`` beside it, so there a missing fixture is a broken set-up
    that would otherwise pass as a row of skips.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this is an error, not a skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def real_fixtures() -> Path:
    if not (REAL_FIXTURES / "tokens.json").is_file():
        fixture_missing(f"the shared real-token fixtures are not at {REAL_FIXTURES}")
    return REAL_FIXTURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut (``tools/mutation.py``), run the tests likeliest to kill a mutant soonest.

    mutmut runs, for each mutant, the tests that reach the mutated function, in no useful
    order, and stops at the first failure. ``test_mutants_<module>.py`` and
    ``test_<module>.py`` go first (they kill most mutants in their first second instead of
    after tens of seconds of other tests), then the rest, quickest first by the durations
    mutmut measured (``mutmut-stats.json`` in its working directory). Nothing changes outside
    mutmut's workers.
    """
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if not mutant.startswith("entra_guard."):
        return
    module = mutant.split(".")[1]
    first = {f"test_mutants_{module}.py": 0, f"test_{module}.py": 1}
    seconds = _measured_durations()
    items.sort(  # stable: tests of one duration keep their order
        key=lambda item: (first.get(item.path.name, 2), seconds.get(item.nodeid, 0.0))
    )


def _measured_durations() -> dict[str, float]:
    """Each test's duration in seconds, as mutmut measured it; empty when there is none."""
    try:
        stats = json.loads(Path("mutmut-stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    durations = stats.get("duration_by_test") if isinstance(stats, dict) else None
    return durations if isinstance(durations, dict) else {}

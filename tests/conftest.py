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


# Under mutmut, every test that fails a mutant is noted here (in mutmut's working directory,
# shared by its workers), one "<mutated function>\t<test id>" line each.
_KILLERS = Path("mutmut-killers.txt")


def _mutant_under_test() -> str | None:
    """The mutant a mutmut worker is testing (``entra_guard.<module>.<function>__mutmut_<n>``)."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    return mutant if mutant.startswith("entra_guard.") else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut (``tools/mutation.py``), run the tests likeliest to kill a mutant soonest.

    mutmut runs, for each mutant, the tests that reach the mutated function, in no useful
    order, and stops at the first failure. First go the tests that failed earlier mutants of
    the same function (mutants of one function tend to break the same rule), then
    ``test_mutants_<module>.py`` and ``test_<module>.py`` (they kill most mutants in their
    first second instead of after tens of seconds of other tests), then the rest, quickest
    first by the durations mutmut measured (``mutmut-stats.json`` in its working directory).
    Nothing changes outside mutmut's workers.
    """
    mutant = _mutant_under_test()
    if mutant is None:
        return
    module, function = mutant.split(".")[1], mutant.rpartition("__mutmut_")[0]
    first = {f"test_mutants_{module}.py": 0, f"test_{module}.py": 1}
    seconds = _measured_durations()
    kills = _kills_of(function)
    items.sort(  # stable: tests of one duration keep their order
        key=lambda item: (
            -kills.get(item.nodeid, 0),
            first.get(item.path.name, 2),
            seconds.get(item.nodeid, 0.0),
        )
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under mutmut, note the test that failed the mutant, for the next mutants' order."""
    mutant = _mutant_under_test()
    if mutant is not None and report.failed:
        function = mutant.rpartition("__mutmut_")[0]
        with _KILLERS.open("a", encoding="utf-8") as killers:  # one short append per worker
            killers.write(f"{function}\t{report.nodeid}\n")


def _kills_of(function: str) -> dict[str, int]:
    """How many mutants of ``function`` each test has failed so far in this workspace."""
    try:
        lines = _KILLERS.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    found: dict[str, int] = {}
    for line in lines:
        killed, _, test = line.partition("\t")
        if killed == function and test:
            found[test] = found.get(test, 0) + 1
    return found


def _measured_durations() -> dict[str, float]:
    """Each test's duration in seconds, as mutmut measured it; empty when there is none."""
    try:
        stats = json.loads(Path("mutmut-stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    durations = stats.get("duration_by_test") if isinstance(stats, dict) else None
    return durations if isinstance(durations, dict) else {}

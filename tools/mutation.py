"""Mutation testing of the security core, one module at a time (results: benchmarks/MUTATION.md).

    .venv/bin/pip install -e '.[mutation]'
    nice -n 10 .venv/bin/python tools/mutation.py              # every module
    nice -n 10 .venv/bin/python tools/mutation.py claims ...   # some of them

mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``) runs each mutant against the tests
that reached the mutated function. On the whole selection a surviving mutant of a function every
request passes through would rerun two minutes of tests; so each module here gets a workspace of
its own, ``mutants/<module>/``, whose copy of that configuration mutates the one module and
selects the tests written for it. The workspace links ``src``, ``tests`` and ``README.md`` and
the shared real-token fixtures (the tests look for them two levels above themselves, which inside
mutmut's copy is the workspace). mutmut keeps its results there, so a rerun only tests the
functions that changed; ``--fresh`` starts over.

It prints one table row per module and writes every survivor's diff to
``mutants/<module>/survivors.txt``. It never runs in CI; nothing fails on a score.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"
MUTMUT = Path(sys.executable).with_name("mutmut")

# The tests that state each module's rules (tests/test_mutants_<module>.py comes first).
# test_faults is left out: its identity provider must answer within 0.5 s, which a loaded
# machine running mutants does not always manage, and a failing first run stops mutmut.
TESTS: dict[str, tuple[str, ...]] = {
    "parsing": ("test_parsing", "test_attacks", "test_validation"),
    "claims": ("test_claims", "test_attacks", "test_rules", "test_validation", "test_external_id",
               "test_real_tokens"),
    "validation": ("test_validation", "test_attacks", "test_rules", "test_token_cache",
                   "test_mutants_token_cache",
                   "test_review_findings", "test_claims", "test_external_id", "test_real_tokens",
                   "test_groups.py::test_tenants_decided_at_run_time"),
    "token_cache": ("test_token_cache", "test_rules", "test_validation", "test_attacks"),
    "discovery": ("test_discovery", "test_rules", "test_external_id", "test_real_tokens",
                  "test_review_findings"),
    "bearer": ("test_middleware", "test_attacks", "test_rules", "test_resource_metadata",
               "test_on_behalf_of", "test_hostile_headers"),
    "authorization": ("test_groups", "test_fastapi", "test_middleware"),
    "middleware": ("test_middleware", "test_attacks", "test_rules", "test_review_findings",
                   "test_resource_metadata", "test_fastapi", "test_uvicorn"),
    "principal": ("test_claims", "test_groups", "test_fastapi", "test_validation",
                  "test_external_id", "test_real_tokens"),
}  # fmt: skip
# Slow tests of load, floods and random input: they reach everything and state no rule that
# another test misses, but would add a minute to every surviving mutant.
DESELECT = (
    "tests/test_faults.py::test_floods_of_unknown_kids_and_garbage",
    "tests/test_discovery.py::test_unknown_kid_flood_forces_at_most_one_refresh_per_interval",
    "tests/test_discovery.py::test_a_thousand_concurrent_first_validations_share_one_fetch",
    "tests/test_validation.py::test_arbitrary_bytes_only_ever_raise_invalid_token",
)
# Mutants tested at once. The tests wait on loopback HTTP and servers starting, so one worker
# per core leaves the cores idle part of the time: with one more, validation kept 1.74 of the
# 2 cores busy, against 1.08 with two (benchmarks/MUTATION.md).
CHILDREN = (os.cpu_count() or 1) + 1
# A mutant whose tests never finished (mutmut's "timeout") is caught, as one they fail is.
_CAUGHT = ("killed", "timeout")
_UNJUDGED = "not checked"  # never run: a run cut short
_RESULT = re.compile(r"^\s+(\S+): (.+)$")
_SHOW_ALL = """
import sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
for line in sys.stdin.read().splitlines():
    name, _, said = line.partition(" ")
    print(f"## {name}: {said}\\n{get_diff_for_mutant(name)}\\n", flush=True)
"""
_ENTRY = re.compile(r"^([a-z_]+) = ")


@dataclass(frozen=True)
class Result:
    module: str
    exit_code: int
    killed: int
    total: int
    survivors: list[str]
    unchecked: int
    seconds: float
    cpu_seconds: float


def module_config(text: str, overrides: dict[str, list[str]]) -> str:
    """``pyproject.toml`` with the ``[tool.mutmut]`` entries named in ``overrides`` replaced."""
    head, _, rest = text.partition("\n[tool.mutmut]\n")
    end = rest.find("\n[")
    section, tail = (rest, "") if end < 0 else (rest[: end + 1], rest[end + 1 :])
    kept: list[str] = []
    dropping = False
    for line in section.splitlines():
        entry = _ENTRY.match(line)
        if entry:
            dropping = entry[1] in overrides
        elif line and not line[0].isspace() and line[0] not in "]#":
            dropping = False
        if not dropping:
            kept.append(line)
    kept += [f"{key} = {json.dumps(value)}" for key, value in overrides.items()]
    return head + "\n[tool.mutmut]\n" + "\n".join(kept) + "\n\n" + tail


def workspace(module: str, *, fresh: bool) -> Path:
    """``mutants/<module>/``: links to the sources and a configuration for this module only."""
    where = WORK / module
    if fresh and where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True, exist_ok=True)
    links = {"src": ROOT / "src", "tests": ROOT / "tests", "README.md": ROOT / "README.md"}
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        links["shared"] = shared
    for name, target in links.items():
        link = where / name
        if not link.is_symlink():
            link.symlink_to(target)
    mine = [f"tests/{name}" if "::" in name else f"tests/{name}.py" for name in TESTS[module]]
    own = (
        [f"tests/test_mutants_{module}.py"]
        if (ROOT / "tests").joinpath(f"test_mutants_{module}.py").is_file()
        else []
    )
    selection = [*own, *mine, *(f"--deselect={test}" for test in DESELECT)]
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # Everything as configured, but for the module list and the test selection.
    overrides = {
        "only_mutate": [f"src/entra_guard/{module}.py"],
        "pytest_add_cli_args_test_selection": selection,
    }
    (where / "pyproject.toml").write_text(module_config(text, overrides), encoding="utf-8")
    return where


def mutmut(
    where: Path, *args: str, output: IO[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """mutmut in a workspace; its output is returned, or written to ``output``."""
    return subprocess.run(  # noqa: S603  # mutmut of this venv, fixed arguments
        [str(MUTMUT), *args],
        cwd=where,
        stdout=output or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def statuses(where: Path) -> dict[str, str]:
    """Every mutant of the workspace and what became of it (``killed``, ``survived``...)."""
    found = (
        _RESULT.match(line)
        for line in mutmut(where, "results", "--all", "true").stdout.splitlines()
    )
    return {m[1]: m[2] for m in found if m}


def run(module: str, *, fresh: bool, survivors_only: bool, children: int) -> Result:
    where = workspace(module, fresh=fresh)
    # Everything not caught: the survivors, and what a run cut short left unjudged.
    names = sorted(n for n, said in statuses(where).items() if said not in _CAUGHT)
    started, cpu = time.monotonic(), _children_cpu()
    code = 0
    if survivors_only and not names:
        print(f"{module}: every mutant was caught last time; nothing to rerun", file=sys.stderr)
    if names or not survivors_only:
        with (where / "run.log").open("w") as log:
            selected = names if survivors_only else ()
            code = mutmut(
                where, "run", "--max-children", str(children), *selected, output=log
            ).returncode
    seconds, cpu_seconds = time.monotonic() - started, _children_cpu() - cpu
    status = statuses(where)
    survivors = sorted(
        name for name, said in status.items() if said not in _CAUGHT and said != _UNJUDGED
    )
    with (where / "survivors.txt").open("w") as out:
        # One process for every diff (``mutmut show`` takes seconds per mutant).
        subprocess.run(  # noqa: S603  # this interpreter, fixed code
            [sys.executable, "-c", _SHOW_ALL],
            input="\n".join(f"{name} {status[name]}" for name in survivors),
            cwd=where,
            stdout=out,
            text=True,
            check=False,
        )
    killed = sum(1 for said in status.values() if said in _CAUGHT)
    unchecked = sum(1 for said in status.values() if said == _UNJUDGED)
    return Result(module, code, killed, len(status), survivors, unchecked, seconds, cpu_seconds)


def _children_cpu() -> float:
    """CPU seconds used so far by finished child processes: mutmut, its workers, their tests."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modules", nargs="*", help=f"some of: {' '.join(TESTS)} (default: all)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again only the mutants not caught last time (survivors, and any not judged)",
    )
    parser.add_argument(
        "--max-children",
        type=int,
        default=CHILDREN,
        metavar="N",
        help=f"mutants tested at once (default: {CHILDREN}, one more than the cores)",
    )
    args = parser.parse_args()
    modules: list[str] = args.modules or list(TESTS)
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        parser.error(f"not a module of the security core: {' '.join(unknown)}")
    if args.survivors:
        if args.fresh:
            parser.error("--survivors reruns what an earlier run left; --fresh forgets it")
        never = [m for m in modules if not (WORK / m / "mutants").is_dir()]
        if never:
            parser.error(
                f"--survivors: no earlier run of {' '.join(never)} here; run without it first"
            )
    started, cpu = time.monotonic(), _children_cpu()
    print("| module | caught / judged | score | survived | not judged | wall (CPU) |")
    print("|---|---|---|---|---|---|")
    for module in modules:
        row = run(
            module, fresh=args.fresh, survivors_only=args.survivors, children=args.max_children
        )
        checked = row.total - row.unchecked
        score = f"{100 * row.killed / checked:.1f}%" if checked else "-"
        note = "" if row.exit_code == 0 else f" (mutmut exited {row.exit_code}: see run.log)"
        print(f"| {module} | {row.killed} / {checked} | {score} | {len(row.survivors)} | "
              f"{row.unchecked} | {row.seconds:.0f} s ({row.cpu_seconds:.0f} s){note} |",
              flush=True)  # fmt: skip
    print(f"\nwhole run {time.monotonic() - started:.0f} s, {_children_cpu() - cpu:.0f} CPU s; "
          "diffs of the survivors: mutants/<module>/survivors.txt")  # fmt: skip


if __name__ == "__main__":
    main()

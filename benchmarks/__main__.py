"""``python -m benchmarks``: run every section, print the table, rewrite README.md and
results.json (a full run only; ``--quick`` and ``--only`` print and write nothing)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable

from benchmarks import coldstart, http_load, inprocess, memory, validator
from benchmarks.common import Context, Options
from benchmarks.report import (
    HERE,
    Row,
    cpu_seconds,
    machine,
    markdown_table,
    write_json,
    write_readme,
)
from entra_guard.testing import EntraEmulator

SECTIONS: dict[str, Callable[[Context], list[Row]]] = {
    "validator": validator.run,
    "inprocess": inprocess.run,
    "coldstart": coldstart.run,
    "http": http_load.run,
    "memory": memory.run,
}
#: Other processes using more than this share of the CPU make the figures noisy: say so.
_BUSY_MACHINE = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="entra-guard benchmarks: figures against baselines from the same run",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        metavar="SECTION",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--http-seconds", type=float, default=2.0, help="load per app and round")
    parser.add_argument("--http-rounds", type=int, default=5, help="rounds of load per app")
    parser.add_argument("--memory-tokens", type=int, default=100_000, help="tokens validated")
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick,
        http_seconds=args.http_seconds,
        http_rounds=args.http_rounds,
        memory_tokens=args.memory_tokens,
    )
    selected = args.only or list(SECTIONS)
    full_run = not args.quick and args.only is None

    started = time.perf_counter()
    busy_before, own_before = cpu_seconds()
    rows: list[Row] = []
    with EntraEmulator() as idp:
        ctx = Context(idp, options)
        for name in selected:
            print(f"[{time.perf_counter() - started:5.0f} s] {name} ...", flush=True)
            rows += SECTIONS[name](ctx)
    seconds = time.perf_counter() - started
    busy_after, own_after = cpu_seconds()
    others = (busy_after - busy_before) - (own_after - own_before)
    # The machine's counters and our own rusage differ by clock ticks: a quiet run can come out a
    # little below zero, which means none.
    share = max(0.0, others / (seconds * (os.cpu_count() or 1)))
    if share > _BUSY_MACHINE:
        ctx.note(
            f"Other processes used {share:.0%} of the machine's CPU during this run (the line "
            "'CPU taken by other processes' above): microseconds are slower and noisier than "
            "on a quiet machine (see the spread in results.json); the ratios, measured in the "
            "same rounds, are steadier, but Python slows down more than the RSA floor, so "
            "rerun on a quiet machine before reading the targets."
        )

    if args.quick:  # sizes too small for a verdict: the rows inform, nothing is judged
        rows = [dataclasses.replace(row, met=None) for row in rows]
        ctx.note("--quick: sizes for a smoke test; no target is judged.")
    print()
    print(markdown_table(rows))
    for note in ctx.notes:
        print(f"- {note}")
    missed = sum(r.met is False for r in rows)
    met = sum(r.met is True for r in rows)
    print(f"\nTargets met: {met}, missed: {missed}; {seconds:.0f} s.")
    if full_run:
        info = machine()
        info["other_cpu_share"] = round(share, 3)
        write_readme(HERE / "README.md", rows, info, ctx.notes, seconds)
        write_json(HERE / "results.json", rows, info, ctx.notes, seconds)
        print(f"Wrote {HERE / 'README.md'} and {HERE / 'results.json'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

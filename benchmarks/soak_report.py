"""The soak's report: Markdown, printed as it is and written to ``benchmarks/SOAK.md``."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from benchmarks.soak_traffic import (
    MIX_TEXT,
    REFRESH_JITTER,
    ROW_ORDER,
    WINDOW_SLACK,
    KeyTimeline,
    Tally,
    row_title,
)

if TYPE_CHECKING:
    from benchmarks.soak import Settings

__all__ = ["MemoryVerdict", "RunResult", "memory_verdict", "render", "write"]

ROOT: Final = Path(__file__).resolve().parent.parent
_PACKAGES: Final = (
    "entra-guard",
    "uvicorn",
    "uvloop",
    "fastapi",
    "starlette",
    "h11",
    "httpx",
    "pyjwt",
)
_MB = 1024 * 1024
#: Memory counts as flat when RSS grows at most this much over the final hour of a run of two
#: hours or more (the issue 14 rule); shorter runs judge their last half at the same rate,
#: never below ``FLAT_FLOOR_BYTES`` (so a few pages of noise do not fail a short run).
FLAT_PER_HOUR_BYTES: Final = 1 * _MB
FLAT_FLOOR_BYTES: Final = _MB // 4
#: Runs at least this long judge their final hour; shorter ones their last half.
LONG_RUN: Final = 7200.0
_HOUR = 3600.0
_ROUTES: Final = ("GET /orders", "POST /orders")


@dataclass(slots=True)
class RunResult:
    settings: Settings
    elapsed: float
    tally: Tally
    timeline: KeyTimeline
    chaos: list[tuple[float, str, str, float]]  # at, action, detail, seconds it took
    memory: list[tuple[float, int]]
    rss_start: int | None
    rss_end: int | None
    api_cpu_seconds: float | None
    api_seconds: float
    fetches: dict[tuple[str, str], int]
    api_died: str | None
    soak_cpu_seconds: float
    #: 1, 5 and 15 minute load averages when the load began: other work on the machine.
    load_before: tuple[float, float, float]
    log_lines: int = 0
    log_top: list[tuple[str, int]] = field(default_factory=list)
    #: At each memory sample: (soak seconds, RSS bytes, what the API process held).
    holdings: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    #: tracemalloc's top growers from the start of the load to its end (empty when off).
    growers: list[dict[str, Any]] = field(default_factory=list)
    #: ``malloc_trim(0)`` in the API process after the last sample: its sizes before and after.
    trimmed: dict[str, Any] | None = None

    @property
    def unexpected(self) -> int:
        return sum(self.tally.unexpected.values())

    @property
    def server_errors(self) -> Counter[tuple[str, str, int]]:
        return Counter({k: n for k, n in self.tally.counts.items() if k[2] >= 500})

    @property
    def passed(self) -> bool:
        """Every answer as expected, the API alive, and its memory not GROWING."""
        return self.unexpected == 0 and self.api_died is None and self.memory_flat is not False

    @property
    def memory_flat(self) -> bool | None:
        """The memory verdict (:func:`memory_verdict`); ``None`` when not judged."""
        s = self.settings
        verdict = memory_verdict(self.memory, warmup=s.warmup, duration=s.duration)
        return None if verdict is None else verdict.flat


@dataclass(frozen=True, slots=True)
class MemoryVerdict:
    flat: bool
    #: Soak seconds where the judged window begins and ends.
    since: float
    until: float
    #: RSS growth over the window (least-squares slope times its length), bytes.
    growth: float
    #: The most growth the window may show and count as flat, bytes.
    allowed: float


def memory_verdict(
    samples: list[tuple[float, int]], *, warmup: float, duration: float
) -> MemoryVerdict | None:
    """Whether RSS has levelled off: flat over the final hour (runs of ``LONG_RUN`` or more) or
    the last half after warm-up (shorter runs), allowing ``FLAT_PER_HOUR_BYTES`` per hour of
    window and at least ``FLAT_FLOOR_BYTES``.

    ``samples`` are (seconds, RSS bytes). The growth is the least-squares slope over the
    window times its length, so that one noisy sample at either end decides nothing, while a
    growth that continues (even slowing) shows. ``None`` with fewer than 3 samples in the window.
    """
    settled = [(at, rss) for at, rss in samples if at >= warmup]
    if not settled:
        return None
    end = settled[-1][0]
    span = _HOUR if duration >= LONG_RUN else (end - settled[0][0]) / 2
    window = [(at, rss) for at, rss in settled if at >= end - span]
    if len(window) < 3:
        return None
    n = len(window)
    mean_t = sum(at for at, _ in window) / n
    mean_r = sum(rss for _, rss in window) / n
    var = sum((at - mean_t) ** 2 for at, _ in window)
    if var == 0:
        return None
    slope = sum((at - mean_t) * (rss - mean_r) for at, rss in window) / var
    length = window[-1][0] - window[0][0]
    growth = slope * length
    allowed = max(FLAT_FLOOR_BYTES, FLAT_PER_HOUR_BYTES * length / _HOUR)
    return MemoryVerdict(growth <= allowed, window[0][0], window[-1][0], growth, allowed)


def write(path: Path, report: str) -> None:
    path.write_text(report, encoding="utf-8")


# -- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603  # git with fixed arguments
            ["git", *args],  # noqa: S607  # git from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _machine(load_before: tuple[float, float, float]) -> list[str]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    before = ", ".join(f"{x:.2f}" for x in load_before)
    after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return [
        f"- CPU: {_cpu_model()}, {cores} cores ({usable} usable)",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Packages: {', '.join(versions)}",
        f"- entra-guard commit: {commit}",
        f"- Load average (1, 5, 15 min) before the load: {before}; at the end: {after}",
    ]


# -- formatting ------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / _MB:.1f} MB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _expected_text(row: str, route: str) -> str:
    if row == "health":
        return "200"
    granted = "200" if route == "GET /orders" else "403"
    if row in ("valid", "valid-older"):
        return granted
    if row == "valid-new":
        return f"{granted} (or 401 key not found, until the API fetches the new key)"
    if row == "valid-removing":
        return f"{granted} or 401 (401 once the API refreshes its keys)"
    return "401"


def _observed(counts: Counter[int | str]) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{status}: {_n(n)}" for status, n in sorted(counts.items(), key=str))


def _title(row: str, timeline: KeyTimeline) -> str:
    return "any (every category)" if row == "health" else row_title(row, timeline)


def _context(result: RunResult, at: float) -> str:
    """Where in the chaos schedule a moment falls, for the examples."""
    before = [(t, action) for t, action, _, _ in result.chaos if t <= at]
    if not before:
        return "before the first chaos event"
    t, action = before[-1]
    return f"{at - t:.1f} s after '{action}'"


# -- the report ------------------------------------------------------------------------------


def render(result: RunResult) -> str:
    s = result.settings
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "PASS" if result.passed else "FAIL"
    if result.memory_flat is not None:
        verdict += f"; memory {'flat' if result.memory_flat else 'GROWING'}"
    if not s.key_events:
        verdict += " (--no-key-events: no rotation, removal or outage)"
    lines = [
        "# entra-guard soak test",
        "",
        "`python -m benchmarks.soak [--duration SECONDS] [--concurrency N] [--seed N] "
        "[--no-key-events] [--tracemalloc FRAMES] [--loop auto|asyncio|uvloop] [--no-write]` "
        "(from the repository root, in the venv with the `bench` extra): the example API "
        "(`entra_guard.examples.orders_api`) in its own uvicorn process on 127.0.0.1 "
        "(`benchmarks.soak_server`, which also answers what the process holds on a second "
        "loopback port), trusting a local Entra ID emulator run by the soak with short key "
        "timings; asyncio workers (httpx, one connection each) send a mix of valid, expired, "
        "forged, garbage and missing tokens while a deterministic schedule rotates the signing "
        "key, removes the previous one, and takes the identity provider down and back up. Every "
        "answer is checked against the status its token and route call for at the moment it was "
        "sent. Exit status 0 only when none differs (no unexpected 5xx or other status, no "
        "timeout, no connection error) and memory is not GROWING (see its verdict). This file is "
        "rewritten by each run without `--no-write`.",
        "",
        f"## Results ({now}): {verdict}",
        "",
        *_machine(result.load_before),
        f"- Parameters: duration {s.duration:g} s, concurrency {s.concurrency}, seed {s.seed}, "
        f"chaos every {s.step:g} s, request timeout {s.request_timeout:g} s, first "
        f"{s.warmup:g} s counted as warm-up for memory",
        f"- API key timings: ENTRA_REFRESH_INTERVAL_SECONDS={s.refresh_interval:g}, "
        f"ENTRA_MIN_REFRESH_INTERVAL_SECONDS={s.min_refresh_interval:g}, "
        f"ENTRA_LAST_KNOWN_GOOD_SECONDS={s.last_known_good:g}, "
        f"ENTRA_FETCH_TIMEOUT_SECONDS={s.fetch_timeout:g}",
        f"- Traffic: {MIX_TEXT}",
        f"- API event loop: uvicorn --loop {s.loop}, ran {_event_loop(result)}; glibc malloc "
        f"settings in its environment: {_malloc_settings()}",
        "",
    ]
    lines += _summary(result)
    lines += _chaos(result)
    lines += _statuses(result)
    lines += _descriptions(result)
    lines += _problems(result)
    lines += _switches(result)
    lines += _outages(result)
    lines += _memory(result)
    lines += _fetches(result)
    lines += _api_log(result)
    lines += [
        "### How the expected statuses are decided",
        "",
        "- `/health` is public: 200 whatever is sent. `POST /orders` needs the role "
        "`Orders.Write`, which no soak token has: 403 for a valid token (no order is ever "
        "created, so the API's memory holds still), 401 for the others.",
        f"- A removed key keeps passing until the API's next refresh: at most "
        f"{s.refresh_interval:g} s + {REFRESH_JITTER:.0%} jitter + the {s.fetch_timeout:g} s "
        f"fetch timeout + {WINDOW_SLACK:g} s. Requests answered after the removal and sent "
        f"less than {result.timeline.removal_window:g} s after it may get either answer; "
        "after that, 401.",
        f"- A key rotated in is unknown to the API until it refreshes; an unknown `kid` forces "
        f"a refresh at most once per {s.min_refresh_interval:g} s, and other unknown-`kid` "
        "traffic (tokens of removed keys, forged tokens) may have used that refresh just "
        f"before the rotation. Tokens of the new key sent less than "
        f"{result.timeline.new_key_window:g} s after the rotation may get 401 'key not found' "
        "(no other 401). These rows are counted apart, never mixed into the plain ones.",
        f"- Metadata and JWKS fetches allowed per token version: 1 at start-up, one per "
        f"{s.refresh_interval:g} s (+ jitter) of API lifetime, and at most one forced refresh "
        f"per {s.min_refresh_interval:g} s. Failed fetches while the identity provider is "
        "down never reach it and are not counted.",
        "",
    ]
    return "\n".join(lines)


def _summary(result: RunResult) -> list[str]:
    tally = result.tally
    failures = sum(tally.transport.values())
    answered = tally.requests - failures
    server_errors = sum(result.server_errors.values())
    cpu = result.api_cpu_seconds
    cpu_text = "n/a" if cpu is None else f"{cpu:.1f} s ({cpu / result.elapsed:.0%} of one core)"
    load = result.soak_cpu_seconds
    load_text = f"{load:.1f} s ({load / result.elapsed:.0%} of one core)"
    lines = [
        "### Summary",
        "",
        f"- Requests: {_n(tally.requests)} in {result.elapsed:.1f} s, "
        f"{tally.requests / result.elapsed:,.0f} per second; {_n(answered)} answered",
        f"- Latency: p50 {tally.percentile_ms(0.5):.1f} ms, p99 {tally.percentile_ms(0.99):.1f} "
        f"ms, max {tally.percentile_ms(1.0):.1f} ms",
        f"- Unexpected answers: {_n(result.unexpected)} (5xx: {_n(server_errors)}; timeouts "
        f"and connection errors: {_n(failures)})",
        f"- CPU time during the load: uvicorn {cpu_text}; the soak process (load generator "
        f"and emulator) {load_text}",
    ]
    if result.api_died:
        lines.append(f"- **{result.api_died}**")
    return [*lines, ""]


def _chaos(result: RunResult) -> list[str]:
    rows = [
        [f"{at:.1f} s", action, detail, f"{took:.2f} s"]
        for at, action, detail, took in result.chaos
    ]
    return [
        "### Chaos schedule, as run",
        "",
        *_table(["at", "event", "detail", "took"], rows),
        "",
    ]


def _statuses(result: RunResult) -> list[str]:
    tally = result.tally
    rows: list[list[str]] = []
    keys = [(row, route) for row in ROW_ORDER for route in _ROUTES] + [("health", "GET /health")]
    for row, route in keys:
        observed: Counter[int | str] = Counter()
        for (r, rt, status), n in tally.counts.items():
            if (r, rt) == (row, route):
                observed[status] += n
        for (r, rt, error), n in tally.transport.items():
            if (r, rt) == (row, route):
                observed[error] += n
        unexpected = sum(n for (r, rt, _), n in tally.unexpected.items() if (r, rt) == (row, route))
        title = _title(row, result.timeline)
        rows.append(
            [
                title,
                route,
                _expected_text(row, route),
                _n(sum(observed.values())),
                _observed(observed),
                _n(unexpected),
            ]
        )
    return [
        "### Status per token category",
        "",
        *_table(["token", "route", "expected", "requests", "answered", "unexpected"], rows),
        "",
    ]


def _descriptions(result: RunResult) -> list[str]:
    merged: dict[str, Counter[str]] = {}
    for (row, route), seen in result.tally.descriptions.items():
        if route != "GET /health":
            merged.setdefault(row, Counter()).update(seen)
    lines = ["### Why requests were refused (status and `error_description`)", ""]
    for row in ROW_ORDER:
        counted = merged.get(row, Counter())
        refused = [(label, n) for label, n in counted.most_common() if label[:1] != "2"]
        if refused:
            text = "; ".join(f"{label} ({_n(n)})" for label, n in refused[:6])
            more = f"; {len(refused) - 6} more" if len(refused) > 6 else ""
            lines.append(f"- {row_title(row, result.timeline)}: {text}{more}")
    return [*lines, ""]


def _problems(result: RunResult) -> list[str]:
    tally = result.tally
    lines = ["### 5xx, unexpected statuses, timeouts and connection errors", ""]
    errors = result.server_errors
    if errors:
        lines.append("5xx answers (every one is unexpected: no 503 is expected with warm keys):")
        lines += [
            f"- {status} to {route}, {_title(row, result.timeline)}: {_n(n)}"
            for (row, route, status), n in errors.most_common()
        ]
    else:
        lines.append("- 5xx answers: none (no 503 either)")
    if tally.transport:
        lines += [
            f"- {error}: {route}, {row}: {_n(n)}"
            for (row, route, error), n in tally.transport.most_common()
        ]
    else:
        lines.append("- Timeouts and connection errors: none")
    if not tally.unexpected:
        lines.append("- Unexpected statuses: none")
        return [*lines, ""]
    lines.append(f"- Unexpected answers: {_n(result.unexpected)}")
    for key, n in tally.unexpected.most_common():
        row, route, status = key
        first, last = tally.unexpected_span[key]
        lines.append(
            f"  - {status} to {route}, {_title(row, result.timeline)}: {_n(n)} (sent from "
            f"{first:.2f} s to {last:.2f} s)"
        )
    lines += ["", "Examples (tokens are never printed; `ref` is a digest prefix):", ""]
    rows = [
        [
            f"{e.at:.2f} s",
            _context(result, e.at),
            _title(e.row, result.timeline),
            e.token,
            e.route,
            str(e.status),
            " or ".join(str(x) for x in sorted(e.expected)),
            e.description or "-",
        ]
        for e in tally.examples
    ]
    header = ["sent at", "chaos", "category", "token", "route", "got", "expected", "description"]
    return [*lines, *_table(header, rows), ""]


def _switches(result: RunResult) -> list[str]:
    """When the API switched to a rotated-in key, and away from a removed one."""
    timeline = result.timeline
    rows = []
    for (row, kid, version), (last_old, first_new) in sorted(
        result.tally.switches.items(),
        key=lambda item: (_event_time(timeline, item[0][0], item[0][1]), item[0][2]),
    ):
        new = row == "valid-new"
        old_text = "401 key not found" if new else "200/403"
        new_text = "200/403" if new else "401"
        rows.append(
            [
                f"{_event_time(timeline, row, kid):.1f} s",
                "rotated in" if new else "removed",
                f"{kid[:8]}...",
                f"v{version}",
                "-" if math.isinf(last_old) else f"{last_old:+.2f} s ({old_text})",
                "-" if math.isinf(first_new) else f"{first_new:+.2f} s ({new_text})",
                f"{timeline.new_key_window if new else timeline.removal_window:g} s",
            ]
        )
    header = ["at", "key", "kid", "tokens", "last old answer sent", "first new answer sent"]
    return [
        "### When the API switched keys (from the answers to valid tokens)",
        "",
        *_table([*header, "window"], rows or [["-"] * (len(header) + 1)]),
        "",
        "Times are relative to the event; the API keeps one key set per token version, "
        "refreshed on its own. '-' means no answer of that kind was seen (for a rotated-in "
        "key: the API knew it from its first use).",
        "",
    ]


def _event_time(timeline: KeyTimeline, row: str, kid: str) -> float:
    life = timeline.keys[kid]
    if row == "valid-new" or life.removed_at is None:
        return life.published_at
    return life.removed_at


def _outages(result: RunResult) -> list[str]:
    downs = [at for at, action, _, _ in result.chaos if action == "down"]
    ups = [at for at, action, _, _ in result.chaos if action == "up"]
    spans = ", ".join(f"{d:.1f}-{u:.1f} s" for d, u in zip(downs, ups, strict=False))
    lines = [
        "### Valid tokens while the identity provider was down",
        "",
        f"- Outages: {len(downs)} ({spans or 'none'}); requests to /orders sent after the "
        "identity provider stopped and answered before it was back:",
    ]
    by_row: dict[str, Counter[int]] = {}
    for (row, status), n in result.tally.during_outage.items():
        by_row.setdefault(row, Counter())[status] += n
    for row in ROW_ORDER:
        if row in by_row:
            statuses = by_row[row]
            text = ", ".join(f"{status}: {_n(n)}" for status, n in sorted(statuses.items()))
            lines.append(f"  - {row_title(row, result.timeline)}: {text}")
    if not by_row:
        lines.append("  - none")
    return [
        *lines,
        "",
        "With warm keys, valid tokens of published keys must still get 200 (GET) and 403 "
        "(POST); tokens of removed keys stay 401.",
        "",
    ]


def _memory(result: RunResult) -> list[str]:
    samples = result.memory
    start, end = result.rss_start, result.rss_end
    lines = ["### uvicorn resident memory (VmRSS)", ""]
    if not samples or start is None or end is None:
        return [*lines, "- not measured", ""]
    values = [rss for _, rss in samples]
    s = result.settings
    verdict = memory_verdict(samples, warmup=s.warmup, duration=s.duration)
    if verdict is None:
        judged = "not judged (too few samples)"
    else:
        rule = "final hour" if s.duration >= LONG_RUN else "last half"
        judged = (
            f"{'flat' if verdict.flat else 'GROWING'}: {verdict.growth / _MB:+.2f} MB over the "
            f"{rule} ({verdict.since:.0f} s to {verdict.until:.0f} s, least-squares slope times "
            f"its length; allowed {verdict.allowed / _MB:.2f} MB, "
            f"{FLAT_PER_HOUR_BYTES / _MB:g} MB per hour)"
        )
    frames = s.tracemalloc_frames
    lines += [
        f"- Verdict: {judged}",
        f"- Start (after the {s.warmup:g} s warm-up): {_mb(start)}; end: {_mb(end)}; growth "
        f"{(end - start) / _MB:+.1f} MB",
        f"- During ({len(samples)} samples): min {_mb(min(values))}, max {_mb(max(values))}",
        "- tracemalloc in the API process: "
        + (
            f"on ({frames} frames); its own memory is in the RSS above and in the table below "
            "(`tm own`)"
            if frames
            else "off"
        ),
    ]
    every = max(1, math.ceil(len(samples) / 12))
    series = ", ".join(f"{at:.0f} s {rss / _MB:.1f}" for at, rss in samples[::every])
    lines += [f"- Samples (s, MB): {series}", *_trimmed(result), ""]
    return lines + _holdings(result) + _growers(result)


def _malloc_settings() -> str:
    """The ``MALLOC_*`` variables the API process inherits (glibc tunables), or ``none``."""
    found = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_"))
    tunables = os.environ.get("GLIBC_TUNABLES")
    found += [f"GLIBC_TUNABLES={tunables}"] if tunables else []
    return ", ".join(found) or "none"


def _event_loop(result: RunResult) -> str:
    """The event loop the API process reported running (its module: asyncio's or uvloop)."""
    for _, _, held in result.holdings:
        loop = held.get("event_loop")
        if isinstance(loop, str):
            return "uvloop" if loop.startswith("uvloop") else f"asyncio's own ({loop})"
    return "(not reported)"


def _trimmed(result: RunResult) -> list[str]:
    """What ``malloc_trim(0)`` gave back at the end: free memory glibc kept, not memory held."""
    trimmed = result.trimmed
    if trimmed is None:
        return ["- After the last sample, `malloc_trim(0)`: not run (not glibc)"]
    before, after = trimmed["before"], trimmed["after"]

    def mb2(value: float) -> str:  # two decimals: these differ by tenths of a MB
        return f"{value / _MB:.2f} MB"

    return [
        "- After the last sample, `malloc_trim(0)` (glibc hands its free heap pages back): heap "
        f"RSS {mb2(before['rss_heap'])} -> {mb2(after['rss_heap'])}, heap free before it "
        f"{mb2(before['heap_free'])}, heap in use {mb2(before['heap_in_use'])} -> "
        f"{mb2(after['heap_in_use'])}"
    ]


def _holdings(result: RunResult) -> list[str]:
    """What the API process held at (about 12 of) the samples: the attribution table."""
    rows = result.holdings
    if not rows:
        return []
    every = max(1, math.ceil(len(rows) / 12))
    picked = rows[::every] if rows[-1] in rows[::every] else [*rows[::every], rows[-1]]
    labels = sorted({label for _, _, held in rows for label in held.get("sources", {})})

    def mb(held: dict[str, Any], name: str) -> str:
        value = held.get(name)
        return "n/a" if value is None else f"{value / _MB:.2f}"

    def keys(held: dict[str, Any]) -> str:
        sources = held.get("sources", {})
        return " / ".join(
            f"{sources[k]['keys']}:{sources[k]['absent']}" if k in sources else "-" for k in labels
        )

    table = [
        [
            f"{at:.0f}",
            f"{rss / _MB:.2f}",
            mb(held, "rss_heap"),
            mb(held, "rss_anon"),
            mb(held, "rss_file"),
            mb(held, "traced"),
            mb(held, "tracemalloc_overhead"),
            mb(held, "heap_in_use"),
            mb(held, "heap_free"),
            f"{held.get('allocated_blocks', 'n/a')}",
            f"{held.get('pymalloc_arenas', 'n/a')}",
            mb(held, "pymalloc_used"),
            f"{held.get('token_cache', 'n/a')}",
            f"{held.get('headers', 'n/a')}",
            keys(held),
            f"{held.get('key_store_connections', 'n/a')}",
            f"{held.get('fds', 'n/a')}",
            f"{held.get('threads', 'n/a')}",
            f"{held.get('tasks', 'n/a')}",
        ]
        for at, rss, held in picked
    ]
    header = [
        "s",
        "RSS MB",
        "heap RSS",
        "anon RSS",
        "file RSS",
        "traced MB",
        "tm own MB",
        "heap used MB",
        "heap free MB",
        "py blocks",
        "arenas",
        "pymalloc used MB",
        "token cache",
        "headers",
        "keys:absent per source",
        "conns",
        "fds",
        "threads",
        "tasks",
    ]
    return [
        "### What the API process held (attribution)",
        "",
        "Read from inside the API process (`benchmarks.soak_server`) at the memory samples. "
        "heap / anon / file RSS: resident MB of glibc's `[heap]`, of anonymous mappings "
        "(pymalloc arenas, large blocks, stacks) and of files (`/proc/self/smaps`); "
        "traced: tracemalloc's current size; tm own: tracemalloc's own memory; heap used / "
        "free: glibc `mallinfo2` (in use incl. mmapped, free in the heap); py blocks: "
        "`sys.getallocatedblocks()`; arenas, pymalloc used: pymalloc's arenas (1 MiB each) and "
        "the bytes in their allocated blocks (`sys._debugmallocstats()`); token cache: "
        "verified-token cache entries; headers: "
        "checked-header cache; conns: the key store's pooled connections; fds: open file "
        "descriptors; threads: OS threads; tasks: asyncio tasks. Key sets, as "
        "keys:remembered-absent key ids, in "
        f"this order: {', '.join(labels) or 'none'}.",
        "",
        *_table(header, table),
        "",
    ]


def _growers(result: RunResult) -> list[str]:
    if not result.growers:
        return []
    rows = [
        [
            f"{g['size_diff'] / 1024:+.1f}",
            f"{g['count_diff']:+d}",
            "<br>".join(f"`{frame}`" for frame in g["frames"]),
        ]
        for g in result.growers
    ]
    return [
        "### Top tracemalloc growers, start of load to end",
        "",
        *_table(["KiB", "blocks", "traceback (innermost first)"], rows),
        "",
    ]


def _fetches(result: RunResult) -> list[str]:
    s = result.settings
    lifetime = result.api_seconds
    periodic = lifetime / s.refresh_interval
    allowed = 1 + math.ceil(periodic) + math.ceil(lifetime / s.min_refresh_interval)
    rows = []
    within = True
    for version in ("1.0", "2.0"):
        metadata, jwks = result.fetches["metadata", version], result.fetches["jwks", version]
        ok = max(metadata, jwks) <= allowed
        within = within and ok
        rows.append(
            [
                f"v{version}",
                _n(metadata),
                _n(jwks),
                f"~{periodic:.0f} periodic, 1 at start-up, forced ones",
                f"<= {allowed}",
                "yes" if ok else "NO",
            ]
        )
    return [
        f"### Key fetches seen by the emulator (API lifetime {lifetime:.0f} s)",
        "",
        *_table(["tokens", "metadata", "JWKS", "expected", "allowed", "within"], rows),
        "",
        "Within the policy: " + ("yes" if within else "**no**"),
        "",
    ]


def _api_log(result: RunResult) -> list[str]:
    lines = [
        "### API log (uvicorn at log level warning: entra-guard's warnings and errors)",
        "",
        f"- {_n(result.log_lines)} lines",
    ]
    lines += [f"- {n} x `{line}`" for line, n in result.log_top]
    return [*lines, ""]

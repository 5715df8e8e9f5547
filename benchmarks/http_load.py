"""Section 4: the apps served by uvicorn on 127.0.0.1, under load from ``wrk``.

Each app runs in its own uvicorn process (one worker), all started together and loaded one at a
time, in rounds, so that a slow moment of the machine does not land on one app only; the best
round of each app is reported. The repeated token goes in a ``-H`` header; ``wrk_report.lua``
makes wrk print its figures as JSON. Without ``wrk`` on PATH the section says how to install it
and is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.apps import APP_KINDS, PATH, AppKind, peer_available
from benchmarks.common import Context, default_cache_size
from benchmarks.report import Row, ms, ratio, us

__all__ = ["run"]

SECTION = "http"
# A protected app's requests/s relative to the same app without auth.
THROUGHPUT_TARGETS = {"starlette+entra-guard": 0.90, "fastapi+entra-guard": 0.95}
HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_report.lua"
_STARTUP_TIMEOUT = 30.0
_WARMUP_REQUESTS = 50
_MARKER = "BENCH-JSON "


@dataclass(frozen=True, slots=True)
class _Load:
    """One wrk run against one app."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The server process's CPU time (user + system) per answered request: unlike throughput,
    #: hardly moved by other processes taking turns on the cores.
    cpu_us: float
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Summary:
    """All rounds of one app: the best round's throughput and latency, the median CPU."""

    best: _Load
    cpu_us: float
    rounds: tuple[_Load, ...]

    @classmethod
    def of(cls, loads: list[_Load]) -> _Summary:
        best = max(loads, key=lambda load: load.requests_per_s)
        return cls(best, statistics.median(x.cpu_us for x in loads), tuple(loads))

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_s": [round(x.requests_per_s) for x in self.rounds],
            "cpu_us_per_request": [round(x.cpu_us, 1) for x in self.rounds],
            "p50_ms": [x.p50_ms for x in self.rounds],
            "p99_ms": [x.p99_ms for x in self.rounds],
            "errors": [x.errors for x in self.rounds],
            "best_round": self.best.raw,
        }


def run(ctx: Context) -> list[Row]:
    wrk = shutil.which("wrk")
    if wrk is None:
        message = "wrk is not on PATH: install it with `apt-get install -y wrk` (Debian)"
        ctx.note(f"HTTP section skipped: {message}.")
        return [Row(SECTION, "HTTP load (wrk)", "skipped", target=message)]
    kinds = [k for k in APP_KINDS if peer_available() or "azure" not in k]
    options = ctx.options
    seconds = max(1, round(options.scaled(int(options.http_seconds), 2)))
    rounds = options.scaled(options.http_rounds, 1)
    connections = options.http_connections
    headers = {"Authorization": f"Bearer {ctx.token}"}
    results: dict[AppKind, list[_Load]] = {kind: [] for kind in kinds}
    with _servers(ctx, kinds) as servers:
        for kind, server in servers.items():
            _warm_up(kind, server.port, headers)
            _wrk(wrk, server, ctx.token, seconds=1, connections=connections)
        for _ in range(rounds):
            for kind, server in servers.items():
                results[kind].append(_wrk(wrk, server, ctx.token, seconds, connections))
    summaries = {kind: _Summary.of(loads) for kind, loads in results.items()}
    for kind, summary in summaries.items():
        errors = sum(x.errors for x in summary.rounds)
        if errors:
            ctx.note(f"HTTP: wrk counted {errors} errors or non-2xx answers for {kind}.")
    rps = [x.requests_per_s for x in results[kinds[0]]]
    if len(rps) > 1 and max(rps) > 1.15 * min(rps):
        ctx.note(
            f"HTTP: the same app's throughput varied by {max(rps) / min(rps) - 1:.0%} from round "
            "to round: the machine's speed changed between rounds (other processes, or, when "
            "the CPU line above says they took nothing, whatever shares the host with this "
            "machine); the server CPU per request rows are the steadier comparison."
        )
    setup = f"{connections} connections, {seconds} s, best of {rounds}"
    return _rows(summaries, setup)


@dataclass(frozen=True, slots=True)
class _Server:
    port: int
    pid: int


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # fields after "pid (comm)": state is the 1st, utime the 12th and stime the 13th
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _servers(ctx: Context, kinds: list[AppKind]) -> Iterator[dict[AppKind, _Server]]:
    """One uvicorn process per app, stopped on the way out whatever happens."""
    idp = ctx.idp
    base_env = {
        **os.environ,
        "BENCH_TENANT_ID": idp.tenant_id,
        "BENCH_INSTANCE": idp.instance,
        "BENCH_AUDIENCE": idp.config().audiences[0],
        "BENCH_OPENID_CONFIG_URL": idp.metadata_url(version="2.0"),
    }
    size = default_cache_size()
    if size is not None:
        base_env["BENCH_TOKEN_CACHE_SIZE"] = str(size)
    processes: dict[AppKind, subprocess.Popen[bytes]] = {}
    ports: dict[AppKind, int] = {}
    with tempfile.TemporaryDirectory(prefix="entra-guard-bench-") as logs:
        try:
            for kind in kinds:
                ports[kind] = _free_port()
                log = (Path(logs) / f"{kind}.log").open("wb")
                processes[kind] = subprocess.Popen(  # noqa: S603  # our own interpreter and module
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "--factory",
                        "benchmarks.apps:app_from_env",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ports[kind]),
                        "--workers",
                        "1",
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ],
                    env={**base_env, "BENCH_APP": kind},
                    cwd=HERE.parent,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                log.close()
            for kind in kinds:
                _wait_ready(kind, ports[kind], processes[kind], Path(logs) / f"{kind}.log")
            yield {kind: _Server(ports[kind], processes[kind].pid) for kind in kinds}
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def _wait_ready(kind: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn for {kind} exited:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(f"http://127.0.0.1:{port}{PATH}", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"uvicorn for {kind} did not answer within {_STARTUP_TIMEOUT:.0f} s")


def _warm_up(kind: str, port: int, headers: dict[str, str]) -> None:
    """A few requests first: keys, caches and connections warm, and proof that all is 200."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
        for _ in range(_WARMUP_REQUESTS):
            status = client.get(PATH).status_code
            if status != 200:
                raise RuntimeError(f"{kind} answered {status} to the benchmark's token")


def _wrk(wrk: str, server: _Server, token: str, seconds: int, connections: int) -> _Load:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        "-H",
        f"Authorization: Bearer {token}",
        f"http://127.0.0.1:{server.port}{PATH}",
    ]
    cpu_before = _cpu_seconds(server.pid)
    done = subprocess.run(  # noqa: S603  # wrk found on PATH, fixed arguments
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    cpu = _cpu_seconds(server.pid) - cpu_before
    raw: dict[str, Any] = json.loads(line.removeprefix(_MARKER))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
    return _Load(
        requests_per_s=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=int(errors + raw["timeouts"]),
        cpu_us=cpu / max(raw["requests"], 1) * 1e6,
        raw=raw,
    )


_LAYOUT: tuple[tuple[str, AppKind, tuple[tuple[str, AppKind], ...]], ...] = (
    (
        "Starlette",
        "starlette",
        (("+ entra-guard (middleware + @require_scope_or_role)", "starlette+entra-guard"),),
    ),
    (
        "FastAPI",
        "fastapi",
        (
            ("+ entra-guard (as the example: middleware + route requirement)",
             "fastapi+entra-guard"),
            ("+ fastapi-azure-auth (single tenant, role dependency)",
             "fastapi+fastapi-azure-auth"),
        ),
    ),
)  # fmt: skip


def _rows(summaries: dict[AppKind, _Summary], setup: str) -> list[Row]:
    rows: list[Row] = []
    for label, bare_kind, protected in _LAYOUT:
        bare = summaries[bare_kind]
        rows += _app_rows(f"HTTP {label} no auth", bare, None, setup)
        for name, kind in protected:
            if kind in summaries:
                target = THROUGHPUT_TARGETS.get(kind)
                rows += _app_rows(f"HTTP {label} {name}", summaries[kind], bare, setup, target)
    return rows


def _app_rows(
    name: str, app: _Summary, bare: _Summary | None, setup: str, target: float | None = None
) -> list[Row]:
    load, data = app.best, app.as_dict()
    if bare is None:
        return [
            Row(SECTION, f"{name}, requests/s ({setup})", f"{load.requests_per_s:,.0f} req/s",
                data=data),
            Row(SECTION, f"{name}, latency p50 / p99", f"{ms(load.p50_ms)} / {ms(load.p99_ms)}",
                data=data),
            Row(SECTION, f"{name}, server CPU per request (median)", us(app.cpu_us), data=data),
        ]  # fmt: skip
    share = load.requests_per_s / bare.best.requests_per_s
    return [
        Row(
            SECTION,
            f"{name}, requests/s ({setup})",
            f"{load.requests_per_s:,.0f} req/s",
            baseline=f"no auth {bare.best.requests_per_s:,.0f}",
            ratio=ratio(share, target),
            target="-" if target is None else f">= {target:.2f}x no auth",
            met=None if target is None else (share >= target and load.errors == 0),
            data=data,
        ),
        Row(
            SECTION,
            f"{name}, latency p50 / p99",
            f"{ms(load.p50_ms)} / {ms(load.p99_ms)}",
            baseline=f"no auth {ms(bare.best.p50_ms)} / {ms(bare.best.p99_ms)}",
            ratio=f"{ratio(load.p50_ms / bare.best.p50_ms)} (p50)",
            data=data,
        ),
        Row(
            SECTION,
            f"{name}, server CPU per request (median)",
            us(app.cpu_us),
            baseline=f"no auth {us(bare.cpu_us)}",
            ratio=ratio(app.cpu_us / bare.cpu_us),
            data=data,
        ),
    ]

"""``python -m benchmarks.soak``: the example API under load while its identity provider misbehaves.

A bounded soak of the real thing: the example API (``entra_guard.examples.orders_api``) served
by its own ``uvicorn`` process on 127.0.0.1, trusting a local Entra ID emulator run by this
process with short key timings, so that refreshes happen during the run. Workers (asyncio, an
``httpx`` client with one connection each) send a mix of tokens (see ``soak_traffic``) for
``--duration`` seconds, while a deterministic chaos schedule, every ``step`` seconds, rotates
the signing key, removes the key signed with before, and takes the identity provider down and
back up.

The API runs under ``benchmarks.soak_server``, which also answers, on a second loopback port,
what the process holds (caches, key sets, connections, tasks, allocator figures): the report's
attribution table. ``--no-key-events`` sends the same traffic with no rotation, removal or
outage, to tell growth that follows key events from growth that follows requests;
``--tracemalloc N`` adds tracemalloc's top growers over the load (its own memory then shows in
RSS, and is reported). ``--loop`` is uvicorn's: ``auto`` (the default) runs uvloop where it is
installed (the ``bench`` extra installs it, as ``uvicorn[standard]`` does); ``asyncio`` runs
asyncio's own loop, whose socket reads (``recv`` of 256 KiB, cut down to what arrived) make
glibc's heap grow for hours: after the last sample the soak asks the API for ``malloc_trim(0)``
and reports what that gave back, free memory the allocator kept.

Every answer is checked against the status its token and route call for, at the moment it was
sent; uvicorn's resident memory is sampled, and the emulator's fetch counts are compared with
what the refresh policy allows. The report is printed and written to ``benchmarks/SOAK.md``
(``--no-write`` to skip). Exit status 0 only when every request got an expected status (no
unexpected 5xx or other status, no timeout, no connection error) and memory is not GROWING
(``soak_report.memory_verdict``). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal

import httpx

from benchmarks.soak_report import RunResult, render, write
from benchmarks.soak_traffic import (
    REFRESH_JITTER,
    WINDOW_SLACK,
    KeyTimeline,
    Pick,
    Pools,
    Tally,
    describe_body,
    expect,
    mint_pools,
    pick,
)
from entra_guard.testing import DEFAULT_AUDIENCE, EmulatorKey, EntraEmulator

__all__ = ["Settings", "build_schedule", "main"]

ROOT: Final = Path(__file__).resolve().parent.parent
REPORT: Final = Path(__file__).resolve().parent / "SOAK.md"
Action = Literal["rotate", "remove", "down", "up"]

DEFAULT_DURATION: Final = 180.0
DEFAULT_CONCURRENCY: Final = 32
MIN_DURATION, MAX_DURATION = 20.0, 6 * 3600.0
MAX_CONCURRENCY: Final = 256
# Chaos every ~15 s on a default run; shorter runs squeeze the schedule (and the key timings).
_STEP_BOUNDS: Final = (6.0, 15.0)
_STEPS_PER_RUN = 12
LAST_KNOWN_GOOD: Final = 600.0
FETCH_TIMEOUT: Final = 1.0
REQUEST_TIMEOUT: Final = 10.0
_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
# The whole load phase is cut this long after its planned end, whatever is still running.
_OVERRUN = 60.0
_MAX_REQUESTS_PER_SECOND = 20_000  # per worker: bounds each worker's loop by count as well
_LOG_LIMIT = 1 << 20
#: tracemalloc in the API process: off by default, so that the verdict run's RSS is the API's
#: own; ``--tracemalloc N`` turns it on with N frames per allocation, for attribution.
DEFAULT_TRACEMALLOC_FRAMES: Final = 0
_STATS_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float
    concurrency: int
    seed: int
    #: Seconds between chaos events.
    step: float
    refresh_interval: float
    min_refresh_interval: float
    warmup: float
    last_known_good: float = LAST_KNOWN_GOOD
    fetch_timeout: float = FETCH_TIMEOUT
    request_timeout: float = REQUEST_TIMEOUT
    #: False: the same traffic with no rotation, removal or outage (``--no-key-events``).
    key_events: bool = True
    #: Frames per traced allocation in the API process; 0 turns tracemalloc off.
    tracemalloc_frames: int = DEFAULT_TRACEMALLOC_FRAMES
    #: uvicorn's ``--loop`` for the API: ``auto`` takes uvloop when it is installed.
    loop: str = "auto"

    @classmethod
    def for_run(
        cls,
        *,
        duration: float,
        concurrency: int,
        seed: int,
        key_events: bool = True,
        tracemalloc_frames: int = 0,
        loop: str = "auto",
    ) -> Settings:
        low, high = _STEP_BOUNDS
        step = min(high, max(low, duration / _STEPS_PER_RUN))
        return cls(
            duration=duration,
            concurrency=concurrency,
            seed=seed,
            key_events=key_events,
            tracemalloc_frames=tracemalloc_frames,
            loop=loop,
            step=step,
            refresh_interval=round(step * 2 / 3, 1),
            min_refresh_interval=round(step / 3, 1),
            warmup=min(5.0, step * 0.8),
        )

    @property
    def removal_window(self) -> float:
        """A removed key is gone from the API by its next refresh, which is at most this late."""
        return round(
            self.refresh_interval * (1 + REFRESH_JITTER) + self.fetch_timeout + WINDOW_SLACK, 1
        )

    @property
    def new_key_window(self) -> float:
        """A rotated-in key is known to the API by the next forced refresh, at most this late."""
        return round(self.min_refresh_interval + self.fetch_timeout + WINDOW_SLACK, 1)

    def api_environment(self, idp: EntraEmulator) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            # Loopback only: no proxy may take the API's key fetches elsewhere.
            if not name.startswith("ENTRA_") and not name.lower().endswith("_proxy")
        }
        return env | {
            "ENTRA_TENANT_ID": idp.tenant_id,
            "ENTRA_AUDIENCES": DEFAULT_AUDIENCE,
            "ENTRA_INSTANCE": idp.instance,
            "ENTRA_REFRESH_INTERVAL_SECONDS": f"{self.refresh_interval:g}",
            "ENTRA_MIN_REFRESH_INTERVAL_SECONDS": f"{self.min_refresh_interval:g}",
            "ENTRA_LAST_KNOWN_GOOD_SECONDS": f"{self.last_known_good:g}",
            "ENTRA_FETCH_TIMEOUT_SECONDS": f"{self.fetch_timeout:g}",
            "PYTHONUNBUFFERED": "1",
        }


def build_schedule(duration: float, step: float) -> list[tuple[float, Action]]:
    """Cycles of four steps: rotate, remove the key signed with before, down, up.

    An outage is only scheduled when the identity provider comes back half a step before the
    end, so that the recovery is seen too; nothing starts in the last half step.
    """
    schedule: list[tuple[float, Action]] = []
    last = duration - step / 2
    for cycle in range(math.ceil(duration / step)):
        base = cycle * 4 * step
        if base + step > last:
            break
        schedule.append((base + step, "rotate"))
        if base + 2 * step <= last:
            schedule.append((base + 2 * step, "remove"))
        if base + 4 * step <= last:
            schedule += [(base + 3 * step, "down"), (base + 4 * step, "up")]
    return schedule


# -- the API process -------------------------------------------------------------------------


@dataclass(slots=True)
class Api:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float  # monotonic
    #: Loopback port of ``benchmarks.soak_server``'s stats (what the process holds).
    stats_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_api(settings: Settings, idp: EntraEmulator, log: Path) -> Iterator[Api]:
    """The example API in its own uvicorn process; terminated on the way out, whatever happens."""
    port, stats_port = _free_port(), _free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  # our own interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "benchmarks.soak_server",
                "--port",
                str(port),
                "--stats-port",
                str(stats_port),
                "--tracemalloc-frames",
                str(settings.tracemalloc_frames),
                "--loop",
                settings.loop,
            ],
            cwd=ROOT,
            env=settings.api_environment(idp),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    api = Api(process, port, log, time.monotonic(), stats_port)
    try:
        _wait_ready(api)
        yield api
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)


def _wait_ready(api: Api) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    with httpx.Client(base_url=api.url, timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if api.process.poll() is not None:
                raise RuntimeError(f"the API exited at start-up:\n{_tail(api.log)}")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the API did not answer within {_STARTUP_TIMEOUT:.0f} s:\n{_tail(api.log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def ask(api: Api, command: str) -> Any:
    """One command to the API process's stats port (``benchmarks.soak_server``); its JSON answer,
    or ``None`` when it does not answer."""
    try:
        line = await asyncio.wait_for(_exchange(api.stats_port, command), _STATS_TIMEOUT)
        return json.loads(line) if line else None
    except (OSError, asyncio.TimeoutError, ValueError):
        return None


async def _exchange(port: int, command: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (``VmRSS`` in ``/proc/<pid>/status``); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are the 14th and 15th fields; fields[0] here is the 3rd (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_summary(log: Path) -> tuple[int, list[tuple[str, int]]]:
    """Lines the API logged (warnings and errors at this log level), most frequent first."""
    try:
        with log.open("rb") as stream:
            text = stream.read(_LOG_LIMIT).decode(errors="replace")
    except OSError:
        return 0, []
    lines = [line.strip()[:200] for line in text.splitlines() if line.strip()]
    return len(lines), Counter(lines).most_common(10)


# -- the load and the chaos ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    at: float
    action: Action
    detail: str
    took: float


@dataclass(slots=True)
class Live:
    """What the workers, the chaos and the sampler share (one event loop: no locks)."""

    settings: Settings
    idp: EntraEmulator
    api: Api
    pools: Pools
    timeline: KeyTimeline
    forger: EmulatorKey
    t0: float = 0.0
    end: float = 0.0
    tally: Tally = field(default_factory=Tally)
    chaos: list[ChaosEvent] = field(default_factory=list)
    #: Keys signed with before the latest rotations, oldest first: the next ones to remove.
    to_remove: list[str] = field(default_factory=list)
    #: Soak time since which the identity provider has been down, or None.
    down_since: float | None = None
    memory: list[tuple[float, int]] = field(default_factory=list)
    #: At each memory sample: what the API process holds (``benchmarks.soak_server.stats``).
    holdings: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    rss_start: int | None = None
    api_died: str | None = None
    interrupted: bool = False
    #: Set to stop at once: by a signal, or when the API dies.
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def halt(self) -> None:
        """End the load now: workers finish the request in hand, the rest returns at once."""
        self.end = min(self.end, time.monotonic())
        self.stop.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the load was halted meanwhile."""
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            return self.stop.is_set()
        return True


async def _worker(live: Live, client: httpx.AsyncClient, index: int) -> None:
    rng = random.Random(f"{live.settings.seed}-{index}")  # str seeds are stable across runs
    tally = live.tally
    for _ in range(int(live.settings.duration * _MAX_REQUESTS_PER_SECOND)):
        if time.monotonic() >= live.end:
            return
        choice = pick(rng, live.pools)
        method, path = choice.route.split(" ")
        headers = {"Authorization": f"Bearer {choice.text}"} if choice.text is not None else {}
        body = {"item": "soak", "quantity": 1} if method == "POST" else None
        down_since = live.down_since
        sent = live.now()
        try:
            response = await client.request(method, path, headers=headers, json=body)
        except httpx.TimeoutException:
            received = live.now()
            expectation = expect(choice, live.timeline, sent, received)
            tally.record_failure(choice, expectation, "timeout", sent)
            continue
        except httpx.TransportError as exc:
            received = live.now()
            expectation = expect(choice, live.timeline, sent, received)
            tally.record_failure(choice, expectation, type(exc).__name__, sent)
            continue
        received = live.now()
        expectation = expect(choice, live.timeline, sent, received)
        status = response.status_code
        description = describe_body(response.content) if status >= 400 else ""
        tally.record(choice, expectation, status, description, at=sent, seconds=received - sent)
        if _within_outage(live, choice, down_since, sent):
            tally.during_outage[expectation.row, status] += 1


def _within_outage(live: Live, choice: Pick, down_since: float | None, sent: float) -> bool:
    """A valid token sent after the outage began and answered before it ended."""
    return (
        choice.kind == "valid"
        and choice.route != "GET /health"
        and down_since is not None
        and live.down_since == down_since
        and sent >= down_since
    )


async def _chaos(live: Live, schedule: list[tuple[float, Action]]) -> None:
    idp, settings = live.idp, live.settings
    for offset, action in schedule:
        if await live.pause(live.t0 + offset - time.monotonic()):
            return
        if time.monotonic() >= live.end:
            return
        began = live.now()
        if action == "rotate":
            previous = idp.current_key.kid
            key = await asyncio.to_thread(idp.rotate_keys, keep_previous=True)
            published = live.now()
            live.timeline.published(key.kid, published)
            valid, expired, forged = await asyncio.to_thread(
                mint_pools,
                idp,
                key=key,
                forger=live.forger,
                audience=DEFAULT_AUDIENCE,
                lifetime=settings.duration + 3600,
            )
            pools = live.pools
            live.pools = Pools(valid, expired, forged, older=pools.older + pools.current)
            live.to_remove.append(previous)
            detail = f"new signing key {key.kid[:8]}...; {previous[:8]}... still published"
        elif action == "remove":
            if not live.to_remove:
                continue  # nothing was rotated out (a schedule given by hand)
            kid = live.to_remove.pop(0)
            idp.remove_key(kid)
            live.timeline.removed(kid, began)
            kept = ", ".join(f"{k.kid[:8]}..." for k in idp.published_keys)
            detail = f"unpublished {kid[:8]}... (published now: {kept})"
        elif action == "down":
            await asyncio.to_thread(idp.stop)
            live.down_since = live.now()
            detail = "identity provider stopped (port refuses connections)"
        else:
            live.down_since = None
            await asyncio.to_thread(idp.start)
            detail = f"identity provider serving again on the same port ({idp.instance})"
        live.chaos.append(ChaosEvent(began, action, detail, live.now() - began))


async def _sample(live: Live) -> None:
    """uvicorn's resident memory every few seconds; notices the API dying."""
    interval = max(1.0, min(5.0, live.settings.duration / 36))
    pid = live.api.process.pid
    warm_at = live.t0 + live.settings.warmup
    for _ in range(int(live.settings.duration / interval) + 2):
        if live.rss_start is None and time.monotonic() >= warm_at:
            await ask(live.api, "mark")  # tracemalloc's baseline: the start of the load
            live.rss_start = rss_bytes(pid)
        rss = rss_bytes(pid)
        code = live.api.process.poll()
        if code is not None or rss is None:
            live.api_died = f"the API process exited with status {code} at {live.now():.1f} s"
            live.halt()
            return
        live.memory.append((live.now(), rss))
        held = await ask(live.api, "stats")
        if held is not None:
            live.holdings.append((live.now(), rss, held))
        next_at = min(live.end, time.monotonic() + interval)
        if live.rss_start is None:
            next_at = min(next_at, warm_at)
        if time.monotonic() >= live.end:
            return
        if await live.pause(next_at - time.monotonic()):
            return


async def _load(live: Live, schedule: list[tuple[float, Action]]) -> float:
    settings = live.settings
    tls = ssl.create_default_context()  # plain http here; one context instead of one per client
    async with contextlib.AsyncExitStack() as stack:
        # A client (and so a connection pool of one) per worker: httpcore looks through every
        # connection of its pool on each request, which costs more than the request at 32.
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=live.api.url,
                    timeout=settings.request_timeout,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    trust_env=False,
                    verify=tls,
                )
            )
            for _ in range(settings.concurrency)
        ]
        live.t0 = time.monotonic()
        live.end = live.t0 + settings.duration
        _graceful.append(live)
        tasks = [asyncio.create_task(_worker(live, c, i)) for i, c in enumerate(clients)]
        tasks += [asyncio.create_task(_chaos(live, schedule)), asyncio.create_task(_sample(live))]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), settings.duration + _OVERRUN)
        finally:
            _graceful.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return live.now()


def _skip_missing_sniffio() -> None:
    """httpcore 1.0 imports the optional ``sniffio`` three times per request; when it is not
    installed (anyio no longer needs it), each attempt is a failed import that searches all of
    ``sys.path`` again, and that dominated the load generator's time. ``None`` in
    ``sys.modules`` is Python's own way to make the import fail at once; httpcore then assumes
    asyncio, which is what runs here."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _preflight(live: Live) -> None:
    """One valid token must pass and one forged token must not, or the soak would be moot."""
    with httpx.Client(base_url=live.api.url, timeout=5.0, trust_env=False) as client:
        good = client.get(
            "/orders", headers={"Authorization": f"Bearer {live.pools.current[0].value}"}
        )
        bad = client.get(
            "/orders", headers={"Authorization": f"Bearer {live.pools.forged[0].value}"}
        )
    if good.status_code != 200 or bad.status_code != 401:
        raise RuntimeError(
            f"preflight: a valid token got {good.status_code} (want 200) and a forged one "
            f"{bad.status_code} (want 401); the API does not trust the emulator as configured:\n"
            f"{_tail(live.api.log)}"
        )


def run(settings: Settings) -> RunResult:
    schedule = build_schedule(settings.duration, settings.step) if settings.key_events else []
    forger = EntraEmulator.generate_key()
    with contextlib.ExitStack() as stack:
        idp = EntraEmulator().start()
        stack.callback(idp.stop)
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="entra-guard-soak-")))
        log = logs / "uvicorn.log"
        with serve_api(settings, idp, log) as api:
            key = idp.current_key
            valid, expired, forged = mint_pools(
                idp,
                key=key,
                forger=forger,
                audience=DEFAULT_AUDIENCE,
                lifetime=settings.duration + 3600,
            )
            timeline = KeyTimeline(settings.removal_window, settings.new_key_window)
            timeline.published(key.kid, -math.inf)
            live = Live(settings, idp, api, Pools(valid, expired, forged), timeline, forger)
            _preflight(live)
            cpu_before = cpu_seconds(api.process.pid)
            soak_cpu_before = time.process_time()
            load_before = os.getloadavg()
            _skip_missing_sniffio()
            elapsed = asyncio.run(_load(live, schedule))
            if live.interrupted:
                raise KeyboardInterrupt
            rss_end = rss_bytes(api.process.pid)
            growers = asyncio.run(ask(api, "growers")) or []
            final = asyncio.run(ask(api, "stats"))
            if final is not None and rss_end is not None:
                live.holdings.append((live.now(), rss_end, final))
            # Last: what of the RSS was free memory the allocator kept rather than gave back.
            trimmed = asyncio.run(ask(api, "trim"))
            cpu_after = cpu_seconds(api.process.pid)
            soak_cpu = time.process_time() - soak_cpu_before
            api_seconds = time.monotonic() - api.started
            fetches = {
                (kind, version): idp.fetch_count(kind, version=version)
                for kind in ("metadata", "jwks")
                for version in ("1.0", "2.0")
            }
        # The API has stopped: its log is complete.
        log_lines, log_top = log_summary(log)
    return RunResult(
        settings=settings,
        elapsed=elapsed,
        tally=live.tally,
        timeline=timeline,
        chaos=[(e.at, e.action, e.detail, e.took) for e in live.chaos],
        memory=live.memory,
        rss_start=live.rss_start,
        rss_end=rss_end,
        api_cpu_seconds=(
            None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        ),
        api_seconds=api_seconds,
        fetches=fetches,
        api_died=live.api_died,
        soak_cpu_seconds=soak_cpu,
        load_before=load_before,
        log_lines=log_lines,
        log_top=log_top,
        holdings=live.holdings,
        growers=growers,
        trimmed=trimmed if isinstance(trimmed, dict) and "after" in trimmed else None,
    )


#: The load in progress, if any: a first Ctrl-C (or SIGTERM) ends it gracefully.
_graceful: list[Live] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C and SIGTERM: end the load gracefully, then stop everything; a second one raises
    at once. (Cancelling the workers instead is not reliable: httpcore's shielded sections can
    swallow an asyncio cancellation, and a worker would carry on.)"""
    if _graceful and not _graceful[0].interrupted:
        live = _graceful[0]
        live.interrupted = True
        live.halt()
        return
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak the example API under load while its identity provider misbehaves",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"load time ({MIN_DURATION:g} to {MAX_DURATION:g}; default {DEFAULT_DURATION:g}); "
        f"chaos every duration/{_STEPS_PER_RUN} s, kept within {_STEP_BOUNDS[0]:g} to "
        f"{_STEP_BOUNDS[1]:g} s, and the API's key refresh intervals scale with it (the report "
        "says which)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"concurrent requests (1 to {MAX_CONCURRENCY}; default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")
    parser.add_argument(
        "--no-write", action="store_true", help=f"print the report only; leave {REPORT.name}"
    )
    parser.add_argument(
        "--no-key-events",
        action="store_true",
        help="the same traffic with no key rotation, removal or identity provider outage "
        "(to tell growth that follows key events from growth that follows requests)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=DEFAULT_TRACEMALLOC_FRAMES,
        metavar="FRAMES",
        help="trace the API's allocations with FRAMES frames each and report the top growers "
        "(its own memory then shows in RSS, and is reported; default 0: off)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the API's event loop, as uvicorn's --loop (default auto: uvloop when installed, "
        "as with uvicorn[standard]; asyncio shows the heap growth SOAK.md explains)",
    )
    args = parser.parse_args(argv)
    if not MIN_DURATION <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be between {MIN_DURATION:g} and {MAX_DURATION:g}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if not 0 <= args.tracemalloc <= 100:
        parser.error("--tracemalloc must be between 0 and 100 frames")
    settings = Settings.for_run(
        duration=args.duration,
        concurrency=args.concurrency,
        seed=args.seed,
        key_events=not args.no_key_events,
        tracemalloc_frames=args.tracemalloc,
        loop=args.loop,
    )
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"soak: {settings.duration:g} s, {settings.concurrency} concurrent requests, chaos every "
        f"{settings.step:g} s{'' if settings.key_events else ' (off: --no-key-events)'} ...",
        flush=True,
    )
    try:
        result = run(settings)
    except KeyboardInterrupt:
        print("soak: interrupted; the API and the emulator are stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # the API would not start, or does not trust the emulator
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    report = render(result)
    print(report)
    if not args.no_write:
        write(REPORT, report)
        print(f"soak: report written to {REPORT.relative_to(ROOT)}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

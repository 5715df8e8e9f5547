"""Rows, the table, the machine, and the files a full run writes (README.md, results.json)."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cryptography.hazmat.backends.openssl

__all__ = [
    "Row",
    "cpu_seconds",
    "machine",
    "markdown_table",
    "mb",
    "ms",
    "ratio",
    "us",
    "write_json",
    "write_readme",
]

HERE = Path(__file__).resolve().parent
_PACKAGES = (
    "entra-guard",
    "pyjwt",
    "cryptography",
    "starlette",
    "fastapi",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "httpx",
    "fastapi-azure-auth",
    "httpx2",
    "pydantic",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement: its figure next to the baseline measured in the same run."""

    section: str
    name: str
    figure: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    #: ``None`` when the row has no target (it informs).
    met: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "-"
        return "yes" if self.met else "no (missed)"


def us(value: float) -> str:
    return f"{value:.2f} µs" if abs(value) < 10 else f"{value:.1f} µs"


def ms(value: float) -> str:
    return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.0f} ms"


def mb(value_bytes: float) -> str:
    return f"{value_bytes / 2**20:.1f} MB"


def ratio(value: float, target: float | None = None) -> str:
    """``value`` as ``1.23x``; one digit more where rounding would show it equal to ``target``
    (0.8956 against a target of 0.90 reads ``0.896x``, not ``0.90x`` beside "missed")."""
    digits = 2 if abs(value) < 10 else 1
    text = f"{value:.{digits}f}"
    if target is not None and value != target and text == f"{target:.{digits}f}":
        text = f"{value:.{digits + 1}f}"
    return text + "x"


_HEADERS = ("measurement", "figure", "baseline", "ratio", "target", "met?")


def markdown_table(rows: Sequence[Row]) -> str:
    """A Markdown table, padded so that it also reads well in a terminal."""
    cells = [_HEADERS] + [
        (r.name, r.figure, r.baseline, r.ratio, r.target, r.verdict) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADERS))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])


# -- the machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for text in cpuinfo:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(*command: str) -> str | None:
    executable = shutil.which(command[0])
    if executable is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603  # a fixed command found on PATH
            [executable, *command[1:]], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    output = (done.stdout or done.stderr).strip()
    return output.splitlines()[0] if output else None


def machine() -> dict[str, Any]:
    """What the figures depend on: processor, cores, Python, OpenSSL, packages, commit."""
    backend = cryptography.hazmat.backends.openssl.backend
    commit = _command_output("git", "-C", str(HERE), "rev-parse", "--short", "HEAD")
    dirty = _command_output("git", "-C", str(HERE), "status", "--porcelain", "--", "../src")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": backend.openssl_version_text(),
        "wrk": (_command_output("wrk", "--version") or "").split(" Copyright")[0] or None,
        "commit": (commit or "unknown") + (" (src/ modified)" if dirty else ""),
        "packages": {name: _version(name) for name in _PACKAGES},
    }


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (all cores) and by this process tree.

    Their difference over a run is what other processes took: a benchmark sharing the machine
    says so rather than pretending its figures are quiet ones.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        fields = []
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy
    busy = sum(fields[:3]) + sum(fields[5:8]) if len(fields) >= 8 else 0
    own = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    return busy / ticks, own


def _machine_lines(info: dict[str, Any]) -> list[str]:
    packages = ", ".join(
        f"{name} {version}"
        for name, version in info["packages"].items()
        if version != "not installed"
    )
    absent = [name for name, version in info["packages"].items() if version == "not installed"]
    return [
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable)",
        f"- OS: {info['os']}",
        f"- Python: {info['python']}; {info['openssl']}",
        f"- Packages: {packages}" + (f" (not installed: {', '.join(absent)})" if absent else ""),
        f"- Load generator: {info['wrk'] or 'wrk not installed'}",
        f"- entra-guard commit: {info['commit']}",
    ] + (
        [f"- CPU taken by other processes during the run: {info['other_cpu_share']:.0%}"]
        if "other_cpu_share" in info
        else []
    )


# -- the files a full run writes ---------------------------------------------------------------

_INTRO = """\
# entra-guard benchmarks

Install once, then run everything from the repository root (about 90 s on 2 cores):

```sh
python3 -m venv .venv && .venv/bin/pip install -q -e '.[bench]'
apt-get install -y wrk   # the HTTP load generator (Debian); without it, that section is skipped
.venv/bin/python -m benchmarks
```

The `bench` extra brings FastAPI, uvicorn and fastapi-azure-auth 5.3.0 (the peer).

The command prints the table below and rewrites this file and `benchmarks/results.json` (every
timing run, raw). `--quick` runs small sizes for a smoke test and judges no target;
`--only SECTION ...` runs some sections (`validator`, `inprocess`, `coldstart`, `http`,
`memory`) and judges theirs; neither writes the files.
`--http-seconds`, `--http-rounds` and `--memory-tokens` change those sections' sizes.
Figures are compared with baselines measured in the same run on the same machine; the targets
are the project's goals and nothing fails on time.
"""

_PER_TARGET = "@@PER_TARGET@@"  # where write_readme puts the bullets of _missed(rows)
_FINDINGS = """\
## What the profiles show

The first three bullets give callgrind's instruction counts (valgrind 3.19, CPython 3.11.7),
per request, from in-process ASGI calls: repeatable whatever else runs on the machine.
Valgrind runs OpenSSL's generic code, so it overstates SHA-256 and RSA; the Python parts are
exact. The bullets after them give this run's own figures, and measurements made apart, each
with its date.

- **One dependency level.** A route's `Depends(require_scope_or_role(...))` costs FastAPI
  76.4k instructions over the middleware alone; a do-nothing `SecurityBase` dependency costs
  77.5k and a do-nothing `async def` of the connection 69.2k. So the requirement is one level
  and its own work is lost in FastAPI's charge for a level; the ~8k between the two
  do-nothing kinds is FastAPI computing a scopes cache key for every security scheme, the
  price of appearing in the OpenAPI document. The table's "do-nothing dependency level" row
  (a plain `async def` of the connection) shows the same in time.
- **The middleware inside FastAPI and inside Starlette.** It runs the same instructions in
  both, within run-to-run noise: 78k and 83k over Starlette without auth, 80k, 84k and 94k
  over FastAPI without auth (callgrind runs of 100 requests, before the changes of 2026-11-26), and
  callgrind's cache and branch simulation gives it the same misses in both (about +900 D1
  read misses and +1,600 I1 misses per request). Nothing of ours runs only under
  FastAPI: no scope copy, no state object, no per-request work depending on the framework. In
  wall-clock time the same instructions run slower inside the bigger app (in the previous
  published run, fastest round against fastest round: 7.7 µs in Starlette, 13.7 µs in FastAPI),
  which is the processor's caches, not our code (that run is the one published on 2026-11-26,
  commit 65ca70f; its figures are not the table's). What was ours to remove, the glue around
  the validator, went from 32.6k to 25.0k instructions: the app now runs inline (one
  coroutine less per request), one send watcher with no type test, the bearer token parsed
  with one copy and no query-string parser for an empty query, and a slotted `IncomingToken`
  instead of a frozen dataclass. The validator's cache hit (54k, most of it the token's
  SHA-256 under valgrind) is the rest.
- **The peer's 639 µs in the run of 2026-11-26** (commit 65ca70f; the table above is a later
  run, where it is about 240 to 265 µs). Its per-request code does not depend on how it was
  configured: the base class with `openid_config_url` (what this file used before) runs 3.13M
  instructions over FastAPI without auth, the documented single-tenant class with the role
  dependency 3.27M (the role check is a second dependency level). It never refetches its
  configuration per request once loaded (`_config_is_fresh`), and both use the installed PyJWT
  2.15.1. Two things make the figure large. First, the run it came from was bimodal: the
  machine ran some rounds about 1.8x slower (FastAPI without auth took 63 to 127 µs per request
  across rounds, the peer 426 to 876 µs), and the median fell between the modes; fastest rounds
  give about 360 µs. Second, the peer parses every token three times (`get_unverified_header`,
  `get_unverified_claims`, then `jwt.decode`), and PyJWT 2.15.1 checks every character of every
  segment against the base64url alphabet in a Python generator each time: 746k instructions per
  parse of a 1,323-character token (the tokens then; 1,324 now), more than two RSA verifies'
  worth, so about 70% of the peer's instructions, growing with the token's length. An
  independent figure of ~250 µs fits a faster machine: on 2026-12-01 this same machine, on a
  quieter and faster day, measured 240 to 265 µs with the same tokens. The ratios in one run's
  table are what compares like with like. The peer keeps no verified-token cache: with a
  repeated token it verifies in full every time, so the repeated-token row compares
  entra-guard's cache hit with the peer's whole verification, and the fresh-token row compares
  full verification with full verification.
@@PER_TARGET@@
- **Memory per cached token.** A cached principal keeps its payload's JSON text (672 bytes in
  these tokens; 705 with the bytes object's header), allocated by glibc's malloc, not Python's
  small-object allocator. Until 2026-12-01 it was kept as decoded, in among the parse's
  temporary buffers of similar size; a copy taken when the principal is built, after those
  are freed, leaves fewer gaps between kept payloads. Measured apart, over 40,000 tokens with
  the default cache: 1,564 to 1,586 bytes of resident memory per entry before, 1,426 to 1,429
  after (four runs and two), for a copy of about 0.1 µs per fresh token; the table's run of
  100,000 tokens gave 1.56 KB before (KB here is 1,024 bytes).
- On a busy machine the Python parts slow down more than the RSA floor (in the run of
  2026-11-30, RSA took about twice its quiet time, FastAPI without auth about three times), so
  every "x RSA verify" ratio is worse there than on a quiet machine.
"""

_METHOD = """\
## How each figure is measured

- **Units.** µs and ms are time per request or per token; KB and MB are 1,024 and 1,048,576
  bytes (the memory rows divide by these).
- **Timing.** Each case runs one warm-up batch, then timed batches (`time.perf_counter_ns`);
  the cases of one comparison take turns batch by batch in a rotating order, and each figure is
  the median per operation over the batches (`results.json` has every batch and the
  interquartile spread). A garbage collection runs between rounds, never inside a batch.
- **Tokens.** All tokens come from the local Entra ID emulator (`entra_guard.testing`): v2,
  app-only, with one app role, RSA-2048/RS256. A *fresh* token is one this validator has never
  seen: distinct tokens differing in their `uti`, signed with the emulator's key beforehand.
- **Validator.** `await TokenValidator.validate(token)` with warm keys. The floor is one bare
  `cryptography` RSA PKCS#1 v1.5 SHA-256 verify of the same signing input; `jwt.decode` is
  PyJWT with the same key object, `RS256`, audience, issuer, `require=[exp, iss, aud]` and the
  same 60 s leeway.
- **In-process.** The app is called as an ASGI callable with a scope, `receive` and `send` built
  here (no client, no server); every request carries the same `Authorization` header shape, so
  *overhead* = protected app minus the same app without authentication. Each protected case
  has its own app and validator, so no case warms another's cache. In each framework's group
  one bare RSA-2048 verify takes turns with the apps, and every overhead is also given in those
  verifies: a ratio measured in the same rounds, steadier than microseconds on a busy machine.
  Before timing, every app must answer the benchmark's token with 200 and every route with a
  policy must refuse a token without the role with 403.
- **What each row runs.** Starlette: the middleware alone (route without a policy), then the
  README's shape for a route with a policy (`@require_scope_or_role` on the endpoint). FastAPI:
  the example API's shape (middleware excluding the public paths, and
  `Depends(require_scope_or_role(scopes=["Orders.Read"], roles=["Orders.Read"]))` on the route);
  two more rows isolate the middleware alone and a do-nothing dependency level in its place
  (what FastAPI itself charges for one level). Tokens carry the app role `Orders.Read`.
- **The peer.** fastapi-azure-auth 5.3.0 as its documentation shows for a single-tenant API:
  `SingleTenantAzureAuthorizationCodeBearer(app_client_id=..., tenant_id=..., scopes=...)`, its
  OpenID configuration and keys loaded at start-up (`await azure_scheme.openid_config.load_config()`
  in the lifespan), and the role checked by a dependency on the scheme
  (`async def validate_has_role(user: User = Depends(azure_scheme))` refusing with its
  `ForbiddenHttp` unless `"Orders.Read" in user.roles`), as its "locking down on roles" page
  does. Only one thing differs from a real deployment: that class builds
  login.microsoftonline.com's metadata URL, so its `openid_config.config_url` is set to the
  emulator's v2 metadata. `app_client_id` is the tokens' `aud`; leeway 60 s like ours. The
  emulator's v2 app-only tokens pass its checks unchanged (`iss` is the metadata issuer, `idp`
  equals `iss`, so no guest). Both FastAPI routes thus require the app role `Orders.Read`
  (ours also accepts it as a delegated scope, which these app-only tokens cannot carry).
- **HTTP.** The same apps (Starlette with the decorated endpoint; FastAPI as the example) each
  run in their own `uvicorn` process (1 worker, default event loop and HTTP parser, access log
  off) on 127.0.0.1; `wrk` (1 thread, 50 connections, the repeated token in
  a `-H` header) loads one app at a time, in rounds of a few seconds, so that a busy moment of
  the machine does not fall on one app only. Requests per second and latency are each app's
  best round; server CPU per request is the server process's user and system time (from
  `/proc/PID/stat`) over a round divided by the requests it answered, the median over rounds.
  Every response must be a 200.
- **Cold start.** A fresh emulator and a fresh protected app (keys not prefetched) get 1,000
  concurrent first requests (`asyncio.gather`, 500 v1 + 500 v2 tokens); the baseline is 1,000
  new tokens on the same app once warm.
- **Memory.** A subprocess validates distinct tokens read one by one from a file; resident
  memory (`/proc/self/statm`) after a garbage collection, before, halfway and after. A bounded
  cache stops growing once full, so the second half's growth is what the target checks.
"""


_FIRST_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# The rows _missed reads, by the start of their names.
_EXPLAINED = {
    "floor": "Floor: cryptography",
    "fresh": "Validator, fresh token",
    "uncached": "Validator, same token, token_cache_size=0",
    "hit": "Validator, repeated token",
    "parse": "Fresh-token stage: parse",
    "claims": "Fresh-token stage: claim checks",
    "cache": "Fresh-token stage: cache",
    "s_floor": "Starlette: floor",
    "s_mw": "Starlette + middleware, route without a policy",
    "s_dec": "Starlette + middleware + @require_scope_or_role on the endpoint",
    "f_floor": "FastAPI: floor",
    "f_mw": "FastAPI + middleware, route without a requirement",
    "f_level": "FastAPI + middleware + a do-nothing dependency level",
    "f_req": "FastAPI + middleware + Depends(require_scope_or_role): overhead",
    "f_fresh": "FastAPI + middleware + Depends(require_scope_or_role), fresh",
    "peer": "FastAPI + fastapi-azure-auth, repeated",
    "peer_fresh": "FastAPI + fastapi-azure-auth, fresh",
    "hs_bare": "HTTP Starlette no auth, server CPU",
    "hs_ours": "HTTP Starlette + entra-guard (middleware + @require_scope_or_role), server CPU",
    "hf_bare": "HTTP FastAPI no auth, server CPU",
    "hf_ours": "HTTP FastAPI + entra-guard (as the example: middleware + route requirement), "
    "server CPU",
}


# The rows whose targets _missed explains, by the start of their names.
_TARGETS = {
    "fresh": _EXPLAINED["fresh"],
    "uncached": _EXPLAINED["uncached"],
    "s_mw": _EXPLAINED["s_mw"],
    "f_req": _EXPLAINED["f_req"],
    "f_fresh": _EXPLAINED["f_fresh"],
    "peer": _EXPLAINED["peer"],
    "peer_fresh": _EXPLAINED["peer_fresh"],
    "hs": "HTTP Starlette + entra-guard (middleware + @require_scope_or_role), requests/s",
    "hf": "HTTP FastAPI + entra-guard (as the example: middleware + route requirement), requests",
}


def _is_missed(rows: Sequence[Row], name: str) -> bool:
    return any(row.name.startswith(name) and row.met is False for row in rows)


def _figure(rows: Sequence[Row], name: str) -> float | None:
    """The number in the figure of the row whose name starts with ``name``, if it ran."""
    for row in rows:
        if row.name.startswith(name):
            found = _FIRST_NUMBER.search(row.figure.replace(",", ""))
            return float(found[0]) if found else None
    return None


def _missed(rows: Sequence[Row]) -> list[str]:
    """Where the time of each target this run missed goes, in its own figures: one bullet per
    missed target whose rows ran. What the table cannot show was measured apart, and says so."""
    f = {key: _figure(rows, name) for key, name in _EXPLAINED.items()}
    missed = {key for key, name in _TARGETS.items() if _is_missed(rows, name)}

    def miss(*keys: str) -> bool:
        return not missed.isdisjoint(keys)

    out = []
    floor, fresh, parse, claims, cache = (
        f[k] for k in ("floor", "fresh", "parse", "claims", "cache")
    )
    if miss("fresh") and floor and fresh and parse and claims and cache:
        rest = fresh - floor
        out.append(
            f"  - *Validator, fresh token.* One RSA verify is {floor:.1f} µs and the rest "
            f"{rest:.1f} µs; 1.6x would leave {0.6 * floor:.1f} µs for all of it. The stage "
            f"rows take it apart: parsing {parse:.1f} µs, claim checks and the principal "
            f"{claims:.1f} µs, the cache's digest, miss and insert {cache:.1f} µs; the other "
            f"{rest - parse - claims - cache:.1f} µs are spread over the key lookup, the glue "
            "of `validate`, the cache entry, the garbage collector and memory misses on each "
            "new token. Measured apart on 2026-12-01 (2,000 fresh tokens, CPU time, best of 7 "
            "to 9): of the parse, the shape check 0.8 µs, base64url of payload and signature "
            "2.6 µs (3.6 µs before that day's one-pass decode), JSON with duplicate members "
            "detected 2.1 µs (1.3 µs without the detection, which stays); the garbage "
            "collector about 1 µs per token (the validator alone, in CPU time: 28.5 µs a token "
            "with it off, 29.5 µs on); PyJWT's verify wrapper nothing measurable (15.60 µs "
            "against 15.66 µs for the bare verify)."
        )
    if miss("uncached") and floor and fresh and f["uncached"]:
        out.append(
            f"  - *Validator, same token, cache off.* {f['uncached']:.1f} µs against an "
            f"allowance of {1.6 * floor:.1f} µs: the fresh path's parts without the cache's "
            f"digest and insert, on a token already in the processor's caches; "
            f"{fresh - f['uncached']:.1f} µs less than a fresh token."
        )
    if miss("s_mw") and f["s_floor"] and f["s_mw"] and f["hit"]:
        out.append(
            f"  - *Starlette middleware.* The target allows {0.15 * f['s_floor']:.2f} µs. The "
            f"validator's cache hit alone is {f['hit']:.2f} µs (about 0.8 µs of it the SHA-256 "
            "of the 1,324-byte token that keys the cache); reading the header, admitting the "
            "caller into the scope and the app's send watcher are the other "
            f"{f['s_mw'] - f['hit']:.2f} µs."
        )
    if miss("f_req") and f["f_floor"] and f["f_mw"] and f["f_level"] and f["f_req"]:
        level = f["f_level"] - f["f_mw"]
        out.append(
            f"  - *FastAPI with `Depends(require_scope_or_role)`.* The target allows "
            f"{0.4 * f['f_floor']:.1f} µs. The middleware is {f['f_mw']:.1f} µs and FastAPI's "
            f"charge for one do-nothing dependency level (a plain `async def`) {level:.1f} µs "
            f"({level / f['f_floor']:.2f}x by itself); the other "
            f"{f['f_req'] - f['f_level']:.1f} µs are the requirement's check and what FastAPI "
            "adds for a security scheme (see the first bullet). No route check that is a "
            "FastAPI dependency can meet the target, and this one is a single level."
        )
    if miss("f_fresh") and f["f_floor"] and floor and fresh and f["f_fresh"] and f["f_req"]:
        parts = (fresh - floor) + f["f_req"]
        out.append(
            f"  - *FastAPI, fresh token per request.* {f['f_fresh']:.1f} µs against an "
            f"allowance of {2 * f['f_floor']:.1f} µs. It holds an RSA verify "
            f"({f['f_floor']:.1f} µs in this group), the validator's fresh path beyond it "
            f"({fresh - floor:.1f} µs, in the validator rows) and the repeated-token overhead "
            f"above ({f['f_req']:.1f} µs, whose cache hit a fresh token does not make): "
            f"{f['f_floor'] + parts:.1f} µs together, and "
            f"{f['f_fresh'] - f['f_floor'] - parts:.1f} µs more, memory effects of a bigger app. "
            "Measured apart: around a do-nothing ASGI app the middleware adds 3 µs to the "
            "validator's fresh path, inside Starlette's app 7 to 9 µs, with the same "
            "instructions."
        )
    if miss("peer", "peer_fresh") and f["peer"] and f["peer_fresh"]:
        out.append(
            f"  - *Against the peer.* Its overhead is {f['peer']:.0f} µs with a repeated token "
            f"and {f['peer_fresh']:.0f} µs with a fresh one: both ratios follow from our rows "
            "above."
        )
    # py-spy's share of the server's samples in entra-guard's own lines, and the spread of the
    # server CPU difference over the seven whole runs with HTTP of 2026-12-01.
    for name, key, bare, ours, in_process, target, sampled, spread in (
        ("Starlette", "hs", f["hs_bare"], f["hs_ours"], f["s_dec"], 0.90, 8.5, "7.5 to 15.6"),
        ("FastAPI", "hf", f["hf_bare"], f["hf_ours"], f["f_req"], 0.95, 6.6, "11.5 to 46"),
    ):
        if miss(key) and bare and ours and in_process:
            out.append(
                f"  - *HTTP, {name}.* The server takes {bare:.1f} µs of CPU per request without "
                f"auth and {ours:.1f} µs with it (medians over the rounds), {ours - bare:.1f} µs "
                f"more, where the same app in process adds {in_process:.1f} µs; "
                f"{target:.2f}x the requests per second would leave about "
                f"{bare * (1 / target - 1):.1f} µs. wrk runs on the same 2 cores as the server, "
                "so requests per second fall further than the server's CPU grows. Sampled apart "
                "with py-spy (250 Hz, 8 s of wrk load, 2026-12-01), entra-guard's own lines were "
                f"{sampled}% of this server's samples, the largest the SHA-256 of the token "
                f"(about {sampled / 100 * ours:.0f} µs a request at this run's CPU). The CPU "
                f"difference itself moved from {spread} µs across that day's seven runs of the "
                "same code."
            )
    if not out:
        return []
    head = "- **Where the targets are missed**, in this run's figures (rows of the table above):"
    return [head, *out]


def write_readme(
    path: Path,
    rows: Sequence[Row],
    info: dict[str, Any],
    notes: Sequence[str],
    seconds: float,
) -> None:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    missed = [r.name for r in rows if r.met is False]
    summary = (
        f"Targets met: {sum(r.met is True for r in rows)}, missed: {len(missed)}"
        + (": " + "; ".join(missed) if missed else "")
        + "."
    )
    parts = [
        _INTRO,
        f"## Results ({when}, whole run {seconds:.0f} s)\n",
        *_machine_lines(info),
        "",
        markdown_table(rows),
        "",
        summary,
        "",
    ]
    if notes:
        parts += ["### Notes on this run", "", *(f"- {n}" for n in notes), ""]
    # On a line of its own (a marker run into a paragraph fails here, not in the Markdown).
    findings, tail = _FINDINGS.split("\n" + _PER_TARGET + "\n")
    parts += [findings + "".join(f"\n{line}" for line in _missed(rows)) + "\n" + tail, _METHOD]
    path.write_text("\n".join(parts), encoding="utf-8")


def write_json(
    path: Path,
    rows: Sequence[Row],
    info: dict[str, Any],
    notes: Sequence[str],
    seconds: float,
) -> None:
    document = {
        "machine": info,
        "seconds": round(seconds, 1),
        "notes": list(notes),
        "rows": [{**asdict(r), "verdict": r.verdict} for r in rows],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

"""The soak's API process: the example API under uvicorn, plus a loopback stats port.

``python -m benchmarks.soak_server --port P --stats-port S [--tracemalloc-frames N]
[--loop auto|asyncio|uvloop]`` serves
``entra_guard.examples.orders_api:app`` with uvicorn on ``127.0.0.1:P`` exactly as
``uvicorn entra_guard.examples.orders_api:app`` would (warning log level, no access log), and
answers one-line commands on ``127.0.0.1:S`` with one line of JSON, from inside the API's own
event loop, so that a memory growth seen from outside can be attributed:

- ``stats``: what the process holds (verified-token cache entries, key sets and keys per source,
  remembered-absent key ids, checked headers, the key store's open connections, asyncio tasks,
  Python's allocated blocks, glibc's heap in use and free, tracemalloc's traced size and its own
  overhead);
- ``mark``: start tracemalloc (with ``--tracemalloc-frames N``, N > 0) and take the snapshot
  later ``growers`` compare against (the start of the load). Tracing starts here rather than at
  start-up because importing the app under tracemalloc takes many seconds, and only what is
  allocated during the load matters: ``traced`` is then what the load allocated and still holds;
- ``growers``: the top growers since ``mark`` (grouped by traceback), largest first;
- ``trim``: glibc's ``malloc_trim(0)``, which hands the heap's free pages back to the system,
  with the resident sizes before and after: what it gives back was free memory the allocator
  kept, not memory the process holds (the soak sends it once, after the last sample).

Soak-only: nothing here is in the library's request path. The library's state is read from its
private attributes on purpose (benchmarks code, not API); a rename there fails the soak loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any, Final

import uvicorn

from entra_guard import EntraAuthMiddleware

__all__ = ["main", "stats"]

_MAX_COMMAND = 64
_TOP_GROWERS = 15
_FRAMES_SHOWN = 6


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # ctypes' own declaration form
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Any:
    """glibc's ``mallinfo2`` (2.33+), or ``None`` elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    function = getattr(libc, "mallinfo2", None)
    if function is None:
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO: Final = _mallinfo2()


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` elsewhere."""
    name = ctypes.util.find_library("c")
    function = None if name is None else getattr(ctypes.CDLL(name), "malloc_trim", None)
    if function is not None:
        function.argtypes = [ctypes.c_size_t]
        function.restype = ctypes.c_int
    return function


_MALLOC_TRIM: Final = _malloc_trim()


def trim() -> dict[str, Any]:
    """``malloc_trim(0)`` with the resident sizes and glibc's heap figures before and after."""
    if _MALLOC_TRIM is None:
        return {"error": "no malloc_trim here (not glibc)"}
    before = {**_resident(), **_heap()}
    _MALLOC_TRIM(0)
    return {"before": before, "after": {**_resident(), **_heap()}}


def _heap() -> dict[str, int]:
    """glibc's heap figures (``mallinfo2``): in use (with mmapped blocks), free, and its size."""
    if _MALLINFO is None:
        return {}
    info = _MALLINFO()
    return {
        "heap_in_use": int(info.uordblks) + int(info.hblkhd),
        "heap_mmapped": int(info.hblkhd),
        "heap_free": int(info.fordblks),
        "heap_arena": int(info.arena),
        "heap_releasable": int(info.keepcost),
    }


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas: what ``sys._debugmallocstats()`` prints (to file descriptor 2, so it is
    caught there for the moment); empty where that is not CPython's text."""
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("ascii", "replace")
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        value = value.strip().replace(",", "")
        if not value.isdigit():
            continue
        if "arenas allocated current" in name:
            out["pymalloc_arenas"] = int(value)
        elif "arenas highwater mark" in name:
            out["pymalloc_arenas_highwater"] = int(value)
        elif "bytes in allocated blocks" in name:
            out["pymalloc_used"] = int(value)
    return out


def _resident() -> dict[str, int]:
    """Resident bytes by kind of mapping (``/proc/self/smaps``): glibc's ``[heap]``, anonymous
    mappings (pymalloc's 1 MiB arenas, large mallocs, thread stacks) and files (code)."""
    out = {"rss_heap": 0, "rss_anon": 0, "rss_file": 0}
    kind = "rss_anon"
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            for line in smaps:
                first = line.split(maxsplit=6)
                if not first:
                    continue
                if "-" in first[0] and len(first) >= 5:  # a mapping's header line
                    path = first[5].strip() if len(first) > 5 else ""
                    kind = (
                        "rss_heap"
                        if path == "[heap]"
                        else "rss_anon"
                        if not path or path.startswith("[")
                        else "rss_file"
                    )
                elif first[0] == "Rss:":
                    out[kind] += int(first[1]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _middleware(app: Any) -> Any:
    """The ``EntraAuthMiddleware`` instance in the app's built middleware stack, or ``None``."""
    node = getattr(app, "middleware_stack", None)
    for _ in range(50):  # a stack is a few layers deep; bounded in case of a cycle
        if node is None:
            return None
        if isinstance(node, EntraAuthMiddleware):
            return node
        node = getattr(node, "app", None)
    return None


def stats(app: Any) -> dict[str, Any]:
    """What the API process holds now (see the module docstring); called in its event loop."""
    out: dict[str, Any] = {
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "tasks": len(asyncio.all_tasks()),
        "allocated_blocks": sys.getallocatedblocks(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        **_pymalloc(),
        **_resident(),
        **_heap(),
    }
    if tracemalloc.is_tracing():
        out["traced"] = tracemalloc.get_traced_memory()[0]
        out["tracemalloc_overhead"] = tracemalloc.get_tracemalloc_memory()
    middleware = _middleware(app)
    if middleware is None:
        return out
    validator = middleware.validator
    store = validator.key_store
    cache = validator.cache
    out["token_cache"] = 0 if cache is None else len(cache)
    out["headers"] = len(validator._headers)
    sources = {}
    for source in store._all_sources():
        keyset = source.keyset
        sources[source.label] = {
            "keys": 0 if keyset is None else len(keyset),
            "absent": len(source.absent),
            "task": store._refreshing(source) is not None,  # a refresh in flight
        }
    out["sources"] = sources
    client = store._client
    connections, pool = None, None
    if client is not None and not client.is_closed:
        pool = getattr(client._transport, "_pool", None)
        connections = None if pool is None else len(pool.connections)
    out["key_store_connections"] = connections
    if connections and pool is not None:
        # "<AsyncHTTPConnection ['http://127.0.0.1:1', HTTP/1.1, ACTIVE, Request Count: 1]>"
        states = [repr(c).split(", ")[-2:] for c in pool.connections]
        out["key_store_connection_states"] = sorted(" ".join(s).strip("]>") for s in states)
    return out


_baseline: list[tracemalloc.Snapshot] = []
#: tracemalloc's frames per allocation, from the command line (empty: tracing stays off).
_frames: list[int] = []


def _snapshot() -> tracemalloc.Snapshot:
    snapshot = tracemalloc.take_snapshot()
    # The snapshot machinery itself is not the app's memory.
    return snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return Path(filename).name


def growers() -> list[dict[str, Any]]:
    """The largest size changes since ``mark``, by traceback (innermost frame first)."""
    if not tracemalloc.is_tracing() or not _baseline:
        return []
    current = _snapshot()
    diffs = current.compare_to(_baseline[0], "traceback")
    top = sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:_TOP_GROWERS]
    out = []
    for diff in top:
        # tracemalloc lists a traceback oldest frame first; the innermost ones say the most.
        innermost = list(reversed(diff.traceback))[:_FRAMES_SHOWN]
        frames = [f"{_short(f.filename)}:{f.lineno}" for f in innermost]
        out.append(
            {
                "size_diff": diff.size_diff,
                "count_diff": diff.count_diff,
                "size": diff.size,
                "frames": frames,
            }
        )
    return out


async def _answer(app: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        command = (await reader.readline())[:_MAX_COMMAND].decode("ascii", "replace").strip()
        if command == "stats":
            answer: Any = stats(app)
        elif command == "mark":
            if _frames and not tracemalloc.is_tracing():
                tracemalloc.start(_frames[0])
            _baseline[:] = [_snapshot()] if tracemalloc.is_tracing() else []
            answer = {"marked": bool(_baseline)}
        elif command == "growers":
            answer = growers()
        elif command == "trim":
            answer = trim()
        elif command == "gc":
            answer = {"gc_objects": len(gc.get_objects())}
        else:
            answer = {"error": f"unknown command {command!r}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
    finally:
        writer.close()


def _config(port: int, loop: str) -> uvicorn.Config:
    # Imported here, not at the top: the app reads its settings from the environment as it
    # is imported, and ``stats`` is importable without that.
    from entra_guard.examples.orders_api import app  # noqa: PLC0415

    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


async def _serve(config: uvicorn.Config, stats_port: int) -> None:
    server = uvicorn.Server(config)
    stats_server = await asyncio.start_server(
        lambda r, w: _answer(config.app, r, w), "127.0.0.1", stats_port
    )
    async with stats_server:
        await server.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    parser.add_argument(
        "--tracemalloc-frames",
        type=int,
        default=0,
        metavar="N",
        help="trace allocations with N frames each (0: off, the default)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="uvicorn's --loop: auto (the default) takes uvloop when it is installed",
    )
    args = parser.parse_args(argv)
    if args.tracemalloc_frames > 0:
        _frames.append(args.tracemalloc_frames)
    config = _config(args.port, args.loop)
    # The event loop uvicorn itself would run (``uvicorn.run`` picks it the same way);
    # ``asyncio.run`` would always take asyncio's own, whatever --loop says.
    factory = config.get_loop_factory()
    loop = asyncio.new_event_loop() if factory is None else factory()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(config, args.stats_port))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

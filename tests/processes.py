"""Real processes for the tests that run what a user runs: read their output with a deadline."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

#: The interpreter's scripts directory (``entra-guard``, ``uvicorn``) first on PATH, no ENTRA_*.
CLEAN_ENV = {
    **{name: value for name, value in os.environ.items() if not name.startswith("ENTRA_")},
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "PYTHONUNBUFFERED": "1",
}


def example_api() -> list[str]:
    """uvicorn's arguments that serve the example API shipped in the package."""
    return ["entra_guard.examples.orders_api:app"]


def example_api_shell_line(port: int) -> str:
    """The shell line that serves the example API under uvicorn on 127.0.0.1:``port``."""
    argv = [sys.executable, "-m", "uvicorn", *example_api(), "--port", str(port)]
    return f"exec {shlex.join(argv)}"


class Output:
    """Lines of one stream of a process, read on a thread so that waiting can be bounded."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, marker: str, timeout: float = 20.0) -> str:
        """Every line read so far, once a line containing ``marker`` has come (else fail)."""
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} within {timeout:g} s:\n{self.text}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the stream ended before {marker!r}:\n{self.text}")
            self.lines.append(line)
        return self.text

    def rest(self, timeout: float = 10.0) -> str:
        """Everything, once the stream has ended (the process exited)."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.text
            if line is not None:
                self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def wait_until_serving(url: str, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """Poll ``url`` until it answers, failing if the process exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"nothing answered at {url} within {timeout:g} s")


def stop(
    process: subprocess.Popen[str], how: signal.Signals = signal.SIGTERM, timeout: float = 10.0
) -> int:
    """Send ``how`` (SIGINT is Ctrl-C), reap the process, kill it if it lingers; its exit code."""
    if process.poll() is None:
        process.send_signal(how)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout)

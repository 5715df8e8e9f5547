"""uvicorn in a daemon thread, on a socket bound here.

Binding the socket ourselves tells us the port before the thread starts, and lets a stopped
server come back on the very same port, so a client that cached the emulator's URL sees the
identity provider go down and come back, as in an outage.

uvicorn logs through the process-wide ``uvicorn.error`` and ``uvicorn.access`` loggers, which
belong to the host application (often a uvicorn of its own, serving the API under test). Asked
for a log level or no access log, uvicorn would set those loggers' levels and drop their
handlers for the whole process; so the emulator asks for neither, and instead filters its own
routine records out while it serves. Its warnings and errors still reach the host's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Literal

import uvicorn

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from entra_guard.testing.tls import TLSMaterial

__all__ = ["BackgroundServer"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_POLL = 0.002
_TICK = 0.01
# Requests still running at stop() (a test's delay fault) are cut after this many seconds.
_GRACEFUL_SHUTDOWN = 1


_THREAD_PREFIX = "entra-emulator-"
_UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")


class _QuietEmulatorThreads(logging.Filter):
    """Drops records below WARNING logged on an emulator's server thread; passes the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not threading.current_thread().name.startswith(_THREAD_PREFIX)


class _LogFilterHold:
    """Keeps the filter on uvicorn's loggers while at least one emulator serves, and only then."""

    def __init__(self) -> None:
        self._filter = _QuietEmulatorThreads()
        self._lock = threading.Lock()
        self._holders = 0

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                for name in _UVICORN_LOGGERS:
                    logging.getLogger(name).addFilter(self._filter)
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                for name in _UVICORN_LOGGERS:
                    logging.getLogger(name).removeFilter(self._filter)


_quiet = _LogFilterHold()


class _Server(uvicorn.Server):
    """uvicorn's server, noticing ``should_exit`` within 10 ms instead of 100 ms.

    Test suites stop an emulator after nearly every test; the saving adds up.
    """

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):  # refreshes the Date header every 10th tick
            ticks += 1
            await asyncio.sleep(_TICK)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Cut idle keep-alive connections at once, then shut down as uvicorn does.

        A graceful TLS close waits for the client's ``close_notify``, which a client holding
        the connection idle in its pool (a ``requests.Session``, say) never sends: the stop
        would wait out the grace period and leave the transport unclosed. A server that goes
        down drops such connections; so does this one. Requests in progress still finish.
        """
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is None or cycle.response_complete:
                connection.transport.abort()
        await asyncio.sleep(0)  # the aborted connections' connection_lost runs
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)  # requests in progress finish, as uvicorn lets them
            return
        # Nothing in flight: uvicorn's steps without its fixed 0.1 s wait for connections to
        # wind down, of which there are none. A stop takes 110 ms with it, under 10 ms without.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if not self.force_exit:
            await self.lifespan.shutdown()


class BackgroundServer:
    """Serves one ASGI app on ``host:port``; ``start`` and ``stop`` may alternate freely."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        tls: TLSMaterial | None,
        lifespan: Literal["on", "off"] = "off",
    ) -> None:
        self._app = app
        self._lifespan: Literal["on", "off"] = lifespan
        self._host = host
        self._port = port
        self._tls = tls
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # Between stop(hold_port=True) and start(): bound, not listening. Connections are
        # refused as by a server that is down, and no other process can take the port meanwhile.
        self._held: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port; the requested one (maybe 0) until the first start."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve, returning once connections are accepted. Does nothing if already serving."""
        with self._lock:
            if self._server is not None:
                return
            sock, self._held = self._held or self._bind(), None
            _quiet.acquire()
            try:
                server = _Server(self._config())
                thread = threading.Thread(
                    target=server.run,
                    kwargs={"sockets": [sock]},
                    name=f"{_THREAD_PREFIX}{self._port}",
                    daemon=True,
                )
                thread.start()
                self._wait_started(server, thread)
            except BaseException:
                sock.close()
                _quiet.release()
                raise
            self._server, self._thread = server, thread

    def stop(self, *, hold_port: bool = False) -> None:
        """Close the socket and every connection, then return.

        With ``hold_port`` the port stays bound (not listening) until :meth:`start`, so that
        it refuses connections like a server that is down but cannot be taken by another
        process meanwhile (a busy machine hands freed ports out again within seconds).
        Without it, a port held by an earlier stop is released too.
        """
        with self._lock:
            server, thread = self._server, self._thread
            if not hold_port and self._held is not None:
                self._held.close()
                self._held = None
            if server is None or thread is None:
                return
            self._server = self._thread = None
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - only if a request refuses to finish
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)
            _quiet.release()
            if hold_port:
                with contextlib.suppress(OSError):  # taken in the instant after the close
                    self._held = self._bind()
            if self._tls is not None:
                self._tls.cleanup()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it every response on a kept-alive connection waits ~40 ms for
        # the client's delayed ACK (Nagle meets delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            # Lets start() after stop() take the same port while old connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    def _config(self) -> uvicorn.Config:
        files = self._tls.files() if self._tls is not None else None
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            http="h11",
            ws="none",
            lifespan=self._lifespan,
            # All three leave the process's logging as it is (see the module docstring):
            # access_log=False would empty uvicorn.access of its handlers.
            log_config=None,
            log_level=None,
            access_log=True,
            proxy_headers=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            ssl_certfile=files.certfile if files else None,
            ssl_keyfile=files.keyfile if files else None,
        )
        # Loading here rather than in the thread makes a broken configuration raise to the caller.
        config.load()
        return config

    @staticmethod
    def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the emulator's server thread exited during start-up")
            if time.monotonic() > deadline:
                server.should_exit = True
                thread.join(_STOP_TIMEOUT)
                raise RuntimeError(f"the emulator did not start within {_START_TIMEOUT:g} s")
            time.sleep(_POLL)

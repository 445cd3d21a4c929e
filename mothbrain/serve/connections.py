"""Connections the server can afford: a deadline for each request to arrive, a cap on open connections, no log
flood, and as many file descriptors as the system grants.

Uvicorn (0.55) has no header timeout: `timeout_keep_alive` runs only between requests and
`h11_max_incomplete_event_size` bounds a header's size, not its time, so a client that sends half a request line
and waits holds its connection (and a file descriptor) for ever; a thousand of them exhaust the process's open
files and every accept then logs a traceback. The least invasive fix is a subclass of uvicorn's own h11 protocol
(passed as `http=`): it starts a timer when a request is awaited and closes the connection if the request is not
complete in time, and it keeps open connections under `serve.max_connections` by closing, oldest first, ones that
are only waiting (a request still arriving, or an idle keep-alive), so a real request always finds room.
When every connection is busy with a request, uvicorn's own `limit_concurrency` answers 503.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("mothbrain.serve")
RESERVED_FDS = 128  # descriptors kept for everything but client connections (model files, logs, threads)
REPORT_EVERY_S = 10.0  # a burst of refused or closed connections is one line per this many seconds


class Throttled:
    """Counts events and says how many happened at most once per `every` seconds."""

    def __init__(self, every: float = REPORT_EVERY_S) -> None:
        self.every, self.count, self.last = every, 0, float("-inf")

    def tick(self, now: float | None = None) -> int:
        """Count one; the number to report now (0: stay quiet)."""
        now = time.monotonic() if now is None else now
        self.count += 1
        if now - self.last < self.every:
            return 0
        self.last, n, self.count = now, self.count, 0
        return n


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """Uvicorn's h11 protocol with a request deadline (0: none) and a cap on open connections."""

    closed = {"late": Throttled(), "room": Throttled()}  # one count per reason, so each line says why

    def report(reason: str, why: str) -> None:
        if n := closed[reason].tick():
            log.warning(
                "serve: closed %d connection(s) %s (serve.header_timeout_s %g, serve.max_connections %d)",
                n,
                why,
                header_timeout_s,
                max_connections,
            )

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.request_timer: asyncio.TimerHandle | None = None
            self.waiting_since = time.monotonic()
            super().connection_made(transport)
            self._await_request()
            if len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            if self.request_timer is None and self.conn.their_state is h11.IDLE:
                self._await_request()  # the next request on a keep-alive connection starts arriving
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
                self._cancel_timer()  # the whole request is in (or the connection is done with)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            super().connection_lost(exc)

        def _await_request(self) -> None:
            if header_timeout_s > 0:
                self.waiting_since = time.monotonic()
                self.request_timer = self.loop.call_later(header_timeout_s, self._request_timed_out)

        def _cancel_timer(self) -> None:
            if self.request_timer is not None:
                self.request_timer.cancel()
                self.request_timer = None

        def _request_timed_out(self) -> None:
            self.request_timer = None
            self._close()
            report("late", "that sent no complete request in time")

        def _waiting(self) -> bool:
            """Only waiting: a request still arriving, or an idle keep-alive between requests."""
            return self.request_timer is not None or self.timeout_keep_alive_task is not None

        def _make_room(self) -> None:
            """Over the cap: close the connection that has waited longest (never this new one)."""
            idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting()]
            if idle:
                min(idle, key=lambda c: c.waiting_since)._close()
                report("room", "waiting for a request, to make room for new ones")

        def _close(self) -> None:
            self._cancel_timer()
            self.connections.discard(self)  # counted out now; connection_lost follows on the next loop turn
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


class CollapseRefusals(logging.Filter):
    """Turns the accept errors of a process out of file descriptors (asyncio logs each with a traceback, every
    second) and uvicorn's per-request 'Exceeded concurrency limit.' into one line per REPORT_EVERY_S."""

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.max_connections = max_connections
        self.accept_failed, self.over_cap = Throttled(), Throttled()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        msg = str(record.msg)
        # asyncio retries a failed accept once per pending connection; at shutdown each retry fails again
        if (
            "out of system resource" in msg
            or ("Exception in callback" in msg and "_start_serving" in msg)
            or (isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE))
        ):
            return self._collapse(
                record,
                self.accept_failed,
                "serve: %d connection(s) not accepted: out of file descriptors (%s); raise `ulimit -n` "
                "or lower serve.max_connections",
                getattr(exc, "strerror", None) or "too many open files",
            )
        if record.msg == "Exceeded concurrency limit.":
            return self._collapse(
                record,
                self.over_cap,
                "serve: %d request(s) answered 503: all serve.max_connections (%d) connections busy with requests",
                self.max_connections,
            )
        return True

    @staticmethod
    def _collapse(record: logging.LogRecord, counter: Throttled, msg: str, detail: Any) -> bool:
        n = counter.tick()
        if not n:
            return False
        record.msg, record.args = msg, (n, detail)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def install_log_filter(max_connections: int) -> CollapseRefusals:
    """Put the filter on the loggers that flood (asyncio's accept errors, uvicorn's 503 warnings)."""
    collapse = CollapseRefusals(max_connections)
    for name in ("asyncio", "uvicorn.error"):
        logging.getLogger(name).addFilter(collapse)
    return collapse


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (each connection is a descriptor); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may refuse it; the cap still bounds what we open
            pass
    return soft


ACCEPT_BACKLOG = 2048  # uvicorn's default `backlog`, kept where descriptors are plenty


def accept_backlog(open_files: int) -> int:
    """Uvicorn's `backlog` for this open-files limit. It is also how many connections asyncio accepts at one wake-up,
    all of them before the protocol sees any (and can close idle ones to make room): 2048 in a burst of slow clients
    ran a 1024-descriptor process out, and each failed accept stops accepting for a second (/health took 3.1 s).
    A 32nd of the limit keeps a burst's accepts, and the idle connections they close, beside the cap."""
    if open_files == resource.RLIM_INFINITY:
        return ACCEPT_BACKLOG
    return max(16, min(ACCEPT_BACKLOG, open_files // 32))


class Server(uvicorn.Server):
    """Uvicorn's server with the kernel's listen queue at ACCEPT_BACKLOG once it listens, whatever the `backlog` it
    was given (`accept_backlog`: asyncio sets both from it): a burst is accepted a small batch at a time, but waits
    in the queue rather than having its handshakes dropped (a client would retry only a second later)."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets=sockets)
        for server in getattr(self, "servers", []):
            for listening in server.sockets:
                sock = socket.socket(fileno=listening.fileno())
                try:
                    sock.listen(ACCEPT_BACKLOG)
                finally:
                    sock.detach()  # the descriptor stays asyncio's


def connection_cap(wanted: int, open_files: int) -> int:
    """serve.max_connections, lowered to what the open-files limit allows: a cap above it would let accepts fail
    (and slow clients hold every descriptor) before idle connections are closed to make room. Beside the cap: the
    reserved descriptors, one accept batch not yet seen by the protocol and one of idle connections it is closing."""
    if open_files == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, open_files - RESERVED_FDS - 2 * accept_backlog(open_files)))

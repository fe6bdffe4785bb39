"""Worker processes: the model is loaded once, the socket bound once, then workers are
forked and each runs uvicorn (httptools parser, uvloop) on the inherited socket.

- Forking after the load shares the model's memory between workers and makes a worker's
  start (and a crashed worker's replacement) cost a fork, not a Python start and a load.
- The listening socket is made with ``IPPROTO_TCP``: asyncio sets TCP_NODELAY only on
  connections accepted from such a socket. uvicorn's own multi-worker mode makes its
  socket without it, and a keep-alive client then waits out the peer's delayed ACK
  (about 40 ms) on every response: MLflow's ``-w 2`` falls from 200 to 20 req/s on one
  connection.
- A hostile client meets limits uvicorn's httptools protocol lacks (``Limits``,
  ``_protocol_class``): the request head's size counted as it streams, a time to send
  it, and a cap on open connections that closes the longest-waiting idle one.
- A worker ends with ``os._exit``: the parent's cleanups (the temporary folder of a
  model downloaded from a run) are the parent's to run. A worker that dies is replaced;
  one dying within a second of its start ``RESPAWN_LIMIT`` times stops the server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from gitml.errors import ServerStartError
from gitml.serving import HEAD_TIMEOUT, MAX_CONNECTIONS

log = logging.getLogger("gitml.serving")

HEAD_MAX_BYTES = 64 * 1024
FD_RESERVE = 64  # descriptors kept for what is not a connection (the socket, logs, the model's files)
RESPAWN_LIMIT = 5


@dataclass(frozen=True)
class Limits:
    """What one worker allows its clients: the request head's size and time, and how
    many connections it holds open."""

    head_max_bytes: int = HEAD_MAX_BYTES
    head_timeout: float = HEAD_TIMEOUT  # for the head, and for a client that reads none of its answer
    max_connections: int = MAX_CONNECTIONS
    fds_per_connection: int = 1  # descriptors a connection may hold (the UI's artifact streams hold a file too)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ServerStartError(f"cannot listen on {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def connection_cap(wanted: int, per: int = 1) -> int:
    """The connections a worker may hold: ``wanted``, within the descriptors the process
    may open (the soft limit is raised to the hard one first), less FD_RESERVE, ``per``
    descriptors a connection. Past the descriptor limit the server could not accept at
    all: a thousand idle connections on the common default of 1,024 would lock every new
    client out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + FD_RESERVE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - FD_RESERVE) // max(per, 1)))


def guarded_protocol(limits: Limits = Limits()):
    """uvicorn's httptools protocol with the limits a hostile client meets (for any of
    gitml's servers: ``gitml serve``'s workers, ``gitml ui``)."""
    return _protocol_class(limits)


def _protocol_class(limits: Limits):
    """uvicorn's httptools protocol with the limits a hostile client meets (uvicorn has
    none of them for httptools):

    - the request line and headers are counted as their bytes arrive, so a header line
      that never ends is cut at ``head_max_bytes`` (431, connection closed): httptools
      gathers a header's bytes and hands them over only when the header ends;
    - they must arrive within ``head_timeout`` seconds of the connection (or of a kept-alive
      connection's first byte of its next request), else the connection is closed;
    - a client that reads none of its answer for ``head_timeout`` seconds (the transport's
      buffer over its high-water mark all that time) is cut off, its buffered answer
      dropped (``abort``: a ``close`` waits for the buffer to drain, for ever);
    - past ``max_connections`` open connections, the one that has waited longest for its
      client (a request's head, the rest of its body, or to read its answer) is cut off: a
      slowloris attack holds connections open by sending nothing, or a byte now and then,
      of a head or of a body, or by reading nothing of a large answer (a slow read). A
      connection whose request is being scored or answered is never chosen; when every
      connection has one, the new connection gets a 503.
    """
    from collections import OrderedDict

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    cap = connection_cap(limits.max_connections, limits.fds_per_connection)
    # connections waiting for their client (a request's head, or its body), oldest wait first
    waiting: OrderedDict[GuardedHttpToolsProtocol, None] = OrderedDict()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _in_head = True
        _head_timer = None
        _write_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_head()
            self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)
            if len(self.connections) > cap and not self._evict_one():
                self._refuse(503, b"the server holds as many connections as it can; try again")

        def _start_head(self) -> None:
            self._in_head, self._head_bytes = True, 0
            waiting.pop(self, None)
            waiting[self] = None

        def _evict_one(self) -> bool:
            for other in waiting:
                cycle = other.cycle  # None, the last request's (answered), or one whose body is still arriving
                stalled = other.flow.write_paused  # its client reads nothing of its answer
                if other is not self and (cycle is None or cycle.response_complete or cycle.more_body or stalled):
                    waiting.pop(other)
                    self.connections.discard(other)  # gone now: its connection_lost comes on a later turn
                    other._cut()
                    return True
            return False

        def _cut(self) -> None:
            """Close the connection, dropping what its client has not read (a ``close``
            would wait, for ever, until a client reading nothing read it all)."""
            if self.flow.write_paused:
                self.transport.abort()
            else:
                self.transport.close()

        def pause_writing(self) -> None:
            super().pause_writing()
            waiting.pop(self, None)  # waiting for its client again: to read
            waiting[self] = None
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(limits.head_timeout, self._write_timed_out)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _write_timed_out(self) -> None:
            self._write_timer = None
            if self.flow.write_paused:  # closing too: a close (the keep-alive time's) waits for the buffer
                self.transport.abort()

        def _refuse(self, status: int, message: bytes) -> None:
            reason = {431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(message), message)
            )
            self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:  # the last request's answer comes first
                self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)
                return
            self.transport.close()

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if not self._in_head:
                return super().data_received(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)
            room = limits.head_max_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                return super().data_received(data)
            super().data_received(data[:room])  # may end the head: the rest is its body
            if self._in_head:
                self._stop_head_timer()
                if not self.transport.is_closing():
                    self._refuse(431, b"the request line and headers are over the server's limit")
                return None
            return super().data_received(data[room:])

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_head_timer()
            super().on_headers_complete()  # still waiting for the client until its body has come

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._start_head()  # what arrives next is the next request's head

        def connection_lost(self, exc) -> None:
            waiting.pop(self, None)
            self._stop_head_timer()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


def _run_uvicorn(app, sock: socket.socket, limits: Limits) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        loop=loop,
        http=_protocol_class(limits),
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=5,
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(app, sock: socket.socket, workers: int, limits: Limits = Limits()) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM: in this process when
    ``workers`` is 1, else in that many forked worker processes."""
    if workers <= 1:
        # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it found:
        # with the default one the process would die there, skipping the cleanups (the temporary
        # folder of a model downloaded from a run); this one ends it as an exit does
        previous_term = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            _run_uvicorn(app, sock, limits)
        finally:
            signal.signal(signal.SIGTERM, previous_term)
        return
    children: dict[int, float] = {}  # pid -> start time
    stopping = False
    quick_deaths = 0

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _run_uvicorn(app, sock, limits)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(workers):
            fork()
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            log.warning("worker %d ended (%s); starting another", pid, _describe(status))
            if time.monotonic() - started < 1.0:
                quick_deaths += 1
                if quick_deaths >= RESPAWN_LIMIT:
                    stop(signal.SIGTERM, None)
                    raise ServerStartError(
                        f"the workers died {quick_deaths} times within a second of starting: stopping"
                    )
            fork()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()


def _exit_on_sigterm(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"

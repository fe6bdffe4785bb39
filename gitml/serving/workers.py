"""Worker processes: the model is loaded once, the socket bound once, then workers are
forked and each runs uvicorn (httptools parser, uvloop) on the inherited socket.

- Forking after the load shares the model's memory between workers and makes a worker's
  start (and a crashed worker's replacement) cost a fork, not a Python start and a load.
- The listening socket is made with ``IPPROTO_TCP``: asyncio sets TCP_NODELAY only on
  connections accepted from such a socket. uvicorn's own multi-worker mode makes its
  socket without it, and a keep-alive client then waits out the peer's delayed ACK
  (about 40 ms) on every response: MLflow's ``-w 2`` falls from 200 to 20 req/s on one
  connection.
- The request line and headers are limited (``HEAD_MAX_BYTES``): uvicorn's httptools
  protocol would gather them without bound.
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

from gitml.errors import ServerStartError  # noqa: F401  (defined there, raised here)

log = logging.getLogger("gitml.serving")

HEAD_MAX_BYTES = 64 * 1024
RESPAWN_LIMIT = 5


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


def _protocol_class():
    """uvicorn's httptools protocol with the request line and headers limited to
    HEAD_MAX_BYTES (past it: uvicorn's 400 and the connection closed); uvicorn's h11
    protocol, which has its own limit, when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            super().on_message_begin()

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > HEAD_MAX_BYTES:
                raise ValueError("request head too large")  # httptools turns it into a parser error

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

    return LimitedHttpToolsProtocol


def _run_uvicorn(app, sock: socket.socket) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(
        app, loop=loop, http=_protocol_class(), lifespan="off", access_log=False, log_level="warning",
        server_header=False, timeout_keep_alive=5, backlog=2048,
        h11_max_incomplete_event_size=HEAD_MAX_BYTES,
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(app, sock: socket.socket, workers: int) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM: in this process when
    ``workers`` is 1, else in that many forked worker processes."""
    if workers <= 1:
        _run_uvicorn(app, sock)
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
                _run_uvicorn(app, sock)
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
                    raise ServerStartError(f"the workers died {quick_deaths} times within a second of starting: stopping")
            fork()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"

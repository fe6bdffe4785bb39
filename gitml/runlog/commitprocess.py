"""A commit process: a process that makes many runs commits them on both cores.

The committer thread (:mod:`gitml.runlog.committer`) and the code making the runs share
one interpreter lock: a sweep's main thread (about 0.3 ms of Python a run) and its
commits took turns. Once ended runs wait for the thread, the committer starts this
module as a child process. The thread still prepares each batch (records, trees,
commits: the runs' state never leaves the parent); the child writes the batch's objects
as one pack and moves its refs (the same :meth:`GitStore.write` and compare-and-swap, each
ref under its lock and fsynced) and answers with each ref's result.

What keeps this as safe as the thread:

- A run reaches the child only once ``end_run`` returned: its lines are in the parent's
  journal, and its commit names the offset they end at.
- The child holds the parent's journal locks: each journal's descriptor is passed to it
  (``SCM_RIGHTS``) with the first batch written from it, and an ``flock`` belongs to the
  open file, not to a process. If the parent dies, no recovery replays a journal while
  the child may still move refs from it; the child moves what it was given and ends, and
  the next command's recovery commits the rest.
- The parent releases a run only on the child's answer for its ref. If the child dies,
  the batches it did not answer for are written and moved by the thread.

``GITML_COMMIT_PROCESS=0`` keeps every commit on the thread.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gitml.store.git import GitStore, open_repo
from gitml.store.packs import GitObject, RawObject

log = logging.getLogger("gitml")

REF_THREADS = 8  # refs of a batch moved at once (each waits on its fsync)
_HEAD = struct.Struct("<I")
MAX_FRAME = 1 << 30


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(data)) + data


class Frames:
    """Frames read from a socket, with the descriptors passed along with them."""

    def __init__(self, sock: socket.socket, *, fds: bool = False):
        self.sock = sock
        self.fds = fds
        self.buffer = bytearray()
        self.passed: list[int] = []

    def waiting(self) -> bool:
        """Whether a message (or the end) can be read without waiting."""
        if len(self.buffer) >= _HEAD.size and len(self.buffer) >= _HEAD.size + _HEAD.unpack_from(self.buffer)[0]:
            return True
        return bool(select.select([self.sock], [], [], 0)[0])

    def next(self) -> Any:
        """The next message; None at the end of the stream."""
        while True:
            if len(self.buffer) >= _HEAD.size:
                (size,) = _HEAD.unpack_from(self.buffer)
                if size > MAX_FRAME:
                    raise ValueError(f"commit process: a frame of {size} bytes")
                if len(self.buffer) >= _HEAD.size + size:
                    data = bytes(self.buffer[_HEAD.size : _HEAD.size + size])
                    del self.buffer[: _HEAD.size + size]
                    return pickle.loads(data)  # noqa: S301 - our own process's frames, over a socketpair
            if self.fds:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 16)
                self.passed.extend(fds)
            else:
                data = self.sock.recv(1 << 20)
            if not data:
                return None
            self.buffer += data


_OPEN: weakref.WeakSet[CommitProcess] = weakref.WeakSet()


def _close_in_forked_child() -> None:
    """A forked child keeps no end of its parent's commit process: if the parent dies, the
    commit process must see its end (and end, releasing the parent's journals) at once."""
    for process in list(_OPEN):
        try:
            os.close(process.sock.detach())
        except OSError:
            pass
    _OPEN.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


class CommitProcess:
    """The parent's end: starts the child, sends it ended runs, reads its answers on a
    thread of its own and gives them to ``answer`` (``None`` once the child is gone)."""

    def __init__(self, store: GitStore, answer: Callable[[object | None], None]):
        self.store = store
        self._answer = answer
        self._shared: set[str] = set()  # journals whose descriptor the child holds
        self._send_lock = threading.Lock()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        # This interpreter's module path, without `site` (its .pth files and editable-install
        # finders were a quarter of the child's start): the child imports what this process does.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([root, *(p for p in sys.path if p and os.path.isdir(p))]))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-P", "-m", "gitml.runlog.commitprocess", str(child.fileno()), store.repo.path],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # never the parent's: a reader of it waits for its end, not ours
                env=env,
                cwd=store.commondir,
            )
        finally:
            child.close()
        self._reader = threading.Thread(target=self._read, name="gitml-commit-process", daemon=True)
        self._reader.start()
        _OPEN.add(self)

    def _read(self) -> None:
        frames = Frames(self.sock)
        try:
            while (message := frames.next()) is not None:
                self._answer(message)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
            log.debug("gitml: commit process: %s", e)
        self._answer(None)

    def send(self, batch: int, objects: list, updates: list[tuple], journals: list[tuple[str, int]]) -> None:
        """Hand over batch number ``batch``: its objects, written as one pack, then its ref
        updates ``(ref, old, new)``; ``journals``: ``(name, descriptor)`` of the journals its
        runs were written in (each passed once)."""
        shipped = [(o.type_num, o.as_raw_string(), o.id) for o in objects]
        with self._send_lock:
            for name, fd in journals:
                if name not in self._shared:
                    data = frame(("journal", name))
                    sent = socket.send_fds(self.sock, [data], [fd])
                    if sent < len(data):
                        self.sock.sendall(data[sent:])
                    self._shared.add(name)
            self.sock.sendall(frame(("batch", batch, shipped, updates)))

    def close(self, timeout: float = 600) -> None:
        """Ask the child to finish (it commits what it holds, settles its packs) and wait."""
        try:
            with self._send_lock:
                self.sock.sendall(frame(("exit",)))
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("gitml: the commit process (pid %d) did not end in %d s", self.proc.pid, timeout)
        self._reader.join(5)
        self.sock.close()


def _objects(shipped: list[tuple[int, bytes, bytes]]) -> list[GitObject]:
    """The parent's objects as it hashed them (its ids kept: not hashed again)."""
    out: list[GitObject] = []
    for type_num, raw, oid in shipped:
        obj = RawObject.__new__(RawObject)
        obj.type_num, obj._raw, obj.id = type_num, raw, oid
        out.append(obj)
    return out


def _result(future) -> bool | BaseException:
    error = future.exception()
    if error is None:
        return future.result()
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - checked here, sent to the parent
    except Exception:  # noqa: BLE001 - an error class that does not pickle: its text
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return error


def child(fd: int, path: str) -> int:
    """The child's main loop: write each batch the parent hands over as one pack and move
    its refs (a batch's pack is written while the last one's refs move), answer with each
    ref's result, until the parent says exit or is gone; then settle the packs written here."""
    try:  # `ps` and `top` name it (its threads take the name as they start)
        with open("/proc/self/comm", "w") as comm:
            comm.write("gitml-commit")
    except OSError:
        pass
    sock = socket.socket(fileno=fd)
    store = GitStore(open_repo(path))
    pool = ThreadPoolExecutor(max_workers=REF_THREADS, thread_name_prefix="gitml-refs")
    journals: dict[str, int] = {}  # held, with their flock, until this process ends
    frames = Frames(sock, fds=True)
    moving: tuple[int, str | None, list] | None = None  # a batch whose refs move
    orphan = False  # the parent is gone: nobody to answer

    def answer(batch: int, pack: str | None, futures: list) -> None:
        nonlocal orphan
        results = [_result(f) for f in futures]
        store.release_kept([pack])  # the refs reach its objects now: git gc may repack it
        if not orphan:
            try:
                sock.sendall(frame(("moved", batch, results)))
            except OSError:  # the parent's journal holds these runs, committed or not
                orphan = True

    sock.sendall(frame(("ready",)))
    try:
        while True:
            if moving is not None and not frames.waiting():
                answer(*moving)  # nothing else to do meanwhile: its answer goes now
                moving = None
            message = frames.next()
            if message is None or message[0] == "exit":
                break
            if message[0] == "journal":
                journals[message[1]] = frames.passed.pop(0)
                continue
            _, batch, shipped, updates = message
            try:
                pack = store.write(_objects(shipped))
            except BaseException as e:  # noqa: BLE001 - every run of the batch gets it
                futures = []
                for _ in updates:
                    failed: Future = Future()
                    failed.set_exception(e)
                    futures.append(failed)
                pack = None
            else:
                futures = [pool.submit(store.cas, ref, old, new) for ref, old, new in updates]
            if moving is not None:
                answer(*moving)
            moving = (batch, pack, futures)
    finally:
        if moving is not None:
            answer(*moving)
        pool.shutdown(wait=True)
        try:
            store.settle_packs()  # its small packs rolled up, the packs it merged away deleted
        except (OSError, RuntimeError) as e:
            log.warning("gitml: the commit process could not settle its packs: %s", e)
        store.close()
        for held in journals.values():
            os.close(held)
        try:
            sock.sendall(frame(("bye",)))
        except OSError:
            pass
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(child(int(sys.argv[1]), sys.argv[2]))

"""A commit process: a process that makes many runs commits them on both cores.

The committer thread (:mod:`gitml.runlog.committer`) and the code making the runs
share one interpreter lock: a sweep's main thread (about 0.3 ms of Python a run) and
its commits (about 0.6 ms: the record's files, hashes, the pack, the search row) take
turns. Once ended runs queue up faster than the thread commits them (a whole batch
waits), the committer starts this module as a child process and hands it each ended
run's buffered state; the child commits them exactly as the thread would (same
:class:`~gitml.runlog.committer.Committer`, same packs, refs, locks and fsyncs) and
answers with each run's commit and search row, or its error.

What keeps this as safe as the thread:

- A run is handed over only once its last line is in the parent's journal (``end_run``
  returned): whatever happens to either process, the journal holds it. Its commit
  names the parent's journal and the offset its lines end at, as the thread's would.
- The child holds the parent's journal locks: each journal's descriptor is passed to
  it (``SCM_RIGHTS``) before the first run written in it, and an ``flock`` belongs to
  the open file, not to a process. So if the parent dies, no recovery can replay a
  journal while the child still commits from it; the child commits what it was given,
  exits, and the next command's recovery takes the rest.
- The parent releases a run's journal slot only on the child's answer. If the child
  dies, the runs it did not answer for are looked up: one whose ref holds a commit
  naming its journal offset is done, the others go back to the committer thread.
- Reads of a run in the parent wait for its answer, as they wait for the thread.

``GITML_COMMIT_PROCESS=0`` keeps every commit on the thread.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable

from gitml.runlog.committer import Committer
from gitml.runlog.index import RunIndex
from gitml.runlog.rows import row_of
from gitml.runlog.writer import RunWriter
from gitml.store.git import GitStore, open_repo

log = logging.getLogger("gitml")

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

    def next(self) -> object | None:
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
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *(["/tmp/childprof.py"] if os.environ.get("GITML_PROFILE_CHILD") else ["-m", "gitml.runlog.commitprocess"]), str(child.fileno()), store.repo.path],
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

    def _read(self) -> None:
        frames = Frames(self.sock)
        try:
            while (message := frames.next()) is not None:
                self._answer(message)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
            log.debug("gitml: commit process: %s", e)
        self._answer(None)

    def send(self, items: list[tuple], journals: list[tuple[str, int]]) -> None:
        """Hand over ended runs ``(run_id, ref, experiment_id, ended_at, state)``; ``journals``:
        ``(name, descriptor)`` of the journals they were written in (each passed once)."""
        with self._send_lock:
            for name, fd in journals:
                if name not in self._shared:
                    data = frame(("journal", name))
                    sent = socket.send_fds(self.sock, [data], [fd])
                    if sent < len(data):
                        self.sock.sendall(data[sent:])
                    self._shared.add(name)
            self.sock.sendall(frame(("runs", items)))

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


class _ChildCommitter(Committer):
    """The child's committer: answers the parent for each run it is done with."""

    def __init__(self, store: GitStore, index: RunIndex, sock: socket.socket):
        super().__init__(store, list, batch=index.batch, warm=index.warm)
        self.sock = sock
        self._rows: dict[bytes, tuple[bytes, dict]] = {}
        self._answers: list[tuple] = []
        self.orphan = False  # the parent is gone: nobody to answer

    def on_commit(self, index: RunIndex) -> Callable[[bytes, bytes, object], None]:
        def committed(ref: bytes, commit: bytes, record) -> None:
            row = row_of(record)
            index.put(ref, commit, row)
            self._rows[ref] = (commit, row)

        return committed

    def _done(self, writer: RunWriter) -> None:
        error = self._errors.pop(writer.run_id, None)
        commit, row = self._rows.pop(writer.ref, (None, None))
        if error is not None:
            try:
                pickle.loads(pickle.dumps(error))  # noqa: S301 - checked here, sent below
            except Exception:  # noqa: BLE001 - an error class that does not pickle: its text
                error = RuntimeError(f"{type(error).__name__}: {error}")
        with self._cond:
            self._answers.append((writer.run_id, commit, row, error))
        super()._done(writer)

    def answer(self) -> None:
        with self._cond:
            answers, self._answers = self._answers, []
        if answers and not self.orphan:
            try:
                self.sock.sendall(frame(("done", answers)))
            except OSError:  # the parent is gone: its journal holds these runs, committed or not
                self.orphan = True

    def _finish(self, flight) -> None:
        try:
            super()._finish(flight)
        finally:
            self.answer()

    def _write_batch(self, batch):
        try:
            return super()._write_batch(batch)
        finally:
            self.answer()  # the runs that failed before their pack


def child(fd: int, path: str) -> int:
    """The child's main loop: commit the runs the parent hands over until it says exit
    (or is gone), then settle the packs written here."""
    try:  # `ps` and `top` name it (its threads take the name as they start)
        with open("/proc/self/comm", "w") as comm:
            comm.write("gitml-commit")
    except OSError:
        pass
    sock = socket.socket(fileno=fd)
    store = GitStore(open_repo(path))
    index = RunIndex(os.path.join(store.gitml_dir, "index.sqlite3"))
    committer = _ChildCommitter(store, index, sock)
    on_commit = committer.on_commit(index)
    journal_dir = os.path.join(store.gitml_dir, "journal")
    journals: dict[str, int] = {}  # held, with their flock, until this process ends
    frames = Frames(sock, fds=True)
    sock.sendall(frame(("ready",)))
    try:
        while (message := frames.next()) is not None:
            kind = message[0]
            if kind == "exit":
                break
            if kind == "journal":
                journals[message[1]] = frames.passed.pop(0)
            elif kind == "runs":
                for run_id, ref, experiment_id, ended_at, state in message[1]:
                    writer = RunWriter(
                        store,
                        ref,
                        run_id,
                        experiment_id,
                        journal_dir=journal_dir,
                        journal=None,
                        flush_interval=3600.0,
                        on_commit=on_commit,
                    )
                    writer.restore(state, ended_at)
                    committer.submit(writer)
    finally:
        committer.close()
        committer.answer()
        try:
            store.settle_packs()  # its small packs rolled up, the packs it merged away deleted
        except (OSError, RuntimeError) as e:
            log.warning("gitml: the commit process could not settle its packs: %s", e)
        index.close()
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

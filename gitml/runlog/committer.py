"""Committer: commits ended runs on a background thread, grouped into one pack.

``end_run`` returns once the run's final state is in its journal (nothing can be
lost from then on); the commit follows within milliseconds. Runs that end
together share one pack write, and the main thread goes on while the ref
updates wait for the disk. Any read of a run in this process first waits for
its commit; closing the tracker (and so the interpreter's exit) drains the
queue. If the process dies first, recovery commits the journal, keeping the
status the run ended with.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from gitml.runlog.writer import RunWriter, journal_trailers
from gitml.store.git import GitStore

log = logging.getLogger("gitml")

MAX_BATCH = 64
MAX_QUEUE = 128
MAX_SENT = 256  # runs handed to the commit process and not yet answered for
PROCESS_AFTER = 16  # runs ended in the process before a commit process may start,
PROCESS_BACKLOG = 4  # once this many ended runs wait at once (they end faster than they commit)
REF_THREADS = 8  # refs of a batch moved at once (each waits on its fsync)
_LIVE: weakref.WeakSet[Committer] = weakref.WeakSet()
# A forked child has none of its parent's threads: never wait for their commits there.
os.register_at_fork(after_in_child=_LIVE.clear)


def wait_for_repository(commondir: str, run_id: str | None = None) -> None:
    """Wait for the background commits of every tracker of this process on a repository.

    Two Clients (or the fluent API and a Client) of one repository then see
    each other's ended runs at once.
    """
    for committer in list(_LIVE):
        if committer.store.commondir == commondir:
            committer.wait(run_id)


class CommitProcessLike(Protocol):
    """What the committer needs of a commit process (:mod:`gitml.runlog.commitprocess`)."""

    def send(self, items: list[tuple], journals: list[tuple[str, int]]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Flight:
    """A batch written as one pack, whose refs are moving."""

    prepared: list[tuple]  # (writer, commit or None, old ref value, record)
    pack: str | None
    moves: list  # a future per moved ref, in order (or the update, moved when finished)


class Committer:
    """Background commits: ended runs (grouped), and open runs whose flush is due."""

    def __init__(
        self,
        store: GitStore,
        open_writers: Callable[[], list[RunWriter]],
        *,
        housekeeping: Callable[[int], None] | None = None,
        batch: Callable[[], AbstractContextManager] = nullcontext,
        warm: Callable[[], None] | None = None,
        process: Callable[[Callable[[object | None], None]], CommitProcessLike] | None = None,
        remember: Callable[[list[tuple[bytes, bytes, dict]]], None] | None = None,
    ):
        self.store = store
        self._batch = batch  # a context for committing a batch (the search index's batch of rows)
        self._warm = warm  # run when the thread starts, off the callers' path (opening the index)
        self._open_writers = open_writers
        self._housekeeping = housekeeping
        self._queue: list[RunWriter] = []
        self._pending: dict[str, threading.Event] = {}
        self._errors: dict[str, BaseException] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None  # kept for the process: a batch's refs move on it
        # A commit process (gitml.runlog.commitprocess), started once a whole batch waits:
        self._start_process = process  # makes one, given where its answers go
        self._remember = remember  # the search rows of the runs it committed, for this process's index
        self._process: CommitProcessLike | None = None
        self._ready = False  # it answered that it is ready
        self._lost = False  # it is gone (or could not start): the thread commits everything again
        self._sent: dict[str, RunWriter] = {}  # runs handed to it, not yet answered for
        self._answers: list = []  # its answers, taken by the thread
        self._here = self._handed = 0
        self._taken = 0  # ended runs this thread took from the queue
        _LIVE.add(self)

    def submit(self, writer: RunWriter) -> None:
        with self._cond:
            while len(self._queue) >= MAX_QUEUE:
                self._cond.wait()
            self._queue.append(writer)
            self._pending[writer.run_id] = threading.Event()
            self._start()
            self._cond.notify_all()

    def watch(self) -> None:
        """Start flushing open writers when their flush is due (also when they are idle)."""
        with self._cond:
            self._start()
            self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._loop, name="gitml-committer", daemon=True)
            self._thread.start()

    def wait(self, run_id: str | None = None) -> None:
        """Wait until ``run_id`` (default: every queued run) is committed; re-raise its error."""
        with self._cond:
            events = (
                [self._pending[run_id]]
                if run_id in self._pending
                else (list(self._pending.values()) if run_id is None else [])
            )
        for event in events:
            event.wait()
        with self._cond:
            error = self._errors.pop(run_id, None) if run_id else None
        if error is not None:
            raise error

    @property
    def failed(self) -> bool:
        """Whether some run could not be committed (its journal must stay)."""
        return bool(self._errors)

    def close(self) -> None:
        self.wait()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._process is not None:
            self._process.close()  # it commits nothing more: every run it had is answered for
            self._process = None
        if os.environ.get("GITML_DEBUG_COMMITS"):
            print(f"committed here {self._here}, handed over {self._handed}", file=sys.stderr)
        for run_id, error in self._errors.items():
            log.warning("gitml: run %s could not be committed (its journal is kept for recovery): %s", run_id, error)

    def _loop(self) -> None:
        if self._warm is not None:
            try:
                self._warm()
            except Exception as e:  # noqa: BLE001 - a head start only: the first commit does it
                log.debug("gitml: committer warm-up failed: %s", e)
        flight: _Flight | None = None  # the batch whose refs are moving
        while True:
            with self._cond:
                while not self._work() and flight is None:
                    if self._stopping:
                        if not self._sent:
                            break
                        self._cond.wait(1.0)  # the commit process's answers
                        continue
                    due = self._next_due()
                    if due <= 0:
                        break
                    self._cond.wait(min(due, 1.0))
                if self._stopping and not self._queue and flight is None and not self._sent and not self._answers:
                    self._stop_pool()
                    return
                answers, self._answers = self._answers, []
                offload = self._ready and not self._lost
                take = MAX_BATCH if not offload else max(0, min(MAX_BATCH, MAX_SENT - len(self._sent)))
                batch, self._queue = self._queue[:take], self._queue[take:]
                self._cond.notify_all()
            if answers:
                self._answered(answers)
            if offload and batch:
                self._handed += len(batch)
                self._hand_over(batch)
                batch = []
            self._here += len(batch)
            # The next batch is prepared and its pack written while the last batch's refs move
            # (each waits on its fsync): the two overlap. Its refs start moving only once its
            # pack is written, as before, and each run is done once its own ref has moved.
            following = self._write_batch(batch) if batch else None
            self._taken += len(batch)
            if len(batch) >= PROCESS_BACKLOG and self._taken >= PROCESS_AFTER:
                self._maybe_start_process()
            if flight is not None:
                self._finish(flight)
                if self._housekeeping:
                    self._housekeeping(len(flight.prepared))
            flight = following
            self._flush_due()

    def _work(self) -> bool:
        """Whether the thread has something to do now (with the lock held)."""
        if self._answers:
            return True
        if not self._queue:
            return False
        return not (self._ready and not self._lost) or len(self._sent) < MAX_SENT

    # -- the commit process ----------------------------------------------
    def _maybe_start_process(self) -> None:
        """Many ended runs waited at once: runs end faster than this thread commits them. Start a
        commit process (once) to commit them on another core; until it answers that it is
        ready, this thread goes on committing."""
        if self._start_process is None or self._process is not None or self._lost:
            return
        if os.environ.get("GITML_COMMIT_PROCESS", "1") == "0":
            return
        try:
            self._process = self._start_process(self._heard)
        except (OSError, ValueError) as e:
            log.debug("gitml: could not start a commit process: %s", e)
            self._lost = True

    def _heard(self, message) -> None:
        """An answer of the commit process (on its reader thread); None: it is gone."""
        with self._cond:
            if message is None:
                if not self._lost and self._process is not None:
                    if self._sent or not self._stopping:
                        log.warning("gitml: the commit process ended; committing in this process again")
                    self._lost = True
            elif message[0] == "ready":
                self._ready = True
            elif message[0] == "done":
                self._answers.extend(message[1])
            self._cond.notify_all()
        if message is None:
            with self._cond:  # the runs it did not answer for: looked up by the thread
                self._answers.append(None)
                self._cond.notify_all()

    def _hand_over(self, batch: list[RunWriter]) -> None:
        """Send ended runs to the commit process (each names its journal's size now, as
        :meth:`_write_batch` does); on failure they are committed here."""
        items, journals = [], {}
        sizes: dict[int, tuple[str, int]] = {}
        for writer in batch:
            with writer.lock:
                journal = writer.journal
                if journal is not None:
                    at = sizes.get(id(journal)) or sizes.setdefault(id(journal), (journal.name, journal.size()))
                    journals[journal.name] = journal.fd
                    writer.ended_at = at
                items.append((writer.run_id, writer.ref, writer.experiment_id, writer.ended_at, writer.state()))
        with self._cond:
            for writer in batch:
                self._sent[writer.run_id] = writer
        try:
            assert self._process is not None
            self._process.send(items, list(journals.items()))
        except (OSError, ValueError) as e:
            log.debug("gitml: could not hand runs to the commit process: %s", e)
            with self._cond:
                self._lost = True
            self._reclaim()

    def _answered(self, answers: list) -> None:
        """The commit process is done with these runs: ``(run_id, commit, row, error)``;
        a None: it is gone, and the runs it held are looked up (:meth:`_reclaim`)."""
        rows, done, gone = [], [], False
        for answer in answers:
            if answer is None:
                gone = True
                continue
            run_id, commit, row, error = answer
            with self._cond:
                writer = self._sent.pop(run_id, None)
            if writer is None:
                continue
            if error is None:
                if commit is not None and row is not None:
                    rows.append((writer.ref, commit, row))
                writer.committed_elsewhere()
            else:
                self._errors[run_id] = error
            done.append(writer)
        if rows and self._remember is not None:
            self._remember(rows)
        for writer in done:
            self._done(writer)
        if done and self._housekeeping:
            self._housekeeping(len(done))
        if gone:
            self._reclaim()

    def _reclaim(self) -> None:
        """The commit process is gone: a run it held whose ref has a commit naming the run's
        journal offset is done; the others are committed by this thread."""
        with self._cond:
            held, self._sent = list(self._sent.values()), {}
        again = []
        for writer in held:
            if self._landed(writer):
                writer.committed_elsewhere()
                self._done(writer)
            else:
                again.append(writer)
        with self._cond:
            self._queue[:0] = again
            self._cond.notify_all()

    def _landed(self, writer: RunWriter) -> bool:
        if writer.ended_at is None:
            return False
        try:
            commit = self.store.ref(writer.ref)
            if commit is None:
                return False
            name, offset = writer.ended_at
            return journal_trailers(self.store.commit(commit).message).get(name, -1) >= offset
        except Exception:  # noqa: BLE001 - not provably committed: committed again here
            return False

    def _next_due(self) -> float:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._open_writers() if w.pending()]
        return min(deadlines) - now if deadlines else 1.0

    def _flush_due(self) -> None:
        now = time.monotonic()
        for writer in self._open_writers():
            if writer.pending() and writer.deadline <= now:
                try:
                    writer.flush()
                except Exception as e:  # surfaced again by the writer's next flush in its own thread
                    log.warning("gitml: background flush of run %s failed: %s", writer.run_id, e)

    def _write_batch(self, batch: list[RunWriter]) -> _Flight | None:
        """Prepare the batch's commits (each writer's lock held until :meth:`_finish`), write
        them as one pack and start moving their refs; None when nothing is left to finish."""
        prepared, objects = [], []
        # Each run's trailer names its journal's size once the run has ended: every line of the
        # batch's runs lies before it (they ended before the batch was taken), so one size per
        # journal serves the batch (an fstat per run let go of the GIL as often).
        sizes: dict[int, tuple[str, int]] = {}
        for writer in batch:
            writer.lock.acquire()
            try:
                if writer.pending():
                    journal = writer.journal
                    at: tuple[str | None, int | None] = (None, None)
                    if writer.ended_at is not None:  # handed over once: the offset it ended at
                        at = writer.ended_at
                    elif journal is not None:
                        at = sizes.get(id(journal)) or sizes.setdefault(id(journal), (journal.name, journal.size()))
                    commit, new, old, record = writer.prepare(*at)
                    prepared.append((writer, commit, old, record))
                    objects.extend(new)
                else:
                    prepared.append((writer, None, None, None))
            except BaseException as e:
                self._errors[writer.run_id] = e
                writer.lock.release()
                self._done(writer)
        try:
            pack = self.store.write(objects)
        except BaseException as e:
            for writer, *_ in prepared:
                self._errors[writer.run_id] = e
                writer.lock.release()
                self._done(writer)
            return None
        # the refs move on threads (their fsyncs overlap), each under its lock as before
        updates = [(w.ref, old, c.id) for w, c, old, _ in prepared if c is not None]
        return _Flight(prepared, pack, self._move(updates))

    def _move(self, updates: list[tuple[bytes, bytes | None, bytes]]) -> list:
        """Start the compare-and-swap of each ref on the committer's threads: for each, a
        future, or the update itself where no thread could take it (at interpreter exit)."""
        if len(updates) < 2:
            return list(updates)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=REF_THREADS, thread_name_prefix="gitml-refs")
        moves: list = []
        for update in updates:
            try:
                moves.append(self._pool.submit(self.store.cas, *update))
            except RuntimeError:  # threads can no longer start: moved here, one at a time
                moves.append(update)
        return moves

    def _moved(self, move) -> bool | BaseException:
        if isinstance(move, tuple):
            try:
                return self.store.cas(*move)
            except Exception as e:  # noqa: BLE001 - the caller gives it to the run it belongs to
                return e
        error = move.exception()
        return error if error is not None else move.result()

    def _finish(self, flight: _Flight) -> None:
        """Once a batch's refs have moved: its runs' rows, their writers closed, their locks
        released, the pack's ``.keep`` dropped."""
        moved = iter(flight.moves)
        try:
            with self._batch():  # the rows of the batch go to the search index in one transaction
                for writer, commit, _old, record in flight.prepared:
                    try:
                        if commit is not None:
                            result = self._moved(next(moved))
                            if isinstance(result, BaseException):
                                raise result
                            if not writer.published(commit, record, result):
                                writer.flush()
                        writer.close()
                    except BaseException as e:
                        self._errors[writer.run_id] = e
        finally:
            for writer, *_ in flight.prepared:
                writer.lock.release()
                self._done(writer)
        self.store.release_kept([flight.pack])  # the refs reach the batch's pack now: git gc may repack it

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _done(self, writer: RunWriter) -> None:
        with self._cond:
            event = self._pending.pop(writer.run_id, None)
        if event is not None:
            event.set()

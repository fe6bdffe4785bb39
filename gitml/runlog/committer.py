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
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from gitml.runlog.commitprocess import REF_THREADS
from gitml.runlog.writer import RunWriter
from gitml.store.git import GitStore

log = logging.getLogger("gitml")

MAX_BATCH = 64
MAX_QUEUE = 128
MAX_AWAY = 512  # runs prepared for a commit process and not answered for, before the thread waits
PROCESS_START_SECONDS = 30.0  # a commit process not ready by then is given up (its batches committed here)
PROCESS_AFTER = 16  # runs ended in the process before a commit process may start,
PROCESS_BACKLOG = 4  # once this many ended runs wait at once (they end faster than they commit)
_LIVE: weakref.WeakSet[Committer] = weakref.WeakSet()
# A forked child has none of its parent's threads: never wait for their commits there.
os.register_at_fork(after_in_child=_LIVE.clear)


def _cores() -> int:
    """The cores this process may run on (a container's limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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

    def send(self, batch: int, objects: list, updates: list[tuple], journals: list[tuple[str, int]]) -> None: ...

    def close(self) -> None: ...

    def kill(self) -> None: ...


@dataclass
class _Flight:
    """A batch written as one pack, whose refs are moving."""

    prepared: list[tuple]  # (writer, commit or None, old ref value, record)
    pack: str | None
    moves: list  # a future per moved ref, in order (or the update, moved when finished; or its result)
    objects: list = field(default_factory=list)  # kept while a commit process writes them
    updates: list = field(default_factory=list)
    number: int = 0


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
        self._closing = False  # close() waits for the queue: a commit process still starting is not waited for
        self._pool: ThreadPoolExecutor | None = None  # kept for the process: a batch's refs move on it
        # A commit process (gitml.runlog.commitprocess) writes the packs and moves the refs of the
        # batches this thread prepares, once runs end faster than the thread commits them:
        self._start_process = process  # makes one, given where its answers go
        self._process: CommitProcessLike | None = None
        self._ready = False  # it answered that it is ready
        self._lost = False  # it is gone (or could not start): this thread does it all again
        self._away: list[_Flight] = []  # batches sent to it, in order, not yet answered for
        self._answers: dict[int, list] = {}  # its answers: batch number -> each ref's result
        self._sent = 0  # batches sent
        self._taken = 0  # ended runs this thread took from the queue
        self._started = 0.0  # when the commit process was started (time.monotonic())
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
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.wait()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._process is not None:
            if self._sent:
                self._process.close()  # every batch it had is answered for: it settles its packs and ends
            else:  # it never had a batch (nor a journal): not waited for, however slow its start
                self._process.kill()
            self._process = None
        for run_id, error in self._errors.items():
            log.warning("gitml: run %s could not be committed (its journal is kept for recovery): %s", run_id, error)

    def _loop(self) -> None:
        if self._warm is not None:
            try:
                self._warm()
            except Exception as e:  # noqa: BLE001 - a head start only: the first commit does it
                log.debug("gitml: committer warm-up failed: %s", e)
        flight: _Flight | None = None  # the batch whose refs are moving here
        while True:
            with self._cond:
                while not self._work() and flight is None:
                    if self._stopping:
                        if not self._away:
                            break
                        self._cond.wait(1.0)  # the commit process's answers
                        continue
                    due = self._next_due()
                    if due <= 0:
                        break
                    self._cond.wait(min(due, 1.0))
                if self._stopping and not self._queue and flight is None and not self._away:
                    self._stop_pool()
                    return
                answered = []
                while self._away and self._away[0].number in self._answers:
                    away = self._away.pop(0)
                    away.moves = self._answers.pop(away.number)
                    answered.append(away)
                if self._starting():
                    if time.monotonic() - self._started > PROCESS_START_SECONDS:
                        log.warning("gitml: the commit process did not start; committing in this process again")
                        self._lost = True
                    elif self._closing:  # the batches held for it are committed here, at once
                        log.debug("gitml: closing before the commit process started; committing here")
                        self._lost = True
                redo, offload = [], self._process is not None and not self._lost
                if self._lost and self._away:
                    redo, self._away = self._away, []
                elif self._starting() and self._away_runs() >= MAX_AWAY and self._queue:
                    redo, self._away = self._away, []  # none sent yet: committed here, not waited on
                take = MAX_BATCH if not offload or self._away_runs() < MAX_AWAY else 0
                batch, self._queue = self._queue[:take], self._queue[take:]
                self._cond.notify_all()
            for done in answered:
                self._finish(done)
            for again in redo:  # the commit process is gone: its batches written and moved here
                self._finish(self._again(again))
            if answered or redo:
                if self._housekeeping:
                    self._housekeeping(sum(len(f.prepared) for f in answered + redo))
            following = None
            if batch and offload:
                self._hand_over(batch)
            elif batch:
                # The next batch is prepared and its pack written while the last batch's refs move
                # (each waits on its fsync): the two overlap. Its refs start moving only once its
                # pack is written, as before, and each run is done once its own ref has moved.
                following = self._write_batch(batch)
                self._taken += len(batch)
                if len(batch) >= PROCESS_BACKLOG and self._taken >= PROCESS_AFTER:
                    self._maybe_start_process()
            if self._ready and not self._lost:
                self._send()  # with the batches prepared while it started
            if flight is not None:
                self._finish(flight)
                if self._housekeeping:
                    self._housekeeping(len(flight.prepared))
            flight = following
            self._flush_due()

    def _work(self) -> bool:
        """Whether the thread has something to do now (with the lock held)."""
        if self._away and (self._away[0].number in self._answers or self._lost):
            return True
        if self._starting() and (self._closing or time.monotonic() - self._started > PROCESS_START_SECONDS):
            return True  # given up: what was held for it is committed here
        if self._ready and self._away and not self._away[-1].number:  # prepared while it started
            return True
        if not self._queue:
            return False
        return self._process is None or self._lost or self._away_runs() < MAX_AWAY or self._starting()

    # -- the commit process ----------------------------------------------
    def _away_runs(self) -> int:
        """Runs prepared for the commit process and not answered for (lock held). Counted in
        runs, not batches: while it starts, batches are small (a few runs each), and 8 of them
        held made the thread commit them itself before it was ready (W2 of 500 runs 986 runs/s)."""
        return sum(len(f.prepared) for f in self._away)

    def _starting(self) -> bool:
        """Whether a commit process was started and has not said it is ready (lock held)."""
        return self._process is not None and not self._ready and not self._lost

    def _maybe_start_process(self) -> None:
        """Ended runs wait: they end faster than this thread commits them. Start a commit
        process (once) to write their packs and move their refs on another core; until it
        answers that it is ready, this thread does it all."""
        if self._start_process is None or self._process is not None or self._lost:
            return
        if os.environ.get("GITML_COMMIT_PROCESS", "1") == "0" or _cores() < 2:
            return
        try:
            self._started = time.monotonic()
            self._process = self._start_process(self._heard)
        except (OSError, ValueError) as e:
            log.warning("gitml: could not start a commit process (%s); committing in this process", e)
            self._lost = True

    def _heard(self, message) -> None:
        """A message of the commit process (on its reader thread); None: it is gone."""
        with self._cond:
            if message is None:
                if not self._lost and (self._away or not self._stopping):
                    log.warning("gitml: the commit process ended; committing in this process again")
                self._lost = True
            elif message[0] == "ready":
                self._ready = True
            elif message[0] == "moved":
                self._answers[message[1]] = message[2]
            self._cond.notify_all()

    def _hand_over(self, batch: list[RunWriter]) -> None:
        """Prepare a batch here (each writer's lock held until its answer), for the commit
        process to write and move: sent at once when it is ready, or once it is."""
        flight = self._prepare(batch)
        if flight is None:
            return
        if not flight.updates:  # nothing of it to write
            self._finish(flight)
            return
        with self._cond:
            self._away.append(flight)

    def _send(self) -> None:
        """Send the prepared batches not sent yet, with the journals their runs are written in."""
        with self._cond:
            unsent = [f for f in self._away if not f.number]
            for flight in unsent:
                self._sent += 1
                flight.number = self._sent
        for flight in unsent:
            journals = {w.journal.name: w.journal.fd for w, *_ in flight.prepared if w.journal is not None}
            try:
                assert self._process is not None
                self._process.send(flight.number, flight.objects, flight.updates, list(journals.items()))
            except (OSError, ValueError) as e:
                log.warning(
                    "gitml: the commit process could not take a batch (%s); committing in this process again", e
                )
                with self._cond:
                    self._lost = True
                    self._cond.notify_all()
                return

    def _again(self, flight: _Flight) -> _Flight:
        """A batch the commit process took and never answered for: its objects written here
        (again: an object in two packs is harmless) and each ref moved, or found moved."""
        try:
            flight.pack = self.store.write(flight.objects)
        except BaseException as e:  # noqa: BLE001 - each run of the batch gets it
            flight.moves = [e] * len(flight.updates)
            return flight
        moves: list[bool | BaseException] = []
        for ref, old, new in flight.updates:
            try:
                moves.append(True if self.store.ref(ref) == new else self.store.cas(ref, old, new))
            except Exception as e:  # noqa: BLE001 - given to the run it belongs to
                moves.append(e)
        flight.moves = moves
        return flight

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
        flight = self._prepare(batch)
        if flight is None:
            return None
        try:
            flight.pack = self.store.write(flight.objects)
        except BaseException as e:
            for writer, *_ in flight.prepared:
                self._errors[writer.run_id] = e
                writer.lock.release()
                self._done(writer)
            return None
        flight.objects = []
        # the refs move on threads (their fsyncs overlap), each under its lock as before
        flight.moves = self._move(flight.updates)
        return flight

    def _prepare(self, batch: list[RunWriter]) -> _Flight | None:
        """The batch's commits, objects and ref updates (each writer's lock held until
        :meth:`_finish`); None when no run of it is left to finish."""
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
                    if journal is not None:
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
        if not prepared:
            return None
        updates = [(w.ref, old, c.id) for w, c, old, _ in prepared if c is not None]
        return _Flight(prepared, None, [], objects, updates)

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
        if isinstance(move, (bool, BaseException)):  # a commit process's answer, or moved here again
            return move
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

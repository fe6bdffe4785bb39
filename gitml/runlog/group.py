"""Group commit: many writers of one run that none of them owns.

A Client's call to a run it did not start (``log_metric(run_id, ...)``, ``set_tag``,
...) returns once it is committed. Sixteen processes doing that to one run each
made one commit per point, and each lost most compare-and-swaps to the others,
rebuilding and re-fsyncing its commit every time: 11 points/s in all.

Now each process journals its calls to the run in a journal of its own,
``g-<run_id>-<pid>-<nonce>.log`` (that run only, slot 1), then takes the run's
group lock (an ``flock`` on ``.git/gitml/group/<2 hex digits of its id's sha1>``).
Holding it, a writer whose lines are committed already (the run's commit names its journal at an offset
past them: ``Gitml-Journal``) is done; otherwise it is the leader: it folds the
lines of *every* group journal of the run, from the offset the commit names for it
to its last whole line, into one commit and moves the ref by compare-and-swap
(retried if a writer outside the group moved it). While one leader commits, the
others poll the run's ref until a commit holds their lines, or the lock is free and
one of them leads: it first waits a moment for the writers the last commit released
to journal their next lines, then folds in all of them (16 writers: ~12 points a
commit where waiting in ``flock`` made it 2).

A journal whose process dies is replayed by recovery like any other (its run is
not marked KILLED: its process did not own the run).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time

from dulwich.objects import Commit

from gitml.errors import CorruptRecordError, JournalWriteError, ParamConflictError, RunNotFoundError
from gitml.runlog import journal as jr
from gitml.runlog.writer import RunWriter, journal_trailers
from gitml.store.git import GitStore

PREFIX = "g-"
POLL_FIRST, POLL_MAX = 0.001, 0.005  # s between a waiting writer's looks at the run's ref
GATHER_QUIET = 0.006  # s without a new line in the other group journals (more than POLL_MAX): fold now
GATHER_MAX = 0.025  # s a leader waits for the writers the last commit released, at most


def _sizes(directory: str, names: list[str]) -> dict[str, int]:
    out = {}
    for name in names:
        try:
            out[name] = os.stat(os.path.join(directory, name)).st_size
        except FileNotFoundError:
            pass
    return out


def is_group_journal(name: str) -> bool:
    """Whether a journal's process wrote to a run it did not own (recovery does not end it)."""
    return name.startswith(PREFIX)


class RunGroup:
    """This process's group journal for one run, and its group commits."""

    def __init__(self, store: GitStore, ref: bytes, run_id: str, experiment_id: str, journal_dir: str, on_commit):
        self.store, self.ref, self.run_id, self.experiment_id = store, ref, run_id, experiment_id
        self.journal_dir = journal_dir
        self.on_commit = on_commit
        self.prefix = f"{PREFIX}{run_id}-"
        self.journal = jr.Journal(journal_dir, prefix=self.prefix)
        self.slot = self.journal.register(experiment_id, run_id)
        self._committed = self.journal.size()  # what this process knows to be committed
        self._commit_seconds = 0.0  # how long this process's last group commit took
        # 256 lock files at most (runs sharing one wait for each other's commits, no more)
        self.lock_path = os.path.join(store.gitml_dir, "group", hashlib.sha1(run_id.encode()).hexdigest()[:2])

    def writer(self) -> RunWriter:
        """A writer journaling into this group (its calls are committed by :meth:`commit`)."""
        return RunWriter(
            self.store,
            self.ref,
            self.run_id,
            self.experiment_id,
            journal_dir=self.journal_dir,
            journal=self.journal,
            slot=self.slot,
            flush_interval=float("inf"),
            on_commit=self.on_commit,
        )

    def commit(self, writer: RunWriter) -> bytes:
        """Commit what ``writer`` journaled (and what the other writers of the run
        journaled meanwhile): the run's commit that holds it."""
        params = dict(writer.pending_params())
        writer.drop_buffer()  # its lines are in the journal: the leader folds them from there
        end = self.journal.size()
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:  # the lock is released by the close, or by the kernel if we die
            commit_id = self._wait_or_lead(fd, end)
        finally:
            os.close(fd)
        self._committed = max(self._committed, end)
        if params:  # a value another writer logged first wins, as a compare-and-swap would have told
            from gitml.runlog.record import RunRecord

            record = RunRecord.load(self.store, commit_id, f"run {self.run_id}", ref=self.ref)
            for key, value in params.items():
                if record.params.get(key) != value:
                    raise ParamConflictError(self.run_id, key, record.params.get(key, ""), value)
        return commit_id

    def _wait_or_lead(self, fd: int, end: int) -> bytes:
        """Lead (take the group lock and commit) when no one does; else poll the run's
        ref until a leader's commit holds our lines, or the lock is free. Waiting in
        ``flock`` made each released writer wake, one after another, only to learn it
        was done: under load the next leader then found few lines to fold (2 a commit)."""
        pause, seen = POLL_FIRST, None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                return self._commit_past(end)
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX)
            current = self.store.ref(self.ref)
            if current is None:
                raise RunNotFoundError(self.run_id)
            if current != seen:
                seen = current
                if journal_trailers(self.store.commit(current).message).get(self.journal.name, 0) >= end:
                    return current

    def _commit_past(self, end: int) -> bytes:
        packs: list[str | None] = []
        for _attempt in range(1000):
            current = self.store.ref(self.ref)
            if current is None:
                raise RunNotFoundError(self.run_id)
            head: Commit = self.store.commit(current)
            trailers = journal_trailers(head.message)
            if trailers.get(self.journal.name, 0) >= end:
                return current  # a leader folded our lines in
            self._gather(trailers)
            started = time.monotonic()
            folder = RunWriter(
                self.store,
                self.ref,
                self.run_id,
                self.experiment_id,
                journal_dir=self.journal_dir,
                journal=None,
                flush_interval=float("inf"),
                on_commit=self.on_commit,
            )
            offsets = self._fold(folder, trailers)
            if offsets.get(self.journal.name, 0) < end:  # never so: our journal is ours while we live
                raise CorruptRecordError(f"journal {self.journal.path}", "is gone or shorter than written")
            commit, objects, old, record = folder.prepare(trailers=offsets)
            packs.append(self.store.write(objects))
            if folder.publish(commit, old, record):
                self.store.release_kept(packs)
                self._commit_seconds = time.monotonic() - started
                return commit.id
        raise CorruptRecordError(f"run {self.run_id}", "could not update the run ref after 1000 attempts")

    def _gather(self, trailers: dict[str, int]) -> None:
        """Before folding, wait a moment while the other writers' journals still grow:
        the writers the last commit released are journaling their next lines, and
        folding at once left them to the next commit (two half groups taking turns).
        The wait ends when every other journal has lines to fold, when none grew for
        ``GATHER_QUIET`` s, or after half as long as the last commit took (at most
        ``GATHER_MAX`` s); a writer alone never waits."""
        others = [
            n
            for n in os.listdir(self.journal_dir)
            if n.startswith(self.prefix) and n.endswith(".log") and n != self.journal.name
        ]
        if not others:
            return
        deadline = time.monotonic() + min(GATHER_MAX, self._commit_seconds / 2 or GATHER_MAX)
        sizes = _sizes(self.journal_dir, others)
        quiet_since = time.monotonic()
        while (now := time.monotonic()) < deadline and now - quiet_since < GATHER_QUIET:
            if all(size > trailers.get(name, 0) for name, size in sizes.items()):
                return  # everyone is in
            time.sleep(0.001)
            grown = _sizes(self.journal_dir, others)
            if grown != sizes:
                sizes, quiet_since = grown, time.monotonic()

    def _fold(self, folder: RunWriter, trailers: dict[str, int]) -> dict[str, int]:
        """Buffer in ``folder`` the uncommitted lines of every group journal of the run:
        ``{journal: offset folded to}``. A param another journal logged with another
        value first is left out (its writer is told)."""
        record = folder.record()
        params = dict(record.params)
        offsets = {}
        for name in sorted(os.listdir(self.journal_dir)):
            if not (name.startswith(self.prefix) and name.endswith(".log")):
                continue
            start = trailers.get(name, 0)
            try:
                with open(os.path.join(self.journal_dir, name), "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue
            whole = data.rfind(b"\n") + 1
            if not whole:
                continue
            data = data[:whole]
            _, entries = jr.replay(data, name) if start == 0 else jr.parse(data, 0, name)
            for _slot, _end, entry in entries:
                if entry[0] == "P":
                    if params.setdefault(entry[1], entry[2]) != entry[2]:
                        continue
                folder.apply(entry)
            offsets[name] = start + whole
        return offsets

    def close(self) -> None:
        """Close the journal; delete it if all it holds is committed (else recovery will)."""
        try:
            done = self.journal.size() <= self._committed
        except JournalWriteError:
            return
        self.journal.close(remove=done)

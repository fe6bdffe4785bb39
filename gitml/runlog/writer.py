"""RunWriter: buffered, journaled, compare-and-swap logging to one run ref.

A logging call validates, appends a journal line and buffers the change. A
flush (every ``flush_interval`` seconds, and at the end of the run) applies the
buffer to the run record at the ref's current commit, writes one commit whose
parent is that commit, and moves the ref by compare-and-swap; when another
writer moved it first, the buffer is re-applied on the new commit and retried.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from time import monotonic as _monotonic

from gitml.errors import ConflictError, CorruptRecordError, ParamConflictError, RunNotFoundError
from gitml.names import INT64_MAX, INT64_MIN, check_key, check_metric
from gitml.runlog import journal as jr
from gitml.runlog.record import META, PARAMS, TAGS, RunRecord
from gitml.store.git import TREE_MODE, GitStore, raw_tree, tree_from_files
from gitml.store.packs import GitObject, RawObject

COMMIT = 1  # git's type number of a commit
TRAILER_RUN = "Gitml-Run"
FIRST_COMMIT_SECONDS = 1.0  # a new run is visible to other processes within this
TRAILER_JOURNAL = "Gitml-Journal"
TRAILER_ARTIFACTS = "Gitml-Artifacts"  # present when the commit changed the run's artifacts


def graft_record(store: GitStore, root_tree: bytes | None, record: RunRecord, out: list[GitObject]) -> bytes:
    """The id of ``root_tree`` with ``.gitml/run/`` replaced by the record's files (its
    blobs and trees made as :class:`RawObject`, hashed once)."""
    out.extend(record.take_blobs())
    run_tree = tree_from_files(record.paths, out)
    root = dict(store.tree(root_tree)) if root_tree else {}
    gitml = root.get(b".gitml")
    entries = dict(store.tree(gitml[1])) if gitml and gitml[0] == TREE_MODE else {}
    entries[b"run"] = (TREE_MODE, run_tree)
    gitml_tree = raw_tree(entries)
    root[b".gitml"] = (TREE_MODE, gitml_tree.id)
    root_obj = raw_tree(root)
    out += [gitml_tree, root_obj]
    return root_obj.id


def make_commit(store: GitStore, tree: bytes, parents: list[bytes], message: str) -> RawObject:
    """A commit as dulwich's ``Commit`` serializes it (tree, parents, author and committer
    at this second in UTC, ``encoding UTF-8``), made and hashed once (dulwich's cost a run
    commit 40-50 us: W2, issue 28)."""
    who = store.identity().as_bytes() + b" %d +0000\n" % int(time.time())
    head = b"tree %s\n" % tree + b"".join(b"parent %s\n" % p for p in parents)
    return RawObject(COMMIT, head + b"author " + who + b"committer " + who + b"encoding UTF-8\n\n" + message.encode())


def journal_trailers(message: bytes) -> dict[str, int]:
    """``{journal name: committed offset}`` from a run commit's message."""
    out = {}
    prefix = f"{TRAILER_JOURNAL}: ".encode()
    for line in message.splitlines():
        if line.startswith(prefix):
            name, _, offset = line[len(prefix) :].decode().rpartition(" ")
            if offset.isdigit():
                out[name] = int(offset)
    return out


class RunWriter:
    """Buffers and commits the changes of one run. Thread-safe."""

    def __init__(
        self,
        store: GitStore,
        ref: bytes,
        run_id: str,
        experiment_id: str,
        *,
        journal_dir: str,
        journal: jr.Journal | None,
        flush_interval: float,
        on_commit: Callable[[bytes, bytes, RunRecord], None],
        slot: int | None = None,
        starting: bool = False,
    ):
        self.store = store
        self.ref = ref
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.flush_interval = flush_interval
        self.on_commit = on_commit
        self.journal_dir = journal_dir
        self.journal = journal
        self._registration = ""  # a new run's R line, journaled with its C line by start()
        if slot is not None:  # a slot registered already (a group journal's: tracking.group)
            self.slot = slot
        elif journal is not None and starting:  # one write for both lines (one call less per run)
            self.slot = journal.register(experiment_id, run_id, write=False)
            self._registration = jr.encode_run(self.slot, experiment_id, run_id)
        else:
            self.slot = journal.register(experiment_id, run_id) if journal else 0
        self.lock = threading.RLock()
        self.closed = False
        self._base: bytes | None = None
        self._record: RunRecord | None = None
        # each metric's points since the last commit: the start of its journal lines (the key
        # checked, this slot), then the lines (the history's text is cut from them: no tuple a
        # point, no second repr() of each value)
        self._points: dict[str, list[bytes]] = {}
        self._params: dict[str, str] = {}
        self._tags: dict[str, str | None] = {}
        self._meta: dict = {}
        self._artifacts: dict[str, tuple[str, int, str | None]] = {}
        self._create: tuple[bytes | None, bytes | None] | None = None
        self._deadline = time.monotonic() + flush_interval

    # -- logging ---------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int, timestamp: int) -> None:
        lock = self.lock  # (taken by its methods: a `with` cost an RLock 0.2 us more a call, W1)
        lock.acquire()  # (a buffer starts with the slot, which move_to changes under the lock)
        try:
            points = self._points.get(key)
            # a key logged since the last commit and check_metric's common case (a Python float,
            # int step and time in range), tested here: W1's call, docs/design.md Performance
            if (
                points is not None
                and type(value) is float
                and type(step) is int
                and type(timestamp) is int
                and INT64_MIN <= step <= INT64_MAX
                and 0 <= timestamp <= INT64_MAX
            ):
                line = b"%s%r\t%d\t%d\n" % (points[0], value, step, timestamp)  # (jr.metric_prefix)
                journal = self.journal
                if journal is not None:
                    journal.append(line)
                points.append(line)
            else:
                self._log_points([(key, value, step, timestamp)])
            if _monotonic() >= self._deadline:
                self.flush()
        finally:
            lock.release()

    def log_metrics(self, points: list[tuple[str, float, int, int]]) -> None:
        """Log ``(key, value, step, timestamp)`` points: all checked before any is logged,
        then journaled by one write (one per point was 9 more syscalls per run in W2)."""
        with self.lock:
            self._log_points(points)
            if _monotonic() >= self._deadline:
                self.flush()

    def _log_points(self, points: list[tuple[str, float, int, int]]) -> None:
        """Check ``(key, value, step, timestamp)`` points (a key before its point), journal them in
        one write and buffer them; nothing of them if one fails (call with the lock held)."""
        buffered = self._points
        checked = []
        for key, value, step, timestamp in points:
            if key not in buffered:
                check_key(key, "metric")
            value, step, timestamp = check_metric(value, step, timestamp)
            checked.append((key, value, step, timestamp))
        new: dict[str, list[bytes]] = {}  # buffers of keys new since the last commit
        lines, buffers = [], []
        for key, value, step, timestamp in checked:
            buffer = buffered.get(key) or new.get(key)
            if buffer is None:
                buffer = new[key] = [jr.metric_prefix(self.slot, key)]
            lines.append(b"%s%r\t%d\t%d\n" % (buffer[0], value, step, timestamp))
            buffers.append(buffer)
        if self.journal is not None:
            self.journal.append(b"".join(lines))
        buffered.update(new)
        for buffer, line in zip(buffers, lines, strict=True):
            buffer.append(line)

    def log_history(self, key: str, points: list[tuple[int, int, float]]) -> None:
        """Buffer a whole history of ``key`` (``(step, timestamp, value)`` points, checked),
        committed at the next flush whatever the time (an imported run's)."""
        check_key(key, "metric")
        checked = [(key, *check_metric(value, step, timestamp)) for step, timestamp, value in points]
        with self.lock:
            if checked:
                self._log_points(checked)
            elif key not in self._points:  # no point: its history is the header alone, as it was
                self._points[key] = [jr.metric_prefix(self.slot, key)]

    def log_params(self, params: dict[str, str]) -> None:
        with self.lock:
            record = self.record()
            for key, value in params.items():
                old = self._params.get(key, record.params.get(key))
                if old is not None and old != value:
                    raise ParamConflictError(self.run_id, key, old, value)
            self._journal("".join(jr.encode_param(self.slot, k, v) for k, v in params.items()))
            self._params.update(params)

    def set_tags(self, tags: Mapping[str, str | None]) -> None:
        """Set tags; a value of None deletes the tag."""
        with self.lock:
            self._journal("".join(jr.encode_tag(self.slot, k, v) for k, v in tags.items()))
            self._tags.update(tags)

    def add_artifacts(self, entries: list[tuple[str, str, int, str | None]]) -> None:
        """Record artifacts ``(path, sha256, size, inline blob id)``; their bytes are stored already."""
        with self.lock:
            self._journal("".join(jr.encode_artifact(self.slot, *e) for e in entries))
            for path, sha256, size, blob in entries:
                self._artifacts[path] = (sha256, size, blob)

    def pending_artifacts(self) -> dict[str, tuple[str, int, str | None]]:
        return dict(self._artifacts)

    def pending_params(self) -> dict[str, str]:
        return dict(self._params)

    def drop_buffer(self) -> None:
        """Forget what is buffered (a group journal's leader commits it from the journal)."""
        self._points, self._params, self._tags, self._meta, self._artifacts = {}, {}, {}, {}, {}

    def pending_tags(self) -> dict[str, str | None]:
        """Tags set (a value) or deleted (None) since the last commit."""
        return dict(self._tags)

    def meta(self) -> dict:
        """The run's meta as it will be committed: the last commit's, with what is buffered."""
        return {**self.record().meta, **self._meta}

    @property
    def base(self) -> bytes | None:
        """The commit :meth:`record` was read at (None before the run's first commit)."""
        return self._base

    def set_meta(self, **fields) -> None:
        with self.lock:
            self._journal(jr.encode_meta(self.slot, fields))
            self._meta.update(fields)

    def _journal(self, text: str) -> None:
        if self.journal and text:
            self.journal.write(text)

    def apply(self, entry: tuple) -> None:
        """Buffer one replayed journal entry (used by recovery)."""
        kind = entry[0]
        if kind == "M":  # (a line as the writer makes it: the value's repr() is the text it had)
            buffer = self._points.get(entry[1])
            if buffer is None:
                buffer = self._points[entry[1]] = [jr.metric_prefix(self.slot, entry[1])]
            buffer.append(b"%s%r\t%d\t%d\n" % (buffer[0], entry[2], entry[3], entry[4]))
        elif kind == "P":
            self._params[entry[1]] = entry[2]
        elif kind == "T":
            self._tags[entry[1]] = entry[2]
        elif kind == "D":
            self._tags[entry[1]] = None
        elif kind == "S":
            self._meta.update(entry[1])
        elif kind == "A":
            data = entry[1]
            self._artifacts[data["path"]] = (data["sha256"], data["size"], data.get("blob"))
        elif kind == "C":
            data = entry[1]
            commit, tree = data.get("source_commit"), data.get("source_tree")
            self._record = RunRecord(meta=data["meta"], tags=data.get("tags") or {})
            self._base = None
            self._create = (commit.encode() if commit else None, tree.encode() if tree else None)

    # -- state -----------------------------------------------------------
    def record(self) -> RunRecord:
        """The run record as of the last commit this writer saw."""
        if self._record is None:
            base = self.store.ref(self.ref)
            if base is None:
                raise RunNotFoundError(self.run_id)
            self._record = RunRecord.load(self.store, base, f"run {self.run_id}", ref=self.ref)
            self._base = base
        return self._record

    def pending(self) -> bool:
        return bool(self._create or self._points or self._params or self._tags or self._meta or self._artifacts)

    def start(self, record: RunRecord, source_commit: bytes | None, source_tree: bytes | None) -> None:
        """Make this the writer of a new run, first committed at its first flush."""
        with self.lock:
            create = jr.encode_create(self.slot, record.meta, record.tags, source_commit, source_tree)
            self._journal(self._registration + create)
            self._registration = ""
            self._record, self._base = record, None
            self._create = (source_commit, source_tree)
            self._deadline = time.monotonic() + min(self.flush_interval, FIRST_COMMIT_SECONDS)

    @property
    def deadline(self) -> float:
        """When (``time.monotonic()``) the buffer is due to be committed."""
        return self._deadline

    def maybe_flush(self) -> None:
        if time.monotonic() >= self._deadline:
            self.flush()

    def flush(self, *, journal_offset: int | None = None, journal_name: str | None = None) -> bytes | None:
        """Commit the buffered changes; returns the new commit id (None if nothing to do)."""
        with self.lock:
            self._deadline = time.monotonic() + self.flush_interval
            if not self.pending():
                return None
            packs = []
            for _attempt in range(1000):
                commit, objects, old, record = self.prepare(journal_name, journal_offset)
                packs.append(self.store.write(objects))
                if self.publish(commit, old, record):
                    self.store.release_kept(packs)  # the ref reaches the new objects: git gc may repack them
                    return commit.id
            raise CorruptRecordError(f"run {self.run_id}", "could not update the run ref after 1000 attempts")

    def prepare(
        self, journal_name: str | None = None, journal_offset: int | None = None, trailers: dict[str, int] | None = None
    ):
        """Build the next commit from the buffer: ``(commit, objects to write, old ref value, record)``.
        ``trailers``: more journals' committed offsets (a group commit's).

        Call with :attr:`lock` held, then write the objects and :meth:`publish`.
        """
        if journal_name is None and self.journal:
            journal_name, journal_offset = self.journal.name, self.journal.size()
        if self._create is not None:
            source_commit, root = self._create
            record, old = self._record, None
            assert record is not None  # start() set it
            parents = [source_commit] if source_commit else []
            previous = b""
        else:
            current = self.store.ref(self.ref)
            if current is None:
                raise RunNotFoundError(self.run_id)
            if current != self._base:
                self._record = None
            record = self.record()
            old = self._base
            assert old is not None  # record() set it
            parent = self.store.commit(old)
            root, parents, previous = parent.tree, [old], parent.message
        artifacts_changed = bool(self._artifacts)
        self._apply_buffer(record)
        objects: list[GitObject] = []
        tree = graft_record(self.store, root, record, objects)
        message = self._message(record, previous, journal_name, journal_offset, artifacts_changed, trailers)
        commit = make_commit(self.store, tree, parents, message)
        objects.append(commit)
        return commit, objects, old, record

    def publish(self, commit: RawObject, old: bytes | None, record: RunRecord) -> bool:
        """Move the ref to a prepared commit (written already). False if another writer won."""
        return self.published(commit, record, self.store.cas(self.ref, old, commit.id))

    def published(self, commit: RawObject, record: RunRecord, moved: bool) -> bool:
        """What :meth:`publish` does once the ref's compare-and-swap is done (``moved``: it
        won), for a caller that moved many runs' refs at once (the committer)."""
        if moved:
            self._base, self._create = commit.id, None
            self._points, self._params, self._tags, self._meta, self._artifacts = {}, {}, {}, {}, {}
            self.on_commit(self.ref, commit.id, record)
            return True
        if self._create is not None:
            raise ConflictError(f"run ref {self.ref.decode()} already exists")
        self._record = None  # another writer won: reload and re-apply on the next attempt
        return False

    def _apply_buffer(self, record: RunRecord) -> None:
        for key, value in self._params.items():
            old = record.params.get(key)
            if old is not None and old != value:
                raise ParamConflictError(self.run_id, key, old, value)
            record.params[key] = value
        if self._params:
            record.dirty.add(PARAMS)
        for key, tag in self._tags.items():
            if tag is None:
                record.tags.pop(key, None)
            else:
                record.tags[key] = tag
        if self._tags:
            record.dirty.add(TAGS)
        if self._meta:
            record.meta.update(self._meta)
            record.dirty.add(META)
        for key, lines in self._points.items():
            record.append_points(self.store, key, *jr.metric_columns(lines[1:]))  # (lines[0]: their start)
        for path, (sha256, size, blob) in self._artifacts.items():
            record.add_artifact(path, sha256, size, blob)

    def _message(
        self,
        record: RunRecord,
        previous: bytes,
        journal_name: str | None,
        offset: int | None,
        artifacts: bool = False,
        more: dict[str, int] | None = None,
    ) -> str:
        meta = record.meta
        trailers = journal_trailers(previous) if previous.startswith(b"gitml") else {}
        trailers = {n: o for n, o in trailers.items() if os.path.exists(os.path.join(self.journal_dir, n))}
        if journal_name and offset is not None:
            trailers[journal_name] = offset
        trailers.update(more or {})
        lines = [f"gitml: run {meta.get('run_name')} {meta.get('status')}", "", f"{TRAILER_RUN}: {self.run_id}"]
        if artifacts:
            lines.append(f"{TRAILER_ARTIFACTS}: {len(record.artifacts)}")
        lines += [f"{TRAILER_JOURNAL}: {n} {o}" for n, o in sorted(trailers.items())]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Commit what is buffered; the writer takes no more changes. Its journal is
        released only then: a run whose commit failed keeps it for recovery."""
        with self.lock:
            self.flush()
            self.closed = True
            if self.journal is not None:
                self.journal.release(self.slot)

    def move_to(self, journal: jr.Journal) -> None:
        """Journal in ``journal`` from now on (call with :attr:`lock` held and nothing
        buffered): the old journal holds nothing of this run uncommitted."""
        old, old_slot = self.journal, self.slot
        self.slot = journal.register(self.experiment_id, self.run_id)  # its R line written there now
        for key, points in self._points.items():  # (none: committed; kept right whatever comes)
            points[0] = jr.metric_prefix(self.slot, key)
        self.journal = journal
        self._registration = ""
        if old is not None:
            old.release(old_slot)

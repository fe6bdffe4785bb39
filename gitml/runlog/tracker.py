"""Tracker: runs and experiments of one repository, over a :class:`GitStore`.

It owns the open run writers of this process, the search index, experiment
registry and crash recovery. The public :class:`gitml.Client` and the fluent
API are thin layers over it.
"""

from __future__ import annotations

import logging
import operator
import os
import sqlite3
import time
import uuid
import weakref
from typing import cast

from dulwich.objects import Tree

from gitml.errors import (
    AmbiguousRunError,
    CorruptRecordError,
    DeletedRunError,
    DuplicateRunIdError,
    GitmlError,
    InvalidInputError,
    RunNotFoundError,
)
from gitml.names import (
    DEFAULT_EXPERIMENT_ID,
    RUN_REF_NAMES,
    RUNS_PREFIX,
    check_key,
    check_run_id,
    is_run_ref,
    run_ref,
    run_ref_parts,
)
from gitml.runlog import index as run_index
from gitml.runlog import journal as jr
from gitml.runlog import recovery
from gitml.runlog.checks import check_params, check_run_name, check_tags, random_run_name
from gitml.runlog.columns import RunTable
from gitml.runlog.commitprocess import CommitProcess
from gitml.runlog.committer import Committer, wait_for_repository
from gitml.runlog.entities import LifecycleStage, Metric, Run, RunStatus
from gitml.runlog.experiments import ExperimentRegistry
from gitml.runlog.group import RunGroup
from gitml.runlog.index import RunIndex
from gitml.runlog.record import RunRecord, check_field_text
from gitml.runlog.rows import row_of, run_of, run_of_row
from gitml.runlog.writer import RunWriter
from gitml.store import locks
from gitml.store.git import GitStore, user_name
from gitml.store.urls import redact_url
from gitml.store.worktree import Snapshot, is_tracked, snapshot

log = logging.getLogger("gitml")
_WARNED_UNTRACKED: set[str] = set()
_TRACKERS: weakref.WeakSet[Tracker] = weakref.WeakSet()  # every open Tracker of this process

DEFAULT_FLUSH_INTERVAL = 5.0
JOURNAL_ROTATE_BYTES = 64 << 20  # a long-lived process starts a new journal past this
GROUPS_KEPT = 16  # group journals (runs written to, not owned) a Tracker keeps open
PACK_REFS_AFTER = 1024  # loose run refs before the committer packs them (a search looks at each loose one)
FRESH_RUNS_SEGMENT = 1024  # runs a process makes before it writes their columns into the search index's snapshot
PACK_CHECK_EVERY = 256  # runs ended in a process between its counts of the loose run refs (and at its first)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _source_name() -> str:
    """What MLflow records as ``mlflow.source.name`` outside a work tree: ``sys.argv[0]``."""
    import sys

    return sys.argv[0] if sys.argv and sys.argv[0] else "<console>"


def publish_runs(commondir: str, run_id: str | None = None) -> None:
    """Commit now what other Trackers of this process buffered for a repository (one run's,
    or every run's), so a Client sees at once the runs the fluent API or another Client
    started (a new run is otherwise first committed within ``FIRST_COMMIT_SECONDS``)."""
    for tracker in list(_TRACKERS):
        if tracker.store.commondir != commondir:
            continue
        writers = [tracker.writers.get(run_id)] if run_id else list(tracker.writers.values())
        for writer in writers:
            if writer is not None and not writer.closed and writer.pending():
                writer.flush()


_REAL_PATHS: dict[tuple[str, str, str], tuple[str, str]] = {}  # (script, cwd, work tree) -> their real paths


def _entry_script(store: GitStore) -> tuple[str, bool] | None:
    """The running script's path in the work tree, and whether git tracks it."""
    import sys

    if store.workdir is None or not sys.argv or not sys.argv[0] or sys.argv[0] in ("-c", "-"):
        return None
    key = (sys.argv[0], os.getcwd(), store.workdir)
    real = _REAL_PATHS.get(key)
    if real is None:  # an lstat per component of both paths, for every run, was an eighth of start_run (W2)
        real = _REAL_PATHS[key] = (os.path.realpath(sys.argv[0]), os.path.realpath(store.workdir))
    path, root = real
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        return None
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    return rel, is_tracked(store, rel)


class Tracker:
    def __init__(self, store: GitStore, *, flush_interval: float | None = None):
        self.store = store
        env_interval = os.environ.get("GITML_FLUSH_INTERVAL")
        self.flush_interval = float(
            flush_interval if flush_interval is not None else env_interval or DEFAULT_FLUSH_INTERVAL
        )
        self.journal_dir = os.path.join(store.gitml_dir, "journal")
        self.artifact_root = os.path.join(store.gitml_dir, "artifacts")
        self.index = RunIndex(os.path.join(store.gitml_dir, "index.sqlite3"))
        self.experiments = ExperimentRegistry(store, self.artifact_root)
        self.writers: dict[str, RunWriter] = {}
        self.journal: jr.Journal | None = None
        self._retired: list[jr.Journal] = []  # journals rotated away from, kept until their runs commit
        self._groups: dict[str, RunGroup] = {}  # group journals of runs written here, not owned (tracking.group)
        self.committer = Committer(
            store,
            lambda: [w for w in list(self.writers.values()) if not w.closed],
            housekeeping=self._housekeeping,
            batch=self.index.batch,
            warm=self.index.warm,
            process=lambda answer: CommitProcess(store, answer),
        )
        self._ended_since_pack = 0
        self._pack_check = 1  # runs to end before the loose run refs are counted: at the first
        self._long = False  # whether this process wrote its runs' columns while it ran (see _leave_settled)
        self._valid_refs: set[bytes] = set()  # run refs already checked by parse_run_ref
        self._refs_of_experiments: tuple[tuple, list, dict[bytes, bytes]] | None = None  # ids, listings, refs
        self.searches: dict[tuple, tuple] = {}  # a search's arguments -> (table, matches, its frame or None)
        self.recovered = self.recover()
        _TRACKERS.add(self)

    def close(self) -> None:
        owner = locks.owner(self.store.commondir)
        owner.pin()  # one owner file for the many locks closing takes (at exit it went after each)
        try:
            self._close()
        finally:
            owner.unpin()

    def _close(self) -> None:
        failed: BaseException | None = None
        for writer in list(self.writers.values()):
            try:
                writer.close()
            except Exception as e:  # the others still commit; its journal stays for recovery
                log.warning(
                    "gitml: run %s could not be committed (its journal is kept for recovery): %s", writer.run_id, e
                )
                failed = failed or e
        self.writers.clear()
        self.committer.close()
        for group in self._groups.values():
            group.close()
        self._groups = {}
        for journal in [*self._retired, *([self.journal] if self.journal is not None else [])]:
            # kept (for the next command's recovery) while a run's lines in it did not commit
            journal.close(remove=journal.users == 0)
        self.journal, self._retired = None, []
        if not self.committer.failed and (self._long or self.index.fresh() >= run_index.SNAPSHOT_SLACK):
            self._leave_settled()
        self.index.close()
        if failed is not None:
            raise failed

    def _leave_settled(self) -> None:
        """At the end of a process that made many runs: pack their loose refs and write
        their columns with a stamp of the refs, so that the next command lists nothing and
        reads no row (after a sweep of 50,000 runs the first search took 16 s); then roll
        its small packs up and delete those it merged away (the sweep left 82 packs)."""
        try:
            self.index.add_fresh(1)  # the last runs too, however few: the slack is for readers, not for the exit
            self.pack_refs(1)
            with self.index.reading():
                refs, digest, loose = self.store.listing_and_state(RUNS_PREFIX, RUN_REF_NAMES)
                self.index.table(refs, self._load_row, (digest, loose))
            self.store.settle_packs()  # its small packs rolled up, the packs it merged away deleted
        except (
            OSError,
            RuntimeError,
            sqlite3.Error,
            GitmlError,
        ) as e:  # a cache and housekeeping: the next command does it
            log.warning("gitml: could not leave the search index settled: %s", e)

    # -- runs: creating and writing -------------------------------------
    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        entry_point: str | None = None,
        journaled: bool = True,
        source: Snapshot | None = None,
        source_name: str | None = None,
        source_type: str | None = None,
        user_id: str | None = None,
    ) -> RunWriter:
        """Create a run (status RUNNING) and return its open writer.

        The run's first commit is made at the writer's first flush (the
        journal holds it until then), so a short run costs one commit.
        ``source``: the code the run records (default: this work tree as it is
        now); ``source_name`` / ``source_type`` replace the script and ``LOCAL``;
        ``user_id`` the user (default: this process's, see ``user_name``).
        """
        experiment = self.experiments.get(experiment_id)
        if experiment.lifecycle_stage == LifecycleStage.DELETED:
            raise InvalidInputError(f"experiment {experiment.name!r} ({experiment_id}) is deleted; restore it first")
        run_name = check_run_name(run_name) if run_name else self._random_name()
        tags = self.check_tags(tags or {})
        if "mlflow.runName" in tags:
            run_name = check_run_name(tags.pop("mlflow.runName"))
        run_id = uuid.uuid4().hex
        source = snapshot(self.store) if source is None else source
        meta = {
            "run_id": run_id,
            "run_name": run_name,
            "experiment_id": experiment_id,
            "status": RunStatus.RUNNING,
            "user_id": check_field_text(user_id, "user_id") if user_id else user_name(),
            "start_time": start_time if start_time is not None else _now_ms(),
            "end_time": None,
            "lifecycle_stage": LifecycleStage.ACTIVE,
            "artifact_uri": f"runs:/{run_id}",  # what gitml.artifacts.download_artifacts takes
            "source": {
                "commit": source.commit.decode() if source.commit else None,
                "branch": source.branch,
                "dirty": source.dirty,
            },
        }
        assert isinstance(meta["source"], dict)
        if parent_run_id:
            meta["parent_run_id"] = check_run_id(parent_run_id)
        if entry_point:
            meta["entry_point"] = entry_point
        if source_type:
            meta["source"]["type"] = source_type
        script = _entry_script(self.store) if source_name is None else None
        meta["source"]["name"] = redact_url(source_name or (script[0] if script is not None else _source_name()))
        if script is not None:
            if not script[1] and script[0] not in _WARNED_UNTRACKED:  # once per script and process
                _WARNED_UNTRACKED.add(script[0])
                log.warning(
                    "gitml: %s is not tracked by git, so runs do not record it (first: %s); "
                    "`git add` it to keep it with runs",
                    script[0],
                    run_id,
                )
        from gitml.runlog.ci import ci_tags

        tags = {**self.check_tags(ci_tags(os.environ), allow_reserved=True), **tags}  # CI's job, PR, commit
        record = RunRecord(meta=meta, tags=tags)
        root = [o for o in source.objects if o.id == source.tree]
        if root:
            self.store.remember(cast(Tree, root[0]))
        self.store.write([o for o in source.objects if o.id != source.tree])
        ref = run_ref(experiment_id, run_id)
        writer = self._writer(ref, run_id, experiment_id, journaled, starting=True)
        writer.start(record, source.commit, source.tree)
        if not journaled:
            writer.flush()
        return writer

    def open_writer(self, run_id: str, *, journaled: bool = True) -> RunWriter:
        """The writer of an existing run (shared while it is open in this process)."""
        writer = self.writers.get(run_id)
        if writer is not None and not writer.closed:
            return writer
        ref = self.ref_of(run_id)
        experiment_id, _ = run_ref_parts(ref)
        return self._writer(ref, run_id, experiment_id, journaled)

    def _writer(
        self, ref: bytes, run_id: str, experiment_id: str, journaled: bool, *, starting: bool = False
    ) -> RunWriter:
        while True:
            if journaled and self.journal is None:
                self.journal = jr.Journal(self.journal_dir)
            try:
                writer = RunWriter(
                    self.store,
                    ref,
                    run_id,
                    experiment_id,
                    journal_dir=self.journal_dir,
                    journal=self.journal if journaled else None,
                    flush_interval=self.flush_interval,
                    on_commit=self._on_commit,
                    starting=starting,
                )
                break
            except jr._JournalRetired:  # the committer rotated the journal just now: join the new one
                continue
        if journaled:
            self.writers[run_id] = writer
            self.committer.watch()
        return writer

    def finish(self, run_id: str, status: str = RunStatus.FINISHED, end_time: int | None = None) -> None:
        """End a run: record its status and end time, commit, close its writer."""
        if status not in RunStatus.ALL:
            raise InvalidInputError(f"status {status!r} is not one of {', '.join(RunStatus.ALL)}")
        writer = self.open_writer(run_id, journaled=False)
        writer.set_meta(status=status, end_time=end_time if end_time is not None else _now_ms())
        self.writers.pop(run_id, None)
        if writer.journal is not None and os.environ.get("GITML_BACKGROUND_COMMIT", "1") != "0":
            self.committer.submit(writer)  # its final state is journaled: commit in the background
        else:
            writer.close()

    def update(self, run_id: str, change, *, deleted_ok: bool = False) -> None:
        """Apply ``change(writer)`` to a run; committed now unless the run is open here:
        journaled, then group-committed with the other writers of the run
        (:mod:`gitml.runlog.group`).

        A deleted run takes no change (``DeletedRunError``, as MLflow refuses), except
        with ``deleted_ok`` (deleting and restoring it).
        """
        wait_for_repository(self.store.commondir, run_id)
        writer = self.writers.get(run_id)
        if writer is not None and not writer.closed:
            self._check_not_deleted(writer, deleted_ok)
            change(writer)
            writer.maybe_flush()
            return
        ref = self.ref_of(run_id)
        experiment_id, _ = run_ref_parts(ref)
        group = self._group(run_id, ref, experiment_id)
        writer = group.writer()
        commit = self.store.ref(ref)
        if commit is None:
            raise RunNotFoundError(run_id)
        meta = RunRecord.load_meta(self.store, commit, f"run {run_id}", ref=ref)  # not every file of it
        if not deleted_ok and meta.get("lifecycle_stage") == LifecycleStage.DELETED:
            raise DeletedRunError(run_id)
        with writer.lock:
            change(writer)
            if writer.pending():
                group.commit(writer)

    def _group(self, run_id: str, ref: bytes, experiment_id: str) -> RunGroup:
        """This process's group journal for a run it writes to without owning it (a
        few kept open: each holds a file descriptor)."""
        group = self._groups.pop(run_id, None)
        if group is None or group.ref != ref:
            if group is not None:
                group.close()
            group = RunGroup(self.store, ref, run_id, experiment_id, self.journal_dir, self._on_commit)
        self._groups[run_id] = group  # the most recent last
        while len(self._groups) > GROUPS_KEPT:
            self._groups.pop(next(iter(self._groups))).close()
        return group

    def open_active_writer(self, run_id: str) -> RunWriter:
        """The writer of a run to resume: refused (``DeletedRunError``) if the run is deleted."""
        writer = self.writers.get(run_id)
        if writer is not None and not writer.closed:
            self._check_not_deleted(writer)
            return writer
        record, _ = self.record(run_id)  # as committed now (another Client may have restored it)
        if record.meta.get("lifecycle_stage") == LifecycleStage.DELETED:
            raise DeletedRunError(run_id)
        return self.open_writer(run_id)

    @staticmethod
    def _check_not_deleted(writer: RunWriter, deleted_ok: bool = False) -> None:
        if deleted_ok:
            return
        stage = writer._meta.get("lifecycle_stage") or writer.record().meta.get("lifecycle_stage")
        if stage == LifecycleStage.DELETED:
            raise DeletedRunError(writer.run_id)

    def _on_commit(self, ref: bytes, commit: bytes, record: RunRecord) -> None:
        self.index.put(ref, commit, row_of(record))

    check_params = staticmethod(check_params)
    check_tags = staticmethod(check_tags)
    _random_name = staticmethod(random_run_name)

    # -- runs: reading ---------------------------------------------------
    def run_refs(self, experiment_ids: list[str] | None = None) -> dict[bytes, bytes]:
        """``{ref: commit}`` of the runs (of some experiments), including the runs any
        Tracker of this process started or changed a moment ago. Do not modify it: for
        every run it is the same dict until a run ref changes."""
        self.settle()
        if experiment_ids is None:
            return self._all_run_refs()
        listings = [self.store.refs_under(f"{RUNS_PREFIX}{e}/", shared=True) for e in experiment_ids]
        key = tuple(experiment_ids)
        memo = self._refs_of_experiments
        if memo is not None and memo[0] == key and all(map(operator.is_, memo[1], listings)):
            return memo[2]  # the same dict while no ref of these experiments changed, as for every run
        refs = {}
        for listing in listings:
            refs.update(listing)
        valid = self._valid_refs
        out = {}
        for ref, commit in refs.items():
            if ref not in valid and is_run_ref(ref):
                valid.add(ref)
            if ref in valid:
                out[ref] = commit
        self._refs_of_experiments = (key, listings, out)
        return out

    def settle(self) -> None:
        """Commit now what this process buffered, and wait for its background commits:
        the refs read next hold every run this process wrote."""
        wait_for_repository(self.store.commondir)
        publish_runs(self.store.commondir)

    def _all_run_refs(self) -> dict[bytes, bytes]:
        """Every run ref: the same dict while no run ref changed (the index reuses the
        table it made of it); names checked as packed-refs is searched."""
        return self.store.refs_under(RUNS_PREFIX, names=RUN_REF_NAMES)

    def ref_of(self, run_id: str) -> bytes:
        """The ref of the run ``run_id``: looked for every time (0.5 ms among 20,000 runs), not
        remembered, so that two refs claiming one id (a hostile ref taken in by plain
        ``git fetch`` while this process runs) are a :class:`DuplicateRunIdError`, never a pick."""
        check_run_id(run_id)
        # this run's buffered start and background commit alone: settling every run would commit
        # the open runs' buffers at each write to another run (42 commits where 3 were due)
        wait_for_repository(self.store.commondir, run_id)
        publish_runs(self.store.commondir, run_id)
        found = self.store.refs_with_tail(RUNS_PREFIX, run_id.encode())
        refs = sorted(ref for ref in found if is_run_ref(ref) and ref[-33:] == b"/" + run_id.encode())
        if len(refs) > 1:
            raise DuplicateRunIdError(run_id, [ref.decode() for ref in refs])
        if not refs:
            raise RunNotFoundError(run_id)
        return refs[0]

    def _refs_with_id(self, start: str) -> dict[bytes, bytes]:
        """``{ref: commit}`` of the run refs whose run id starts with ``start``, found by
        bisecting packed-refs in each experiment's lines and listing the loose folders:
        not a listing of every run (0.1 s at 100,000 runs)."""
        self.settle()
        found = self.store.refs_with_tail(RUNS_PREFIX, start.encode())
        return {ref: commit for ref, commit in found.items() if is_run_ref(ref)}

    def committed(self, run_id: str) -> tuple[bytes, bytes]:
        """The run's ref and the commit it holds now (what this process buffered committed first)."""
        wait_for_repository(self.store.commondir, run_id)
        publish_runs(self.store.commondir, run_id)
        ref = self.ref_of(run_id)
        commit = self.store.ref(ref)
        if commit is None:
            raise RunNotFoundError(run_id)
        return ref, commit

    def record(self, run_id: str) -> tuple[RunRecord, bytes]:
        ref, commit = self.committed(run_id)
        return RunRecord.load(self.store, commit, f"run {run_id}", ref=ref), commit

    def get_run(self, run_id: str) -> Run:
        """The run as committed now: from the search index's row of its commit (what its
        record gives, without reading the record's YAML), or from the record."""
        return self.runs_at([self.committed(run_id)])[0]

    def runs_at(self, refs: list[tuple[bytes, bytes]]) -> list[Run]:
        """The Runs of ``(run ref, commit)`` pairs a search found, in order: built from the
        search index's rows, and from the record (read from git) for a row that lacks
        what a Run holds. A record that cannot be read raises CorruptRecordError."""
        rows = self.index.rows_at(dict(refs), self._load_row)
        out = []
        for ref, commit in refs:
            run = run_of_row(rows[ref], commit) if ref in rows else None
            if run is None:
                _, run_id = run_ref_parts(ref)
                run = run_of(RunRecord.load(self.store, commit, f"run {run_id}", ref=ref), commit)
            out.append(run)
        return out

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        check_key(key, "metric")
        ref, commit = self.committed(run_id)
        return RunRecord.load_history(self.store, commit, f"run {run_id}", key, ref=ref)

    def rows(self, experiment_ids: list[str] | None = None) -> tuple[list[dict], list[CorruptRecordError]]:
        """Search rows of every run (of some experiments), via the index."""
        refs = self.run_refs(experiment_ids)
        return self.index.rows(refs, self._load_row)

    def table(self, experiment_ids: list[str] | None = None) -> tuple[RunTable, list[CorruptRecordError]]:
        """Search rows of every run (of some experiments) by column, via the index;
        inside ``self.index.reading()``."""
        if experiment_ids is not None:
            return self.index.table(self.run_refs(experiment_ids), self._load_row)
        self.settle()
        state = self.store.refs_state(RUNS_PREFIX, RUN_REF_NAMES)  # no listing of every run ref
        found = self.index.table_at(state, self.store.packed_ref, self._load_row)
        if found is not None:
            return found
        refs, digest, loose = self.store.listing_and_state(RUNS_PREFIX, RUN_REF_NAMES)
        return self.index.table(refs, self._load_row, (digest, loose))

    def _load_row(self, ref: bytes, commit: bytes) -> dict:
        _, run_id = run_ref_parts(ref)
        return row_of(RunRecord.load(self.store, commit, f"run {run_id}", ref=ref))

    def _housekeeping(self, ended: int) -> None:
        """After the committer commits ended runs: pack refs once enough are loose,
        and start a new journal once the current one is large."""
        if self.journal is not None and self.journal.size() > JOURNAL_ROTATE_BYTES:
            self.rotate_journal()
        self._ended_since_pack += ended
        if self._ended_since_pack >= self._pack_check:  # the loose refs are counted, those of every process
            self._ended_since_pack, self._pack_check = 0, PACK_CHECK_EVERY
            try:
                self.pack_refs(PACK_REFS_AFTER)
            except (OSError, RuntimeError, GitmlError) as e:
                log.warning("gitml: could not pack run refs: %s", e)
        if self.index.fresh() >= FRESH_RUNS_SEGMENT and self.index.add_fresh(FRESH_RUNS_SEGMENT):
            self._long = True  # a long process leaves its runs' columns as it goes

    def rotate_journal(self) -> None:
        """Move the open writers to a fresh journal and delete the old one.

        Each writer is flushed first, under its lock: everything the old journal
        holds is then committed, and the new one starts with the writers' slots.
        """
        old = self.journal
        if old is None:
            return
        writers = [w for w in list(self.writers.values()) if not w.closed and w.journal is not None]
        for writer in writers:
            writer.lock.acquire()
        try:
            self.journal = jr.Journal(self.journal_dir)  # new runs register here from now on
            for writer in writers:
                if not writer.closed:
                    writer.flush()
                    writer.move_to(self.journal)
            # Runs that ended but wait for the committer, or a writer made meanwhile,
            # still hold lines only the old journal has: it goes when they commit.
            self._retired = [j for j in self._retired if j.users]  # (deleted once their runs committed)
            if not old.retire():
                self._retired.append(old)
        finally:
            for writer in writers:
                writer.lock.release()

    def pack_refs(self, minimum: int = PACK_REFS_AFTER) -> int:
        """Pack the loose refs of ended runs when at least ``minimum`` are loose, so
        listing runs stays one file read (the committer does it as runs accumulate;
        ``gitml gc`` does it always)."""
        _, loose = self.store.refs_state(RUNS_PREFIX, RUN_REF_NAMES)  # the loose ones alone: no listing
        if len(loose) < minimum:
            return 0
        rows = self.index.rows_at(loose, self._load_row)
        names = [ref for ref, row in rows.items() if row.get("status") in RunStatus.TERMINAL]
        return self.store.pack_refs(names) if names else 0

    def resolve(self, spec: str) -> str:
        """A run id from a full id, a unique id prefix (4+ hex digits, as git), or a run name.

        A spec that is both a name and an id prefix of different runs is ambiguous.
        """
        if not isinstance(spec, str):
            raise InvalidInputError(f"run id {spec!r} is not a string")
        spec = spec.strip()
        if not spec:
            raise InvalidInputError("empty run id")
        key = spec.lower()
        hexlike = all(c in "0123456789abcdef" for c in key)
        with_id = self._refs_with_id(key) if hexlike else {}
        ids = [ref[-32:] for ref in with_id]  # a run ref ends in its run id
        if len(key) == 32 and key.encode() in ids:
            return key  # a full id: names are not looked at (nor is every run listed)
        by_id = [i.decode() for i in ids if i.startswith(key.encode())] if len(key) >= 4 else []
        with self.index.reading():
            self.settle()
            state = self.store.refs_state(RUNS_PREFIX, RUN_REF_NAMES)
            named = self.index.named(spec, state, self.store.packed_ref, self._load_row)  # no column decoded
            if named is None:
                table, _ = self.table()
                names = table.column("attributes", "run_name")
                named = (
                    [(table.refs[i], table.commits[i]) for i, n in enumerate(names) if n == spec]
                    if spec in names
                    else []
                )
        by_name = [ref[-32:].decode() for ref, _ in named]
        matches = sorted(set(by_id) | set(by_name))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            if len(key) < 4 and any(i.startswith(key.encode()) for i in ids):
                raise InvalidInputError(f"run id prefix {spec!r} is too short: give at least 4 hex digits")
            raise RunNotFoundError(spec)
        raise AmbiguousRunError(spec, matches)

    # -- crash recovery (gitml.runlog.recovery) --------------------------
    def recover(self) -> list[str]:
        """Commit what dead processes' journals hold; mark their running runs KILLED.

        Returns the ids of the runs that changed.
        """
        return recovery.recover(
            self.store, self.journal_dir, lambda ref, run, exp: self._writer(ref, run, exp, journaled=False)
        )

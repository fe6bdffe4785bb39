"""The internal facade: what the CLI, the UI, sync, projects, the fluent API and the MLflow
plugin ask of a repository beyond MLflow's ``MlflowClient`` surface (GTO's ``api.py``
between its CLI and its registry is the pattern).

:class:`Operations` is a :class:`gitml.Client` (every MLflow-shaped call) plus the
plumbing: open runs and their writers, the refs push and fetch share, imports, the
code of runs, upkeep, the read views of :class:`gitml.runviews.RunViews`, and the
artifact service and tag registry behind the Client. It is not public API:
``gitml.Client`` is.

>>> ops = Operations("path/to/repo")
>>> print(ops.runs_code_diff("baseline", "tuned"))
>>> ops.checkout_run("tuned", branch="try-tuned")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gitml.client import Client
from gitml.errors import InvalidInputError
from gitml.names import DEFAULT_EXPERIMENT_ID, EXPERIMENTS_PREFIX, RECORD_DIR, check_artifact_path
from gitml.runlog.entities import Run, RunStatus, ViewType
from gitml.runlog.rows import run_of
from gitml.runlog.search import search_key, search_table
from gitml.runviews import RunViews

if TYPE_CHECKING:
    from gitml.content.service import RunArtifacts
    from gitml.registry.metadata import RegistryMetadata
    from gitml.registry.state import Registry
    from gitml.runlog.writer import RunWriter
    from gitml.search import PagedList
    from gitml.store.git import GitStore


class Operations(RunViews, Client):
    """A Client with the plumbing the CLI, UI, sync, projects, fluent API and MLflow
    plugin use (see the module's docstring)."""

    @classmethod
    def of(cls, client: Client) -> Operations:
        """``client`` with the facade's calls: itself when it is an Operations, else a view
        sharing its state (repository, tracker, artifact service, registry; closing either
        closes both), for code that holds a plain :class:`gitml.Client`.

        >>> sync.push(Operations.of(gitml.Client()), "origin")
        """
        if isinstance(client, cls):
            return client
        view = cls.__new__(cls)
        view.__dict__ = client.__dict__
        return view

    @property
    def artifacts(self) -> RunArtifacts:
        """The run artifacts service (content store from the repository's settings)."""
        return self._artifact_service

    @property
    def registry(self) -> Registry:
        """The tag registry of this repository (:class:`gitml.registry.Registry`)."""
        return self._tag_registry

    @property
    def registry_metadata(self) -> RegistryMetadata:
        """The models' metadata refs (:class:`gitml.registry.metadata.RegistryMetadata`)."""
        return self._model_metadata

    def registry_history(self, name: str) -> list[dict]:
        """The changes of a model's metadata, newest first: ``{commit, by, at, message}``."""
        from gitml.registry.tags import model_slug

        return self._model_metadata.history(model_slug(name))

    @property
    def gitml_dir(self) -> str:
        """``<git common dir>/gitml``: the local, never pushed folder of gitml's caches."""
        return self._store.gitml_dir

    @property
    def store(self) -> GitStore:
        """The repository's git store (refs and objects), for :mod:`gitml.sync`, whose push
        and fetch move them as git does (the layout test keeps every other reader out)."""
        return self._store

    def resolve_experiment_ids(
        self, experiment_ids: list[str] | str | None, experiment_names: list[str] | None = None
    ) -> list[str] | None:
        """The ids of ``experiment_ids`` (one or a list) and of the experiments named
        ``experiment_names``; None (every experiment) when both are empty. Raises
        ExperimentNotFoundError for a name no experiment has."""
        return self._resolve_experiment_ids(experiment_ids, experiment_names)

    # -- runs this process keeps open ---------------------------------------------
    def start_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        run_name: str | None = None,
        tags: dict | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        user_id: str | None = None,
    ) -> Run:
        """Create a RUNNING run that this Client keeps open, as ``gitml.start_run`` does:
        its writes are journaled and committed on the flush interval (and by
        :meth:`set_terminated`, in the background), not one commit per call as after
        :meth:`create_run`. For code logging many calls to one run (the MLflow plugin).

        >>> run = ops.start_run(experiment_id, run_name="baseline")
        >>> ops.log_metric(run.info.run_id, "loss", 0.1)
        >>> ops.set_terminated(run.info.run_id)
        """
        writer = self.start_run_writer(
            experiment_id,
            run_name=run_name,
            tags=tags,
            parent_run_id=parent_run_id,
            start_time=start_time,
            user_id=user_id,
        )
        return run_of(writer.record(), None)

    def start_run_writer(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        run_name: str | None = None,
        tags: dict | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        user_id: str | None = None,
    ) -> RunWriter:
        """:meth:`start_run`, returning the run's writer: for a caller that logs many
        calls to the run straight to it (the fluent API). End it with :meth:`end_run`."""
        return self.tracker.create_run(
            str(experiment_id),
            run_name=run_name,
            tags=tags,
            parent_run_id=parent_run_id,
            start_time=start_time,
            user_id=user_id,
        )

    def search_run_commits(
        self,
        experiment_ids: list[str] | str | None = None,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """``search_runs``, as the ``(run ref, commit)`` pairs of the runs it finds (a PagedList
        with the next page's ``token``): a run's commit names its content, so a caller that
        keeps what it built of a run (the MLflow plugin) builds only the runs whose commit it
        has not seen, with :meth:`runs_at`."""
        return self._search_run_commits(experiment_ids, filter_string, run_view_type, max_results, order_by, page_token)

    def runs_at(self, found: list[tuple[bytes, bytes]]) -> list[Run]:
        """The Runs of ``(run ref, commit)`` pairs :meth:`search_run_commits` returned, in order."""
        return self.tracker.runs_at(found)

    def run_writer(self, run_id: str, *, resume: bool = False) -> RunWriter:
        """The writer of a run this Client logs to (shared while the run is open here).
        ``resume``: the run is being resumed; a deleted run is refused (DeletedRunError)."""
        return self.tracker.open_active_writer(run_id) if resume else self.tracker.open_writer(run_id)

    @staticmethod
    def run_of_writer(writer: RunWriter) -> Run:
        """The Run a writer holds (as of its last commit, with what was set at its start)."""
        return run_of(writer.record(), writer.base)

    def end_run(self, run_id: str, status: str = RunStatus.FINISHED) -> None:
        """End a run this Client started or resumed (its final commit is made in the
        background); :meth:`set_terminated` also refuses a deleted run."""
        self.tracker.finish(run_id, status)

    def import_commit(self, repository: str | os.PathLike, commit: str) -> None:
        """Bring ``commit`` of the git repository at ``repository`` (a folder on this
        machine) into this one, with its history, as one pack of what is missing here;
        no ref is made (the run commits whose parent it becomes keep it). Raises
        RepositoryError when that repository lacks part of it."""
        from gitml.store.git import open_repo
        from gitml.store.transfer import copy_objects

        with open_repo(repository) as source:
            copy_objects(source, self._store.repo, [commit.encode()])

    def restate_run(self, run_id: str, message: str) -> bytes:
        """Put a commit on top of the run's head with the same tree (its record unchanged)
        and make it the run's head: a commit of its own for a second version of one model
        on one run (``gitml import mlflow``; GTO tells versions apart by their commit).
        Returns its id; ConflictError when the run moved meanwhile."""
        from dulwich.objects import Commit

        from gitml.errors import ConflictError
        from gitml.store.ids import oid

        ref = self.tracker.ref_of(run_id)
        head = self.tracker.run_refs()[ref]
        top = self._store.commit(head)
        commit = Commit()
        commit.tree, commit.parents = top.tree, [oid(head)]
        commit.author, commit.committer = top.author, top.committer
        commit.author_time, commit.commit_time = top.author_time, top.commit_time
        commit.author_timezone, commit.commit_timezone = top.author_timezone, top.commit_timezone
        commit.message = message.encode() + b"\n"
        self._store.write([commit])
        if not self._store.cas(ref, head, commit.id):
            raise ConflictError(f"run {run_id} moved meanwhile; try again")
        return commit.id

    def import_run(
        self,
        experiment_id: str,
        run_id: str,
        *,
        run_name: str,
        code: str | None = None,
        artifact_files: list[tuple[str, str]] = (),  # type: ignore[assignment]
        **fields,
    ) -> bool:
        """Write a run another tracker recorded (``gitml import mlflow``) as one commit,
        keeping its id, user, status, times, parent, histories and inputs (the fields of
        ``gitml.runlog.imports.ImportedRun``: ``user_id``, ``status``, ``start_time``,
        ``end_time``, ``lifecycle_stage``, ``branch``, ``source_name``, ``source_type``,
        ``parent_run_id``, ``params``, ``tags``, ``metrics`` (key → ``(step, timestamp,
        value)`` points), ``inputs`` (dataset records)). ``code``: the commit that ran;
        it becomes the run commit's parent when this repository has it, else the run has no
        code. ``artifact_files``: ``(local file, artifact path)`` pairs, stored by hash
        (files that may be temporary). Returns whether the code was joined.

        Raises ConflictError when the run exists, InvalidInputError for a value gitml refuses.
        """
        from gitml.runlog.imports import ImportedRun, write_imported_run

        joined = self._has_commit(code)
        entries = []
        if artifact_files:
            for _, path in artifact_files:
                check_artifact_path(path)
            entries = self.artifacts.stage_files(list(artifact_files), remember=False)
        run = ImportedRun(
            run_id=run_id,
            experiment_id=str(experiment_id),
            run_name=run_name,
            code=code if joined else None,
            artifacts=entries,
            **fields,
        )
        write_imported_run(self.tracker, run)
        return joined

    def _has_commit(self, sha: str | None) -> bool:
        import re

        from gitml.errors import CorruptRecordError

        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
            return False
        if not self._store.contains(sha.encode()):
            return False
        try:
            self._store.commit(sha.encode())
        except CorruptRecordError:  # an object of another kind
            return False
        return True

    def create_project_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        code: str | None,
        dirty: bool = False,
        source_name: str,
        entry_point: str,
        run_name: str | None = None,
        tags: dict | None = None,
    ) -> Run:
        """Create a RUNNING run of a project (``gitml run``), committed at once, whose
        ``mlflow.source.type`` is ``PROJECT``. ``code``: the commit that ran (in this
        repository: see :meth:`import_commit`), whose tree the run holds and which is its
        parent; None: this work tree as it is now, as for any run; ``""``: none (a folder
        outside git). ``dirty``: the project had uncommitted changes."""
        from gitml.store.worktree import Snapshot

        source = None
        if code is not None:
            commit = code.encode() if code else None
            source = Snapshot(commit, None, dirty, self._store.commit(commit).tree if commit else None)
        writer = self.tracker.create_run(
            str(experiment_id),
            run_name=run_name,
            tags=tags,
            entry_point=entry_point,
            journaled=False,
            source=source,
            source_name=source_name,
            source_type="PROJECT",
        )
        return self.get_run(writer.run_id)

    def detach(self) -> None:
        """Forget this Client without closing it: nothing of it is closed at exit. For a
        forked child, whose inherited Client's journal and threads are its parent's."""
        self._finalizer.detach()

    def search_frame(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str = "",
        *,
        view: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        order_by: list[str] | None = None,
    ):
        """The runs matching ``filter_string`` as a pandas DataFrame with MLflow's columns
        (``run_id``, ..., ``metrics.*``, ``params.*``, ``tags.*``): what the fluent
        ``search_runs`` returns. Raises FilterSyntaxError, InvalidInputError."""
        from gitml.frame import table_frame

        with self.tracker.index.reading():
            table, matched = search_table(
                self.tracker, experiment_ids, filter_string, view=view, max_results=max_results, order_by=order_by
            )
            key = search_key(experiment_ids, filter_string, view, max_results, order_by)
            memo = self.tracker.searches.get(key)
            if memo is not None and memo[0] is table and memo[2] is not None:
                return memo[2].copy()  # the caller may change its copy; 1 ms against 50 ms to build it
            frame = table_frame(table, matched)
            if memo is not None and memo[0] is table:  # one frame kept, the last search's: frames can be large
                searches = self.tracker.searches
                searches.update({k: (t, m, None) for k, (t, m, f) in searches.items() if f is not None})
                searches[key] = (table, memo[1], frame)
            return frame.copy()

    # -- the refs push and fetch share, the code of runs, upkeep ------------------
    def remote_names(self) -> list[str]:
        """The names of the git remotes configured in this repository (``git remote``)."""
        from gitml.store.remote import configured_remotes

        return sorted(configured_remotes(self._store))

    def run_refs(self, experiment_ids: list[str] | None = None) -> dict[bytes, bytes]:
        """``{run ref: commit}`` of the runs (of some experiments), this process's newest included."""
        return self.tracker.run_refs(experiment_ids)

    def settle_runs(self) -> None:
        """Commit now what this process buffered: the run refs read next hold every run it wrote."""
        self.tracker.settle()

    def run_ref(self, run_id: str) -> bytes:
        """The ref of a run (``refs/gitml/runs/<experiment>/<run>``). Raises RunNotFoundError."""
        return self.tracker.ref_of(run_id)

    def experiment_refs(self) -> dict[bytes, bytes]:
        """``{experiment ref: commit}`` of every experiment's record."""
        return self._store.refs_under(EXPERIMENTS_PREFIX)

    def merge_experiment(self, experiment_id: str, theirs: bytes) -> bool:
        """Join the record of an experiment made in another clone (commit ``theirs``) with
        ours; False when our ref moved meanwhile (see ``ExperimentRegistry.merge``)."""
        return self.tracker.experiments.merge(experiment_id, theirs)

    # -- the code of runs -------------------------------------------------------
    def runs_code_diff(self, run_a: str, run_b: str) -> str:
        """A unified diff from the code run ``run_a`` ran to the code ``run_b`` ran (their
        run commits' trees, uncommitted changes included), files labelled by short run ids."""
        from gitml.runlog.lineage import code_diff

        ids = [self.tracker.resolve(r) for r in (run_a, run_b)]
        a, b = (self.tracker.record(run_id)[1] for run_id in ids)
        return code_diff(self._store, a, b, labels=(ids[0][:8], ids[1][:8]))

    def checkout_run(self, run: str, *, branch: str | None = None) -> Run:
        """Put the code ``run`` ran in the work tree: its source commit (a detached HEAD, or
        a new ``branch`` there), then its uncommitted changes. Returns the run. Raises
        InvalidInputError when a branch is asked of a run that had no source commit, and
        when the work tree has uncommitted changes."""
        from gitml.store.worktree import restore

        r = self.tracker.get_run(self.tracker.resolve(run))
        ran = r.source
        source = ran.commit.encode() if ran is not None and ran.commit else None
        if source is None and branch:
            raise InvalidInputError(
                f"run {r.info.run_id[:8]} ran before the repository's first commit: there is no commit "
                f"to start branch {branch!r} at (check it out without -b)"
            )
        run_tree = self._store.commit(((ran and ran.run_commit) or "").encode()).tree
        restore(self._store, source, run_tree, branch=branch, skip=RECORD_DIR)
        return r

    # -- upkeep -------------------------------------------------------------------
    def recover_runs(self) -> list[str]:
        """Commit what killed processes left in their journals and mark their runs KILLED;
        the ids of the runs recovered (when this Client opened, and now)."""
        return self.tracker.recovered + self.tracker.recover()

    def drop_stale_temporaries(self, older_than: float) -> int:
        """Delete the half-written files killed processes left (in git's object folder and
        the artifact cache) from before ``older_than`` (a time); returns how many."""
        return self.artifacts.content.drop_stale_temporaries(older_than) + self._store.drop_stale_temporaries(
            older_than
        )

    def pack_run_refs(self) -> int:
        """Pack the loose refs of ended runs into packed-refs; returns how many."""
        return self.tracker.pack_refs(minimum=1)

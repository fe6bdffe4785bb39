"""Client: every tracking operation on an explicit repository, no module state.

>>> client = gitml.Client(repo="path/to/repo")
>>> run = client.create_run(client.create_experiment("churn"))
>>> client.log_metric(run.info.run_id, "auc", 0.91)
>>> client.set_terminated(run.info.run_id)
"""

from __future__ import annotations

import os
import time
import weakref
from typing import TYPE_CHECKING

from gitml.errors import InvalidInputError
from gitml.names import DEFAULT_EXPERIMENT_ID, as_text, check_artifact_path, check_key, check_metric
from gitml.store.git import open_store
from gitml.tracking.entities import Experiment, LifecycleStage, Metric, Run, RunStatus
from gitml.registry.mlflow_api import RegistryCalls
from gitml.repo_ops import RepoOperations
from gitml.runviews import RunViews
from gitml.search import PagedList, Search  # noqa: F401  (PagedList: where it was, for importers)
from gitml.tracking.tracker import Tracker, check_run_name, run_of, search_rows
from gitml.tracking.writer import RunWriter

if TYPE_CHECKING:
    from gitml.artifacts.service import FileInfo, RunArtifacts


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RunOperations:
    """What MLflow's ``synchronous=False`` calls return. gitml's writes are journaled
    (safe from a crash of the process) when the call returns: ``wait()`` returns at once."""

    def wait(self) -> None:
        return None


RUN_OPERATIONS_DONE = RunOperations()


class Client(Search, RunViews, RepoOperations, RegistryCalls):
    """Tracking operations on the repository at ``repo`` (default: the current one);
    the searches of :class:`gitml.search.Search`, the read-only views of
    :class:`gitml.runviews.RunViews` and the git-level operations of
    :class:`gitml.repo_ops.RepoOperations` too."""

    def __init__(self, repo: str | os.PathLike | None = None, *, flush_interval: float | None = None):
        self._store = open_store(repo, create=True)
        try:
            self.tracker = Tracker(self._store, flush_interval=flush_interval)
        except BaseException:  # e.g. recovery failed: the repository is not left open (dulwich warns at exit)
            self._store.close()
            raise
        self._artifacts: RunArtifacts | None = None
        # a Client nobody closes (as MLflow's needs no closing) is closed at exit
        self._finalizer = weakref.finalize(self, _close_quietly, self.tracker, self._store)

    @property
    def repo_path(self) -> str:
        return self._store.workdir or self._store.controldir

    def flush(self, *, wait: bool = True, best_effort: bool = False) -> None:
        """Commit now what this Client's open runs (:meth:`start_run`) buffered, and wait
        for the commits of the runs ended since (made on a background thread).
        ``wait=False``: do not wait for those; ``best_effort``: a run that fails to
        commit (GitmlError) does not stop the others, and raises nothing."""
        from gitml.errors import GitmlError

        for writer in list(self.tracker.writers.values()):
            try:
                writer.flush()
            except GitmlError:
                if not best_effort:
                    raise
        if wait:
            self.tracker.committer.wait()

    def detach(self) -> None:
        """Forget this Client without closing it: nothing of it is closed at exit. For a
        forked child, whose inherited Client's journal and threads are its parent's."""
        self._finalizer.detach()

    def close(self) -> None:
        self._finalizer.detach()
        self.tracker.close()
        if self._artifacts is not None:
            self._artifacts.content.close()
        self._store.close()

    @property
    def artifacts(self) -> RunArtifacts:
        """The run artifacts service (content store from the repository's settings)."""
        if self._artifacts is None:  # its modules imported here: reading runs needs none of them
            import gitml.artifacts.config as config
            from gitml.artifacts.cas import ContentStore
            from gitml.artifacts.service import RunArtifacts

            settings = config.load(self._store)
            content = ContentStore(
                os.path.join(self._store.gitml_dir, "cache"),
                settings["artifacts.remote"],
                settings["artifacts.storage_options"],
                state_dir=self._store.gitml_dir,
                timeout=settings["artifacts.timeout"],
                unconfirmed=config.unconfirmed(self._store),
                uncontacted=config.uncontacted(self._store),
            )
            self._artifacts = RunArtifacts(self.tracker, self._store, content, settings["artifacts.inline_max_bytes"])
        return self._artifacts

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- experiments -----------------------------------------------------
    def create_experiment(self, name: str, artifact_location: str | None = None, tags: dict | None = None) -> str:
        return self.tracker.experiments.create(name, tags=tags, artifact_location=artifact_location)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.tracker.experiments.get(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.tracker.experiments.by_name(name)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.tracker.experiments.rename(str(experiment_id), new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
            raise InvalidInputError("the default experiment cannot be deleted")
        self.get_experiment(experiment_id)
        self.tracker.experiments.set_lifecycle(str(experiment_id), LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self.get_experiment(experiment_id)
        self.tracker.experiments.set_lifecycle(str(experiment_id), LifecycleStage.ACTIVE)

    def set_experiment_tag(self, experiment_id: str, key: str, value) -> None:
        self.tracker.experiments.set_tag(str(experiment_id), key, as_text(value, f"tag {key!r} value"))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.tracker.experiments.set_tag(str(experiment_id), key, None)

    # -- runs ------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        start_time: int | None = None,
        tags: dict | None = None,
        run_name: str | None = None,
        *,
        parent_run_id: str | None = None,
    ) -> Run:
        """Create a RUNNING run, committed at once (``parent_run_id``: the run it is nested in)."""
        writer = self.tracker.create_run(
            str(experiment_id), run_name=run_name, tags=tags, start_time=start_time, journaled=False,
            parent_run_id=parent_run_id,
        )
        return self.get_run(writer.run_id)

    def start_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        run_name: str | None = None,
        tags: dict | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
    ) -> Run:
        """Create a RUNNING run that this Client keeps open, as ``gitml.start_run`` does:
        its writes are journaled and committed on the flush interval (and by
        :meth:`set_terminated`, in the background), not one commit per call as after
        :meth:`create_run`. For code logging many calls to one run (the MLflow plugin).

        >>> run = client.start_run(experiment_id, run_name="baseline")
        >>> client.log_metric(run.info.run_id, "loss", 0.1)
        >>> client.set_terminated(run.info.run_id)
        """
        writer = self.start_run_writer(
            experiment_id, run_name=run_name, tags=tags, parent_run_id=parent_run_id, start_time=start_time
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
    ) -> RunWriter:
        """:meth:`start_run`, returning the run's writer: for a caller that logs many
        calls to the run straight to it (the fluent API). End it with :meth:`end_run`."""
        return self.tracker.create_run(
            str(experiment_id), run_name=run_name, tags=tags, parent_run_id=parent_run_id, start_time=start_time
        )

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
        ``gitml.tracking.imports.ImportedRun``: ``user_id``, ``status``, ``start_time``,
        ``end_time``, ``lifecycle_stage``, ``branch``, ``source_name``, ``source_type``,
        ``parent_run_id``, ``params``, ``tags``, ``metrics`` (key → ``(step, timestamp,
        value)`` points), ``inputs`` (dataset records)). ``code``: the commit that ran;
        it becomes the run commit's parent when this repository has it, else the run has no
        code. ``artifact_files``: ``(local file, artifact path)`` pairs, stored by hash
        (files that may be temporary). Returns whether the code was joined.

        Raises ConflictError when the run exists, InvalidInputError for a value gitml refuses.
        """
        from gitml.tracking.imports import ImportedRun, write_imported_run

        joined = self._has_commit(code)
        entries = []
        if artifact_files:
            for _, path in artifact_files:
                check_artifact_path(path)
            entries = self.artifacts.stage_files(list(artifact_files), remember=False)
        run = ImportedRun(
            run_id=run_id, experiment_id=str(experiment_id), run_name=run_name, code=code if joined else None,
            artifacts=entries, **fields,
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

    def get_run(self, run_id: str) -> Run:
        return self.tracker.get_run(run_id if isinstance(run_id, str) and len(run_id) == 32 else self.tracker.resolve(run_id))

    def get_parent_run(self, run_id: str) -> Run | None:
        """The run ``run_id`` is nested in, or None."""
        parent = self.get_run(run_id).data.tags.get("mlflow.parentRunId")
        return self.get_run(parent) if parent else None

    def log_param(self, run_id: str, key: str, value, synchronous: bool | None = None):
        """Log a param; returns the value. Params are immutable (ParamConflictError)."""
        self.log_batch(run_id, params=[(key, value)])
        return value

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
        dataset_name: str | None = None,
        dataset_digest: str | None = None,
        model_id: str | None = None,
    ) -> RunOperations | None:
        """Log one metric point. gitml stores no dataset or model link per point:
        ``model_id`` is refused, and the dataset arguments are accepted and not recorded."""
        if model_id is not None:
            raise InvalidInputError("gitml has no logged models: model_id is not supported")
        self.log_batch(run_id, metrics=[(key, value, timestamp, step)])
        return RUN_OPERATIONS_DONE if synchronous is False else None

    def set_tag(self, run_id: str, key: str, value, synchronous: bool | None = None) -> RunOperations | None:
        self.log_batch(run_id, tags=[(key, value)])
        return RUN_OPERATIONS_DONE if synchronous is False else None

    def delete_tag(self, run_id: str, key: str) -> None:
        check_key(key, "tag")
        record, _ = self.tracker.record(run_id)
        if key not in record.tags and key not in self._pending_tags(run_id):
            raise InvalidInputError(f"run {run_id} has no tag {key!r}")
        self.tracker.update(run_id, lambda w: w.set_tags({key: None}))

    def _pending_tags(self, run_id: str) -> dict:
        writer = self.tracker.writers.get(run_id)
        return writer.pending_tags() if writer else {}

    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), synchronous: bool | None = None) -> RunOperations | None:
        """Log metrics, params and tags at once (MLflow's entities or tuples).

        Raises DeletedRunError for a deleted run, InvalidInputError for a bad key or value.
        """
        params = self.tracker.check_params(dict(_fields(p, ("key", "value"), "params") for p in params))
        tag_dict = dict(_fields(t, ("key", "value"), "tags") for t in tags)
        tag_dict = self.tracker.check_tags(tag_dict)
        rename = tag_dict.pop("mlflow.runName", None)
        points = []
        for m in metrics:
            key, value, timestamp, step = _fields(m, ("key", "value", "timestamp", "step"), "metrics")
            check_key(key, "metric")
            points.append(_metric_point(key, value, timestamp, step))

        def change(writer):
            if params:
                writer.log_params(params)
            if tag_dict:
                writer.set_tags(tag_dict)
            if rename:
                writer.set_meta(run_name=rename)
            for key, value, step, timestamp in points:
                writer.log_metric(key, value, step, timestamp)

        self.tracker.update(run_id, change)
        return RUN_OPERATIONS_DONE if synchronous is False else None

    def log_inputs(self, run_id: str, datasets=None, models=None, *, context: str | None = None, tags: dict | None = None) -> None:
        """Record datasets a run used: ``gitml.data`` datasets (with ``context`` and
        ``tags``), or MLflow-shaped ``DatasetInput`` entities. See ``gitml.log_input``."""
        from gitml.tracking.entities import CONTEXT_TAG, input_records, stored_inputs

        if models:
            raise InvalidInputError("gitml has no logged models: log_inputs(models=...) is not supported")
        records = []
        for item in datasets or ():
            item_tags = dict(tags or {})
            dataset = item
            if hasattr(item, "dataset") and not hasattr(item, "to_dict"):  # a DatasetInput
                dataset = item.dataset
                item_tags.update({t.key: t.value for t in item.tags or ()})
            fields = dataset.to_dict() if hasattr(dataset, "to_dict") else {
                f: getattr(dataset, f, None) for f in ("name", "digest", "source_type", "source", "schema", "profile")
            }
            item_context = item_tags.pop(CONTEXT_TAG, None) if context is None else context
            for key, value in item_tags.items():
                check_key(key, "input tag")
                if len(str(key)) > 255 or len(str(value)) > 500:  # MLflow's input tag limits
                    raise InvalidInputError(f"input tag {key!r} is longer than MLflow allows (key 255, value 500 characters)")
            records.append({**fields, "context": item_context, "tags": {k: str(v) for k, v in item_tags.items()}})

        def change(writer):
            merged = input_records(writer.meta().get("inputs"))
            for record in records:
                same = [i for i, r in enumerate(merged) if (r.get("name"), r.get("digest"), r.get("context")) == (record["name"], record["digest"], record["context"])]
                if same:
                    merged[same[0]] = {**merged[same[0]], "tags": {**merged[same[0]].get("tags", {}), **record["tags"]}}
                else:
                    merged.append(record)
            writer.set_meta(inputs=stored_inputs(merged))

        if records:
            self.tracker.update(run_id, change)

    # -- artifacts -------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Log a file (or a folder's files) under ``artifact_path`` of the run."""
        _check_folder(artifact_path)
        if os.path.isdir(local_path):
            name = os.path.basename(os.path.normpath(local_path))
            from gitml.artifacts.service import collect_files

            self.artifacts.log_files(run_id, collect_files(local_path, _join_path(artifact_path, name)), resolved=True)
            return
        if not os.path.isfile(local_path):
            raise InvalidInputError(f"{local_path!r} is not a file")
        self.artifacts.log_files(run_id, [(local_path, _join_path(artifact_path, os.path.basename(local_path)))])

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Log every file below ``local_dir`` under ``artifact_path`` of the run."""
        _check_folder(artifact_path)
        from gitml.artifacts.service import collect_files

        self.artifacts.log_files(run_id, collect_files(local_dir, artifact_path), resolved=True)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, text.encode(), artifact_file)

    def log_dict(self, run_id: str, dictionary: dict, artifact_file: str) -> None:
        import gitml.artifacts.formats as formats

        self.artifacts.log_bytes(run_id, formats.dict_bytes(dictionary, artifact_file), artifact_file)

    def log_table(self, run_id: str, data, artifact_file: str) -> None:
        import gitml.artifacts.formats as formats

        self.artifacts.log_bytes(run_id, formats.table_bytes(data), artifact_file)

    def log_image(
        self,
        run_id: str,
        image,
        artifact_file: str | None = None,
        key: str | None = None,
        step: int | None = None,
        timestamp: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        """Log an image at ``artifact_file``, or with ``key`` at ``images/<key>/step_<step>.png``."""
        if (artifact_file is None) == (key is None):
            raise InvalidInputError("give exactly one of artifact_file and key")
        if key is not None:
            artifact_file = f"images/{check_key(key, 'image')}/step_{int(step or 0)}.png"
        assert artifact_file is not None
        import gitml.artifacts.formats as formats

        self.artifacts.log_bytes(run_id, formats.image_bytes(image, artifact_file), artifact_file)

    def log_figure(self, run_id: str, figure, artifact_file: str, *, save_kwargs: dict | None = None) -> None:
        if save_kwargs:
            raise InvalidInputError("log_figure(save_kwargs=...) is not supported by gitml")
        import gitml.artifacts.formats as formats

        self.artifacts.log_bytes(run_id, formats.figure_bytes(figure, artifact_file), artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self.artifacts.list(run_id, path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        """Download an artifact file or folder (verified); returns its local path."""
        import tempfile

        return self.artifacts.download(run_id, path, dst_path or tempfile.mkdtemp(prefix="gitml-"))

    def load_table(self, experiment_id: str, artifact_file: str, run_ids: list[str] | None = None, extra_columns: list[str] | None = None):
        """One DataFrame of the tables logged as ``artifact_file`` by the experiment's runs
        (or by ``run_ids``); ``extra_columns`` (e.g. ``["run_id"]``) adds run fields."""
        import pandas as pd

        check_artifact_path(artifact_file, "artifact_file")
        if run_ids is None:
            rows = search_rows(self.tracker, [str(experiment_id)])
            run_ids = [r["run_id"] for r in rows]
        frames = []
        for run_id in run_ids:
            run_id = self.tracker.resolve(run_id)
            if not any(f.path == artifact_file for f in self._artifact_entries(run_id, artifact_file)):
                continue
            import gitml.artifacts.formats as formats

            frame = formats.parse_table(self.artifacts.read_bytes(run_id, artifact_file))
            for column in extra_columns or ():
                if column != "run_id":
                    raise InvalidInputError(f"extra column {column!r} is not supported; only 'run_id' is")
                frame[column] = run_id
            frames.append(frame)
        if not frames:
            raise InvalidInputError(f"no run has an artifact {artifact_file!r}")
        return pd.concat(frames, ignore_index=True)

    def _artifact_entries(self, run_id: str, artifact_file: str) -> list[FileInfo]:
        parent = artifact_file.rpartition("/")[0]
        return self.artifacts.list(run_id, parent or None)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.tracker.metric_history(run_id, key)

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End a run (FINISHED unless ``status`` says otherwise). Raises DeletedRunError."""
        self.tracker.update(run_id, lambda w: None)  # refuses a deleted run, as MLflow does
        self.tracker.finish(run_id, status or RunStatus.FINISHED, end_time)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        fields = {}
        if status is not None:
            if status not in RunStatus.ALL:
                raise InvalidInputError(f"status {status!r} is not one of {', '.join(RunStatus.ALL)}")
            fields["status"] = status
        if name is not None:
            fields["run_name"] = check_run_name(name)
        if fields:
            self.tracker.update(run_id, lambda w: w.set_meta(**fields))

    def delete_run(self, run_id: str) -> None:
        """Mark a run deleted: searches leave it out, and it takes no writes until restored."""
        self.tracker.update(run_id, lambda w: w.set_meta(lifecycle_stage=LifecycleStage.DELETED), deleted_ok=True)

    def restore_run(self, run_id: str) -> None:
        self.tracker.update(run_id, lambda w: w.set_meta(lifecycle_stage=LifecycleStage.ACTIVE), deleted_ok=True)


def _metric_point(key: str, value, timestamp, step) -> tuple[str, float, int, int]:
    """``(key, value, step, timestamp)``; a value that is no number is InvalidInputError."""
    try:
        value, step, timestamp = check_metric(value, step or 0, _now_ms() if timestamp is None else timestamp)
    except InvalidInputError as e:
        raise InvalidInputError(f"metric {key!r}: {e}") from None
    return key, value, step, timestamp


MlflowClient = Client  # MLflow's name for it


def _close_quietly(tracker: Tracker, store) -> None:
    try:
        tracker.close()
    finally:
        store.close()


def _join_path(prefix: str | None, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix and prefix.strip("/") else name


def _check_folder(artifact_path: str | None) -> None:
    if artifact_path is not None and artifact_path.rstrip("/"):
        check_artifact_path(artifact_path.rstrip("/"), "artifact_path")


def _fields(entry, names: tuple[str, ...], kind: str) -> tuple:
    """The fields of a ``log_batch`` entry: an MLflow entity, or a tuple in the entity's order."""
    if all(hasattr(entry, name) for name in names):
        return tuple(getattr(entry, name) for name in names)
    if isinstance(entry, (tuple, list)) and len(entry) == len(names):
        return tuple(entry)
    raise InvalidInputError(
        f"log_batch {kind} entry {str(entry)[:60]!r} is neither an entity nor a ({', '.join(names)}) tuple"
    )

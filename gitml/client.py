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
from gitml.registry.mlflow_api import RegistryCalls
from gitml.runlog.checks import check_run_name
from gitml.runlog.entities import Experiment, LifecycleStage, Metric, Run, RunStatus
from gitml.runlog.search import search_rows
from gitml.runlog.tracker import Tracker
from gitml.search import PagedList, Search  # noqa: F401  (PagedList: where it was, for importers)
from gitml.store.git import open_store

if TYPE_CHECKING:
    from gitml.content.service import FileInfo, RunArtifacts


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RunOperations:
    """What MLflow's ``synchronous=False`` calls return. gitml's writes are journaled
    (safe from a crash of the process) when the call returns: ``wait()`` returns at once."""

    def wait(self) -> None:
        return None


RUN_OPERATIONS_DONE = RunOperations()


class Client(Search, RegistryCalls):
    """MLflow's ``MlflowClient`` on the git repository at ``repo`` (default: the one
    enclosing the current folder): experiments, runs, metrics, params, tags, inputs,
    artifacts, searches (:class:`gitml.search.Search`) and the model registry
    (:class:`gitml.registry.mlflow_api.RegistryCalls`, over signed git tags).

    Args:
        repo: a folder in the repository (``GITML_REPO`` when None; a folder outside git
            gets ``./gitml-runs``).
        flush_interval: seconds between the background commits of runs kept open.

    Raises:
        RepositoryError: the repository cannot be opened.

    >>> client = gitml.Client("path/to/repo")
    """

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
        """The repository's folder (its work tree; its git folder for a bare one).

        Returns:
            The path, as MLflow's ``tracking_uri`` names a store.

        >>> client.repo_path
        """
        return self._store.workdir or self._store.controldir

    def flush(self, *, wait: bool = True, best_effort: bool = False) -> None:
        """Commit now what this Client's open runs buffered, and wait for the commits of
        the runs ended since (made on a background thread).

        Args:
            wait: wait for those background commits (False: return at once).
            best_effort: a run that fails to commit does not stop the others, and nothing is raised.

        Returns:
            None.

        Raises:
            GitmlError: a run's commit failed (unless ``best_effort``).

        >>> client.flush()
        """
        from gitml.errors import GitmlError

        for writer in list(self.tracker.writers.values()):
            try:
                writer.flush()
            except GitmlError:
                if not best_effort:
                    raise
        if wait:
            self.tracker.committer.wait()

    def close(self) -> None:
        """Commit what is buffered and close the repository, the search index and the artifact
        store; a Client nobody closes is closed at exit.

        Returns:
            None.

        >>> client.close()
        """
        self._finalizer.detach()
        self.tracker.close()
        if self._artifacts is not None:
            self._artifacts.content.close()
        self._store.close()

    @property
    def _artifact_service(self) -> RunArtifacts:
        """The run artifacts service (content store from the repository's settings)."""
        if self._artifacts is None:  # its modules imported here: reading runs needs none of them
            import gitml.content.config as config
            from gitml.content.cas import ContentStore
            from gitml.content.service import RunArtifacts

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
        """Create an experiment (its record is a commit under ``refs/gitml/experiments/``).

        Args:
            name: the experiment's name, unique among experiments.
            artifact_location: recorded as given (artifacts live by hash in the content store).
            tags: ``{key: value}`` tags set at once.

        Returns:
            The new experiment's id.

        Raises:
            ConflictError: an experiment has that name.
            InvalidInputError: a bad name or tag.

        >>> experiment_id = client.create_experiment("churn", tags={"team": "ml"})
        """
        return self.tracker.experiments.create(name, tags=tags, artifact_location=artifact_location)

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with id ``experiment_id``.

        Args:
            experiment_id: the experiment's id.

        Returns:
            The :class:`Experiment`.

        Raises:
            ExperimentNotFoundError: no experiment has that id.

        >>> client.get_experiment("1").name
        """
        return self.tracker.experiments.get(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment named ``name``, or None.

        Args:
            name: the experiment's name.

        Returns:
            The :class:`Experiment`, or None when no experiment has that name.

        >>> client.get_experiment_by_name("churn")
        """
        return self.tracker.experiments.by_name(name)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Rename an experiment.

        Args:
            experiment_id: the experiment's id.
            new_name: its new name, unique among experiments.

        Returns:
            None.

        Raises:
            ExperimentNotFoundError: no experiment has that id.
            ConflictError: another experiment has that name.

        >>> client.rename_experiment("1", "churn-v2")
        """
        self.tracker.experiments.rename(str(experiment_id), new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        """Mark an experiment deleted (its runs are kept; searches of active experiments leave it out).

        Args:
            experiment_id: the experiment's id.

        Returns:
            None.

        Raises:
            ExperimentNotFoundError: no experiment has that id.
            InvalidInputError: it is the default experiment.

        >>> client.delete_experiment("1")
        """
        if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
            raise InvalidInputError("the default experiment cannot be deleted")
        self.get_experiment(experiment_id)
        self.tracker.experiments.set_lifecycle(str(experiment_id), LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        """Make a deleted experiment active again.

        Args:
            experiment_id: the experiment's id.

        Returns:
            None.

        Raises:
            ExperimentNotFoundError: no experiment has that id.

        >>> client.restore_experiment("1")
        """
        self.get_experiment(experiment_id)
        self.tracker.experiments.set_lifecycle(str(experiment_id), LifecycleStage.ACTIVE)

    def set_experiment_tag(self, experiment_id: str, key: str, value) -> None:
        """Set a tag on an experiment.

        Args:
            experiment_id: the experiment's id.
            key: the tag's key.
            value: its value (stored as text).

        Returns:
            None.

        Raises:
            ExperimentNotFoundError: no experiment has that id.
            InvalidInputError: a bad key or value.

        >>> client.set_experiment_tag("1", "team", "ml")
        """
        self.tracker.experiments.set_tag(str(experiment_id), key, as_text(value, f"tag {key!r} value"))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove a tag from an experiment.

        Args:
            experiment_id: the experiment's id.
            key: the tag's key.

        Returns:
            None.

        Raises:
            ExperimentNotFoundError: no experiment has that id.

        >>> client.delete_experiment_tag("1", "team")
        """
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
        user_id: str | None = None,
    ) -> Run:
        """Create a RUNNING run, committed at once (each later call on it is one commit too).

        Args:
            experiment_id: the experiment the run belongs to (default ``"0"``).
            start_time: in ms since the epoch (default: now).
            tags: ``{key: value}`` tags set at once (``mlflow.*`` ones as MLflow reads them).
            run_name: the run's name (default: a generated one).
            parent_run_id: the run it is nested in.
            user_id: who runs it (default: this process's user, from git's config or the OS).

        Returns:
            The new :class:`Run`.

        Raises:
            ExperimentNotFoundError: no experiment has that id.
            InvalidInputError: a bad name or tag.

        >>> run = client.create_run("1", run_name="baseline")
        """
        writer = self.tracker.create_run(
            str(experiment_id),
            run_name=run_name,
            tags=tags,
            start_time=start_time,
            journaled=False,
            parent_run_id=parent_run_id,
            user_id=user_id,
        )
        return self.get_run(writer.run_id)

    def get_run(self, run_id: str) -> Run:
        """A run, as of its last commit (and what this process buffered for it).

        Args:
            run_id: the run's id (32 hex), or a unique prefix of it.

        Returns:
            The :class:`Run`: info, data (params, metrics' latest values, tags), inputs.

        Raises:
            RunNotFoundError: no run has that id.
            AmbiguousRunError: the prefix names several runs.

        >>> client.get_run(run_id).data.metrics["auc"]
        """
        return self.tracker.get_run(
            run_id if isinstance(run_id, str) and len(run_id) == 32 else self.tracker.resolve(run_id)
        )

    def get_parent_run(self, run_id: str) -> Run | None:
        """The run ``run_id`` is nested in.

        Args:
            run_id: the run's id.

        Returns:
            The parent :class:`Run`, or None when the run has no parent.

        Raises:
            RunNotFoundError: no run has that id.

        >>> client.get_parent_run(child_id)
        """
        parent = self.get_run(run_id).data.tags.get("mlflow.parentRunId")
        return self.get_run(parent) if parent else None

    def log_param(self, run_id: str, key: str, value, synchronous: bool | None = None):
        """Log a param of a run; params are immutable.

        Args:
            run_id: the run's id.
            key: the param's key.
            value: its value (stored as text).
            synchronous: accepted as MLflow's; gitml's writes are journaled before they return.

        Returns:
            The value.

        Raises:
            ParamConflictError: the param has another value already.
            DeletedRunError: the run is deleted.
            InvalidInputError: a bad key or value.

        >>> client.log_param(run_id, "lr", 0.1)
        """
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
        """Log one point of a metric's history.

        Args:
            run_id: the run's id.
            key: the metric's key.
            value: a number (NaN and infinities included).
            timestamp: in ms since the epoch (default: now).
            step: the point's step (default 0).
            synchronous: False returns a :class:`RunOperations` whose ``wait()`` returns at once.
            dataset_name: accepted, not recorded.
            dataset_digest: accepted, not recorded.
            model_id: refused (gitml has no logged models).

        Returns:
            None, or a :class:`RunOperations` when ``synchronous`` is False.

        Raises:
            DeletedRunError: the run is deleted.
            InvalidInputError: a bad key or value, or a ``model_id``.

        >>> client.log_metric(run_id, "loss", 0.25, step=3)
        """
        if model_id is not None:
            raise InvalidInputError("gitml has no logged models: model_id is not supported")
        self.log_batch(run_id, metrics=[(key, value, timestamp, step)])
        return RUN_OPERATIONS_DONE if synchronous is False else None

    def set_tag(self, run_id: str, key: str, value, synchronous: bool | None = None) -> RunOperations | None:
        """Set a tag on a run (``mlflow.runName`` renames it).

        Args:
            run_id: the run's id.
            key: the tag's key.
            value: its value (stored as text).
            synchronous: False returns a :class:`RunOperations` whose ``wait()`` returns at once.

        Returns:
            None, or a :class:`RunOperations` when ``synchronous`` is False.

        Raises:
            DeletedRunError: the run is deleted.
            InvalidInputError: a bad key or value.

        >>> client.set_tag(run_id, "stage", "tuning")
        """
        self.log_batch(run_id, tags=[(key, value)])
        return RUN_OPERATIONS_DONE if synchronous is False else None

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run.

        Args:
            run_id: the run's id.
            key: the tag's key.

        Returns:
            None.

        Raises:
            InvalidInputError: the run has no such tag.
            RunNotFoundError: no run has that id.

        >>> client.delete_tag(run_id, "stage")
        """
        check_key(key, "tag")
        record, _ = self.tracker.record(run_id)
        if key not in record.tags and key not in self._pending_tags(run_id):
            raise InvalidInputError(f"run {run_id} has no tag {key!r}")
        self.tracker.update(run_id, lambda w: w.set_tags({key: None}))

    def _pending_tags(self, run_id: str) -> dict:
        writer = self.tracker.writers.get(run_id)
        return writer.pending_tags() if writer else {}

    def log_batch(
        self, run_id: str, metrics=(), params=(), tags=(), synchronous: bool | None = None
    ) -> RunOperations | None:
        """Log metrics, params and tags at once: one commit.

        Args:
            run_id: the run's id.
            metrics: MLflow ``Metric`` entities or ``(key, value, timestamp, step)`` tuples.
            params: ``Param`` entities or ``(key, value)`` tuples.
            tags: ``RunTag`` entities or ``(key, value)`` tuples.
            synchronous: False returns a :class:`RunOperations` whose ``wait()`` returns at once.

        Returns:
            None, or a :class:`RunOperations` when ``synchronous`` is False.

        Raises:
            DeletedRunError: the run is deleted.
            ParamConflictError: a param has another value already.
            InvalidInputError: a bad key or value, or an entry that is neither entity nor tuple.

        >>> client.log_batch(run_id, metrics=[("auc", 0.91, None, 0)], params=[("lr", "0.1")])
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

    def log_inputs(
        self, run_id: str, datasets=None, models=None, *, context: str | None = None, tags: dict | None = None
    ) -> None:
        """Record datasets a run used.

        Args:
            run_id: the run's id.
            datasets: ``gitml.data`` datasets or MLflow-shaped ``DatasetInput`` entities.
            models: refused (gitml has no logged models).
            context: the datasets' context (``training``, ``eval``, ...).
            tags: ``{key: value}`` tags of each input.

        Returns:
            None.

        Raises:
            DeletedRunError: the run is deleted.
            InvalidInputError: a tag longer than MLflow allows, or ``models``.

        >>> client.log_inputs(run_id, [gitml.data.from_pandas(df, name="train")], context="training")
        """
        from gitml.runlog.entities import CONTEXT_TAG, input_records, stored_inputs

        if models:
            raise InvalidInputError("gitml has no logged models: log_inputs(models=...) is not supported")
        records = []
        for item in datasets or ():
            item_tags = dict(tags or {})
            dataset = item
            if hasattr(item, "dataset") and not hasattr(item, "to_dict"):  # a DatasetInput
                dataset = item.dataset
                item_tags.update({t.key: t.value for t in item.tags or ()})
            fields = (
                dataset.to_dict()
                if hasattr(dataset, "to_dict")
                else {
                    f: getattr(dataset, f, None)
                    for f in ("name", "digest", "source_type", "source", "schema", "profile")
                }
            )
            item_context = item_tags.pop(CONTEXT_TAG, None) if context is None else context
            for key, value in item_tags.items():
                check_key(key, "input tag")
                if len(str(key)) > 255 or len(str(value)) > 500:  # MLflow's input tag limits
                    raise InvalidInputError(
                        f"input tag {key!r} is longer than MLflow allows (key 255, value 500 characters)"
                    )
            records.append({**fields, "context": item_context, "tags": {k: str(v) for k, v in item_tags.items()}})

        def change(writer):
            merged = input_records(writer.meta().get("inputs"))
            for record in records:
                same = [
                    i
                    for i, r in enumerate(merged)
                    if (r.get("name"), r.get("digest"), r.get("context"))
                    == (record["name"], record["digest"], record["context"])
                ]
                if same:
                    merged[same[0]] = {**merged[same[0]], "tags": {**merged[same[0]].get("tags", {}), **record["tags"]}}
                else:
                    merged.append(record)
            writer.set_meta(inputs=stored_inputs(merged))

        if records:
            self.tracker.update(run_id, change)

    # -- artifacts -------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Log a file (or a folder's files) under ``artifact_path`` of the run, stored by hash.

        Args:
            run_id: the run's id.
            local_path: a file or a folder.
            artifact_path: the folder in the run's artifacts (default: the top).

        Returns:
            None.

        Raises:
            InvalidInputError: ``local_path`` is no file or folder, or a bad ``artifact_path``.
            DeletedRunError: the run is deleted.

        >>> client.log_artifact(run_id, "confusion.png", "plots")
        """
        _check_folder(artifact_path)
        if os.path.isdir(local_path):
            name = os.path.basename(os.path.normpath(local_path))
            from gitml.content.service import collect_files

            self._artifact_service.log_files(
                run_id, collect_files(local_path, _join_path(artifact_path, name)), resolved=True
            )
            return
        if not os.path.isfile(local_path):
            raise InvalidInputError(f"{local_path!r} is not a file")
        self._artifact_service.log_files(
            run_id, [(local_path, _join_path(artifact_path, os.path.basename(local_path)))]
        )

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Log every file below ``local_dir`` under ``artifact_path`` of the run.

        Args:
            run_id: the run's id.
            local_dir: the folder.
            artifact_path: the folder in the run's artifacts (default: the top).

        Returns:
            None.

        Raises:
            InvalidInputError: a bad ``artifact_path``.
            DeletedRunError: the run is deleted.

        >>> client.log_artifacts(run_id, "outputs/", "outputs")
        """
        _check_folder(artifact_path)
        from gitml.content.service import collect_files

        self._artifact_service.log_files(run_id, collect_files(local_dir, artifact_path), resolved=True)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact file ``artifact_file`` (UTF-8).

        Args:
            run_id: the run's id.
            text: the text.
            artifact_file: its path in the run's artifacts.

        Returns:
            None.

        Raises:
            InvalidInputError: a bad ``artifact_file``.

        >>> client.log_text(run_id, "all good", "notes.txt")
        """
        self._artifact_service.log_bytes(run_id, text.encode(), artifact_file)

    def log_dict(self, run_id: str, dictionary: dict, artifact_file: str) -> None:
        """Log a dict as JSON or YAML (by ``artifact_file``'s extension).

        Args:
            run_id: the run's id.
            dictionary: the dict.
            artifact_file: its path in the run's artifacts (``.json``, ``.yaml`` or ``.yml``).

        Returns:
            None.

        Raises:
            InvalidInputError: a bad ``artifact_file``.

        >>> client.log_dict(run_id, {"layers": 3}, "config.json")
        """
        import gitml.content.formats as formats

        self._artifact_service.log_bytes(run_id, formats.dict_bytes(dictionary, artifact_file), artifact_file)

    def log_table(self, run_id: str, data, artifact_file: str) -> None:
        """Log a table (a DataFrame or a dict of columns) as MLflow's JSON table artifact.

        Args:
            run_id: the run's id.
            data: a pandas DataFrame or ``{column: values}``.
            artifact_file: its path in the run's artifacts (``.json``).

        Returns:
            None.

        Raises:
            InvalidInputError: a bad ``artifact_file`` or table.

        >>> client.log_table(run_id, {"x": [1, 2], "y": [3, 4]}, "table.json")
        """
        import gitml.content.formats as formats

        self._artifact_service.log_bytes(run_id, formats.table_bytes(data), artifact_file)

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
        """Log an image at ``artifact_file``, or with ``key`` at ``images/<key>/step_<step>.png``.

        Args:
            run_id: the run's id.
            image: a numpy array or a PIL image.
            artifact_file: its path in the run's artifacts.
            key: the image series' key (instead of ``artifact_file``).
            step: the step of a ``key`` image.
            timestamp: accepted as MLflow's.
            synchronous: accepted as MLflow's.

        Returns:
            None.

        Raises:
            InvalidInputError: both or neither of ``artifact_file`` and ``key``.

        >>> client.log_image(run_id, array, "sample.png")
        """
        if (artifact_file is None) == (key is None):
            raise InvalidInputError("give exactly one of artifact_file and key")
        if key is not None:
            artifact_file = f"images/{check_key(key, 'image')}/step_{int(step or 0)}.png"
        assert artifact_file is not None
        import gitml.content.formats as formats

        self._artifact_service.log_bytes(run_id, formats.image_bytes(image, artifact_file), artifact_file)

    def log_figure(self, run_id: str, figure, artifact_file: str, *, save_kwargs: dict | None = None) -> None:
        """Log a matplotlib or plotly figure.

        Args:
            run_id: the run's id.
            figure: the figure.
            artifact_file: its path in the run's artifacts (``.png``, ``.html``, ...).
            save_kwargs: refused (not supported).

        Returns:
            None.

        Raises:
            InvalidInputError: ``save_kwargs``, or a bad ``artifact_file``.

        >>> client.log_figure(run_id, fig, "loss.png")
        """
        if save_kwargs:
            raise InvalidInputError("log_figure(save_kwargs=...) is not supported by gitml")
        import gitml.content.formats as formats

        self._artifact_service.log_bytes(run_id, formats.figure_bytes(figure, artifact_file), artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly under ``path`` of a run's artifacts.

        Args:
            run_id: the run's id.
            path: a folder in the run's artifacts (default: the top).

        Returns:
            A list of :class:`FileInfo` (``path``, ``is_dir``, ``file_size``).

        Raises:
            RunNotFoundError: no run has that id.

        >>> [f.path for f in client.list_artifacts(run_id)]
        """
        return self._artifact_service.list(run_id, path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        """Download an artifact file or folder, each file checked against its hash.

        Args:
            run_id: the run's id.
            path: the file or folder in the run's artifacts (default: all of them).
            dst_path: the local folder (default: a new temporary one).

        Returns:
            The local path of what was downloaded.

        Raises:
            NotFoundError: the run has no such artifact.
            IntegrityError: a file's content does not match its hash.

        >>> local = client.download_artifacts(run_id, "model")
        """
        import tempfile

        return self._artifact_service.download(run_id, path, dst_path or tempfile.mkdtemp(prefix="gitml-"))

    def load_table(
        self,
        experiment_id: str,
        artifact_file: str,
        run_ids: list[str] | None = None,
        extra_columns: list[str] | None = None,
    ):
        """One DataFrame of the tables logged as ``artifact_file`` by an experiment's runs.

        Args:
            experiment_id: the experiment's id.
            artifact_file: the table's path in each run's artifacts.
            run_ids: these runs only (default: every run of the experiment).
            extra_columns: ``["run_id"]`` adds each row's run.

        Returns:
            A pandas DataFrame.

        Raises:
            InvalidInputError: no run has the table, or an extra column other than ``run_id``.

        >>> client.load_table("1", "table.json", extra_columns=["run_id"])
        """
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
            import gitml.content.formats as formats

            frame = formats.parse_table(self._artifact_service.read_bytes(run_id, artifact_file), artifact_file)
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
        return self._artifact_service.list(run_id, parent or None)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point logged for a metric of a run, in the order logged.

        Args:
            run_id: the run's id.
            key: the metric's key.

        Returns:
            A list of :class:`Metric` (``key``, ``value``, ``timestamp``, ``step``).

        Raises:
            RunNotFoundError: no run has that id.

        >>> [m.value for m in client.get_metric_history(run_id, "loss")]
        """
        return self.tracker.metric_history(run_id, key)

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End a run.

        Args:
            run_id: the run's id.
            status: FINISHED (default), FAILED or KILLED.
            end_time: in ms since the epoch (default: now).

        Returns:
            None.

        Raises:
            DeletedRunError: the run is deleted.
            RunNotFoundError: no run has that id.

        >>> client.set_terminated(run_id, "FAILED")
        """
        self.tracker.update(run_id, lambda w: None)  # refuses a deleted run, as MLflow does
        self.tracker.finish(run_id, status or RunStatus.FINISHED, end_time)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """Change a run's status or name.

        Args:
            run_id: the run's id.
            status: one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED.
            name: the run's new name.

        Returns:
            None.

        Raises:
            InvalidInputError: an unknown status or a bad name.
            DeletedRunError: the run is deleted.

        >>> client.update_run(run_id, name="tuned")
        """
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
        """Mark a run deleted: searches leave it out, and it takes no writes until restored.

        Args:
            run_id: the run's id.

        Returns:
            None.

        Raises:
            RunNotFoundError: no run has that id.

        >>> client.delete_run(run_id)
        """
        self.tracker.update(run_id, lambda w: w.set_meta(lifecycle_stage=LifecycleStage.DELETED), deleted_ok=True)

    def restore_run(self, run_id: str) -> None:
        """Make a deleted run active again.

        Args:
            run_id: the run's id.

        Returns:
            None.

        Raises:
            RunNotFoundError: no run has that id.

        >>> client.restore_run(run_id)
        """
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

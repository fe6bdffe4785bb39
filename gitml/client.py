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
from typing import cast

import gitml.artifacts.config as config
import gitml.artifacts.formats as formats
from gitml.artifacts.cas import ContentStore
from gitml.artifacts.service import FileInfo, RunArtifacts, _join, collect_files
from gitml.errors import ExperimentNotFoundError, InvalidInputError
from gitml.names import DEFAULT_EXPERIMENT_ID, check_artifact_path, check_key
from gitml.store.git import open_store
from gitml.tracking.entities import Experiment, LifecycleStage, Metric, Param, Run, RunStatus, RunTag, ViewType
from gitml.tracking.tracker import Tracker, search_rows


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Client:
    """Tracking operations on the repository at ``repo`` (default: the current one)."""

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

    def close(self) -> None:
        self._finalizer.detach()
        self.tracker.close()
        if self._artifacts is not None:
            self._artifacts.content.close()
        self._store.close()

    @property
    def artifacts(self) -> RunArtifacts:
        """The run artifacts service (content store from the repository's settings)."""
        if self._artifacts is None:
            settings = config.load(self._store)
            content = ContentStore(
                os.path.join(self._store.gitml_dir, "cache"),
                settings["artifacts.remote"],
                settings["artifacts.storage_options"],
                state_dir=self._store.gitml_dir,
                timeout=settings["artifacts.timeout"],
                unconfirmed=config.unconfirmed(self._store),
            )
            self._artifacts = RunArtifacts(self.tracker, content, settings["artifacts.inline_max_bytes"])
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

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
    ) -> list[Experiment]:
        """Experiments matching ``filter_string`` (MLflow's experiment grammar: ``name``,
        ``experiment_id``, ``creation_time``, ``last_update_time``, ``tags.<key>``; plus
        OR and parentheses), in ``order_by`` order (default: newest first).
        Raises FilterSyntaxError."""
        from gitml.tracking.filter import EXPERIMENTS, compile_filter, parse_order_by, sort_rows

        if max_results is not None and max_results < 0:
            raise InvalidInputError(f"max_results must be >= 0, not {max_results}")
        predicate = compile_filter(filter_string, EXPERIMENTS)
        order = parse_order_by(order_by, EXPERIMENTS)
        rows = [
            {
                "experiment_id": e.experiment_id,
                "name": e.name,
                "creation_time": e.creation_time,
                "last_update_time": e.last_update_time,
                "lifecycle_stage": e.lifecycle_stage,
                "tags": e.tags,
                "_experiment": e,
            }
            for e in self.tracker.experiments.all(view_type)
        ]
        rows = sort_rows([r for r in rows if predicate(r)], order, EXPERIMENTS)
        found: list[Experiment] = [cast(Experiment, r["_experiment"]) for r in rows]
        return found[:max_results] if max_results is not None else found

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
        self.tracker.experiments.set_tag(str(experiment_id), key, str(value))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.tracker.experiments.set_tag(str(experiment_id), key, None)

    # -- runs ------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        start_time: int | None = None,
        tags: dict | None = None,
        run_name: str | None = None,
    ) -> Run:
        writer = self.tracker.create_run(
            str(experiment_id), run_name=run_name, tags=tags, start_time=start_time, journaled=False
        )
        return self.get_run(writer.run_id)

    def get_run(self, run_id: str) -> Run:
        return self.tracker.get_run(self.tracker.resolve(run_id) if len(run_id) != 32 else run_id)

    def log_param(self, run_id: str, key: str, value) -> str:
        value = str(value)
        self.log_batch(run_id, params=[Param(key, value)])
        return value

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None) -> None:
        self.log_batch(run_id, metrics=[Metric(key, value, timestamp or _now_ms(), step or 0)])

    def set_tag(self, run_id: str, key: str, value) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def delete_tag(self, run_id: str, key: str) -> None:
        check_key(key, "tag")
        record, _ = self.tracker.record(run_id)
        if key not in record.tags and key not in self._pending_tags(run_id):
            raise InvalidInputError(f"run {run_id} has no tag {key!r}")
        self.tracker.update(run_id, lambda w: w.set_tags({key: None}))

    def _pending_tags(self, run_id: str) -> dict:
        writer = self.tracker.writers.get(run_id)
        return writer._tags if writer else {}

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        """Log metrics, params and tags at once (MLflow's entities or tuples)."""
        params = self.tracker.check_params({p.key if hasattr(p, "key") else p[0]: _value(p) for p in params})
        tag_dict = {t.key if hasattr(t, "key") else t[0]: _value(t) for t in tags}
        tag_dict = self.tracker.check_tags(tag_dict)
        rename = tag_dict.pop("mlflow.runName", None)
        points = []
        for m in metrics:
            key, value, timestamp, step = (m.key, m.value, m.timestamp, m.step) if hasattr(m, "key") else m
            check_key(key, "metric")
            points.append((key, float(value), int(step or 0), int(timestamp if timestamp is not None else _now_ms())))

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

    # -- artifacts -------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Log a file (or a folder's files) under ``artifact_path`` of the run."""
        _check_folder(artifact_path)
        if os.path.isdir(local_path):
            name = os.path.basename(os.path.normpath(local_path))
            self.artifacts.log_files(run_id, collect_files(local_path, _join(artifact_path, name)), resolved=True)
            return
        if not os.path.isfile(local_path):
            raise InvalidInputError(f"{local_path!r} is not a file")
        self.artifacts.log_files(run_id, [(local_path, _join(artifact_path, os.path.basename(local_path)))])

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Log every file below ``local_dir`` under ``artifact_path`` of the run."""
        _check_folder(artifact_path)
        self.artifacts.log_files(run_id, collect_files(local_dir, artifact_path), resolved=True)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, text.encode(), artifact_file)

    def log_dict(self, run_id: str, dictionary: dict, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, formats.dict_bytes(dictionary, artifact_file), artifact_file)

    def log_table(self, run_id: str, data, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, formats.table_bytes(data), artifact_file)

    def log_image(self, run_id: str, image, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, formats.image_bytes(image, artifact_file), artifact_file)

    def log_figure(self, run_id: str, figure, artifact_file: str) -> None:
        self.artifacts.log_bytes(run_id, formats.figure_bytes(figure, artifact_file), artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self.artifacts.list(run_id, path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        """Download an artifact file or folder (verified); returns its local path."""
        import tempfile

        return self.artifacts.download(run_id, path, dst_path or tempfile.mkdtemp(prefix="gitml-"))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.tracker.metric_history(run_id, key)

    def set_terminated(self, run_id: str, status: str = RunStatus.FINISHED, end_time: int | None = None) -> None:
        self.tracker.finish(run_id, status, end_time)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        from gitml.names import check_name

        fields = {}
        if status is not None:
            if status not in RunStatus.ALL:
                raise InvalidInputError(f"status {status!r} is not one of {', '.join(RunStatus.ALL)}")
            fields["status"] = status
        if name is not None:
            fields["run_name"] = check_name(name, "run name")
        if fields:
            self.tracker.update(run_id, lambda w: w.set_meta(**fields))

    def delete_run(self, run_id: str) -> None:
        self.tracker.update(run_id, lambda w: w.set_meta(lifecycle_stage=LifecycleStage.DELETED))

    def restore_run(self, run_id: str) -> None:
        self.tracker.update(run_id, lambda w: w.set_meta(lifecycle_stage=LifecycleStage.ACTIVE))

    def search_runs(
        self,
        experiment_ids: list[str] | str | None = None,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 100_000,
        order_by: list[str] | None = None,
        *,
        experiment_names: list[str] | None = None,
        output_format: str = "pandas",
    ):
        """Runs matching ``filter_string`` (MLflow's grammar, plus OR and parentheses).

        Returns a pandas DataFrame with MLflow's columns, or a list of
        :class:`Run` with ``output_format="list"``.
        """
        ids = self._experiment_ids(experiment_ids, experiment_names)
        rows = search_rows(
            self.tracker, ids, filter_string, view=run_view_type, max_results=max_results, order_by=order_by
        )
        if output_format == "list":
            return [self.tracker.get_run(r["run_id"]) for r in rows]
        if output_format != "pandas":
            raise InvalidInputError(f"output_format must be 'pandas' or 'list', not {output_format!r}")
        from gitml.frame import runs_frame

        return runs_frame(rows)

    def _experiment_ids(self, experiment_ids, experiment_names) -> list[str] | None:
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        ids = [str(i) for i in experiment_ids or []]
        for name in experiment_names or []:
            experiment = self.get_experiment_by_name(name)
            if experiment is None:
                raise ExperimentNotFoundError(name)
            ids.append(experiment.experiment_id)
        return ids if (experiment_ids or experiment_names) else None


def _close_quietly(tracker: Tracker, store) -> None:
    try:
        tracker.close()
    finally:
        store.close()


def _check_folder(artifact_path: str | None) -> None:
    if artifact_path is not None and artifact_path.rstrip("/"):
        check_artifact_path(artifact_path.rstrip("/"), "artifact_path")


def _value(entity) -> str:
    return str(entity.value if hasattr(entity, "value") else entity[1])

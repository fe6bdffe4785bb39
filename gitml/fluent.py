"""The fluent API: module-level functions shaped like MLflow's.

State: the repository (the current one, or ``GITML_REPO``), the active
experiment, and a per-thread stack of active runs. ``GITML_RUN_ID`` in the
environment makes ``start_run()`` attach to that run.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from gitml.client import Client
from gitml.errors import GitmlError, InvalidInputError
from gitml.names import DEFAULT_EXPERIMENT_ID, check_key
from gitml.tracking.entities import Experiment, Metric, Run, RunStatus, ViewType
from gitml.tracking.tracker import run_of
from gitml.tracking.writer import RunWriter

_state = threading.local()
_lock = threading.RLock()
_client: Client | None = None
_repo: str | None = None
_experiment_id: str | None = None
_inherited: list[Client] = []  # a forked child keeps its parent's client alive, untouched


class ActiveRun(Run):
    """The run returned by :func:`start_run`; a context manager that ends it."""

    def __init__(self, run: Run, writer: RunWriter):
        super().__init__(run.info, run.data, run.source)
        self._writer = writer

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        end_run(status)


def _stack() -> list[ActiveRun]:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def client() -> Client:
    """The Client behind the fluent API (opened on first use)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = Client(_repo)
    return _client


def set_tracking_uri(uri: str | os.PathLike | None) -> None:
    """Use the repository at ``uri`` (a path or ``file:`` URI) from now on."""
    global _client, _repo
    with _lock:
        if _client is not None:
            _client.close()
        _client = None
        path = os.fspath(uri) if uri is not None else None
        if path and path.startswith("file://"):
            path = path[len("file://"):]
        elif path and path.startswith("file:"):
            path = path[len("file:"):]
        _repo = path


def get_tracking_uri() -> str:
    return client().repo_path


# -- experiments --------------------------------------------------------------
def create_experiment(name: str, artifact_location: str | None = None, tags: dict | None = None) -> str:
    return client().create_experiment(name, artifact_location, tags)


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make an experiment active for new runs, creating it (by name) when missing."""
    global _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidInputError("give exactly one of experiment_name and experiment_id")
    c = client()
    if experiment_name is not None:
        from gitml.names import check_name

        check_name(experiment_name, "experiment name")
    experiment: Experiment | None
    if experiment_id is not None:
        experiment = c.get_experiment(str(experiment_id))
    else:
        assert experiment_name is not None
        experiment = c.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                c.create_experiment(experiment_name)
            except InvalidInputError:
                pass  # created meanwhile by another process
            experiment = c.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise InvalidInputError(f"experiment {experiment_name!r} could not be created")
    if experiment.lifecycle_stage == "deleted":
        raise InvalidInputError(f"experiment {experiment.name!r} is deleted; restore it to use it")
    _experiment_id = experiment.experiment_id
    return experiment


def get_experiment(experiment_id: str) -> Experiment:
    return client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return client().get_experiment_by_name(name)


def search_experiments(view_type: int = ViewType.ACTIVE_ONLY, max_results: int | None = None, filter_string: str | None = None, order_by: list[str] | None = None) -> list[Experiment]:
    return client().search_experiments(view_type, max_results, filter_string, order_by)


def rename_experiment(experiment_id: str, new_name: str) -> None:
    client().rename_experiment(experiment_id, new_name)


def delete_experiment(experiment_id: str) -> None:
    client().delete_experiment(experiment_id)


def restore_experiment(experiment_id: str) -> None:
    client().restore_experiment(experiment_id)


def set_experiment_tag(key: str, value) -> None:
    client().set_experiment_tag(_current_experiment_id(), key, value)


def set_experiment_tags(tags: dict) -> None:
    for key, value in tags.items():
        set_experiment_tag(key, value)


def _current_experiment_id() -> str:
    if _experiment_id is not None:
        return _experiment_id
    name = os.environ.get("GITML_EXPERIMENT_NAME")
    if name:
        return set_experiment(name).experiment_id
    return os.environ.get("GITML_EXPERIMENT_ID", DEFAULT_EXPERIMENT_ID)


# -- runs ---------------------------------------------------------------------
def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict | None = None,
    description: str | None = None,
    **_ignored,
) -> ActiveRun:
    """Start a run, or resume ``run_id``; use it as ``with gitml.start_run() as run:``."""
    stack = _stack()
    if stack and not nested:
        raise InvalidInputError(
            f"run {stack[-1].info.run_id} is already active; end it with end_run() "
            "or start a nested run with start_run(nested=True)"
        )
    c = client()
    tracker = c.tracker
    run_id = run_id or (None if stack else os.environ.get("GITML_RUN_ID"))
    tags = dict(tags or {})
    if description is not None:
        tags["mlflow.note.content"] = description
    if run_id:
        run_id = tracker.resolve(run_id)
        writer = tracker.open_writer(run_id)
        writer.set_meta(status=RunStatus.RUNNING, end_time=None)
        if run_name:
            writer.set_meta(run_name=run_name)
        if tags:
            writer.set_tags(tracker.check_tags(tags))
    else:
        if parent_run_id is None and stack:
            parent_run_id = stack[-1].info.run_id
        writer = tracker.create_run(
            str(experiment_id) if experiment_id is not None else _current_experiment_id(),
            run_name=run_name,
            tags=tags,
            parent_run_id=parent_run_id,
        )
    run = ActiveRun(run_of(writer.record(), writer._base), writer)
    run.info.status, run.info.end_time = RunStatus.RUNNING, None  # (a resumed run's commit says otherwise)
    stack.append(run)
    return run


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run (the innermost one, for nested runs)."""
    stack = _stack()
    if not stack:
        return
    run = stack.pop()
    _state.last_run_id = run.info.run_id
    client().tracker.finish(run.info.run_id, status)


def active_run() -> ActiveRun | None:
    stack = _stack()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    run_id = getattr(_state, "last_run_id", None)
    return get_run(run_id) if run_id else None


def get_run(run_id: str) -> Run:
    return client().get_run(run_id)


def delete_run(run_id: str) -> None:
    client().delete_run(run_id)


def restore_run(run_id: str) -> None:
    client().restore_run(run_id)


def _writer() -> RunWriter:
    stack = _stack()
    if not stack:
        start_run()
    run = stack[-1]
    if run._writer is None:  # in a forked child: its own writer (and journal) for the run
        run._writer = client().tracker.open_writer(run.info.run_id)
    return run._writer


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None, **_ignored) -> None:
    """Log one point of a metric to the active run (starting one if none is)."""
    stack = getattr(_state, "stack", None)
    writer = stack[-1]._writer if stack and stack[-1]._writer is not None else _writer()
    writer.log_metric(key, value, step or 0, time.time_ns() // 1_000_000 if timestamp is None else int(timestamp))


def log_metrics(metrics: dict[str, float], step: int | None = None, timestamp: int | None = None, **_ignored) -> None:
    writer = _writer()
    ts = time.time_ns() // 1_000_000 if timestamp is None else int(timestamp)
    for key in metrics:
        check_key(key, "metric")
    for key, value in metrics.items():
        writer.log_metric(key, value, step or 0, ts)


def log_param(key: str, value) -> str:
    value = str(value)
    log_params({key: value})
    return value


def log_params(params: dict) -> None:
    writer = _writer()
    writer.log_params(client().tracker.check_params(params))
    writer.maybe_flush()


def set_tag(key: str, value) -> None:
    set_tags({key: value})


def set_tags(tags: dict) -> None:
    writer = _writer()
    tags = client().tracker.check_tags(tags)
    name = tags.pop("mlflow.runName", None)
    if name is not None:
        from gitml.names import check_name

        writer.set_meta(run_name=check_name(name, "run name"))
    writer.set_tags(tags)
    writer.maybe_flush()


def delete_tag(key: str) -> None:
    client().delete_tag(_writer().run_id, key)


def log_batch(metrics=(), params=(), tags=()) -> None:
    client().log_batch(_writer().run_id, metrics, params, tags)


def log_artifact(local_path: str, artifact_path: str | None = None) -> None:
    """Log a file (or folder) to the active run's artifacts."""
    client().log_artifact(_writer().run_id, local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: str | None = None) -> None:
    """Log every file below ``local_dir`` to the active run's artifacts."""
    client().log_artifacts(_writer().run_id, local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    client().log_text(_writer().run_id, text, artifact_file)


def log_dict(dictionary: dict, artifact_file: str) -> None:
    """Log a dict as JSON, or YAML when ``artifact_file`` ends in .yaml/.yml."""
    client().log_dict(_writer().run_id, dictionary, artifact_file)


def log_table(data, artifact_file: str) -> None:
    """Log a DataFrame or dict of columns as MLflow's JSON table."""
    client().log_table(_writer().run_id, data, artifact_file)


def log_image(image, artifact_file: str) -> None:
    """Log a numpy array or PIL image as an image file (PNG for arrays)."""
    client().log_image(_writer().run_id, image, artifact_file)


def log_figure(figure, artifact_file: str) -> None:
    """Log a matplotlib (or plotly) figure."""
    client().log_figure(_writer().run_id, figure, artifact_file)


def get_metric_history(run_id: str, key: str) -> list[Metric]:
    return client().get_metric_history(run_id, key)


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
):
    """Search runs; by default in the active experiment. Returns a DataFrame."""
    c = client()
    if not experiment_ids and not experiment_names and not search_all_experiments:
        experiment_ids = [_current_experiment_id()]
    return c.search_runs(
        experiment_ids,
        filter_string,
        run_view_type,
        max_results,
        order_by,
        experiment_names=experiment_names,
        output_format=output_format,
    )


def flush() -> None:
    """Commit now what the active runs have buffered (normally done on an interval),
    and wait for the commits of ended runs (made on a background thread)."""
    if _client is not None:
        for writer in list(_client.tracker.writers.values()):
            writer.flush()
        _client.tracker.committer.wait()


def _after_fork_in_child() -> None:
    """A forked child must not share the parent's journal, threads or dulwich state:
    it opens its own client, and its own writers for the runs it inherited."""
    global _client
    if _client is not None:  # the parent's: never close (or finalize) it from here
        _client._finalizer.detach()
        _inherited.append(_client)
    _client = None
    for run in getattr(_state, "stack", None) or []:
        run._writer = None
    _state.forked = True


def _before_fork() -> None:
    """Commit the open runs first, so that a forked child finds the runs it inherits."""
    if _client is not None:
        for writer in list(_client.tracker.writers.values()):
            try:
                writer.flush()
            except GitmlError:
                pass


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    stack = getattr(_state, "stack", None)
    try:
        while stack and not getattr(_state, "forked", False):  # runs a child inherited stay open
            end_run(RunStatus.FINISHED)
        if _client is not None:
            _client.close()
    except GitmlError:
        pass

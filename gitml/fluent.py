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
from typing import TYPE_CHECKING

from gitml.client import RUN_OPERATIONS_DONE, RunOperations
from gitml.errors import GitmlError, InvalidInputError
from gitml.names import DEFAULT_EXPERIMENT_ID
from gitml.names import check_artifact_path as _check_artifact_path
from gitml.names import check_mapping as _check_mapping
from gitml.ops import Operations
from gitml.runlog.checks import check_run_name as _check_run_name
from gitml.runlog.entities import Experiment, Metric, Run, RunStatus, ViewType
from gitml.runlog.tracker import Tracker as _Tracker
from gitml.runlog.writer import RunWriter

if TYPE_CHECKING:
    from gitml.system_metrics import SystemMetricsMonitor

_state = threading.local()
_time_ns = time.time_ns
_lock = threading.RLock()
_client: Operations | None = None
_repo: str | None = None
_experiment_id: str | None = None
_inherited: list[Operations] = []  # a forked child keeps its parent's client alive, untouched
_system_metrics: bool | None = None  # enable/disable_system_metrics_logging; None: the environment


class ActiveRun(Run):
    """The run returned by :func:`start_run`; a context manager that ends it."""

    def __init__(self, run: Run, writer: RunWriter):
        super().__init__(run.info, run.data, run.source, run.inputs)
        self._writer = writer
        self._monitor: SystemMetricsMonitor | None = None

    def _start_system_metrics(self, c: Operations) -> None:
        from gitml.system_metrics import SystemMetricsMonitor

        run_id = self.info.run_id

        def log(values: dict[str, float], step: int) -> None:
            c.log_batch(run_id, metrics=[(k, v, None, step) for k, v in values.items()])

        self._monitor = SystemMetricsMonitor(log, path=c.repo_path)
        self._monitor.start()

    def _stop_system_metrics(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

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


def client() -> Operations:
    """The Client behind the fluent API (an :class:`gitml.ops.Operations`, opened on first use)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = Operations(_repo)
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
            path = path[len("file://") :]
        elif path and path.startswith("file:"):
            path = path[len("file:") :]
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


def search_experiments(
    view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
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
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run, or resume ``run_id``; use it as ``with gitml.start_run() as run:``.

    MLflow's arguments, with its meaning. ``log_system_metrics`` logs CPU, memory,
    disk (and GPU) figures as ``system/*`` metrics (default: as
    :func:`enable_system_metrics_logging` set). Raises InvalidInputError when a
    run is already active (and ``nested`` is false), DeletedRunError when
    ``run_id`` is deleted, RunNotFoundError when it does not exist.
    """
    stack = _stack()
    if stack and not nested:
        raise InvalidInputError(
            f"run {stack[-1].info.run_id} is already active; end it with end_run() "
            "or start a nested run with start_run(nested=True)"
        )
    c = client()
    from_environment = not run_id and not stack and bool(os.environ.get("GITML_RUN_ID"))
    run_id = run_id or (None if stack else os.environ.get("GITML_RUN_ID"))
    tags = dict(tags or {})
    if description is not None:
        tags["mlflow.note.content"] = description
    if run_id:
        run_id = c.resolve_run(run_id)
        if from_environment:
            _check_experiment_of_environment_run(c, run_id, experiment_id)
        writer = c.run_writer(run_id, resume=True)
        writer.set_meta(status=RunStatus.RUNNING, end_time=None)
        if run_name:
            writer.set_meta(run_name=_check_run_name(run_name))
        if tags:
            writer.set_tags(_Tracker.check_tags(tags))
    else:
        if parent_run_id is None and stack:
            parent_run_id = stack[-1].info.run_id
        writer = c.start_run_writer(
            str(experiment_id) if experiment_id is not None else _current_experiment_id(),
            run_name=run_name,
            tags=tags,
            parent_run_id=parent_run_id,
        )
    run = ActiveRun(c.run_of_writer(writer), writer)
    run.info.status, run.info.end_time = RunStatus.RUNNING, None  # (a resumed run's commit says otherwise)
    stack.append(run)
    if log_system_metrics if log_system_metrics is not None else _system_metrics_enabled():
        run._start_system_metrics(c)
    return run


def _check_experiment_of_environment_run(c: Operations, run_id: str, experiment_id: str | None) -> None:
    """A run handed over by ``gitml run`` (``GITML_RUN_ID``) is in the experiment the command
    chose: a script that asks for another (``set_experiment``, ``experiment_id=``) is told to say
    so on the command line, as MLflow tells it, instead of logging silently into the other one."""
    wanted = str(experiment_id) if experiment_id is not None else _experiment_id
    if wanted is None:
        return
    held = c.get_run(run_id).info.experiment_id
    if held == wanted:
        return

    def name(eid: str) -> str:
        try:
            return c.get_experiment(eid).name
        except GitmlError:
            return eid

    raise InvalidInputError(
        f"run {run_id} was started in experiment {name(held)!r} (GITML_RUN_ID, as `gitml run` sets it), but this "
        f"script asks for experiment {name(wanted)!r}: choose it on the command line "
        f"(gitml run --experiment {name(wanted)!r} ...) or drop set_experiment from the script"
    )


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run (the innermost one, for nested runs)."""
    stack = _stack()
    if not stack:
        return
    run = stack.pop()
    run._stop_system_metrics()
    _state.last_run_id = run.info.run_id
    client().end_run(run.info.run_id, status)


def active_run() -> ActiveRun | None:
    stack = _stack()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    run_id = getattr(_state, "last_run_id", None)
    return get_run(run_id) if run_id else None


def get_run(run_id: str) -> Run:
    return client().get_run(run_id)


def get_parent_run(run_id: str) -> Run | None:
    """The run that ``run_id`` is nested in (None for a top-level run)."""
    return client().get_parent_run(run_id)


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
        run._writer = client().run_writer(run.info.run_id)
    return run._writer


def _target(run_id: str | None) -> str:
    """The run a call with ``run_id`` writes to: that run, else the active one."""
    return run_id if run_id is not None else _writer().run_id


def _done(synchronous: bool | None) -> RunOperations | None:
    """What MLflow returns: None, or (``synchronous=False``) operations to wait for."""
    return RUN_OPERATIONS_DONE if synchronous is False else None


def _no_model(model_id: str | None) -> None:
    if model_id is not None:
        raise InvalidInputError("gitml has no logged models: model_id is not supported")


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    dataset=None,
) -> RunOperations | None:
    """Log one point of a metric to the active run (starting one if none is), or to ``run_id``.

    A ``dataset`` is recorded as an input of the run (see :func:`log_input`).
    Every call is journaled when it returns, so ``synchronous`` changes nothing
    but the return value (MLflow's: None, or with False operations to ``wait()`` on).
    """
    if run_id is not None or model_id is not None or dataset is not None:
        _no_model(model_id)
        client().log_metric(run_id or _writer().run_id, key, value, timestamp, step)
        if dataset is not None:
            log_input(dataset, run_id=run_id)
        return _done(synchronous)
    try:  # the active run's writer, found in as few steps as can be (a training loop's call)
        writer = _state.stack[-1]._writer
    except (AttributeError, IndexError):  # no run yet in this thread
        writer = None
    if writer is None:
        writer = _writer()
    writer.log_metric(key, value, step or 0, _time_ns() // 1_000_000 if timestamp is None else timestamp)
    return RUN_OPERATIONS_DONE if synchronous is False else None


def log_metrics(
    metrics: dict[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    model_id: str | None = None,
    dataset=None,
) -> RunOperations | None:
    """Log several metrics at one step to the active run, or to ``run_id``."""
    _no_model(model_id)
    ts = time.time_ns() // 1_000_000 if timestamp is None else timestamp
    if run_id is not None:
        client().log_batch(run_id, metrics=[(k, v, ts, step or 0) for k, v in metrics.items()])
    else:
        writer = _writer()
        at = step or 0
        writer.log_metrics([(key, value, at, ts) for key, value in _check_mapping(metrics, "metrics").items()])
    if dataset is not None:
        log_input(dataset, run_id=run_id)
    return _done(synchronous)


def log_param(key: str, value, synchronous: bool | None = None):
    """Log a param to the active run; returns the value (as MLflow's)."""
    log_params({key: value})
    return value


def log_params(params: dict, synchronous: bool | None = None, run_id: str | None = None) -> RunOperations | None:
    if run_id is not None:
        client().log_batch(run_id, params=list(params.items()))
        return _done(synchronous)
    writer = _writer()
    writer.log_params(_Tracker.check_params(params))
    writer.maybe_flush()
    return _done(synchronous)


def set_tag(key: str, value, synchronous: bool | None = None) -> RunOperations | None:
    return set_tags({key: value}, synchronous)


def set_tags(tags: dict, synchronous: bool | None = None) -> RunOperations | None:
    writer = _writer()
    tags = _Tracker.check_tags(tags)
    name = tags.pop("mlflow.runName", None)
    if name is not None:
        writer.set_meta(run_name=_check_run_name(name))
    writer.set_tags(tags)
    writer.maybe_flush()
    return _done(synchronous)


def delete_tag(key: str) -> None:
    client().delete_tag(_writer().run_id, key)


def log_batch(metrics=(), params=(), tags=(), run_id: str | None = None) -> None:
    """Log MLflow entities (or tuples) at once: ``Metric``, ``Param``, ``RunTag``."""
    client().log_batch(_target(run_id), metrics, params, tags)


def log_input(
    dataset=None, context: str | None = None, tags: dict | None = None, model=None, *, run_id: str | None = None
) -> None:
    """Record that the active run used ``dataset`` (from :mod:`gitml.data`), in ``context``
    (e.g. "training"). Searchable as ``datasets.name``, ``datasets.digest``,
    ``datasets.context``; read back as ``run.inputs.dataset_inputs``."""
    if model is not None:
        raise InvalidInputError("gitml has no logged models: log_input(model=...) is not supported")
    if dataset is None:
        raise InvalidInputError("log_input needs a dataset")
    client().log_inputs(_target(run_id), [dataset], context=context, tags=tags)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The URI of the active run's artifacts (``runs:/<run_id>[/<path>]``), which
    ``gitml.artifacts`` functions take."""
    run_id = _writer().run_id
    if artifact_path:
        _check_artifact_path(artifact_path.strip("/"), "artifact_path")
        return f"runs:/{run_id}/{artifact_path.strip('/')}"
    return f"runs:/{run_id}"


def log_artifact(local_path: str, artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Log a file (or folder) to the active run's artifacts, or to ``run_id``'s."""
    client().log_artifact(_target(run_id), local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Log every file below ``local_dir`` to the active run's artifacts, or to ``run_id``'s."""
    client().log_artifacts(_target(run_id), local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    client().log_text(_target(run_id), text, artifact_file)


def log_dict(dictionary: dict, artifact_file: str, run_id: str | None = None) -> None:
    """Log a dict as JSON, or YAML when ``artifact_file`` ends in .yaml/.yml."""
    client().log_dict(_target(run_id), dictionary, artifact_file)


def log_table(data, artifact_file: str, run_id: str | None = None) -> None:
    """Log a DataFrame or dict of columns as MLflow's JSON table."""
    client().log_table(_target(run_id), data, artifact_file)


def load_table(artifact_file: str, run_ids: list[str] | None = None, extra_columns: list[str] | None = None):
    """The tables logged as ``artifact_file`` by the active experiment's runs (or by
    ``run_ids``), as one DataFrame; ``extra_columns=["run_id"]`` adds the run's id."""
    return client().load_table(_current_experiment_id(), artifact_file, run_ids, extra_columns)


def log_image(
    image,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = False,
) -> None:
    """Log a numpy array or PIL image as an image file (PNG for arrays): at
    ``artifact_file``, or, with ``key`` (and ``step``), at ``images/<key>/step_<step>.png``."""
    client().log_image(_writer().run_id, image, artifact_file, key=key, step=step, timestamp=timestamp)


def log_figure(figure, artifact_file: str, *, save_kwargs: dict | None = None) -> None:
    """Log a matplotlib (or plotly) figure."""
    client().log_figure(_writer().run_id, figure, artifact_file, save_kwargs=save_kwargs)


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
    """Search runs; by default in the active experiment. Returns a DataFrame with
    MLflow's columns, or with ``output_format="list"`` a list of :class:`Run`."""
    if output_format not in ("pandas", "list"):
        raise InvalidInputError(f"output_format must be 'pandas' or 'list', not {output_format!r}")
    c = client()
    if not experiment_ids and not experiment_names and not search_all_experiments:
        experiment_ids = [_current_experiment_id()]
    ids = c.resolve_experiment_ids(experiment_ids, experiment_names)
    if output_format == "list":
        return list(c.search_runs(ids, filter_string, run_view_type, max_results, order_by))
    return c.search_frame(ids, filter_string, view=run_view_type, max_results=max_results, order_by=order_by)


def is_tracking_uri_set() -> bool:
    """Whether a repository was chosen (``set_tracking_uri`` or ``GITML_REPO``)."""
    return _repo is not None or bool(os.environ.get("GITML_REPO"))


def enable_system_metrics_logging() -> None:
    """Log system metrics (``system/*``) for every run started from now on."""
    global _system_metrics
    _system_metrics = True


def disable_system_metrics_logging() -> None:
    global _system_metrics
    _system_metrics = False


def _system_metrics_enabled() -> bool:
    if _system_metrics is not None:
        return _system_metrics
    value = os.environ.get("GITML_ENABLE_SYSTEM_METRICS_LOGGING") or os.environ.get(
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
    )
    return (value or "").lower() in ("true", "1", "yes")


def flush_async_logging() -> None:
    """MLflow's name for :func:`flush`: gitml's calls are journaled when they return."""
    flush()


def flush() -> None:
    """Commit now what the active runs have buffered (normally done on an interval),
    and wait for the commits of ended runs (made on a background thread)."""
    if _client is not None:
        _client.flush()


def _after_fork_in_child() -> None:
    """A forked child must not share the parent's journal, threads or dulwich state:
    it opens its own client, and its own writers for the runs it inherited."""
    global _client
    if _client is not None:  # the parent's: never close (or finalize) it from here
        _client.detach()
        _inherited.append(_client)
    _client = None
    for run in getattr(_state, "stack", None) or []:
        run._writer = None
    _state.forked = True


def _before_fork() -> None:
    """Commit the open runs first, so that a forked child finds the runs it inherits."""
    if _client is not None:
        _client.flush(wait=False, best_effort=True)


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


def register_model(model_uri: str, name: str, await_registration_for: int = 300, *, tags: dict | None = None):
    """Register ``runs:/<run>/<path>`` as the next version of ``name`` (a tag ``name@vN.0.0``),
    as MLflow's ``mlflow.register_model``; returns the ``ModelVersion``. Raises NotFoundError
    (no such run, or no MLmodel there), ConflictError (that run commit is already a version)."""
    return client().create_model_version(name, model_uri, tags=tags)

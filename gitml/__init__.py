"""gitml: the machine-learning lifecycle on git.

Experiment tracking shaped like MLflow's fluent API; a run is a git ref whose
commit holds the code that ran and what it logged::

    import gitml

    gitml.set_experiment("churn")
    with gitml.start_run(run_name="baseline"):
        gitml.log_param("lr", 0.01)
        gitml.log_metric("auc", 0.91)
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what editors and type checkers see; at run time each name is imported on first use (_LAZY)
    from gitml.content.service import FileInfo
    from gitml.client import Client, MlflowClient, RunOperations
    from gitml.errors import (
        AmbiguousRunError, ConflictError, CorruptRecordError, DeletedRunError, ExperimentNotFoundError,
        FilterSyntaxError, GitmlError, InvalidInputError, MlflowException, NotFoundError, ParamConflictError,
        RepositoryError, RunNotFoundError,
    )
    from gitml.fluent import (
        ActiveRun, active_run, create_experiment, delete_experiment, delete_run, delete_tag,
        disable_system_metrics_logging, enable_system_metrics_logging, end_run, flush, flush_async_logging,
        get_artifact_uri, get_experiment, get_experiment_by_name, get_metric_history, get_parent_run,
        get_run, get_tracking_uri, is_tracking_uri_set, last_active_run, load_table, log_artifact,
        log_artifacts, log_batch, log_dict, log_figure, log_image, log_input, log_metric, log_metrics,
        log_param, log_params, log_table, log_text, register_model, rename_experiment, restore_experiment,
        restore_run, search_experiments, search_runs, set_experiment, set_experiment_tag,
        set_experiment_tags, set_tag, set_tags, set_tracking_uri, start_run,
    )
    from gitml.autologging import autolog
    from gitml.models.evaluation import evaluate
    from gitml.tracking.entities import (
        Experiment, LifecycleStage, Metric, Param, Run, RunData, RunInfo, RunStatus, RunTag, ViewType,
    )
    from gitml import (
        artifacts, catboost, data, entities, exceptions, keras, lightgbm, models, onnx, projects, pyfunc, pytorch, sklearn,
        statsmodels, transformers, xgboost,
    )

_LAZY = {
    "ActiveRun": "gitml.fluent",
    "AmbiguousRunError": "gitml.errors",
    "Client": "gitml.client",
    "ConflictError": "gitml.errors",
    "CorruptRecordError": "gitml.errors",
    "DeletedRunError": "gitml.errors",
    "Experiment": "gitml.tracking.entities",
    "ExperimentNotFoundError": "gitml.errors",
    "FileInfo": "gitml.content.service",
    "FilterSyntaxError": "gitml.errors",
    "GitmlError": "gitml.errors",
    "InvalidInputError": "gitml.errors",
    "LifecycleStage": "gitml.tracking.entities",
    "Metric": "gitml.tracking.entities",
    "MlflowClient": "gitml.client",
    "MlflowException": "gitml.errors",
    "NotFoundError": "gitml.errors",
    "Param": "gitml.tracking.entities",
    "ParamConflictError": "gitml.errors",
    "RepositoryError": "gitml.errors",
    "RunOperations": "gitml.client",
    "Run": "gitml.tracking.entities",
    "RunData": "gitml.tracking.entities",
    "RunInfo": "gitml.tracking.entities",
    "RunNotFoundError": "gitml.errors",
    "RunStatus": "gitml.tracking.entities",
    "RunTag": "gitml.tracking.entities",
    "ViewType": "gitml.tracking.entities",
    "active_run": "gitml.fluent",
    "autolog": "gitml.autologging",
    "create_experiment": "gitml.fluent",
    "delete_experiment": "gitml.fluent",
    "delete_run": "gitml.fluent",
    "delete_tag": "gitml.fluent",
    "disable_system_metrics_logging": "gitml.fluent",
    "enable_system_metrics_logging": "gitml.fluent",
    "end_run": "gitml.fluent",
    "evaluate": "gitml.models.evaluation",
    "flush": "gitml.fluent",
    "flush_async_logging": "gitml.fluent",
    "get_artifact_uri": "gitml.fluent",
    "get_experiment": "gitml.fluent",
    "get_experiment_by_name": "gitml.fluent",
    "get_metric_history": "gitml.fluent",
    "get_parent_run": "gitml.fluent",
    "get_run": "gitml.fluent",
    "get_tracking_uri": "gitml.fluent",
    "is_tracking_uri_set": "gitml.fluent",
    "last_active_run": "gitml.fluent",
    "load_table": "gitml.fluent",
    "log_artifact": "gitml.fluent",
    "log_artifacts": "gitml.fluent",
    "log_batch": "gitml.fluent",
    "log_dict": "gitml.fluent",
    "log_figure": "gitml.fluent",
    "log_image": "gitml.fluent",
    "log_input": "gitml.fluent",
    "log_metric": "gitml.fluent",
    "log_metrics": "gitml.fluent",
    "log_param": "gitml.fluent",
    "log_params": "gitml.fluent",
    "log_table": "gitml.fluent",
    "log_text": "gitml.fluent",
    "register_model": "gitml.fluent",
    "rename_experiment": "gitml.fluent",
    "restore_experiment": "gitml.fluent",
    "restore_run": "gitml.fluent",
    "search_experiments": "gitml.fluent",
    "search_runs": "gitml.fluent",
    "set_experiment": "gitml.fluent",
    "set_experiment_tag": "gitml.fluent",
    "set_experiment_tags": "gitml.fluent",
    "set_tag": "gitml.fluent",
    "set_tags": "gitml.fluent",
    "set_tracking_uri": "gitml.fluent",
    "start_run": "gitml.fluent",
}


_SUBMODULES = {"artifacts", "catboost", "data", "entities", "exceptions", "keras", "lightgbm", "models", "onnx", "projects",
               "pyfunc", "pytorch", "sklearn", "statsmodels", "transformers", "xgboost"}  # MLflow's mlflow.artifacts, mlflow.data, ...


def __getattr__(name: str):
    """Import the public API on first use, so ``gitml --help`` stays fast."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"gitml.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gitml' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "AmbiguousRunError",
    "Client",
    "ConflictError",
    "CorruptRecordError",
    "DeletedRunError",
    "Experiment",
    "ExperimentNotFoundError",
    "FileInfo",
    "FilterSyntaxError",
    "GitmlError",
    "InvalidInputError",
    "LifecycleStage",
    "Metric",
    "MlflowClient",
    "MlflowException",
    "NotFoundError",
    "Param",
    "ParamConflictError",
    "RepositoryError",
    "RunOperations",
    "Run",
    "RunData",
    "RunInfo",
    "RunNotFoundError",
    "RunStatus",
    "RunTag",
    "ViewType",
    "__version__",
    "active_run",
    "autolog",
    "artifacts",
    "catboost",
    "create_experiment",
    "data",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "disable_system_metrics_logging",
    "enable_system_metrics_logging",
    "end_run",
    "evaluate",
    "entities",
    "exceptions",
    "flush",
    "flush_async_logging",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "keras",
    "last_active_run",
    "lightgbm",
    "load_table",
    "log_artifact",
    "log_artifacts",
    "log_batch",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "models",
    "onnx",
    "projects",
    "pyfunc",
    "pytorch",
    "register_model",
    "rename_experiment",
    "restore_experiment",
    "restore_run",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "sklearn",
    "statsmodels",
    "start_run",
    "transformers",
    "xgboost",
]

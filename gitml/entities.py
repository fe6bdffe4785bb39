"""MLflow's ``mlflow.entities`` under gitml: the objects the API takes and returns.

from gitml.entities import Metric, Param, RunTag

client.log_batch(run_id, metrics=[Metric("loss", 0.1, 0, 1)], params=[Param("lr", "0.01")])
"""

from gitml.content.service import FileInfo
from gitml.runlog.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
    RunTag,
    ViewType,
)

__all__ = [
    "Dataset",
    "DatasetInput",
    "Experiment",
    "FileInfo",
    "InputTag",
    "LifecycleStage",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunStatus",
    "RunTag",
    "ViewType",
]

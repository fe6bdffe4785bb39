"""A run's search row and its :class:`Run`: what the search index stores for a run
record (:func:`row_of`) and the API's Run built from either (:func:`run_of`,
:func:`run_of_row`), so a search builds Runs without reading the records from git.
"""

from __future__ import annotations

from gitml.runlog.entities import (
    LifecycleStage,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunSource,
    RunStatus,
    input_records,
)
from gitml.runlog.record import RunRecord


def system_tags(meta: dict) -> dict[str, str]:
    """The MLflow system tags a run presents, derived from its meta."""
    tags = {"mlflow.runName": str(meta.get("run_name", "")), "mlflow.user": str(meta.get("user_id", ""))}
    source = meta.get("source") or {}
    if source.get("commit"):
        tags["mlflow.source.git.commit"] = source["commit"]
    if source.get("branch"):
        tags["mlflow.source.git.branch"] = source["branch"]
    if source.get("name"):
        tags["mlflow.source.name"] = source["name"]
        tags["mlflow.source.type"] = source.get("type", "LOCAL")
    if source.get("dirty") is not None:
        tags["gitml.source.dirty"] = str(bool(source["dirty"])).lower()
    if meta.get("parent_run_id"):
        tags["mlflow.parentRunId"] = meta["parent_run_id"]
    if meta.get("entry_point"):
        tags["mlflow.project.entryPoint"] = meta["entry_point"]
    return tags


def row_of(record: RunRecord) -> dict:
    """The search row of a run record (what filters and the DataFrame see); under ``"run"``,
    what else a :class:`Run` holds (metric steps and times, source, inputs), so that
    :meth:`gitml.runlog.tracker.Tracker.runs_at` builds Runs from the index without reading the records."""
    meta = record.meta
    source = meta.get("source")
    if not isinstance(source, dict):
        source = {}
    return {
        "run_id": meta["run_id"],
        "experiment_id": str(meta.get("experiment_id", "")),
        "run_name": str(meta.get("run_name", "")),
        "status": meta.get("status", RunStatus.RUNNING),
        "start_time": meta.get("start_time"),
        "end_time": meta.get("end_time"),
        "user_id": str(meta.get("user_id", "")),
        "lifecycle_stage": meta.get("lifecycle_stage", LifecycleStage.ACTIVE),
        "artifact_uri": str(meta.get("artifact_uri", "")),
        "metrics": {k: v[2] for k, v in record.latest.items()},
        "params": dict(record.params),
        "tags": {**system_tags(meta), **record.tags},
        "datasets": [
            {"name": i.get("name"), "digest": i.get("digest"), "context": i.get("context")}
            for i in input_records(meta.get("inputs"))
        ],
        "run": {
            "latest": {k: [s, t] for k, (s, t, _) in record.latest.items()},
            "source": [_text(source.get("commit")), _text(source.get("branch")), bool(source.get("dirty"))],
            "inputs": bool(meta.get("inputs")),  # a Run's inputs are read from the record
        },
    }


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def run_of(record: RunRecord, commit: bytes | None) -> Run:
    """The API's Run object for a record (read at ``commit``, None if not yet committed)."""
    return _run(row_of(record), commit, record.meta.get("inputs"))


def run_of_row(row: dict, commit: bytes) -> Run | None:
    """The Run of a search row made by :func:`row_of`; None when the row lacks part of it
    (the run has dataset inputs, or an older gitml made the row): read the record then."""
    extra = row.get("run")
    if extra is None or extra["inputs"]:
        return None
    return _run(row, commit, None)


def _run(row: dict, commit: bytes | None, inputs) -> Run:
    commit_id, branch, dirty = row["run"]["source"]
    metrics = row["metrics"]
    return Run(
        info=RunInfo(
            run_id=row["run_id"],
            experiment_id=row["experiment_id"],
            run_name=row["run_name"],
            user_id=row["user_id"],
            status=row["status"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            lifecycle_stage=row["lifecycle_stage"],
            artifact_uri=row["artifact_uri"],
        ),
        data=RunData(  # copies: the row may be the index's
            metrics=dict(metrics),
            params=dict(row["params"]),
            tags=dict(row["tags"]),
            latest_metrics={k: Metric(k, metrics[k], t, s) for k, (s, t) in row["run"]["latest"].items()},
        ),
        source=RunSource(commit_id, branch, dirty, commit.decode() if commit else None),
        inputs=RunInputs.from_records(inputs),
    )

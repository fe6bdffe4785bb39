"""A run brought whole from another tracker (``gitml import mlflow``), in one commit.

Unlike a run logged here, an imported run keeps what its tracker recorded: its id (so
``runs:/<id>/...`` URIs and links keep working), user, status, times, name, parent, every
history point with its step and time, its dataset inputs, and its artifacts' manifest. It
is written as one commit that creates its ref by compare-and-swap: an import killed
midway leaves each run either whole or absent, which is what makes a second import resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitml.errors import ConflictError, InvalidInputError, RunNotFoundError
from gitml.names import check_run_id, run_ref
from gitml.runlog.entities import LifecycleStage, RunStatus, stored_inputs
from gitml.runlog.record import RunRecord
from gitml.store.worktree import Snapshot


@dataclass
class ImportedRun:
    """What an imported run holds. ``code``: the commit that ran, in this repository (the run
    commit's parent), or None (no code: the commit is not here). ``metrics``: key → history
    points ``(step, timestamp, value)``; ``artifacts``: ``(path, sha256, size, inline blob id)``
    whose bytes are stored already (``RunArtifacts.stage_files``)."""

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str = ""
    status: str = RunStatus.FINISHED
    start_time: int | None = None
    end_time: int | None = None
    lifecycle_stage: str = LifecycleStage.ACTIVE
    code: str | None = None
    branch: str | None = None
    source_name: str | None = None
    source_type: str | None = None
    parent_run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    artifacts: list[tuple[str, str, int, str | None]] = field(default_factory=list)


def write_imported_run(tracker, run: ImportedRun) -> bytes:
    """Write ``run`` as one commit on a new run ref; returns the commit id.

    Raises ConflictError when a run with that id exists (in any experiment),
    InvalidInputError for a value gitml refuses (key, status, number)."""
    run_id = check_run_id(run.run_id)
    try:
        tracker.ref_of(run_id)
    except RunNotFoundError:
        pass
    else:
        raise ConflictError(f"run {run_id} exists already")
    if run.status not in RunStatus.ALL:
        raise InvalidInputError(f"run {run_id}: status {run.status!r} is not one of {', '.join(RunStatus.ALL)}")
    if run.lifecycle_stage not in (LifecycleStage.ACTIVE, LifecycleStage.DELETED):
        raise InvalidInputError(f"run {run_id}: lifecycle stage {run.lifecycle_stage!r} is not active or deleted")
    from gitml.runlog.checks import check_run_name

    commit = run.code.encode() if run.code else None
    source = Snapshot(commit, run.branch, False, tracker.store.commit(commit).tree if commit else None)
    meta: dict = {
        "run_id": run_id,
        "run_name": check_run_name(run.run_name),
        "experiment_id": str(run.experiment_id),
        "status": run.status,
        "user_id": run.user_id or "",
        "start_time": run.start_time,
        "end_time": run.end_time,
        "lifecycle_stage": run.lifecycle_stage,
        "artifact_uri": f"runs:/{run_id}",
        "source": {"commit": run.code or None, "branch": run.branch, "dirty": False},
    }
    if run.source_name:
        meta["source"]["name"] = run.source_name
    if run.source_type:
        meta["source"]["type"] = run.source_type
    if run.parent_run_id:
        meta["parent_run_id"] = check_run_id(run.parent_run_id)
    if run.inputs:
        meta["inputs"] = stored_inputs(run.inputs)
    params = tracker.check_params(run.params)
    tags = tracker.check_tags(run.tags)
    writer = tracker._writer(run_ref(str(run.experiment_id), run_id), run_id, str(run.experiment_id), False)
    writer.start(RunRecord(meta=meta, tags=tags), source.commit, source.tree)
    writer.log_params(params)
    for key, points in run.metrics.items():
        writer.log_history(key, points)
    if run.artifacts:
        writer.add_artifacts(run.artifacts)
    made = writer.flush()
    assert made is not None  # a new run always has its first commit to make
    return made

"""The objects the API returns, shaped like MLflow's entities.

``run.info.run_id``, ``run.data.params``, ``run.data.metrics`` (latest value per
key), ``run.data.tags``; ``Metric(key, value, timestamp, step)``;
``Experiment(experiment_id, name, ...)``; ``run.inputs.dataset_inputs`` (the datasets
``log_input`` recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RunStatus:
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    ALL = (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED)
    TERMINAL = (FINISHED, FAILED, KILLED)


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType:
    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    @staticmethod
    def matches(view: int, stage: str) -> bool:
        if view == ViewType.ALL:
            return True
        return (stage == LifecycleStage.DELETED) == (view == ViewType.DELETED_ONLY)


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str = ""

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # each key's latest point with its step and time (MLflow's RunData holds Metric entities)
    latest_metrics: dict[str, Metric] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class RunSource:
    commit: str | None
    branch: str | None
    dirty: bool
    run_commit: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset a run used (see ``gitml.log_input``): MLflow's ``Dataset`` entity."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True)
class DatasetInput:
    dataset: Dataset
    tags: list[InputTag] = field(default_factory=list)


@dataclass
class RunInputs:
    dataset_inputs: list[DatasetInput] = field(default_factory=list)
    model_inputs: list = field(default_factory=list)

    @classmethod
    def from_records(cls, records) -> RunInputs:
        """The inputs a run's meta records (see :func:`input_records`); the context is
        MLflow's ``mlflow.data.context`` tag."""
        out = []
        for r in input_records(records):
            tags = {str(k): str(v) for k, v in (r.get("tags") or {}).items()}
            if r.get("context"):
                tags[CONTEXT_TAG] = str(r["context"])
            dataset = Dataset(
                str(r.get("name", "")),
                str(r.get("digest", "")),
                str(r.get("source_type", "")),
                str(r.get("source", "")),
                r.get("schema"),
                r.get("profile"),
            )
            out.append(DatasetInput(dataset, [InputTag(k, v) for k, v in tags.items()]))
        return cls(out)


CONTEXT_TAG = "mlflow.data.context"


def input_records(stored) -> list[dict]:
    """The dataset inputs of a run's ``meta.yaml`` (``inputs``), in logged order.

    They are stored as a mapping from a 4-digit ordinal to ``{name, digest,
    source_type, source, schema, profile, context, tags}`` (the record's YAML holds
    mappings, and lists of scalars only).
    """
    if not isinstance(stored, dict):
        return []
    return [stored[k] for k in sorted(stored, key=str) if isinstance(stored[k], dict)]


def stored_inputs(records: list[dict]) -> dict[str, dict]:
    """The ``inputs`` value of ``meta.yaml`` for a list of input records."""
    return {f"{i:04d}": r for i, r in enumerate(records)}


@dataclass
class Run:
    info: RunInfo
    data: RunData
    source: RunSource | None = None
    inputs: RunInputs = field(default_factory=RunInputs)

    def to_dictionary(self) -> dict:
        return {"info": vars(self.info), "data": vars(self.data)}


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str]
    creation_time: int | None
    last_update_time: int | None

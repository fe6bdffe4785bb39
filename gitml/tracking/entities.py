"""The objects the API returns, shaped like MLflow's entities.

``run.info.run_id``, ``run.data.params``, ``run.data.metrics`` (latest value per
key), ``run.data.tags``; ``Metric(key, value, timestamp, step)``;
``Experiment(experiment_id, name, ...)``.
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


@dataclass
class RunSource:
    commit: str | None
    branch: str | None
    dirty: bool
    run_commit: str | None = None


@dataclass
class Run:
    info: RunInfo
    data: RunData
    source: RunSource | None = None

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

"""Ray Tune trials as runs: ``gitml.ray.LoggerCallback`` makes one parent run per Tune experiment
and a nested run per trial (its config as params, every numeric result reported as metric
history by training iteration, its end state).

    tuner = tune.Tuner(trainable, param_space={...},
                       run_config=tune.RunConfig(name="lr-search", callbacks=[gitml.ray.LoggerCallback()]))
    tuner.fit()

Tune calls logger callbacks in the driver, so the runs are written by one process into the
driver's repository, then ``gitml push`` shares them (see :mod:`gitml.sweeps`). Needs
``pip install "gitml[ray]"``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from gitml.errors import MissingExtraError
from gitml.sweeps import SweepLog

MissingExtraError.unless_installed("ray", ("ray.tune",))
from ray.tune.logger import LoggerCallback as _TuneLoggerCallback  # noqa: E402  (after the install hint)

if TYPE_CHECKING:
    from gitml.client import Client

# what every Tune result carries about the process, not the model
BOOKKEEPING = {
    "timestamp",
    "pid",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "hostname",
    "node_ip",
    "should_checkpoint",
    "iterations_since_restore",
    "experiment_tag",
    "checkpoint_dir_name",
}


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "/"))
        else:
            out[name] = value
    return out


class LoggerCallback(_TuneLoggerCallback):
    """A Ray Tune logger callback (``RunConfig(callbacks=[LoggerCallback()])``).

    ``experiment_name``: where the runs go (default: the Default experiment). ``study_name``: the
    parent run's name (default: the Tune experiment's name). ``client``: a :class:`gitml.Client`
    whose repository takes the runs (default: the current repository)."""

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        study_name: str | None = None,
        client: Client | None = None,
        tags: dict | None = None,
    ):
        self.experiment_name = experiment_name
        self.study_name = study_name
        self.tags = dict(tags or {})
        self._repo = client.repo_path if client is not None else None  # Tune pickles its callbacks
        self._log: SweepLog | None = None
        self._history: dict[str, dict[str, list[tuple[int, float, int | None]]]] = {}
        self._started: dict[str, float] = {}

    def _sweep(self) -> SweepLog:
        if self._log is None:
            from gitml.client import Client

            client = Client(self._repo) if self._repo is not None else None
            self._log = SweepLog("ray.tune", experiment_name=self.experiment_name, client=client)
        return self._log

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_log": None}

    def _study(self, trial: Any) -> str:
        return self.study_name or getattr(trial, "experiment_dir_name", None) or "ray-tune"

    def log_trial_start(self, trial: Any) -> None:
        self._sweep().parent(self._study(trial), tags=self.tags)
        self._started.setdefault(trial.trial_id, time.time())
        self._history.setdefault(trial.trial_id, {})

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        history = self._history.setdefault(trial.trial_id, {})
        step = int(result.get("training_iteration", iteration))
        when = int(float(result.get("timestamp", time.time())) * 1000)
        for key, value in _flat(result).items():
            if key in BOOKKEEPING or key.startswith("config/") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                history.setdefault(key, []).append((step, float(value), when))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        from datetime import datetime, timezone

        started = self._started.pop(trial.trial_id, time.time())
        self._sweep().trial(
            self._study(trial),
            _number(trial),
            name=str(trial),
            params={k: v for k, v in _flat(dict(trial.config)).items()},
            history=self._history.pop(trial.trial_id, {}),
            state="ERROR" if failed else "TERMINATED",
            status="FAILED" if failed else "FINISHED",
            start=datetime.fromtimestamp(started, timezone.utc),
            end=datetime.now(timezone.utc),
            tags={**self.tags, "ray.tune.trial_id": trial.trial_id},
        )


def _number(trial: Any) -> int:
    """The trial's number in its experiment (Tune names trials ``<name>_<id>_<number>_...``)."""
    tag = str(getattr(trial, "experiment_tag", "") or "")
    head = tag.split("_", 1)[0]
    return int(head) if head.isdigit() else 0

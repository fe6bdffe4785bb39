"""Optuna studies as runs: ``gitml.optuna.Callback`` makes one parent run per study and a nested
run per finished trial (its params, its intermediate values as the history of
``intermediate_value``, its value(s), its state).

    study = optuna.create_study(study_name="lr-search", storage=..., load_if_exists=True)
    callback = gitml.optuna.Callback()                 # experiment: the study's name
    study.optimize(objective, n_trials=50, callbacks=[callback])
    callback.finish(study)                              # best value and params on the parent run

Many workers (processes or machines sharing one Optuna storage) each log into their own clone and
``gitml push`` to one team remote: the parent run is found by its tags, so create it once
(``callback.study_run(study)``) and push it before the workers start, and every trial arrives as
its own run under it (see :mod:`gitml.sweeps`). Needs ``pip install "gitml[optuna]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gitml.sweeps import SweepLog

if TYPE_CHECKING:
    from gitml.client import Client

# Optuna's trial states as run statuses: a pruned trial was stopped early, on purpose
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class Callback:
    """An Optuna callback (``study.optimize(..., callbacks=[Callback()])``) logging each finished
    trial as a run nested in its study's run.

    ``experiment_name``: where the runs go (default: the study's name, as Optuna's MLflow callback
    does). ``metric_name``: the name of the trial's value (a list of names for a study of several
    objectives; default ``value``, or ``value_0``, ``value_1``, ...). ``client``: a
    :class:`gitml.Client` (default: the current repository's)."""

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        metric_name: str | list[str] = "value",
        client: Client | None = None,
        tags: dict | None = None,
    ):
        self.experiment_name = experiment_name
        self.metric_name = metric_name
        self.tags = dict(tags or {})
        self._client = client
        self._logs: dict[str, SweepLog] = {}

    def _log(self, study: Any) -> SweepLog:
        name = self.experiment_name or study.study_name
        if name not in self._logs:
            self._logs[name] = SweepLog("optuna", experiment_name=name, client=self._client)
        return self._logs[name]

    def study_run(self, study: Any) -> str:
        """The id of the study's parent run, created when this repository has none."""
        directions = ",".join(d.name for d in study.directions)
        return self._log(study).parent(study.study_name, params={"directions": directions}, tags=self.tags)

    def _metric_names(self, count: int) -> list[str]:
        if isinstance(self.metric_name, list):
            if len(self.metric_name) != count:
                from gitml.errors import InvalidInputError

                raise InvalidInputError(f"metric_name names {len(self.metric_name)} values; the study has {count}")
            return list(self.metric_name)
        return [self.metric_name] if count == 1 else [f"{self.metric_name}_{i}" for i in range(count)]

    def __call__(self, study: Any, trial: Any) -> None:
        self.study_run(study)
        values = trial.values or []
        metrics = dict(zip(self._metric_names(len(values)), values, strict=True)) if values else {}
        points: list[tuple[int, float, int | None]] = [
            (int(step), float(value), None) for step, value in sorted(trial.intermediate_values.items())
        ]
        history = {"intermediate_value": points}
        tags = {**self.tags, **{f"optuna.user_attr.{k}": str(v) for k, v in trial.user_attrs.items()}}
        self._log(study).trial(
            study.study_name,
            trial.number,
            params=dict(trial.params),
            history=history,
            metrics=metrics,
            state=trial.state.name,
            status=STATUS.get(trial.state.name, "FAILED"),
            start=trial.datetime_start,
            end=trial.datetime_complete,
            tags=tags,
        )

    def finish(self, study: Any) -> None:
        """End the study's run: the best trial's value(s) as metrics ``best_<metric>`` and its
        number and params as tags (a study of one objective; several: their count only)."""
        metrics: dict[str, float] = {}
        tags = {"optuna.n_trials": str(len(study.trials))}
        if len(study.directions) == 1 and any(t.state.name == "COMPLETE" for t in study.trials):
            best = study.best_trial
            metrics[f"best_{self._metric_names(1)[0]}"] = float(best.value)
            tags["optuna.best_trial"] = str(best.number)
            tags.update({f"optuna.best_params.{k}": str(v) for k, v in best.params.items()})
        self._log(study).finish(study.study_name, metrics=metrics, tags=tags)

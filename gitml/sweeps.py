"""Sweeps as runs: one parent run per study, one nested run per trial (what :mod:`gitml.optuna`
and :mod:`gitml.ray` record, each from its engine's callbacks).

A study's parent run is found by its tags (``sweep.engine`` = the engine, ``sweep.study`` = the
study's name) in the experiment, so workers that each log into their own clone of one team
repository share the parent their coordinator created and pushed: each worker's trials are new runs
(their own refs, never a shared one), and every worker pushes without conflict. A worker that finds
no parent creates one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitml.client import Client

ENGINE_TAG = "sweep.engine"
STUDY_TAG = "sweep.study"
TRIAL_TAG = "sweep.trial"
STATE_TAG = "sweep.trial_state"


def _millis(when: Any) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


class SweepLog:
    """Parent and trial runs of one engine's studies in one experiment (``experiment_name``,
    created when missing; default: the Default experiment), through ``client`` (default: the
    fluent Client of the current repository)."""

    def __init__(self, engine: str, *, experiment_name: str | None = None, client: Client | None = None):
        if client is None:
            from gitml import fluent

            client = fluent.client()
        self.client = client
        self.engine = engine
        self.experiment_name = experiment_name
        self._experiment_id: str | None = None
        self._parents: dict[str, str] = {}

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            if self.experiment_name is None:
                from gitml.names import DEFAULT_EXPERIMENT_ID

                self._experiment_id = DEFAULT_EXPERIMENT_ID
            else:
                found = self.client.get_experiment_by_name(self.experiment_name)
                self._experiment_id = (
                    found.experiment_id if found else self.client.create_experiment(self.experiment_name)
                )
        return self._experiment_id

    def find_parent(self, study: str) -> str | None:
        """The id of the study's parent run in the experiment, if there is one (the oldest, if
        several workers each made one before any saw another's)."""
        if study in self._parents:
            return self._parents[study]
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{ENGINE_TAG}` = '{self.engine}'",
            max_results=50_000,
            order_by=["attributes.start_time ASC"],
        )
        for run in runs:
            if run.data.tags.get(STUDY_TAG) == study and TRIAL_TAG not in run.data.tags:
                self._parents[study] = run.info.run_id
                return run.info.run_id
        return None

    def parent(self, study: str, *, params: dict | None = None, tags: dict | None = None) -> str:
        """The study's parent run id, created (RUNNING, named after the study) when there is none."""
        found = self.find_parent(study)
        if found is not None:
            return found
        run = self.client.create_run(
            self.experiment_id, run_name=study, tags={**(tags or {}), ENGINE_TAG: self.engine, STUDY_TAG: study}
        )
        if params:
            self.client.log_batch(run.info.run_id, params=list(params.items()))
        self._parents[study] = run.info.run_id
        return run.info.run_id

    def trial(
        self,
        study: str,
        number: int,
        *,
        name: str | None = None,
        params: dict | None = None,
        history: dict[str, list[tuple[int, float, int | None]]] | None = None,
        metrics: dict[str, float] | None = None,
        state: str,
        status: str,
        start: Any = None,
        end: Any = None,
        tags: dict | None = None,
    ) -> str:
        """Log a finished trial as a run nested in the study's: ``params``, ``history`` (metric →
        ``(step, value, timestamp ms)`` points), final ``metrics``, the engine's ``state`` (a tag)
        and the run ``status`` (FINISHED, FAILED, KILLED); ``start``/``end`` are datetimes."""
        parent = self.parent(study)
        end_ms = _millis(end) or int(time.time() * 1000)
        run = self.client.create_run(
            self.experiment_id,
            start_time=_millis(start),
            run_name=name or f"{study}-trial-{number}",
            tags={**(tags or {}), ENGINE_TAG: self.engine, STUDY_TAG: study, TRIAL_TAG: str(number), STATE_TAG: state},
            parent_run_id=parent,
        )
        points = [
            (key, value, ts if ts is not None else end_ms, step)
            for key, series in (history or {}).items()
            for step, value, ts in series
        ]
        points += [(key, value, end_ms, 0) for key, value in (metrics or {}).items()]
        self.client.log_batch(run.info.run_id, metrics=points, params=[(k, v) for k, v in (params or {}).items()])
        self.client.set_terminated(run.info.run_id, status, end_time=end_ms)
        return run.info.run_id

    def finish(
        self, study: str, *, metrics: dict[str, float] | None = None, tags: dict | None = None, status: str = "FINISHED"
    ) -> None:
        """End the study's parent run, with its summary ``metrics`` and ``tags``."""
        parent = self.parent(study)
        self.client.log_batch(
            parent, metrics=[(k, v, None, None) for k, v in (metrics or {}).items()], tags=list((tags or {}).items())
        )
        self.client.set_terminated(parent, status)

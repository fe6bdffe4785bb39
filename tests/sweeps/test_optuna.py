"""gitml.optuna.Callback on a real Optuna study: one parent run per study, a nested run per trial
with its params, intermediate values as metric history, its value and its state."""

from __future__ import annotations

import optuna
import pytest

import gitml
import gitml.optuna
from gitml.sweeps import STATE_TAG, STUDY_TAG, TRIAL_TAG


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if trial.number == 3:
        raise ValueError("a trial that fails")
    for step in range(5):
        trial.report((x - 2) ** 2 + step, step)
        if trial.number == 4 and step == 2:
            raise optuna.TrialPruned()
    trial.set_user_attr("note", f"kind {kind}")
    return (x - 2) ** 2


def test_a_study_is_a_parent_run_and_each_trial_a_nested_run(repo):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="quadratic", sampler=optuna.samplers.RandomSampler(seed=1))
    callback = gitml.optuna.Callback()
    study.optimize(objective, n_trials=6, callbacks=[callback], catch=(ValueError,))
    callback.finish(study)

    client = gitml.Client(repo)
    experiment = client.get_experiment_by_name("quadratic")  # the study's name, as Optuna's MLflow callback
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if TRIAL_TAG not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "quadratic"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params == {"directions": "MINIMIZE"}
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["optuna.best_trial"] == str(study.best_trial.number)
    trials = {int(r.data.tags[TRIAL_TAG]): r for r in runs if TRIAL_TAG in r.data.tags}
    assert sorted(trials) == list(range(6))
    for t in study.trials:
        run = trials[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[STUDY_TAG] == "quadratic" and run.data.tags[STATE_TAG] == t.state.name
        assert run.data.params == {"x": str(t.params["x"]), "kind": t.params["kind"]}
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "intermediate_value")]
        assert history == sorted(t.intermediate_values.items())
        assert run.info.start_time == int(t.datetime_start.timestamp() * 1000)
    assert trials[3].info.status == "FAILED" and "value" not in trials[3].data.metrics
    assert (
        trials[4].info.status == "KILLED"
        and len(client.get_metric_history(trials[4].info.run_id, "intermediate_value")) == 3
    )
    done = trials[0]
    assert done.info.status == "FINISHED" and done.data.metrics["value"] == pytest.approx(study.trials[0].value)
    assert done.data.tags["optuna.user_attr.note"] == f"kind {study.trials[0].params['kind']}"


def test_a_second_callback_finds_the_studys_run_instead_of_making_another(repo):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="shared", directions=["minimize", "maximize"])
    gitml.optuna.Callback("sweeps").study_run(study)

    def two(trial):
        x = trial.suggest_int("x", 0, 5)
        return x, -x

    study.optimize(two, n_trials=3, callbacks=[gitml.optuna.Callback("sweeps", metric_name=["loss", "gain"])])
    client = gitml.Client(repo)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    assert len([r for r in runs if TRIAL_TAG not in r.data.tags]) == 1
    assert {tuple(sorted(r.data.metrics)) for r in runs if TRIAL_TAG in r.data.tags} == {("gain", "loss")}
    with pytest.raises(gitml.InvalidInputError, match="metric_name names 1 values; the study has 2"):
        gitml.optuna.Callback("sweeps", metric_name=["only"])(study, study.trials[0])

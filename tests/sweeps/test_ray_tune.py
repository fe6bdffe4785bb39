"""gitml.ray.LoggerCallback under a real Ray Tune run (Ray local, 2 CPUs, one Ray for the test
run): a parent run per Tune experiment, a nested run per trial with its config and its reported
results as metric history, a failed trial FAILED."""

from __future__ import annotations

import pytest

from gitml.sweeps import STATE_TAG, TRIAL_TAG

pytestmark = pytest.mark.slow  # Ray starts once per session (10-20 s here)


def trainable(config):
    from ray import tune

    if config["lr"] == 0.3:
        raise RuntimeError("this trial fails")
    for i in range(3):
        tune.report({"loss": config["lr"] * (3 - i), "nested": {"acc": 0.5 + i / 10}, "label": "text"})


def test_each_trial_is_a_nested_run_with_its_history(ray_local, repo, tmp_path):
    from ray import tune

    import gitml.ray

    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3]), "opt": {"name": "sgd"}},
        run_config=tune.RunConfig(
            name="lr-search",
            storage_path=str(tmp_path / "ray"),
            callbacks=[gitml.ray.LoggerCallback("tuning", client=gitml.Client(repo))],
            failure_config=tune.FailureConfig(fail_fast=False),
            verbose=0,
        ),
    )
    tuner.fit()
    client = gitml.Client(repo)
    runs = client.search_runs([client.get_experiment_by_name("tuning").experiment_id])
    parents = [r for r in runs if TRIAL_TAG not in r.data.tags]
    trials = [r for r in runs if TRIAL_TAG in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "lr-search" and len(trials) == 3
    by_lr = {r.data.params["lr"]: r for r in trials}
    assert set(by_lr) == {"0.1", "0.2", "0.3"}
    for lr in ("0.1", "0.2"):
        run = by_lr[lr]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.info.status == "FINISHED" and run.data.tags[STATE_TAG] == "TERMINATED"
        assert run.data.params["opt/name"] == "sgd"
        loss = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in loss] == [(i + 1, pytest.approx(float(lr) * (3 - i))) for i in range(3)]
        assert [m.value for m in client.get_metric_history(run.info.run_id, "nested/acc")] == pytest.approx(
            [0.5, 0.6, 0.7]
        )
        assert "label" not in run.data.metrics
    assert by_lr["0.3"].info.status == "FAILED" and by_lr["0.3"].data.tags[STATE_TAG] == "ERROR"

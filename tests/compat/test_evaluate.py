"""``gitml.evaluate`` against ``mlflow.models.evaluate`` (MLflow 3.17.2 in its own venv): one
model folder (saved by gitml, which MLflow loads), one dataset, the same metric names and
values for a binary and a multiclass classifier and a regressor; the metrics, plots and
dataset land in the run; a function and static predictions evaluate too; bad input is one
line naming what is wrong."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

import gitml
import gitml.sklearn
from gitml.errors import InvalidInputError
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

_MLFLOW_ENV = {
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1",
}

MLFLOW_SIDE = """
import json, sys, warnings, mlflow, pandas as pd
warnings.simplefilter("ignore")
mlflow.set_tracking_uri("sqlite:///mlflow.db")
out = {}
for case, model_type in json.loads(sys.argv[1]).items():
    with mlflow.start_run() as run:
        result = mlflow.models.evaluate(case, pd.read_csv(case + ".csv"), targets="label", model_type=model_type)
    artifacts = [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    out[case] = {"metrics": {k: float(v) for k, v in result.metrics.items()}, "artifacts": artifacts,
                 "logged": mlflow.get_run(run.info.run_id).data.metrics}
print(json.dumps(out))
"""


def _cases(folder) -> dict[str, str]:
    """Three models saved by gitml and their test sets as CSV: ``{case: model_type}``."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = {}
    for case, loader, estimator, model_type in (
        ("binary", load_breast_cancer, make_pipeline(StandardScaler(), LogisticRegression(C=0.05)), "classifier"),
        ("multiclass", load_iris, make_pipeline(StandardScaler(), LogisticRegression(C=0.1)), "classifier"),
        ("regressor", load_diabetes, LinearRegression(), "regressor"),
    ):
        X, y = loader(return_X_y=True, as_frame=True)
        X.columns = [c.replace(" ", "_") for c in X.columns]
        train, test = slice(0, None, 2), slice(1, None, 2)
        model = estimator.fit(X.iloc[train], y.iloc[train])
        gitml.sklearn.save_model(model, os.path.join(folder, case))
        X.iloc[test].assign(label=y.iloc[test].to_numpy()).to_csv(os.path.join(folder, f"{case}.csv"), index=False)
        cases[case] = model_type
    return cases


@pytest.mark.mlflow
def test_metrics_match_mlflow_evaluate_by_name_and_value(repo, tmp_path, mlflow_python):  # noqa: F811
    data = tmp_path / "cases"
    data.mkdir()
    cases = _cases(data)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | _MLFLOW_ENV
    done = subprocess.run(
        [mlflow_python, "-c", MLFLOW_SIDE, json.dumps(cases)],
        cwd=data,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    gitml.set_tracking_uri(str(repo))
    for case, model_type in cases.items():
        frame = pd.read_csv(data / f"{case}.csv")
        with gitml.start_run() as run:
            result = gitml.evaluate(str(data / case), frame, targets="label", model_type=model_type)
        mine, expected = result.metrics, theirs[case]["metrics"]
        assert sorted(mine) == sorted(expected), (case, set(mine) ^ set(expected))
        for name, value in expected.items():
            assert mine[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (case, name)
        logged = gitml.get_run(run.info.run_id).data.metrics
        assert logged == pytest.approx(theirs[case]["logged"], rel=1e-9)  # what the run holds, as MLflow's run does
        names = {a.path for a in gitml.Client(repo).list_artifacts(run.info.run_id)}
        if model_type == "classifier":
            expected_plots = {"confusion_matrix.png", "roc_curve_plot.png", "precision_recall_curve_plot.png"}
            assert expected_plots <= set(theirs[case]["artifacts"])  # MLflow's names
        else:
            expected_plots = {"residuals_plot.png"}  # gitml's: MLflow draws none for a regressor
        assert names == expected_plots and set(result.artifacts) == {p[:-4] for p in expected_plots}
        assert result.artifacts[sorted(result.artifacts)[0]].uri.startswith(f"runs:/{run.info.run_id}/")
        inputs = gitml.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1 and json.loads(inputs[0].dataset.profile)["num_rows"] == len(frame)


def test_a_function_static_predictions_and_a_new_run(repo):
    gitml.set_tracking_uri(str(repo))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(scale=0.1, size=200)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)
    result = gitml.evaluate(
        lambda df: df["a"] - 2 * df["b"] + 0.5 * df["c"], frame, targets="y", model_type="regressor"
    )
    assert result.metrics["example_count"] == 200 and result.metrics["r2_score"] > 0.99
    assert gitml.active_run() is None  # the run it started is ended
    assert gitml.get_run(result.run_id).data.metrics["root_mean_squared_error"] == pytest.approx(
        result.metrics["root_mean_squared_error"]
    )
    labels = (y > 0).astype(int)
    static = pd.DataFrame({"x": X[:, 0], "label": labels, "pred": (X[:, 0] - 2 * X[:, 1] > 0).astype(int)})
    with gitml.start_run():
        found = gitml.evaluate(
            data=static,
            predictions="pred",
            targets="label",
            model_type="classifier",
            evaluator_config={"metric_prefix": "val_"},
        )
    assert {"val_accuracy_score", "val_true_positives", "val_f1_score"} <= set(found.metrics)
    assert "val_roc_auc" not in found.metrics  # no probabilities, as MLflow
    assert (
        set(found.artifacts) == {"confusion_matrix"}
        and found.artifacts["confusion_matrix"].path == "val_confusion_matrix.png"
    )
    array = gitml.evaluate(lambda df: np.zeros(len(df)), X, targets=y, model_type="regressor")
    assert array.metrics["mean_on_target"] == pytest.approx(y.mean())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model_type": "ranker", "targets": "y"}, "model_type must be one of classifier, regressor, not 'ranker'"),
        ({"model_type": "regressor", "targets": "z"}, "targets must name a column of data (its columns: a, y)"),
        (
            {"model_type": "regressor", "targets": "y", "evaluator_config": {"pos_lable": 1}},
            "evaluator_config: unknown key(s) pos_lable",
        ),
        (
            {"model_type": "classifier", "targets": "y", "evaluator_config": {"label_list": [0, 1], "pos_label": 2}},
            "pos_label 2 must be one of label_list",
        ),
    ],
)
def test_bad_input_is_one_line(repo, kwargs, message):
    gitml.set_tracking_uri(str(repo))
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]})
    with pytest.raises(InvalidInputError) as e:
        gitml.evaluate(lambda df: df["a"] > 1, frame, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)

"""``gitml.autolog()`` for scikit-learn: one training script run with MLflow 3.17.2's
``mlflow.autolog()`` (its own venv) and with gitml's logs the same params, metric names and
values, tags, plots and dataset inputs; ``disable=``, ``log_models=``,
``log_input_examples=``, ``exclusive=`` behave as MLflow's; a pipeline's inner fits log
nothing of their own; training never breaks on a logging failure; autolog patches a
library imported after it is enabled."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import gitml
from tests.conftest import ROOT, git
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import {lib} as lib
{setup}
lib.autolog()
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_iris(return_X_y=True, as_frame=True)
Xb, yb = load_breast_cancer(return_X_y=True)
Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
cases = {{
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
    "binary_numpy": lambda: LogisticRegression(C=0.01, max_iter=500).fit(Xb, yb),
    "grid": lambda: GridSearchCV(Ridge(), {{"alpha": [0.1, 1.0]}}, cv=3).fit(Xr, yr),
}}
out = {{}}
for name, fit in cases.items():
    fit()
    run = lib.get_run(lib.last_active_run().info.run_id)
    files = [f.path for f in {client}.list_artifacts(run.info.run_id)]
    out[name] = {{"params": run.data.params, "metrics": run.data.metrics,
                 "tags": {{k: v for k, v in run.data.tags.items()
                          if k in ("estimator_name", "estimator_class", "mlflow.autologging")}},
                 "artifacts": sorted(files), "status": run.info.status,
                 "inputs": [[t.value for t in d.tags if t.key == "mlflow.data.context"]
                            for d in run.inputs.dataset_inputs]}}
print(json.dumps(out))
"""


def _run(python: str, code: str, cwd, env: dict) -> dict:
    done = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.mlflow
@pytest.mark.slow
def test_the_same_script_logs_what_mlflow_autolog_logs(repo, tmp_path, mlflow_python):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
    theirs = _run(
        mlflow_python,
        SCRIPT.format(lib="mlflow", setup='lib.set_tracking_uri("sqlite:///mlflow.db")', client="lib.MlflowClient()"),
        tmp_path,
        env,
    )
    mine = _run(
        sys.executable,
        SCRIPT.format(lib="gitml", setup="", client="lib.Client()"),
        repo,
        {**os.environ, "PYTHONPATH": ROOT},
    )
    assert sorted(mine) == sorted(theirs)
    for case, expected in theirs.items():
        got = mine[case]
        assert got["params"] == expected["params"], case
        assert sorted(got["metrics"]) == sorted(expected["metrics"]), case
        for key, value in expected["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, rel=1e-9), (case, key)
        assert got["tags"] == expected["tags"], case
        assert got["inputs"] == expected["inputs"] == [["train"]], case
        assert got["status"] == expected["status"] == "FINISHED"
        # MLflow 3 logs models as LoggedModels beside the run; gitml logs them into the run
        assert set(got["artifacts"]) - set(expected["artifacts"]) <= {"model", "best_estimator"}, case
        assert set(expected["artifacts"]) <= set(got["artifacts"]), case
        assert "model" in got["artifacts"]


@pytest.fixture
def autologged(repo):
    from sklearn.datasets import load_iris

    gitml.set_tracking_uri(str(repo))
    yield load_iris(return_X_y=True, as_frame=True)
    gitml.autolog(disable=True)


def _last(client) -> gitml.Run:
    return client.get_run(gitml.last_active_run().info.run_id)


def test_the_arguments_act_as_mlflows(repo, autologged):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = autologged
    client = gitml.Client(repo)
    gitml.autolog(log_models=False, extra_tags={"team": "churn"})
    make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    run = _last(client)
    assert run.data.tags["team"] == "churn" and run.data.tags["mlflow.autologging"] == "sklearn"
    assert "model" not in {f.path for f in client.list_artifacts(run.info.run_id)}
    assert len(client.search_runs([run.info.experiment_id])) == 1  # the pipeline's inner fits log no runs
    gitml.autolog(log_input_examples=True)
    LogisticRegression(max_iter=300).fit(X, y)
    run = _last(client)
    model = gitml.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.input_example is not None and len(model.input_example) == 5
    assert model.metadata.get_input_schema().input_names() == list(X.columns)
    gitml.autolog(exclusive=True)
    with gitml.start_run() as mine:
        LogisticRegression(max_iter=300).fit(X, y)
    assert client.get_run(mine.info.run_id).data.params == {}  # a run the user started is left alone
    gitml.autolog(disable=True)
    count = len(client.search_runs([run.info.experiment_id]))
    LogisticRegression(max_iter=300).fit(X, y)
    assert len(client.search_runs([run.info.experiment_id])) == count
    assert "__gitml_autolog__" not in vars(LogisticRegression.fit)


def test_into_the_active_run_and_training_survives_a_logging_failure(repo, autologged, caplog):
    from sklearn.linear_model import LinearRegression

    X, y = autologged
    gitml.autolog()

    class Odd(LinearRegression):
        def get_params(self, deep=True):  # sklearn's own checks ask deep=False; autolog asks deep=True
            if deep:
                raise RuntimeError("no params today")
            return super().get_params(deep=False)

    with gitml.start_run() as run:
        model = Odd().fit(X, y.astype(float))
    assert model.coef_.shape == (4,)  # trained all the same
    assert "gitml: autolog: logging the params failed: RuntimeError: no params today" in caplog.text
    logged = gitml.get_run(run.info.run_id).data
    assert "training_r2_score" in logged.metrics and "mlflow.autologging" not in logged.tags


def test_a_library_imported_after_autolog_is_patched(repo, tmp_path):
    script = (
        "import sys, gitml\ngitml.autolog()\nassert 'sklearn' not in sys.modules\n"
        "from sklearn.linear_model import Ridge\nimport numpy as np\n"
        "Ridge().fit(np.eye(4), np.arange(4.0))\n"
        "print(sorted(gitml.get_run(gitml.last_active_run().info.run_id).data.params))\n"
    )
    git(repo, "status")
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'alpha'" in out.stdout.strip().splitlines()[-1]


XGB_SCRIPT = """
import json, warnings
warnings.simplefilter("ignore")
import {lib} as lib
{setup}
lib.autolog()
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
dtrain, dvalid = xgb.DMatrix(X.iloc[::2], label=y.iloc[::2]), xgb.DMatrix(X.iloc[1::2], label=y.iloc[1::2])
xgb.train({{"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "max_depth": 3, "seed": 0}}, dtrain,
          num_boost_round=20, evals=[(dtrain, "train"), (dvalid, "valid")], early_stopping_rounds=3, verbose_eval=False)
run = lib.get_run(lib.last_active_run().info.run_id)
client = {client}
history = {{k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}}
print(json.dumps({{"params": run.data.params, "metrics": run.data.metrics, "history": history,
                  "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
                  "tags": run.data.tags.get("mlflow.autologging"),
                  "inputs": sorted([d.dataset.name, [t.value for t in d.tags]] for d in run.inputs.dataset_inputs)}}))
"""


@pytest.mark.mlflow
@pytest.mark.slow
def test_xgboost_train_logs_what_mlflow_autolog_logs(repo, tmp_path, mlflow_python):  # noqa: F811
    pytest.importorskip("xgboost")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
    theirs = _run(
        mlflow_python,
        XGB_SCRIPT.format(
            lib="mlflow", setup='lib.set_tracking_uri("sqlite:///mlflow.db")', client="lib.MlflowClient()"
        ),
        tmp_path,
        env,
    )
    mine = _run(
        sys.executable,
        XGB_SCRIPT.format(lib="gitml", setup="", client="lib.Client()"),
        repo,
        {**os.environ, "PYTHONPATH": ROOT},
    )
    assert mine["params"] == theirs["params"]
    assert sorted(mine["metrics"]) == sorted(theirs["metrics"])
    for key, value in theirs["metrics"].items():
        assert mine["metrics"][key] == pytest.approx(value, rel=1e-6), key
        assert [s for s, _ in mine["history"][key]] == [s for s, _ in theirs["history"][key]], key  # per iteration
        assert [v for _, v in mine["history"][key]] == pytest.approx([v for _, v in theirs["history"][key]], rel=1e-6)
    assert mine["tags"] == theirs["tags"] == "xgboost"
    assert mine["inputs"] == theirs["inputs"]
    assert set(theirs["artifacts"]) <= set(mine["artifacts"]) <= set(theirs["artifacts"]) | {"model"}


@pytest.mark.mlflow
@pytest.mark.slow
def test_lightgbm_train_logs_what_mlflow_autolog_logs(repo, tmp_path, mlflow_python):  # noqa: F811
    pytest.importorskip("lightgbm")
    script = (
        XGB_SCRIPT.replace("import xgboost as xgb", "import lightgbm as lgb")
        .replace(
            "dtrain, dvalid = xgb.DMatrix(X.iloc[::2], label=y.iloc[::2]), "
            "xgb.DMatrix(X.iloc[1::2], label=y.iloc[1::2])",
            "dtrain = lgb.Dataset(X.iloc[::2], label=y.iloc[::2]); "
            "dvalid = lgb.Dataset(X.iloc[1::2], label=y.iloc[1::2])",
        )
        .replace(
            'xgb.train({{"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], '
            '"max_depth": 3, "seed": 0}}, dtrain,\n'
            '          num_boost_round=20, evals=[(dtrain, "train"), (dvalid, "valid")], '
            "early_stopping_rounds=3, verbose_eval=False)",
            'lgb.train({{"objective": "binary", "metric": ["binary_logloss", "auc"], '
            '"num_leaves": 7, "seed": 0, "verbose": -1}},\n'
            '          dtrain, num_boost_round=20, valid_sets=[dtrain, dvalid], valid_names=["train", "valid"],\n'
            "          callbacks=[lgb.early_stopping(3, verbose=False)])",
        )
    )
    assert "lgb.train" in script and "xgb" not in script
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
    theirs = _run(
        mlflow_python,
        script.format(lib="mlflow", setup='lib.set_tracking_uri("sqlite:///mlflow.db")', client="lib.MlflowClient()"),
        tmp_path,
        env,
    )
    mine = _run(
        sys.executable,
        script.format(lib="gitml", setup="", client="lib.Client()"),
        repo,
        {**os.environ, "PYTHONPATH": ROOT},
    )
    assert mine["params"] == theirs["params"]
    assert sorted(mine["metrics"]) == sorted(theirs["metrics"])
    for key, value in theirs["metrics"].items():
        assert mine["metrics"][key] == pytest.approx(value, rel=1e-6), key
        assert [s for s, _ in mine["history"][key]] == [s for s, _ in theirs["history"][key]], key
    assert mine["tags"] == theirs["tags"] == "lightgbm"
    assert mine["inputs"] == theirs["inputs"]
    assert set(theirs["artifacts"]) <= set(mine["artifacts"]) <= set(theirs["artifacts"]) | {"model"}


SKLEARN_API_SCRIPT = """
import json, warnings
warnings.simplefilter("ignore")
import {lib} as lib
{setup}
lib.autolog()
import lightgbm as lgb, xgboost as xgb
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
client = {client}
out = {{}}
def record(case):
    run = lib.get_run(lib.last_active_run().info.run_id)
    history = {{k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
               for k in run.data.metrics}}
    out[case] = {{"params": run.data.params, "metrics": run.data.metrics, "history": history,
                 "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
                 "tags": run.data.tags.get("mlflow.autologging"), "status": run.info.status,
                 "signature": lib.pyfunc.load_model({model_uri}).metadata.signature.to_dict(),
                 "inputs": sorted([d.dataset.name, [t.value for t in d.tags]] for d in run.inputs.dataset_inputs)}}
xgb.XGBClassifier(n_estimators=20, max_depth=3, eval_metric=["logloss", "auc"], early_stopping_rounds=3,
                  random_state=0).fit(
    X.iloc[::2], y.iloc[::2], eval_set=[(X.iloc[::2], y.iloc[::2]), (X.iloc[1::2], y.iloc[1::2])], verbose=False)
record("xgb_classifier")
xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(X.values, y.values.astype(float))
record("xgb_regressor")
lgb.LGBMClassifier(n_estimators=20, num_leaves=7, random_state=0, verbose=-1).fit(
    X.iloc[::2], y.iloc[::2], eval_set=[(X.iloc[1::2], y.iloc[1::2])], eval_metric="auc",
    callbacks=[lgb.early_stopping(3, verbose=False)])
record("lgbm_classifier")
lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X.values, y.values.astype(float))
record("lgbm_regressor")
print(json.dumps(out))
"""


@pytest.mark.mlflow
@pytest.mark.slow
def test_the_sklearn_api_of_xgboost_and_lightgbm_logs_what_mlflow_autolog_logs(repo, tmp_path, mlflow_python):  # noqa: F811
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
    theirs = _run(
        mlflow_python,
        SKLEARN_API_SCRIPT.format(
            lib="mlflow",
            setup='lib.set_tracking_uri("sqlite:///mlflow.db")',
            client="lib.MlflowClient()",
            model_uri='"models:/" + lib.last_logged_model().model_id',
        ),
        tmp_path,
        env,
    )
    mine = _run(
        sys.executable,
        SKLEARN_API_SCRIPT.format(
            lib="gitml", setup="", client="lib.Client()", model_uri='f"runs:/{run.info.run_id}/model"'
        ),
        repo,
        {**os.environ, "PYTHONPATH": ROOT},
    )
    assert sorted(mine) == sorted(theirs)
    for case, expected in theirs.items():
        got = mine[case]
        assert got["params"] == expected["params"], case
        assert sorted(got["metrics"]) == sorted(expected["metrics"]), case
        for key, value in expected["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, rel=1e-6), (case, key)
            assert [s for s, _ in got["history"][key]] == [s for s, _ in expected["history"][key]], (case, key)
        assert got["tags"] == expected["tags"] and got["status"] == expected["status"] == "FINISHED", case
        assert got["inputs"] == expected["inputs"], case
        assert got["signature"] == expected["signature"], case
        # MLflow 3 logs the model as a LoggedModel beside the run; gitml logs it into the run
        assert set(expected["artifacts"]) | {"model"} == set(got["artifacts"]), case
    assert "validation_1-auc" in theirs["xgb_classifier"]["metrics"]  # the script exercises eval_set


def test_the_sklearn_api_of_xgboost_and_lightgbm_logs_the_fitted_estimator(repo, autologged):
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    import gitml.lightgbm
    import gitml.xgboost

    X, y = autologged
    client = gitml.Client(repo)
    gitml.autolog(log_input_examples=True)
    for cls, flavor in ((xgboost.XGBClassifier, gitml.xgboost), (lightgbm.LGBMClassifier, gitml.lightgbm)):
        fitted = cls(n_estimators=4, max_depth=2, verbose=0 if cls is xgboost.XGBClassifier else -1).fit(X, y)
        run = _last(client)
        uri = f"runs:/{run.info.run_id}/model"
        loaded = flavor.load_model(uri)
        assert type(loaded) is cls and (loaded.predict(X) == fitted.predict(X)).all()
        pyfunc = gitml.pyfunc.load_model(uri)
        assert pyfunc.metadata.get_input_schema().input_names() == list(X.columns)
        assert pyfunc.metadata.get_output_schema() is not None  # as MLflow infers it: the differential test
        assert len(pyfunc.input_example) == 5
        assert len(client.search_runs([run.info.experiment_id], f"attributes.run_id = '{run.info.run_id}'")) == 1
    gitml.autolog(exclusive=True)
    with gitml.start_run() as mine:
        xgboost.XGBRegressor(n_estimators=3).fit(X, y.astype(float), eval_set=[(X, y.astype(float))], verbose=False)
        lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y.astype(float))
    assert client.get_run(mine.info.run_id).data.params == {}  # a run the user started is left alone
    assert client.get_run(mine.info.run_id).data.metrics == {}
    gitml.xgboost.autolog(disable=True)  # one integration, as mlflow.xgboost.autolog(disable=True)
    assert "__gitml_autolog__" not in vars(xgboost.XGBClassifier.fit) and xgboost.sklearn.train is xgboost.train
    assert "__gitml_autolog__" in vars(lightgbm.LGBMClassifier.fit)
    gitml.autolog(disable=True)
    assert "__gitml_autolog__" not in vars(lightgbm.LGBMClassifier.fit)


DEEP_SCRIPT = """
import json, os, warnings
warnings.simplefilter("ignore")
os.environ["KERAS_BACKEND"] = "torch"
import {lib} as lib
{setup}
lib.keras.autolog()
lib.pytorch.autolog()
import keras, lightning, numpy as np, torch
client = {client}
out = {{}}
def record(case):
    run = lib.get_run(lib.last_active_run().info.run_id)
    history = {{k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
               for k in run.data.metrics}}
    out[case] = {{"params": run.data.params, "history": history, "status": run.info.status,
                 "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
                 "checkpoints": sorted(f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")),
                 "tags": {{k: v for k, v in run.data.tags.items() if k in ("mlflow.autologging", "Mode")}},
                 "signature": lib.pyfunc.load_model({model_uri}).metadata.signature.to_dict(),
                 "inputs": sorted([d.dataset.name, [t.value for t in d.tags]] for d in run.inputs.dataset_inputs)}}
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 4)).astype("float32"); y = (X[:, 0] > 0).astype("int64")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(X, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0)
record("keras")

class Net(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
    def forward(self, x):
        return self.layer(x)
    def training_step(self, batch, i):
        loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss
    def validation_step(self, batch, i):
        self.log("val_loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
loader = torch.utils.data.DataLoader(data, batch_size=16)
lightning.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(Net(), loader, loader)
record("lightning")
print(json.dumps(out))
"""


@pytest.mark.mlflow
@pytest.mark.slow
def test_keras_and_lightning_log_what_mlflow_autolog_logs(repo, tmp_path, mlflow_python):  # noqa: F811
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("lightning") is None:
        pytest.skip("keras or lightning is not installed")  # not imported here: Keras needs KERAS_BACKEND first
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
    theirs = _run(
        mlflow_python,
        DEEP_SCRIPT.format(
            lib="mlflow",
            setup='import mlflow.keras, mlflow.pytorch; lib.set_tracking_uri("sqlite:///mlflow.db")',
            client="lib.MlflowClient()",
            model_uri='"models:/" + lib.last_logged_model().model_id',
        ),
        tmp_path,
        env,
    )
    mine = _run(
        sys.executable,
        DEEP_SCRIPT.format(
            lib="gitml",
            setup="import gitml.keras, gitml.pytorch",
            client="lib.Client()",
            model_uri='f"runs:/{run.info.run_id}/model"',
        ),
        repo,
        {**os.environ, "PYTHONPATH": ROOT},
    )
    for case in ("keras", "lightning"):
        got, expected = mine[case], theirs[case]
        assert got["params"] == expected["params"], case
        assert sorted(got["history"]) == sorted(expected["history"]), case
        for key, points in expected["history"].items():  # each epoch's value at its step
            assert [s for s, _ in got["history"][key]] == [s for s, _ in points], (case, key)
            assert [v for _, v in got["history"][key]] == pytest.approx([v for _, v in points], rel=1e-5), (case, key)
        assert got["tags"] == expected["tags"] and got["status"] == expected["status"] == "FINISHED", case
        assert got["inputs"] == expected["inputs"], case
        assert got["signature"] == expected["signature"], case
        assert got["checkpoints"] == expected["checkpoints"], case
        assert set(expected["artifacts"]) | {"model"} == set(got["artifacts"]), case
    assert "validation_loss" in theirs["keras"]["history"] and "val_loss" in theirs["lightning"]["history"]
    assert "checkpoints/latest_checkpoint.pth" in theirs["lightning"]["checkpoints"]


def test_keras_and_lightning_log_models_datasets_and_early_stopping(repo, monkeypatch):
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("lightning") is None:
        pytest.skip("keras or lightning is not installed")
    if "keras" not in sys.modules:
        monkeypatch.setenv("KERAS_BACKEND", "torch")
    import keras
    import lightning
    import numpy as np
    import torch

    if keras.backend.backend() != "torch":
        pytest.skip("keras was imported with another backend")
    import gitml.keras
    import gitml.pytorch

    gitml.set_tracking_uri(str(repo))
    client = gitml.Client(repo)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(32, 3)).astype("float32")
    y = (X[:, 1] > 0).astype("int64")
    try:
        gitml.keras.autolog()
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        net.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(X, y, epochs=2, batch_size=8, validation_data=(X[:8], y[:8]), verbose=0)
        run = _last(client)
        assert [d.tags[0].value for d in run.inputs.dataset_inputs] == ["train", "eval"]
        assert run.data.params["optimizer_name"] == "SGD".lower() and run.data.params["epochs"] == "2"
        loaded = gitml.keras.load_model(f"runs:/{run.info.run_id}/model")
        assert np.allclose(loaded.predict(X, verbose=0), net.predict(X, verbose=0))

        class Net(lightning.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(3, 2)

            def forward(self, x):
                return self.layer(x)

            def training_step(self, batch, i):
                return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

            def validation_step(self, batch, i):
                self.log("val_loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        gitml.pytorch.autolog(checkpoint=False, extra_tags={"team": "vision"})
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)))
        stop = lightning.pytorch.callbacks.EarlyStopping("val_loss", mode="max", patience=1)  # loss falls: stops
        trainer = lightning.Trainer(
            max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[stop]
        )
        module = Net()
        trainer.fit(module, loader, loader)
        run = _last(client)
        assert run.data.tags["team"] == "vision" and run.data.params["monitor"] == "val_loss"
        assert run.data.metrics["stopped_epoch"] == stop.stopped_epoch > 0 and "restored_epoch" in run.data.metrics
        assert "checkpoints" not in {f.path for f in client.list_artifacts(run.info.run_id)}
        assert trainer.callbacks == [
            c for c in trainer.callbacks if type(c).__module__ != "gitml.autologging.lightning"
        ]
        model = gitml.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        assert model.metadata.get_input_schema().to_dict()[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 3]}
        assert np.allclose(model.predict(X), module(torch.from_numpy(X)).detach().numpy(), atol=1e-6)
        assert "forward" not in vars(module)  # the first batch was captured; forward is the class's again

        gitml.autolog(exclusive=True)
        with gitml.start_run() as mine:
            net.fit(X, y, epochs=1, verbose=0)
            lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(
                Net(), loader
            )
        assert client.get_run(mine.info.run_id).data.params == {}  # a run the user started is left alone
    finally:
        gitml.autolog(disable=True)
    assert "__gitml_autolog__" not in vars(keras.Model.fit) and "__gitml_autolog__" not in vars(lightning.Trainer.fit)

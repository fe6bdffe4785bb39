"""Models both ways with the real MLflow 3.17.2 (its own venv, benchmarks/.venv-mlflow).

gitml's scikit-learn and PyTorch models load and predict the same in MLflow where gitml
cannot be imported; a PythonModel model loads in MLflow with gitml beside it; models MLflow
saved load and predict the same in gitml where MLflow cannot be imported; and scripts
written against MLflow's API (shaped as MLflow's wine examples) run with only their
imports changed to gitml, recording their models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, git, run_python
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

pytestmark = pytest.mark.mlflow

_MLFLOW_ENV = {
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # MLflow 3.17 refuses any pickle otherwise
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow infers a saved model's requirements by loading it in a subprocess (30 s and more on a
    # loaded machine); its fallback list is all these tests need
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1",
}


def _in_mlflow(python: str, code: str, cwd, *, with_gitml: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(_MLFLOW_ENV)
    if with_gitml:
        env["PYTHONPATH"] = ROOT
    result = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


GITML_SIDE = """
import json, numpy as np, pandas as pd, torch, gitml, gitml.sklearn, gitml.pytorch, gitml.pyfunc
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.linear_model import LogisticRegression
import gitml.ops
from gitml.models import infer_signature

class Net(torch.nn.Module):  # defined in __main__: travels by value, as MLflow's pickle module does it
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)
    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

class Scaled(gitml.pyfunc.PythonModel):
    def load_context(self, context):
        self.k = float(open(context.artifacts["k"]).read())
    def predict(self, context, model_input, params=None):
        return model_input["sepal length (cm)"] * self.k

X, y = load_iris(return_X_y=True, as_frame=True)
X = X.iloc[::4].reset_index(drop=True); y = (y.iloc[::4] == 1).astype(int).reset_index(drop=True)
pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
gitml.sklearn.save_model(pipe, "sk", signature=infer_signature(X, pipe.predict(X)), input_example=X.head(3))
torch.manual_seed(0)
net = Net()
x = X.to_numpy(dtype=np.float32)
gitml.pytorch.save_model(net, "pt", input_example=x[:5])
open("k.txt", "w").write("3")
gitml.pyfunc.save_model("pf", python_model=Scaled(), artifacts={"k": "k.txt"}, input_example=X.head(2))
with gitml.start_run():
    info = gitml.sklearn.log_model(pipe, name="model")
from gitml.pyfunc.batch import export_model
export_model(info.model_uri, "exported")
X.to_csv("X.csv", index=False)
print(json.dumps({"sk": pipe.predict(X).tolist(), "proba": pipe.predict_proba(X).tolist(),
                  "pt": net(torch.from_numpy(x)).detach().numpy().tolist(),
                  "pf": (X["sepal length (cm)"] * 3).tolist()}))
"""

MLFLOW_READS = """
import importlib.util, json, numpy as np, pandas as pd, mlflow, mlflow.pyfunc, mlflow.sklearn, mlflow.pytorch
assert importlib.util.find_spec("gitml") is None, "gitml must not be importable here"
X = pd.read_csv("X.csv")
out = {
    "sk": mlflow.pyfunc.load_model("sk").predict(X).tolist(),
    "proba": mlflow.sklearn.load_model("sk").predict_proba(X).tolist(),
    "exported": mlflow.pyfunc.load_model("exported").predict(X).tolist(),
    "pt": mlflow.pyfunc.load_model("pt").predict(X.to_numpy(dtype=np.float32)).tolist(),
    "pt_raw": mlflow.pytorch.load_model("pt")(
        __import__("torch").from_numpy(X.to_numpy(dtype=np.float32))
    ).detach().numpy().tolist(),
    "sig": mlflow.models.Model.load("sk").signature.inputs.input_names(),
    "example": mlflow.models.Model.load("sk").load_input_example("sk").shape[0],
}
print(json.dumps(out))
"""


def test_gitml_models_load_in_mlflow_without_gitml(mlflow_python, tmp_path):  # noqa: F811
    expected = json.loads(run_python(GITML_SIDE, cwd=tmp_path).stdout.strip().splitlines()[-1])
    got = _in_mlflow(mlflow_python, MLFLOW_READS, tmp_path)
    assert got["sk"] == expected["sk"] and got["exported"] == expected["sk"]
    np.testing.assert_allclose(got["proba"], expected["proba"])
    np.testing.assert_allclose(got["pt"], expected["pt"], rtol=1e-6)
    np.testing.assert_allclose(got["pt_raw"], expected["pt"], rtol=1e-6)
    assert got["sig"][0] == "sepal length (cm)" and got["example"] == 3
    code = (
        "import json, pandas as pd, mlflow.pyfunc, gitml\n"
        "m = mlflow.pyfunc.load_model('pf')\n"
        "print(json.dumps(m.predict(pd.read_csv('X.csv')).tolist()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [mlflow_python, "-c", code],
        cwd=tmp_path,
        env={**env, **_MLFLOW_ENV, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx(expected["pf"])


MLFLOW_SIDE = """
import json, numpy as np, pandas as pd, mlflow, mlflow.sklearn, mlflow.pyfunc
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

class Offset(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.offset = float(open(context.artifacts["offset"]).read())
    def predict(self, context, model_input, params=None):
        return model_input["alcohol"] + self.offset + (params or {}).get("extra", 0)

X, y = load_wine(return_X_y=True, as_frame=True)
forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
logistic = LogisticRegression(max_iter=5000).fit(X, y)
sig = mlflow.models.infer_signature(X, forest.predict(X))
mlflow.sklearn.save_model(forest, "skops_model", signature=sig, input_example=X.head(2),  # MLflow 3's default: skops
                         skops_trusted_types=["sklearn.tree._tree.Tree"], pip_requirements=["scikit-learn"])
mlflow.sklearn.save_model(logistic, "cloudpickle_model", serialization_format="cloudpickle", input_example=X.head(2),
                          pip_requirements=["scikit-learn"])
open("offset.txt", "w").write("0.25")
psig = mlflow.models.infer_signature(X[["alcohol"]], params={"extra": 0.0})
mlflow.pyfunc.save_model("pyfunc_model", python_model=Offset(), artifacts={"offset": "offset.txt"}, signature=psig,
                         pip_requirements=["scikit-learn"])
X.to_csv("wine.csv", index=False)
print(json.dumps({"forest": forest.predict(X).tolist(), "logistic": logistic.predict(X).tolist(),
                  "pyfunc": (X["alcohol"] + 0.25).tolist(), "pyfunc_extra": (X["alcohol"] + 1.25).tolist()}))
"""

GITML_READS = """
import importlib.util, json, sys, pandas as pd, gitml.pyfunc, gitml.sklearn
assert importlib.util.find_spec("mlflow") is None, "mlflow must not be importable here"
X = pd.read_csv("wine.csv")
out = {
    "forest": gitml.pyfunc.load_model("skops_model").predict(X).tolist(),
    "logistic": gitml.pyfunc.load_model("cloudpickle_model").predict(X).tolist(),
    "logistic_raw": gitml.sklearn.load_model("cloudpickle_model").predict(X).tolist(),
    "pyfunc": gitml.pyfunc.load_model("pyfunc_model").predict(X).tolist(),
    "pyfunc_extra": gitml.pyfunc.load_model("pyfunc_model").predict(X, params={"extra": 1.0}).tolist(),
    "mlflow_imported": any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules),
}
print(json.dumps(out))
"""


def test_mlflow_models_load_in_gitml_without_mlflow(mlflow_python, tmp_path):  # noqa: F811
    expected = _in_mlflow(mlflow_python, MLFLOW_SIDE, tmp_path)
    got = json.loads(run_python(GITML_READS, cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert not got.pop("mlflow_imported")
    assert got["forest"] == expected["forest"]
    assert got["logistic"] == expected["logistic"] == got["logistic_raw"]
    assert got["pyfunc"] == pytest.approx(expected["pyfunc"]) and got["pyfunc_extra"] == pytest.approx(
        expected["pyfunc_extra"]
    )


# Scripts written against MLflow's API, shaped as MLflow's examples/sklearn_elasticnet_wine and
# examples/sklearn_logistic_regression: positional artifact path, implicit run, numpy input
# example, the tracking URI's scheme checked. The data is a local copy (sklearn's wine data
# with a made-up "quality" column); nothing is downloaded.
ELASTICNET = """
import sys
from urllib.parse import urlparse
import numpy as np
import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
import mlflow
import mlflow.sklearn

data = pd.read_csv("winequality.csv", sep=";")
train, test = train_test_split(data, random_state=40)
train_x, test_x = train.drop(["quality"], axis=1), test.drop(["quality"], axis=1)
train_y, test_y = train[["quality"]], test[["quality"]]
alpha, l1_ratio = float(sys.argv[1]), float(sys.argv[2])
with mlflow.start_run():
    lr = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(train_x, train_y)
    predicted = lr.predict(test_x)
    mlflow.log_param("alpha", alpha)
    mlflow.log_param("l1_ratio", l1_ratio)
    mlflow.log_metric("rmse", np.sqrt(mean_squared_error(test_y, predicted)))
    mlflow.log_metric("r2", r2_score(test_y, predicted))
    if urlparse(mlflow.get_tracking_uri()).scheme != "file":  # a store with a model registry
        mlflow.sklearn.log_model(lr, "model", registered_model_name="ElasticnetWineModel")
    else:
        mlflow.sklearn.log_model(lr, "model")
    print("RUN", mlflow.active_run().info.run_id)
"""

LOGISTIC = """
import numpy as np
from sklearn.linear_model import LogisticRegression
import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature

X = np.array([-2, -1, 0, 1, 2, 1]).reshape(-1, 1)
y = np.array([0, 0, 1, 1, 1, 0])
lr = LogisticRegression().fit(X, y)
mlflow.log_metric("score", lr.score(X, y))
signature = infer_signature(X, lr.predict(X))
mlflow.sklearn.log_model(lr, "model", signature=signature, input_example=X)
print("RUN", mlflow.active_run().info.run_id)
"""


def _as_gitml(script: str) -> str:
    """The script with only its imports changed from mlflow to gitml."""
    return (
        script.replace("import mlflow.sklearn", "import gitml.sklearn")
        .replace("from mlflow.models import", "from gitml.models import")
        .replace("import mlflow\n", "import gitml as mlflow\n")
    )


def _wine_csv(path) -> None:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    X["quality"] = (3 + y * 2 + (X["alcohol"] > 13)).astype(int)
    X.to_csv(path, sep=";", index=False)


def test_mlflow_shaped_example_scripts_run_with_gitml_imports(mlflow_python, tmp_path):  # noqa: F811
    import gitml.ops

    project = tmp_path / "examples"
    project.mkdir()
    git(project, "init", "-q")
    _wine_csv(project / "winequality.csv")
    (project / "elasticnet.py").write_text(ELASTICNET)
    (project / "logistic.py").write_text(LOGISTIC)
    git(project, "add", ".")
    git(project, "commit", "-qm", "examples")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for script, args in (("elasticnet.py", ["0.5", "0.5"]), ("logistic.py", [])):  # they are MLflow scripts
        check = subprocess.run(
            [mlflow_python, script, *args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=600,
            env={
                **env,
                **_MLFLOW_ENV,
                "MLFLOW_TRACKING_URI": f"file://{tmp_path / 'mlruns'}",
                "MLFLOW_ALLOW_FILE_STORE": "true",
            },
        )
        assert check.returncode == 0, check.stderr[-2000:]
    for script, args in (("elasticnet.py", ["0.5", "0.5"]), ("logistic.py", [])):
        (project / f"gitml_{script}").write_text(_as_gitml((project / script).read_text()))
        result = subprocess.run(
            [sys.executable, f"gitml_{script}", *args],
            cwd=project,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": ROOT},
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        run_id = result.stdout.split("RUN ")[-1].strip()
        with gitml.ops.Operations(project) as client:
            files = {f.path for f in client.list_artifacts(run_id, "model")}
        assert {"model/MLmodel", "model/model.pkl", "model/requirements.txt"} <= files
    with gitml.ops.Operations(project) as client:  # gitml's store has a registry: the example registered its model
        assert [v.version for v in client.search_model_versions("name='ElasticnetWineModel'")] == ["1"]
    out = run_python(
        "import gitml, gitml.ops, gitml.pyfunc, numpy as np\n"
        "for run in gitml.ops.Operations('.').search_runs():\n"
        "    m = gitml.pyfunc.load_model(f'runs:/{run.info.run_id}/model')\n"
        "    print(m.metadata.flavors['sklearn']['pickled_model'], m.metadata.signature is not None)\n",
        cwd=project,
    ).stdout.split()
    assert out.count("model.pkl") == 2 and "True" in out


DICT_EXAMPLES = """
import json, os, sys, numpy as np, {tool} as tool, {tool}.pyfunc
from {tool}.models import Model

class Echo(tool.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input

examples = {{
    "scalars": {{"a": 1, "b": "x", "c": 2.5, "d": np.float32(0.5)}},
    "lists": {{"q": ["a", "b"], "n": [1, 2]}},
    "nested": {{"messages": [{{"role": "user", "content": "hi"}}], "temperature": 0.1}},
    "arrays": {{"x": np.array([[1.0, 2.0]]), "y": np.array([3, 4])}},
}}
os.makedirs("by_{tool}")
for name, example in examples.items():
    tool.pyfunc.save_model(f"by_{tool}/{{name}}", python_model=Echo(), input_example=example)

def plain(value):
    if isinstance(value, dict):
        return {{k: plain(v) for k, v in value.items()}}
    if hasattr(value, "to_dict"):
        return value.to_dict(orient="list")
    return value.tolist() if hasattr(value, "tolist") else value

out = {{}}
for folder in sorted(os.listdir(".")):
    for name in sorted(os.listdir(folder)) if folder.startswith("by_") else ():
        path = f"{{folder}}/{{name}}"
        model = Model.load(path)
        names = ("input_example.json", "serving_input_example.json")
        files = {{f: json.load(open(f"{{path}}/{{f}}")) for f in names}}
        loaded = plain(model.load_input_example(path))
        out[path] = {{"info": model.saved_input_example_info, "files": files, "loaded": loaded}}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_dict_input_examples_are_saved_and_read_as_mlflow_does(mlflow_python, tmp_path):  # noqa: F811
    theirs = _in_mlflow(mlflow_python, DICT_EXAMPLES.format(tool="mlflow"), tmp_path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-c", DICT_EXAMPLES.format(tool="gitml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    both = json.loads(done.stdout.strip().splitlines()[-1])  # gitml reads its folders and MLflow's
    assert theirs["by_mlflow/scalars"]["info"]["type"] == "json_object"
    assert theirs["by_mlflow/arrays"]["info"]["type"] == "ndarray"
    for name in ("scalars", "lists", "nested", "arrays"):
        ours, mlflows = both[f"by_gitml/{name}"], theirs[f"by_mlflow/{name}"]
        assert ours["info"] == mlflows["info"], name
        assert ours["files"] == mlflows["files"], name
        assert both[f"by_mlflow/{name}"]["loaded"] == mlflows["loaded"], name  # gitml reads MLflow's as MLflow
        assert ours["loaded"] == mlflows["loaded"], name

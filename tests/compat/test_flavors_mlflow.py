"""Every native flavor both ways with the real MLflow 3.17.2 (its own venv, with the flavors'
libraries pinned as in pyproject's test extra).

One script trains each flavor's model on the same data and saves it, once with ``import gitml as
tool`` in gitml's Python and once with ``import mlflow as tool`` in MLflow's venv: the two
folders of each flavor then hold the same model saved by each tool. The tests compare what each
tool wrote (the MLmodel ``signature`` inferred from the input example, the flavor's keys, the file
names), load each tool's folder in the other tool where the first cannot be imported (through
``pyfunc`` and the flavor's own ``load_model``), and serve them with ``gitml serve`` and
``mlflow models serve``, comparing predictions.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.mlflow, pytest.mark.slow, pytest.mark.timeout(1200)]  # two venvs load every library

_MLFLOW_ENV = {
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # MLflow 3.17 refuses any pickle otherwise
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1",  # its fallback requirements are all these tests need
    "MLFLOW_TESTING": "false",
}
# nothing is downloaded from a hub; Keras runs on torch (no TensorFlow); one thread per library
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "KERAS_BACKEND": "torch",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# the training data: iris as a DataFrame (float64 columns), a binary and a 3-class target
DATA = """
import json, os, numpy as np, pandas as pd
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True, as_frame=True)
X = X.iloc[::3].reset_index(drop=True); y = y.iloc[::3].reset_index(drop=True)
X.columns = ["sl", "sw", "pl", "pw"]
X.to_csv("X.csv", index=False)
"""

# flavor -> (training code binding `model` and `example`, the folder's prediction input expression)
FLAVORS = {
    "sklearn": (
        """
from sklearn.linear_model import LogisticRegression
model = LogisticRegression(max_iter=500).fit(X, y)
example = X.head(3)
kwargs = {"serialization_format": "cloudpickle"}  # gitml's default; MLflow 3's is skops
""",
        "X",
    ),
    "xgboost": (
        """
import xgboost as xgb
model = xgb.XGBClassifier(n_estimators=4, max_depth=2, random_state=0, n_jobs=1).fit(X, y)
example = X.head(3)
""",
        "X",
    ),
    "lightgbm": (
        """
import lightgbm as lgb
model = lgb.train({"verbose": -1, "num_threads": 1, "seed": 0}, lgb.Dataset(X, y.astype(float)), 4)
example = X.head(3)
""",
        "X",
    ),
    "catboost": (
        """
import catboost as cb
model = cb.CatBoostRegressor(iterations=5, depth=2, verbose=0, random_seed=0, thread_count=1).fit(X, y.astype(float))
example = X.head(3)
""",
        "X",
    ),
    "statsmodels": (
        """
import statsmodels.api as sm
Xc = sm.add_constant(X)
model = sm.OLS(y.astype(float), Xc).fit()
example = Xc.head(3)
""",
        "__import__('statsmodels.api').api.add_constant(X)",
    ),
    "onnx": (
        """
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression
model = to_onnx(LinearRegression().fit(X, y.astype(float)), X.to_numpy(dtype=np.float32)[:1], target_opset=18)
example = X.head(3)
""",
        "X",
    ),
    "keras": (
        """
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
example = X.head(3).to_numpy(dtype="float32")
kwargs = {"signature": tool.models.infer_signature(example, model.predict(example, verbose=0))}
""",
        "X.to_numpy(dtype='float32')",
    ),
    "transformers": (
        """
import torch, transformers
torch.manual_seed(0)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "good", "bad", "fine", "awful", "film", "one"]
open("vocab.txt", "w").write("\\n".join(words))
config = transformers.BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32, num_labels=2)
model = transformers.pipeline("text-classification", model=transformers.BertForSequenceClassification(config).eval(),
                              tokenizer=transformers.BertTokenizer(vocab_file="vocab.txt"))
example = ["a good film", "an awful one"]
kwargs = {"pip_requirements": ["transformers", "torch"]}  # MLflow's default list imports torchvision
""",
        "['a fine film', 'bad', 'an awful film']",
    ),
    # more tasks of the transformers flavor (the key's part before "_" names the flavor), each a tiny random model
    "transformers_ner": (
        """
import torch, transformers
torch.manual_seed(0)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ada", "met", "bob", "in", "paris", "london"]
open("vocab.txt", "w").write("\\n".join(words))
config = transformers.BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32, num_labels=3,
                                 id2label={0: "O", 1: "B-PER", 2: "B-LOC"}, label2id={"O": 0, "B-PER": 1, "B-LOC": 2})
model = transformers.pipeline("token-classification", model=transformers.BertForTokenClassification(config).eval(),
                              tokenizer=transformers.BertTokenizer(vocab_file="vocab.txt"))
example = ["ada met bob in paris"]
kwargs = {"pip_requirements": ["transformers", "torch"]}
""",
        "['ada met bob', 'bob in london']",
    ),
    "transformers_gen": (
        """
import torch, transformers
torch.manual_seed(0)
words = ["<unk>", "<s>", "</s>", "the", "cat", "sat", "on", "mat", "a", "dog"]
open("vocab.txt", "w").write("\\n".join(words))
tokenizer = transformers.BertTokenizer(vocab_file="vocab.txt", unk_token="<unk>", pad_token="<unk>",
                                       cls_token="<s>", sep_token="</s>", mask_token="<unk>", do_basic_tokenize=True)
config = transformers.GPT2Config(vocab_size=len(words), n_embd=8, n_layer=1, n_head=2, n_positions=32,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=0)
model = transformers.pipeline("text-generation", model=transformers.GPT2LMHeadModel(config).eval(), tokenizer=tokenizer)
example = ["the cat"]
kwargs = {"pip_requirements": ["transformers", "torch"],
          "model_config": {"max_new_tokens": 4, "do_sample": False, "add_special_tokens": False}}
""",
        "['the cat sat', 'a dog']",
    ),
    "transformers_emb": (
        """
import torch, transformers
torch.manual_seed(0)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "film"]
open("vocab.txt", "w").write("\\n".join(words))
config = transformers.BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32)
model = transformers.pipeline("feature-extraction", model=transformers.BertModel(config).eval(),
                              tokenizer=transformers.BertTokenizer(vocab_file="vocab.txt"))
example = ["a good film"]
kwargs = {"pip_requirements": ["transformers", "torch"]}
""",
        "['a good film', 'bad']",
    ),
}


SERVED = [f for f in FLAVORS if "_" not in f]  # one model per flavor is served (two servers each: CI's time)


def _module(flavor: str) -> str:
    """The flavor module of a FLAVORS key (``transformers_ner`` is a transformers model)."""
    return flavor.split("_")[0]


SAVE = """
import {tool} as tool, {tool}.{module}, {tool}.models
{train}
os.makedirs("{flavor}")  # empty: MLflow's keras.save_model writes the example before it makes the folder
tool.{module}.save_model(model, "{flavor}", input_example=example, **globals().pop("kwargs", {{}}))
"""

# predictions of every saved folder (both tools') through pyfunc and through the flavor's own load_model
PREDICT = """
import importlib, importlib.util, json, sys, numpy as np, pandas as pd
import {tool}.pyfunc
assert importlib.util.find_spec({other!r}) is None, "{other} must not be importable here"
X = pd.read_csv("by_gitml/X.csv")
def as_json(value):
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="list")
    if isinstance(value, dict):
        return {{k: np.asarray(v).tolist() for k, v in value.items()}}
    return np.asarray(value).tolist()
out = {{}}
for flavor, data in {inputs}.items():
    for folder in ("by_gitml/" + flavor, "by_mlflow/" + flavor):
        pred = {tool}.pyfunc.load_model(folder).predict(eval(data))
        raw = importlib.import_module("{tool}." + flavor.split("_")[0]).load_model(folder)
        out[folder] = {{"pyfunc": as_json(pred), "raw_class": type(raw).__name__}}
out["imported_other"] = any(m == {other!r} or m.startswith({other!r} + ".") for m in sys.modules)
print(json.dumps(out))
"""


def _python_env(extra: dict | None = None, *, gitml: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(_ENV)
    env.update(_MLFLOW_ENV)
    if gitml:
        env["PYTHONPATH"] = ROOT
    env.update(extra or {})
    return env


def _run(python: str, code: str, cwd, *, gitml: bool) -> str:
    # a script file, not `python -c`: under -c, a pyspark module MLflow's transformers signature
    # inference imports exits the process with status 0 ("Skipping doctests")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="flavors-", dir=cwd, delete=False) as f:
        f.write(code)
    try:
        result = subprocess.run(
            [python, f.name], cwd=cwd, env=_python_env(gitml=gitml), capture_output=True, text=True, timeout=900
        )
    finally:
        os.unlink(f.name)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _save_all(python: str, tool: str, folder) -> None:
    folder.mkdir()
    code = DATA + "".join(
        SAVE.format(tool=tool, flavor=f, module=_module(f), train=train) for f, (train, _) in FLAVORS.items()
    )
    _run(python, code, folder, gitml=tool == "gitml")


@pytest.fixture(scope="module")
def saved(mlflow_python, tmp_path_factory):  # noqa: F811
    """Each flavor's model saved by gitml (``<root>/by_gitml/<flavor>``) and by MLflow
    (``<root>/by_mlflow/<flavor>``)."""
    import sys

    root = tmp_path_factory.mktemp("flavors")
    _save_all(sys.executable, "gitml", root / "by_gitml")
    _save_all(mlflow_python, "mlflow", root / "by_mlflow")
    return root


def _mlmodel(folder) -> dict:
    with open(folder / "MLmodel") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def predictions(mlflow_python, saved):  # noqa: F811
    """``{tool: {folder: {pyfunc, raw_class}}}``: every folder read by MLflow (gitml not importable)
    and by gitml (MLflow not importable), in one process each."""
    import sys

    out = {}
    for tool, python in (("mlflow", mlflow_python), ("gitml", sys.executable)):
        other = "gitml" if tool == "mlflow" else "mlflow"
        code = PREDICT.format(tool=tool, other=other, inputs={f: data for f, (_, data) in FLAVORS.items()})
        out[tool] = json.loads(_run(python, code, saved, gitml=tool == "gitml").strip().splitlines()[-1])
        assert not out[tool].pop("imported_other")
    return out


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_the_signature_is_the_one_mlflow_infers(saved, flavor):
    ours, theirs = _mlmodel(saved / "by_gitml" / flavor), _mlmodel(saved / "by_mlflow" / flavor)
    assert ours.get("signature") == theirs.get("signature")
    assert ours["saved_input_example_info"] == theirs["saved_input_example_info"]
    assert (saved / "by_gitml" / flavor / "input_example.json").read_text() == (
        saved / "by_mlflow" / flavor / "input_example.json"
    ).read_text()


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_the_folder_is_mlflows_layout(saved, flavor):
    ours, theirs = _mlmodel(saved / "by_gitml" / flavor), _mlmodel(saved / "by_mlflow" / flavor)
    assert set(ours["flavors"]) == set(theirs["flavors"])
    module = _module(flavor)
    assert set(ours["flavors"][module]) == set(theirs["flavors"][module])
    for key in ("data", "model_class", "model_type", "model_format", "save_format", "task"):
        assert ours["flavors"][module].get(key) == theirs["flavors"][module].get(key), key
    ours_py, theirs_py = ours["flavors"]["python_function"], theirs["flavors"]["python_function"]
    assert set(ours_py) == set(theirs_py) and ours_py["loader_module"] == theirs_py["loader_module"]
    assert ours_py.get("data") == theirs_py.get("data")
    files = {
        p.relative_to(saved / "by_gitml" / flavor).as_posix()
        for p in (saved / "by_gitml" / flavor).rglob("*")
        if p.is_file()
    }
    mlflow_files = {
        p.relative_to(saved / "by_mlflow" / flavor).as_posix()
        for p in (saved / "by_mlflow" / flavor).rglob("*")
        if p.is_file()
    }
    assert files == mlflow_files


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_each_tool_loads_the_others_model_without_it(predictions, flavor):
    # gitml's folder in MLflow, MLflow's folder in gitml: each as the tool that saved it reads it
    ours, theirs = f"by_gitml/{flavor}", f"by_mlflow/{flavor}"
    _same(predictions["mlflow"][ours]["pyfunc"], predictions["gitml"][ours]["pyfunc"], flavor)
    _same(predictions["gitml"][theirs]["pyfunc"], predictions["mlflow"][theirs]["pyfunc"], flavor)
    assert predictions["mlflow"][ours]["raw_class"] == predictions["gitml"][ours]["raw_class"]
    assert predictions["gitml"][theirs]["raw_class"] == predictions["mlflow"][theirs]["raw_class"]


# -- a flavor gitml has no loader for: MLflow's own loader, after gitml verified every file -----
# A model-from-code (MLflow's pyfunc variant that runs a Python file at load time): padded over
# the inline limit so its bytes sit in the artifact cache, where a test can change them.
FROM_CODE = (
    """
import mlflow

class Affine(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] * 2 + 1

mlflow.models.set_model(Affine())
"""
    + "#" * 100_000
    + "\n"
)

LOG_FROM_CODE = """
import json, sys, pandas as pd, mlflow, gitml, gitml.pyfunc
open("affine.py", "w").write(sys.argv[1])
mlflow.pyfunc.save_model("fromcode", python_model="affine.py", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
conf = mlflow.models.Model.load("fromcode").flavors["python_function"]
with gitml.start_run() as run:
    gitml.log_artifacts("fromcode", "model")
X = pd.DataFrame({"x": [0.5, 3.0]})
model = gitml.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
print(json.dumps({"run": run.info.run_id, "code": conf["model_code_path"], "loader": conf["loader_module"],
                  "gitml": model.predict(X).tolist(),
                  "mlflow": mlflow.pyfunc.load_model("fromcode").predict(X).tolist()}))
"""

LOAD = """
import json, sys, gitml.pyfunc
try:
    gitml.pyfunc.load_model(sys.argv[1])
except gitml.GitmlError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def test_a_flavor_gitml_lacks_loads_through_mlflows_loader_once_verified(mlflow_python, tmp_path):  # noqa: F811
    import sys

    from tests.conftest import git

    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "train")
    env = _python_env(gitml=True)

    def in_mlflow(code: str, *args: str) -> dict:
        done = subprocess.run(
            [mlflow_python, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    logged = in_mlflow(LOG_FROM_CODE, FROM_CODE)
    assert logged["loader"] == "mlflow.pyfunc.loaders.code_model" and logged["gitml"] == logged["mlflow"] == [2.0, 7.0]
    uri = f"runs:/{logged['run']}/model"
    # without MLflow, gitml names why it cannot load the model (and imports nothing of it)
    done = subprocess.run([sys.executable, "-c", LOAD, uri], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert json.loads(done.stdout)["error"] == "UnsupportedFlavorError"
    assert "with MLflow installed" in json.loads(done.stdout)["message"]
    # a changed code file is refused before MLflow's loader runs it
    import gitml.ops

    with gitml.ops.Operations(tmp_path) as client:
        sha = client.artifact_manifest(logged["run"])[f"model/{os.path.basename(logged['code'])}"][
            "sha256"
        ]  # MLflow reads it there
    cached = tmp_path / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    marker = tmp_path / "pwned"
    os.chmod(cached, 0o644)
    cached.write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + FROM_CODE)
    refused = in_mlflow(LOAD, uri)
    assert (
        refused["error"] in ("ModelIntegrityError", "IntegrityError")
        and os.path.basename(logged["code"]) in refused["message"]
    )
    assert not marker.exists()


# -- serving: `gitml serve` answers as `mlflow models serve` on the same folder ----------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict, timeout: float = 60):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _wait_ready(proc, port: int, what: str, deadline: float) -> None:
    import http.client
    import time

    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)  # polling a starting server, not standing in for a pinned time
    raise AssertionError(f"{what} did not answer /ping")


def _numbers(value, path="") -> list:
    """``(path, number)`` pairs of a JSON answer: its shape exactly, its numbers to compare."""
    if isinstance(value, dict):
        return [pair for key in sorted(value) for pair in _numbers(value[key], f"{path}/{key}")]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _numbers(item, f"{path}/{i}")]
    return [(path, value)]


def _same(ours, theirs, flavor: str) -> None:
    """The same JSON shape and strings; numbers equal to 1e-6."""
    ours, theirs = _numbers(ours), _numbers(theirs)
    assert [p for p, _ in ours] == [p for p, _ in theirs], flavor
    assert [v for _, v in ours if isinstance(v, str)] == [v for _, v in theirs if isinstance(v, str)], flavor
    np.testing.assert_allclose(
        [v for _, v in ours if not isinstance(v, str)],
        [v for _, v in theirs if not isinstance(v, str)],
        rtol=1e-6,
        err_msg=flavor,
    )


def test_gitml_serve_answers_as_mlflow_models_serve(mlflow_python, saved):  # noqa: F811
    import signal
    import sys
    import time

    import pandas as pd

    X = pd.read_csv(saved / "by_gitml" / "X.csv").head(5)

    def frame(flavor: str):
        return X.assign(const=1.0)[["const", *X.columns]] if flavor == "statsmodels" else X  # sm.add_constant's

    bodies = {
        flavor: {"inputs": X.to_numpy(dtype="float32").tolist()}
        if flavor == "keras"
        else {"inputs": ["a fine film", "bad"]}
        if flavor == "transformers"
        else {"dataframe_split": {"columns": list(frame(flavor).columns), "data": frame(flavor).values.tolist()}}
        for flavor in SERVED
    }
    env = _python_env(gitml=True)
    mlflow_env = {**_python_env(gitml=False), "PATH": os.path.dirname(mlflow_python) + os.pathsep + os.environ["PATH"]}
    servers = []
    try:  # every server starts at once: they load their models side by side
        for flavor in SERVED:
            folder = str(saved / "by_gitml" / flavor)
            ours, theirs = _free_port(), _free_port()
            servers.append(
                (
                    flavor,
                    "gitml",
                    ours,
                    subprocess.Popen(
                        [sys.executable, "-m", "gitml.cli.main", "serve", "-m", folder, "--port", str(ours)],
                        cwd=saved,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    ),
                )
            )
            servers.append(
                (
                    flavor,
                    "mlflow",
                    theirs,
                    subprocess.Popen(
                        [
                            mlflow_python,
                            "-m",
                            "mlflow",
                            "models",
                            "serve",
                            "-m",
                            folder,
                            "-p",
                            str(theirs),
                            "-w",
                            "1",
                            "--env-manager",
                            "local",
                            "--host",
                            "127.0.0.1",
                        ],
                        cwd=saved,
                        env=mlflow_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    ),
                )
            )
        deadline = time.monotonic() + 600
        for flavor, tool, port, proc in servers:
            _wait_ready(proc, port, f"{tool} serving {flavor}", deadline)
        answers: dict = {}
        for flavor, tool, port, _ in servers:
            answers.setdefault(flavor, {})[tool] = _post(port, bodies[flavor])
        for flavor, got in answers.items():
            assert got["gitml"][0] == got["mlflow"][0] == 200, (flavor, got)
            _same(got["gitml"][1], got["mlflow"][1], flavor)
    finally:
        for _, _, _, proc in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, _, _, proc in servers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

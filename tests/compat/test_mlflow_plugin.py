"""The MLflow plugin with the real MLflow 3.17.2 (its venv, benchmarks/.venv-mlflow).

Scripts written against ``mlflow`` run in that venv's Python with ``gitml:`` as the tracking
URI (gitml and its entry points reach it through ``PYTHONPATH``: see
``tests.mlflow_venv.plugin_pythonpath``): the fluent API, ``MlflowClient``,
``mlflow.sklearn.autolog()``, ``log_model`` / ``load_model``, ``register_model``, concurrent
processes, and ``mlflow server`` queried over HTTP. What they log is read back with gitml's own
API and CLI here, and the reverse.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.mlflow_plugin import artifact_uri, parse_artifact_uri, repository_path
from tests.conftest import git
from tests.mlflow_venv import mlflow_python, plugin_pythonpath  # noqa: F401  (a fixture)

_ENV = {
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1",  # MLflow's fallback requirements list is enough
    "GIT_PYTHON_REFRESH": "quiet",
}


@pytest.fixture(scope="module")
def plugin_python(mlflow_python):  # noqa: F811
    """MLflow's Python, and (in ``_PLUGIN_ENV``) the environment in which it finds gitml's plugin."""
    _PLUGIN_ENV["PYTHONPATH"] = plugin_pythonpath()
    return mlflow_python


_PLUGIN_ENV: dict[str, str] = {}


def _env(**extra: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(_ENV, **_PLUGIN_ENV, **extra)
    return full


def _script(code: str) -> str:
    """``code`` as a file to run: under ``python -c`` a pyspark that lacks grpc (MLflow's
    signature inference imports it) exits the process with status 0 halfway."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="gitml-mlflow-", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(code)
    return path


def _mlflow(python: str, code: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    script = _script(code)
    try:
        result = subprocess.run([python, script], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    finally:
        os.remove(script)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def _last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the URIs (no MLflow needed) -------------------------------------------------
@pytest.mark.parametrize("path", ["/tmp/a b/repo", "/tmp/q?x=1#f/repo", "/tmp/100%/r", "/tmp/ünï/r"])
def test_artifact_uri_round_trips_hostile_paths(path):
    uri = artifact_uri(path, "a" * 32, "model/sub dir/MLmodel")
    assert parse_artifact_uri(uri) == (path, "a" * 32, "model/sub dir/MLmodel")
    assert parse_artifact_uri(artifact_uri(path, "b" * 32)) == (path, "b" * 32, "")


def test_tracking_uri_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert repository_path("gitml:") == str(tmp_path)
    assert repository_path("gitml:.") == str(tmp_path)
    assert repository_path("gitml:/x/y") == "/x/y"
    assert repository_path("gitml:sub") == str(tmp_path / "sub")
    for bad in ("gitml://host/x", "sqlite:///x.db", "gitml:/x?y=1"):
        with pytest.raises(gitml.InvalidInputError):
            repository_path(bad)
    with pytest.raises(gitml.InvalidInputError):
        parse_artifact_uri("gitml-artifacts:/?repo=/x")


# -- the fluent API ----------------------------------------------------------------
FLUENT = """
import json, mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri("gitml:.")
mlflow.set_experiment("churn")
with mlflow.start_run(run_name="parent", description="first try") as parent:
    mlflow.log_param("lr", 0.1)
    for i in range(50):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    mlflow.log_metrics({"auc": 0.9, "f1": 0.8})
    mlflow.set_tags({"team": "ml", "stage": "dev"})
    mlflow.log_text("hello", "notes/a.txt")
    mlflow.log_dict({"a": 1}, "cfg/config.json")
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metric("loss", 0.05)
client = mlflow.MlflowClient()
found = mlflow.search_runs(experiment_names=["churn"], filter_string="params.lr = '0.1' OR metrics.loss < 0.1")
both = sorted(found["tags.mlflow.runName"])
run = client.get_run(parent.info.run_id)
out = {
    "parent": parent.info.run_id, "child": child.info.run_id, "both": both,
    "latest": [[m.key, m.value, m.step] for m in run.data._metric_objs if m.key == "loss"],
    "history": len(client.get_metric_history(parent.info.run_id, "loss")),
    "child_parent": client.get_run(child.info.run_id).data.tags.get("mlflow.parentRunId"),
    "inputs": [d.dataset.name for d in run.inputs.dataset_inputs],
    "text": open(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="notes/a.txt")).read(),
    "listed": sorted(f.path for f in client.list_artifacts(parent.info.run_id)),
    "gitml_runs": sorted(mlflow.search_runs(experiment_names=["from-gitml"])["params.source"]),
    "experiments": sorted(e.name for e in mlflow.search_experiments()),
}
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_fluent_api_logs_ordinary_gitml_runs(plugin_python, repo):
    with gitml.ops.Operations(repo) as c:  # a run logged by gitml's own API, for MLflow to find
        run = c.create_run(c.create_experiment("from-gitml"))
        c.log_param(run.info.run_id, "source", "gitml")
        c.set_terminated(run.info.run_id)
    out = _last_json(_mlflow(plugin_python, FLUENT, repo))
    assert out["both"] == ["child", "parent"]
    assert out["latest"] == [["loss", 0.02, 49]]
    assert out["history"] == 50
    assert out["child_parent"] == out["parent"]
    assert out["inputs"] == ["train"]
    assert out["text"] == "hello"
    assert out["listed"] == ["cfg", "notes"]
    assert out["gitml_runs"] == ["gitml"]
    assert {"churn", "from-gitml", "Default"} <= set(out["experiments"])

    with gitml.ops.Operations(repo) as c:  # ... and gitml reads what MLflow logged as its own runs
        parent = c.get_run(out["parent"])
        assert parent.info.status == "FINISHED"
        assert parent.data.params == {"lr": "0.1"}
        assert parent.data.tags["team"] == "ml" and parent.data.tags["mlflow.note.content"] == "first try"
        assert [m.value for m in c.get_metric_history(out["parent"], "loss")][:2] == [1.0, 0.5]
        assert c.get_parent_run(out["child"]).info.run_id == out["parent"]
        assert c.download_artifacts(out["parent"], "cfg/config.json").endswith("config.json")
        assert parent.data.tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()
    shown = CliRunner().invoke(cli, ["show", out["parent"][:8]], prog_name="gitml")
    assert shown.exit_code == 0 and "lr" in shown.output and "loss" in shown.output, shown.output
    listed = CliRunner().invoke(cli, ["runs", "-e", "churn"], prog_name="gitml")
    assert "parent" in listed.output and "child" in listed.output, listed.output
    git(repo, "fsck", "--strict")


# -- MlflowClient: paging, errors, what cannot map ----------------------------------
CLIENT = """
import json, warnings, mlflow
from mlflow.exceptions import MlflowException
from mlflow.entities import Metric, Param, RunTag
mlflow.__version__ = "9.9.9"  # not the tested version: one warning, at the first store
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    client = mlflow.MlflowClient("gitml:" + __import__("os").getcwd())
    exp = client.create_experiment("paging", tags={"owner": "me"})
    mlflow.MlflowClient("gitml:.").search_experiments()
warned = [str(w.message) for w in caught if "tested with mlflow==3.17.2" in str(w.message)]
out = {"warned": len(warned)}
def code(call):
    try:
        call()
    except MlflowException as e:
        return e.error_code
    return None
out["dup"] = code(lambda: client.create_experiment("paging"))
out["missing_run"] = code(lambda: client.get_run("0" * 32))
out["missing_exp"] = client.get_experiment_by_name("nope") is None
ids = []
for i in range(5):
    r = client.create_run(exp, run_name=f"r{i}")
    client.log_batch(
        r.info.run_id, metrics=[Metric("m", i, 0, 0)], params=[Param("i", str(i))], tags=[RunTag("k", "v")]
    )
    client.set_terminated(r.info.run_id)
    ids.append(r.info.run_id)
page1 = client.search_runs([exp], max_results=2, order_by=["metrics.m ASC"])
page2 = client.search_runs([exp], max_results=2, order_by=["metrics.m ASC"], page_token=page1.token)
out["pages"] = [[r.data.params["i"] for r in page1], [r.data.params["i"] for r in page2]]
first = client.search_runs([exp], order_by=["metrics.m ASC"])[0]  # a repeated search copies the Runs it built
first.data.tags["k"] = "changed"
first.data.params.clear()
first.info._set_run_name("changed")
again = client.search_runs([exp], order_by=["metrics.m ASC"])[0]
out["copies"] = [again.data.tags["k"], again.data.params, again.info.run_name, again.info.run_id == first.info.run_id]
client.set_tag(ids[0], "k", "new")
client.log_metric(ids[0], "m", -1)
again = client.search_runs([exp], order_by=["metrics.m ASC"])[0]
out["updated"] = [again.data.tags["k"], again.data.metrics["m"]]
client.delete_tag(ids[0], "k")
out["deleted_tag"] = "k" not in client.get_run(ids[0]).data.tags
client.delete_run(ids[1])
out["after_delete"] = len(client.search_runs([exp]))
client.restore_run(ids[1])
client.set_experiment_tag(exp, "phase", "2")
out["exp_tags"] = client.get_experiment(exp).tags
out["renamed"] = client.update_run(ids[2], name="renamed") or client.get_run(ids[2]).info.run_name
out["param_conflict"] = code(lambda: client.log_param(ids[3], "i", "other"))
client.create_registered_model("Model 1", tags={"a": "b"}, description="first")
out["reg_again"] = code(lambda: client.create_registered_model("Model 1"))
out["reg_tags"] = client.get_registered_model("Model 1").tags
out["runless_model"] = client.create_logged_model(exp, name="orphan").source_run_id
foreign = client.create_logged_model(exp, source_run_id="123")  # MLflow takes any run id as a model's source
out["foreign_source"] = [foreign.source_run_id, client.get_logged_model(foreign.model_id).source_run_id]
out["bad_filter"] = code(lambda: client.search_runs([exp], filter_string="metrics.m >>> 1"))
from mlflow.entities import LoggedModelOutput
orphan = client.create_logged_model(exp, name="orphan2")
holder = client.create_run(exp).info.run_id  # MLflow's user: "unknown" when its caller names none
client.log_outputs(holder, [LoggedModelOutput(orphan.model_id, 3)])
out["outputs"] = [[o.model_id == orphan.model_id, o.step] for o in client.get_run(holder).outputs.model_outputs]
out["output_tags"] = sorted(client.get_run(holder).data.tags)
client.log_metric(holder, "acc", 0.5, 1, 1, dataset_name="dn", dataset_digest="dd", model_id=orphan.model_id)
point = client.get_logged_model(orphan.model_id).metrics[0]
out["model_metric"] = [point.key, point.value, point.dataset_name, point.dataset_digest, point.run_id == holder]
out["bad_output"] = code(lambda: client.log_outputs(holder, [LoggedModelOutput("m-a,b:1", 1)]))
out["users"] = [client.get_run(holder).info.user_id, client.create_run(exp, tags={"mlflow.user": "ana"}).info.user_id]
from mlflow.entities import Dataset, DatasetInput, InputTag
context = [InputTag("mlflow.data.context", "training")]
client.log_inputs(holder, [DatasetInput(Dataset("d", "dg", "local", "src"), context)])
store = client._tracking_client.store  # what `mlflow server` asks for its UI's dataset filter
out["datasets"] = [[s.experiment_id == exp, s.name, s.digest, s.context] for s in store._search_datasets([exp])]
store.set_model_versions_tags("Model 1", "1", orphan.model_id)  # what `mlflow server` does at create_model_version
out["model_versions_tag"] = client.get_logged_model(orphan.model_id).tags.get("mlflow.modelVersions")
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_mlflow_client_paging_errors_and_what_cannot_map(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, CLIENT, repo))
    assert out["warned"] == 1
    assert out["dup"] == "RESOURCE_ALREADY_EXISTS"
    assert out["missing_run"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["missing_exp"] is True
    assert out["pages"] == [["0", "1"], ["2", "3"]]
    assert out["copies"] == ["v", {"i": "0"}, "r0", True]  # what a caller changed stays its own
    assert out["updated"] == ["new", -1]  # a run changed since: built again
    assert out["deleted_tag"] is True
    assert out["after_delete"] == 4
    assert out["exp_tags"] == {"owner": "me", "phase": "2"}
    assert out["renamed"] == "renamed"
    assert out["param_conflict"] == "INVALID_PARAMETER_VALUE"
    assert out["reg_again"] == "RESOURCE_ALREADY_EXISTS"
    assert out["reg_tags"] == {"a": "b"}
    assert out["runless_model"] is None
    assert out["foreign_source"] == ["123", "123"]
    assert out["bad_filter"] == "INVALID_PARAMETER_VALUE"
    assert out["outputs"] == [[True, 3]]  # a model without a run, logged as another run's output
    assert out["output_tags"] == ["mlflow.runName"]  # the tag naming the output is not shown
    assert out["bad_output"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["model_metric"] == ["acc", 0.5, "dn", "dd", True]  # a model's metric, with its dataset
    assert out["users"] == ["unknown", "ana"]  # the user MLflow gives, as its stores record it
    assert out["datasets"] == [[True, "d", "dg", "training"]]
    assert out["model_versions_tag"] == '[{"name": "Model 1", "version": 1}]'  # a number, as MLflow's SQL store


ERRORS = """
import json, mlflow
from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
mlflow.set_tracking_uri("gitml:.")
client = MlflowClient()
def outcome(call):
    try:
        call()
    except MlflowException as e:
        return [e.error_code, e.message.splitlines()[0]]
    except Exception as e:
        return [type(e).__name__, str(e)]
    return None
exp = client.create_experiment("errors")
run = client.create_run(exp).info.run_id
out = {
    # MLflow's client adds "tag.`mlflow.prompt.is_prompt` != 'true'" to every model search
    "models": [m.name for m in client.search_registered_models()],
    "named": [m.name for m in client.search_registered_models(filter_string="name LIKE 'err%'")],
    "prompts": [
        m.name for m in client.search_registered_models(filter_string="tag.`mlflow.prompt.is_prompt` = 'true'")
    ],
    "exp_dup": outcome(lambda: client.create_experiment("errors")),
    "exp_none": outcome(lambda: client.create_experiment(None)),
    "exp_number": outcome(lambda: client.create_experiment(123)),
    "by_name_none": outcome(lambda: client.get_experiment_by_name(None)),
    "rename_none": outcome(lambda: client.rename_experiment(exp, None)),
    "model_none": outcome(lambda: client.create_registered_model(None)),
    "missing_tag": outcome(lambda: client.delete_tag(run, "nope")),
    "malformed_run_read": outcome(lambda: client.get_run("tr-123")),
    "malformed_run_write": outcome(lambda: client.set_tag("tr-123", "a", "b")),
    "exp_minus": outcome(lambda: client.get_experiment("-1337")),
    "set_exp_minus": outcome(lambda: mlflow.set_experiment(experiment_id="-1337")),
    "dup_params": outcome(lambda: client.log_batch(run, params=[Param("a", "1"), Param("a", "2")])),
    "bad_value": outcome(lambda: client.log_metric(run, "m", "not a number")),
    "params_after": client.get_run(run).data.params,
    "traces": outcome(lambda: client.search_traces(experiment_ids=[exp])),
    "trace_info": outcome(lambda: client.get_trace("tr-0123")),
    "dataset": outcome(lambda: mlflow.genai.datasets.create_dataset(name="d", experiment_id=[exp])),
    "scorers": outcome(lambda: client._tracking_client.store.list_scorers(exp)),
    "assessment": outcome(lambda: client._tracking_client.store.get_assessment("tr-0123", "a-1")),
}
client.log_text(run, "flavors: {}\\n", "model/MLmodel")
client.set_terminated(run)
client.create_registered_model("err-model")
client.create_model_version("err-model", f"runs:/{run}/model", run)
out["models_after"] = [m.name for m in client.search_registered_models()]
gone = client.create_run(exp).info.run_id
client.delete_run(gone)
out["deleted_run"] = outcome(lambda: client.set_tag(gone, "a", "b"))
out["deleted_run_tag"] = outcome(lambda: client.delete_tag(gone, "never-set"))[1].startswith(f"The run {gone} must be")
here = client.create_experiment("here", artifact_location="rel")
out["relative_location"] = client.get_experiment(here).artifact_location
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_mlflow_errors_prompt_filter_and_what_gitml_does_not_store(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, ERRORS, repo))
    assert out["models"] == [] and out["named"] == [] and out["prompts"] == []
    assert out["models_after"] == ["err-model"]
    for key in ("exp_none", "exp_number", "by_name_none", "rename_none", "model_none"):
        assert out[key][0] == "INVALID_PARAMETER_VALUE", (key, out[key])
    assert out["exp_none"][1] == "Invalid experiment name: 'None'"
    assert out["exp_dup"] == ["RESOURCE_ALREADY_EXISTS", "Experiment(name=errors) already exists"]
    assert out["missing_tag"] == [
        "RESOURCE_DOES_NOT_EXIST",
        f"No tag with name: nope in run with id {out['missing_tag'][1].split()[-1]}",
    ]
    for key in ("malformed_run_read", "malformed_run_write"):
        assert out[key][0] == "RESOURCE_DOES_NOT_EXIST" and out[key][1].startswith("Run with id=tr-123 not found"), out[
            key
        ]
    for key in ("exp_minus", "set_exp_minus"):
        assert out[key] == ["RESOURCE_DOES_NOT_EXIST", "No Experiment with id=-1337 exists"], out[key]
    assert out["dup_params"][0] == "INVALID_PARAMETER_VALUE" and "Duplicate parameter keys" in out["dup_params"][1]
    assert (
        out["bad_value"][0] == "INVALID_PARAMETER_VALUE"
        and "Please specify value as a valid double" in out["bad_value"][1]
    )
    assert out["params_after"] == {}  # nothing of the refused batches was logged
    assert out["deleted_run"] == [
        "INVALID_PARAMETER_VALUE",
        f"The run {out['deleted_run'][1].split()[2]} must be in the 'active' state. Current state is deleted. "
        f"run {out['deleted_run'][1].split()[2]} is deleted; restore it (restore_run) to change or resume it",
    ]  # MLflow's words, then gitml's
    assert out["deleted_run_tag"] is True  # the run's state first, then the tag, as MLflow's stores
    assert out["relative_location"] == os.path.join(
        os.path.realpath(repo), "rel"
    )  # the caller's working directory's, as MLflow's
    for key, kind in (
        ("traces", "traces"),
        ("trace_info", "traces"),
        ("dataset", "evaluation datasets"),
        ("scorers", "scorers"),
        ("assessment", "assessments"),
    ):
        assert out[key][0] == "INVALID_PARAMETER_VALUE", (key, out[key])
        assert out[key][1].startswith(f"gitml does not store MLflow's {kind}"), (key, out[key])


def test_metric_history_reads_only_that_metric(repo):
    """One metric's history reads the same git objects whether the run has 3 metrics or 300."""
    reads = []
    with gitml.ops.Operations(repo) as c:
        runs = {}
        for keys in (3, 300):
            run = c.create_run(c.create_experiment(f"keys-{keys}")).info.run_id
            for step in range(3):
                c.log_batch(run, metrics=[(f"m{i}", i + step, 1000 + step, step) for i in range(keys)])
            c.set_terminated(run)
            runs[keys] = run
        c.flush()
        store = c._store
        raw = store.raw
        for _keys, run in runs.items():
            store._blobs.clear(), store._trees.clear(), store._commits.clear()
            seen: list[bytes] = []
            store.raw = lambda sha, seen=seen: seen.append(sha) or raw(sha)  # counts object reads; git is real
            try:
                history = c.get_metric_history(run, "m2")
            finally:
                del store.raw
            assert [(m.value, m.step) for m in history] == [(2, 0), (3, 1), (4, 2)]
            reads.append(len(seen))
    assert reads[0] == reads[1]


# -- models: autolog, log_model / load_model, the registry ---------------------------
MODELS = """
import json, mlflow, mlflow.sklearn, numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri("gitml:.")
mlflow.set_experiment("iris")
X, y = load_iris(return_X_y=True)
mlflow.sklearn.autolog(log_models=False)
with mlflow.start_run() as auto:
    model = LogisticRegression(max_iter=300).fit(X, y)
mlflow.sklearn.autolog(disable=True)
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(model, name="clf", serialization_format="cloudpickle")
mv = mlflow.register_model(f"runs:/{run.info.run_id}/clf", "iris-clf")
client = mlflow.MlflowClient()
client.set_registered_model_alias("iris-clf", "champion", mv.version)
expected = model.predict(X[:5]).tolist()
out = {
    "auto_params": sorted(mlflow.get_run(auto.info.run_id).data.params)[:3],
    "auto_metrics": sorted(mlflow.get_run(auto.info.run_id).data.metrics),
    "run": run.info.run_id, "model_id": info.model_id,
    "by_run": mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/clf").predict(X[:5]).tolist() == expected,
    "by_id": mlflow.pyfunc.load_model(info.model_uri).predict(X[:5]).tolist() == expected,
    "by_version": mlflow.sklearn.load_model("models:/iris-clf/1").predict(X[:5]).tolist() == expected,
    "by_alias": mlflow.pyfunc.load_model("models:/iris-clf@champion").predict(X[:5]).tolist() == expected,
    "version": mv.version,
    "logged": [m.model_id for m in client.search_logged_models([run.info.experiment_id], filter_string="name = 'clf'")],
    "expected": expected,
}
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_autolog_log_model_load_model_and_register_model(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, MODELS, repo))
    assert out["auto_params"] == ["C", "class_weight", "dual"]
    assert "training_accuracy_score" in out["auto_metrics"]
    assert out["by_run"] and out["by_id"] and out["by_version"] and out["by_alias"]
    assert out["version"] == "1"
    assert out["logged"] == [out["model_id"]]
    # the model is an ordinary run artifact folder: gitml loads it, verified, and sees the version
    import numpy as np
    from sklearn.datasets import load_iris

    import gitml.pyfunc

    X, _ = load_iris(return_X_y=True)
    model = gitml.pyfunc.load_model(f"runs:/{out['run']}/clf")
    assert np.asarray(model.predict(X[:5])).tolist() == out["expected"]
    assert "iris-clf@v1.0.0" in git(repo, "tag", "--list")
    with gitml.ops.Operations(repo) as c:
        assert c.get_model_version_by_alias("iris-clf", "champion").run_id == out["run"]


# -- several MLflow processes at once -------------------------------------------------
WORKER = """
import os, sys, mlflow
mlflow.set_tracking_uri("gitml:.")
mlflow.set_experiment("many")
shared = os.environ["SHARED_RUN"]
n = int(sys.argv[1])
with mlflow.start_run(run_name=f"w{n}"):
    mlflow.log_param("worker", n)
    for i in range(100):
        mlflow.log_metric("x", i, step=i)
client = mlflow.MlflowClient()
for i in range(20):
    client.log_metric(shared, f"w{n}", i, step=i)
"""


@pytest.mark.mlflow
def test_concurrent_mlflow_processes_lose_nothing(plugin_python, repo):
    with gitml.ops.Operations(repo) as c:
        # named: a random name may start with "w" ("warm-...") and match the workers' filter
        shared = c.create_run(c.create_experiment("many"), run_name="shared").info.run_id
    env = _env(SHARED_RUN=shared)
    procs = [
        subprocess.Popen([plugin_python, "-c", WORKER, str(n)], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    with gitml.ops.Operations(repo) as c:
        runs = c.search_runs(experiment_names=["many"], filter_string="attributes.run_name LIKE 'w%'")
        assert sorted(r.data.params["worker"] for r in runs) == ["0", "1", "2", "3"]
        for r in runs:
            assert [m.step for m in c.get_metric_history(r.info.run_id, "x")] == list(range(100))
        for n in range(4):
            assert len(c.get_metric_history(shared, f"w{n}")) == 20
    git(repo, "fsck", "--strict")


# -- mlflow server over HTTP -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.mlflow
def test_mlflow_server_serves_the_repository_over_rest(plugin_python, repo):
    with gitml.ops.Operations(repo) as c:
        run = c.create_run(c.create_experiment("served"), run_name="trained")
        for step in range(30):
            c.log_metric(run.info.run_id, "loss", 1 / (step + 1), step=step)
        c.log_param(run.info.run_id, "lr", "0.1")
        c.set_terminated(run.info.run_id)
    run_id = run.info.run_id
    port = _free_port()
    mlflow_bin = os.path.join(os.path.dirname(plugin_python), "mlflow")
    env = _env()
    server = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--backend-store-uri",
            f"gitml:{repo}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # MLflow's server imports for a long while on a busy machine
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:] if server.stderr else ""
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(0.5)
        status, found = _http(
            base + "/api/2.0/mlflow/runs/search", {"experiment_ids": [], "filter": "params.lr = '0.1'"}
        )
        assert status == 200 and [r["info"]["run_id"] for r in found["runs"]] == [run_id]
        assert {m["key"]: m["step"] for m in found["runs"][0]["data"]["metrics"]} == {"loss": 29}
        status, history = _http(f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss")
        assert status == 200 and [m["step"] for m in history["metrics"]] == list(range(30))
        status, missing = _http(f"{base}/api/2.0/mlflow/runs/get?run_id={'0' * 32}")
        assert status == 404 and missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        # a trace call is refused with a 400 naming it (a 500 is what MLflow's client retries)
        status, trace = _http(f"{base}/api/3.0/mlflow/traces/tr-0123")
        assert status == 400 and trace["message"].startswith("gitml does not store MLflow's traces"), (status, trace)
        # read-write, as MLflow's server allows: a run created over REST is a gitml run
        status, created = _http(
            base + "/api/2.0/mlflow/runs/create",
            {"experiment_id": found["runs"][0]["info"]["experiment_id"], "run_name": "rest"},
        )
        assert status == 200
        new_id = created["run"]["info"]["run_id"]
        logged = _http(
            base + "/api/2.0/mlflow/runs/log-metric",
            {"run_id": new_id, "key": "acc", "value": 0.5, "timestamp": 1, "step": 3},
        )
        assert logged[0] == 200, logged
        with gitml.Client(repo) as c:
            assert [(m.value, m.step) for m in c.get_metric_history(new_id, "acc")] == [(0.5, 3)]
            assert c.get_run(new_id).info.run_name == "rest"
        with urllib.request.urlopen(base + "/", timeout=30) as response:  # MLflow's own UI page
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


# -- what the plugin needs of gitml's Client (no MLflow needed) -----------------------
def _run_commits(repo, run_id: str) -> int:
    ref = [
        r for r in git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs").split() if r.endswith(run_id)
    ][0]
    return int(git(repo, "rev-list", "--count", ref)) - int(git(repo, "rev-list", "--count", "HEAD"))


def test_client_start_run_keeps_the_run_open_until_terminated(repo):
    with gitml.ops.Operations(repo) as c:
        open_run = c.start_run(c.create_experiment("open"), run_name="buffered")
        committed = c.create_run(c.get_experiment_by_name("open").experiment_id, parent_run_id=open_run.info.run_id)
        for step in range(40):
            c.log_metric(open_run.info.run_id, "loss", 1 / (step + 1), step=step)
            c.log_metric(committed.info.run_id, "loss", 1 / (step + 1), step=step)
        c.set_terminated(open_run.info.run_id)
        c.set_terminated(committed.info.run_id)
        c.flush()  # what mlflow.flush_async_logging() calls: the ended run is in git now
        ref = f"refs/gitml/runs/{open_run.info.experiment_id}/{open_run.info.run_id}"
        assert "status: FINISHED" in git(repo, "show", f"{ref}:.gitml/run/meta.yaml")
    assert _run_commits(repo, open_run.info.run_id) <= 3  # journaled, committed at its end
    assert _run_commits(repo, committed.info.run_id) >= 40  # create_run: one commit per call
    with gitml.ops.Operations(repo) as c:
        run = c.get_run(open_run.info.run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == "buffered"
        assert len(c.get_metric_history(run.info.run_id, "loss")) == 40
        assert run.data.latest_metrics["loss"].step == 39 and run.data.latest_metrics["loss"].value == 1 / 40
        assert c.get_parent_run(committed.info.run_id).info.run_id == open_run.info.run_id


# -- what MLflow's own tests look at: the artifact folder, a run's tags, MLflow's words ---
VIEW = """
import json, os, shutil, mlflow
from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
mlflow.set_tracking_uri("gitml:.")
client = MlflowClient()
out = {}
src = os.path.abspath("../src")
os.makedirs(os.path.join(src, "empty"))
open(os.path.join(src, "a.txt"), "w").write("A")
with mlflow.start_run() as run:
    mlflow.log_text("hello", "dir/../notes/n.txt")
    mlflow.log_artifacts(src, "tree")
    uri = mlflow.get_artifact_uri()
    folder = local_file_uri_to_path(uri)
    out["uri"] = uri
    out["listed"] = sorted(os.listdir(folder))
    out["tree"] = sorted(os.listdir(os.path.join(folder, "tree")))
    out["note"] = open(local_file_uri_to_path(mlflow.get_artifact_uri("notes/n.txt"))).read()
    out["fluent_tags"] = sorted(k for k in run.data.tags)
    try:
        mlflow.log_metric("m", "apple")
    except MlflowException as e:
        out["metric_words"] = e.message
    mlflow.log_param("p", "1")
    try:
        mlflow.log_param("p", "2")
    except MlflowException as e:
        out["param_words"] = e.message
out["fluent_tags_stored"] = sorted(client.get_run(run.info.run_id).data.tags)
shutil.rmtree(folder)  # the folder is a view: MLflow still reads the run's files from gitml
out["read_back"] = open(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notes/n.txt")).read()
out["listed_back"] = sorted(f.path for f in client.list_artifacts(run.info.run_id))
plain = client.create_run("0")
out["client_tags"] = sorted(client.get_run(plain.info.run_id).data.tags)
elsewhere = os.path.abspath("../elsewhere")
exp = client.create_experiment("chosen", artifact_location=elsewhere)
with mlflow.start_run(experiment_id=exp) as chosen:
    mlflow.log_text("x", "x.txt")
out["chosen_uri"] = chosen.info.artifact_uri
out["chosen_files"] = os.listdir(os.path.join(elsewhere, chosen.info.run_id, "artifacts"))
out["other_repo"] = type(get_artifact_repository("file:///tmp/some/folder")).__name__
out["view_repo"] = type(get_artifact_repository(uri)).__name__
out["run_ids"] = [run.info.run_id, plain.info.run_id, chosen.info.run_id]
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_artifact_folder_tags_and_mlflow_words(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, VIEW, repo))
    first, plain, chosen = out["run_ids"]
    gitdir = os.path.realpath(repo / ".git")
    assert out["uri"] == f"file://{gitdir}/gitml/artifacts/0/{first}/artifacts"
    assert out["listed"] == ["notes", "tree"] and out["tree"] == ["a.txt", "empty"]
    assert out["note"] == "hello" and out["read_back"] == "hello"
    assert out["listed_back"] == ["notes", "tree"]
    assert out["view_repo"] == "GitmlArtifactRepository" and out["other_repo"] == "LocalArtifactRepository"
    # MLflow shows the tags its caller set: fluent runs the user and source (the commit where
    # MLflow finds GitPython), MlflowClient's none; gitml's own API shows every one
    assert set(out["fluent_tags_stored"]) - {"mlflow.source.git.commit"} == {
        "mlflow.runName",
        "mlflow.source.name",
        "mlflow.source.type",
        "mlflow.user",
    }
    assert out["client_tags"] == ["mlflow.runName"]
    assert out["metric_words"].startswith("Invalid value \"apple\" for parameter 'value' supplied")
    assert out["param_words"].startswith("Changing param values is not allowed. Param with key='p' was already logged")
    # an experiment's chosen artifact location is where MLflow keeps its runs' artifacts
    assert out["chosen_uri"] == f"{repo.parent}/elsewhere/{chosen}/artifacts"
    assert out["chosen_files"] == ["x.txt"]
    with gitml.Client(repo) as c:  # gitml holds what went through the view, with its system tags
        assert {f.path for f in c.list_artifacts(first)} == {"notes", "tree"}
        assert c.get_run(first).data.tags["gitml.source.dirty"] in ("true", "false")
        assert c.get_run(plain).data.tags["mlflow.user"]
        assert c.list_artifacts(chosen) == []


LOGGED = """
import json, os, tempfile, mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
mlflow.set_tracking_uri("gitml:.")
client = MlflowClient()
out = {}
bare = mlflow.initialize_logged_model(name="bare")
mlflow.log_model_params({f"p{i}": str(i) for i in range(20)}, model_id=bare.model_id)
out["bare"] = [bare.source_run_id, len(mlflow.get_logged_model(bare.model_id).params)]
mlflow.set_active_model(name="agent")  # made on first use, without a run
with mlflow.start_run() as run:
    mlflow.log_metrics({"acc": 0.5, "loss": 2.0})
agent = mlflow.search_logged_models(filter_string="name = 'agent'", output_format="list")[0]
out["agent_metrics"] = sorted((m.key, m.value, m.run_id == run.info.run_id) for m in agent.metrics)
out["model_inputs"] = [m.model_id == agent.model_id for m in mlflow.get_run(run.info.run_id).inputs.model_inputs]
mlflow.clear_active_model()
class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return [x * 2 for x in model_input]
info = mlflow.pyfunc.log_model(name="echo", python_model=Echo())  # no run
out["echo"] = [mlflow.pyfunc.load_model(info.model_uri).predict([1, 2]), info.run_id]
client.set_logged_model_tags(info.model_id, {"team": "a"})
ordered = mlflow.search_logged_models(order_by=[{"field_name": "name", "ascending": True}], output_format="list")
out["ordered"] = [m.name for m in ordered]
out["tagged"] = [m.name for m in mlflow.search_logged_models(filter_string="tags.team = 'a'", output_format="list")]
out["runs_shown"] = len(mlflow.search_runs(search_all_experiments=True))
client.delete_logged_model(bare.model_id)
try:
    client.get_logged_model(bare.model_id)
except MlflowException as e:
    out["deleted"] = e.error_code
out["after_delete"] = sorted(m.name for m in mlflow.search_logged_models(output_format="list"))
out["ids"] = {"bare": bare.model_id, "echo": info.model_id, "run": run.info.run_id}
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_logged_models_without_a_run_live_in_runs_of_their_own(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, LOGGED, repo))
    assert out["bare"] == [None, 20]
    assert out["agent_metrics"] == [["acc", 0.5, True], ["loss", 2.0, True]]
    assert out["model_inputs"] == [True]
    assert out["echo"] == [[2, 4], None]
    assert out["ordered"] == ["agent", "bare", "echo"]
    assert out["tagged"] == ["echo"]
    assert out["runs_shown"] == 1  # MLflow sees the run it started, not the models' own
    assert out["deleted"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["after_delete"] == ["agent", "echo"]
    with gitml.Client(repo) as c:  # in gitml, each is a run holding its model (files and record)
        holders = c.search_runs(None, "tags.`mlflow.gitml.loggedModel` LIKE 'm-%'")
        assert sorted(r.info.run_name for r in holders) == ["agent", "bare", "echo"]
        echo = next(r for r in holders if r.info.run_name == "echo")
        assert echo.data.tags["mlflow.gitml.loggedModel"] == out["ids"]["echo"]
        assert "echo/MLmodel" in {f.path for f in c.list_artifacts(echo.info.run_id, "echo")}


SOURCES = """
import json, mlflow
from mlflow.exceptions import MlflowException
mlflow.set_tracking_uri("gitml:.")
client = mlflow.MlflowClient()
def code(call):
    try:
        call()
    except MlflowException as e:
        return e.error_code
    return None
made_up = [client.create_model_version("latest", "runs:/run_id/model", "run_id") for _ in range(2)]
s3 = client.create_model_version("stored", "s3://bucket/path/model", None)
out = {
    "made_up": [[mv.version, mv.source, mv.run_id] for mv in made_up],
    "s3": [s3.source, s3.run_id, client.get_model_version_download_uri("stored", "1")],
    "searched": sorted(mv.version for mv in client.search_model_versions("name = 'latest'")),
    "runs_shown": len(mlflow.search_runs(search_all_experiments=True)),
    "slash_name": code(lambda: client.create_registered_model("a/b")),
    "bad_version": code(lambda: client.get_model_version("latest", "x")),
    "none_name": code(lambda: client.get_registered_model(None)),
}
client.set_model_version_tag("latest", "1", "k", "v")
client.update_model_version("latest", "1", description="tested")
one = client.get_model_version("latest", "1")
out["version_meta"] = [one.tags, one.description, one.source]
client.rename_registered_model("latest", "Latest model")
out["renamed"] = sorted(m.name for m in client.search_registered_models())
page = client.search_registered_models(max_results=1)
out["paged"] = [len(page), client.search_registered_models(max_results=1, page_token=page.token)[0].name]
def words(call):
    try:
        call()
    except MlflowException as e:
        return e.message
out["words"] = [words(lambda: client.get_registered_model("nope")),
                words(lambda: client.create_registered_model("stored")),
                words(lambda: client.get_model_version("stored", "9"))]
client.transition_model_version_stage("stored", "1", "Staging")
out["latest_all"] = {mv.current_stage: mv.version for mv in client.get_latest_versions("stored", [])}
plain = client.create_run(client.create_experiment("plain")).info  # a run holding no model: MLflow registers it too
folder = client.create_model_version("folder", plain.artifact_uri, plain.run_id)
out["folder"] = [folder.source == plain.artifact_uri, folder.run_id == plain.run_id, folder.version]
mlflow.genai.register_prompt(name="greet", template="Hello {{name}}")
out["prompt"] = mlflow.genai.load_prompt("prompts:/greet/1").template
print(json.dumps(out))
"""


@pytest.mark.mlflow
def test_versions_of_sources_outside_the_repository(plugin_python, repo):
    out = _last_json(_mlflow(plugin_python, SOURCES, repo))
    assert out["made_up"] == [["1", "runs:/run_id/model", "run_id"], ["2", "runs:/run_id/model", "run_id"]]
    assert out["s3"] == ["s3://bucket/path/model", None, "s3://bucket/path/model"]
    assert out["searched"] == ["1", "2"]
    assert out["runs_shown"] == 0
    assert out["slash_name"] == out["bad_version"] == out["none_name"] == "INVALID_PARAMETER_VALUE"
    assert out["version_meta"] == [{"k": "v"}, "tested", "runs:/run_id/model"]
    assert out["renamed"] == ["Latest model", "stored"]  # MLflow's prompt ("greet") is not a model
    assert out["paged"] == [1, "stored"]
    assert out["folder"] == [True, True, "1"]
    assert out["prompt"] == "Hello {{name}}"
    for said, mlflows in zip(
        out["words"],
        [
            "Registered Model with name=nope not found",
            "Registered Model (name=stored) already exists.",
            "Model Version (name=stored, version=9) not found",
        ],
        strict=True,
    ):
        assert said.startswith(mlflows), said  # MLflow's words, then gitml's reason
    assert out["latest_all"] == {"Staging": "1"}
    with gitml.Client(repo) as c:  # each version tags a commit of a run made for it, GTO-readable
        holders = c.search_runs(None, "tags.`mlflow.gitml.modelSource` LIKE '%'")
        sources = sorted(r.data.tags["mlflow.gitml.modelSource"] for r in holders)
        assert [s for s in sources if not s.startswith("file:")] == [
            "dummy-source",
            "runs:/run_id/model",
            "runs:/run_id/model",
            "s3://bucket/path/model",
        ]  # a prompt's too
        assert [s.endswith("/artifacts") for s in sources if s.startswith("file:")] == [True]  # the run's folder
        tags = git(repo, "tag", "--list").split()
        assert {"stored@v1.0.0"} <= set(tags)
        commit = git(repo, "rev-parse", "stored@v1.0.0^{commit}").strip()
        assert commit in {git(repo, "rev-parse", f"refs/gitml/runs/0/{r.info.run_id}").strip() for r in holders}

"""MLflow's tracking API surface: signatures, errors, entities, paging, limits, inputs.

Where gitml mirrors a behaviour of MLflow 3.17.2, the differential tests run the
same calls on MLflow (its venv's python, on sqlite) and compare.
"""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import threading

import pytest

import gitml
from gitml.errors import DeletedRunError, InvalidInputError, RunNotFoundError
from gitml.exceptions import MlflowException
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

FLUENT = [
    "start_run",
    "end_run",
    "active_run",
    "last_active_run",
    "get_run",
    "get_parent_run",
    "delete_run",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "delete_tag",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_table",
    "load_table",
    "log_image",
    "log_figure",
    "log_input",
    "get_artifact_uri",
    "search_runs",
    "set_experiment",
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "search_experiments",
    "set_experiment_tag",
    "set_experiment_tags",
    "delete_experiment",
    "set_tracking_uri",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "flush_async_logging",
    "enable_system_metrics_logging",
    "disable_system_metrics_logging",
]
CLIENT = [
    "search_runs",
    "log_metric",
    "log_param",
    "set_tag",
    "log_batch",
    "create_run",
    "get_run",
    "get_parent_run",
    "set_terminated",
    "delete_run",
    "restore_run",
    "update_run",
    "get_metric_history",
    "list_artifacts",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_table",
    "log_image",
    "log_figure",
    "load_table",
    "delete_tag",
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "set_experiment_tag",
    "delete_experiment",
    "restore_experiment",
    "rename_experiment",
]

SIGNATURES = """
import inspect, json, sys, mlflow
from mlflow import MlflowClient
fluent, client = json.loads(sys.argv[1]), json.loads(sys.argv[2])
names = lambda f: [[p.name, p.kind == p.KEYWORD_ONLY]
                   for p in inspect.signature(f).parameters.values() if p.name != "self"]
print(json.dumps({"fluent": {n: names(getattr(mlflow, n)) for n in fluent},
                  "client": {n: names(getattr(MlflowClient, n)) for n in client}}))
"""


def _params(f) -> list[list]:
    return [[p.name, p.kind == p.KEYWORD_ONLY] for p in inspect.signature(f).parameters.values() if p.name != "self"]


def _same(mine: list[list], theirs: list[list]) -> bool:
    """The same positional parameters in the same order; MLflow's keyword-only ones
    among gitml's (which may add its own, e.g. ``experiment_names``)."""

    def positional(params):
        return [name for name, kw_only in params if not kw_only]

    def keywords(params):
        return {name for name, kw_only in params if kw_only}

    return positional(mine) == positional(theirs) and keywords(theirs) <= keywords(mine)


def test_signatures_are_mlflows(mlflow_python):  # noqa: F811
    out = subprocess.run(
        [mlflow_python, "-c", SIGNATURES, json.dumps(FLUENT), json.dumps(CLIENT)],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(out.stdout)
    for name in FLUENT:
        mine = _params(getattr(gitml, name))
        expected = [p for p in theirs["fluent"][name] if p[0] != "trace_location"]  # Databricks Unity Catalog only
        assert _same(mine, expected), f"gitml.{name}{mine} != mlflow.{name}{expected}"
    for name in CLIENT:
        mine = _params(getattr(gitml.MlflowClient, name))
        assert _same(mine, theirs["client"][name]), f"MlflowClient.{name}: {mine} != {theirs['client'][name]}"


def test_no_fluent_function_swallows_keywords(repo):
    import gitml.fluent

    for name in gitml.__all__:
        f = getattr(gitml, name)
        if inspect.isfunction(f) and f.__module__ == "gitml.fluent":
            kinds = {p.kind for p in inspect.signature(f).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name
    with pytest.raises(TypeError, match="bogus"):
        gitml.log_metric("acc", 0.9, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        gitml.start_run(bogus=True)
    assert gitml.active_run() is None and len(gitml.search_runs()) == 0  # no run was started


def test_run_id_keyword_writes_to_that_run(repo):
    c = gitml.Client(repo)
    target = c.create_run("0").info.run_id
    assert gitml.log_metric("acc", 0.9, run_id=target, step=3, timestamp=5) is None
    gitml.log_metrics({"f1": 0.5}, run_id=target)
    gitml.log_params({"lr": 0.1}, run_id=target)
    gitml.log_text("hi", "note.txt", run_id=target)
    assert gitml.active_run() is None  # no run was started for these
    run = c.get_run(target)
    assert run.data.metrics == {"acc": 0.9, "f1": 0.5} and run.data.params == {"lr": "0.1"}
    assert [(m.step, m.timestamp) for m in c.get_metric_history(target, "acc")] == [(3, 5)]
    assert [f.path for f in c.list_artifacts(target)] == ["note.txt"]
    assert [r.info.run_id for r in c.search_runs(["0"])] == [target]
    c.close()


def test_synchronous_false_returns_operations_to_wait_on(repo):
    with gitml.start_run() as run:
        assert gitml.log_metric("m", 1.0, synchronous=True) is None
        ops = gitml.log_metric("m", 2.0, step=1, synchronous=False)
        ops.wait()
        gitml.set_tag("t", "v", synchronous=False).wait()
        assert gitml.log_param("p", 3, synchronous=False) == 3
    got = gitml.get_run(run.info.run_id)
    assert got.data.metrics == {"m": 2.0} and got.data.tags["t"] == "v" and got.data.params == {"p": "3"}
    with pytest.raises(InvalidInputError, match="model_id"):
        gitml.log_metric("m", 1.0, run_id=run.info.run_id, model_id="m-1")


def test_a_deleted_run_takes_no_writes_and_cannot_be_resumed(repo):
    with gitml.start_run() as run:
        gitml.log_param("p", "1")
    run_id = run.info.run_id
    c = gitml.Client(repo)
    c.delete_run(run_id)
    before = c.get_run(run_id)
    for write in (
        lambda: c.log_param(run_id, "q", "2"),
        lambda: c.log_metric(run_id, "m", 1.0),
        lambda: c.set_tag(run_id, "t", "v"),
        lambda: c.set_terminated(run_id),
        lambda: gitml.log_metric("m", 1.0, run_id=run_id),
        lambda: gitml.start_run(run_id=run_id),
    ):
        with pytest.raises(DeletedRunError, match=f"run {run_id} is deleted") as e:
            write()
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert gitml.active_run() is None
    after = c.get_run(run_id)
    assert (after.data, after.info.status) == (before.data, before.info.status)
    c.restore_run(run_id)
    with gitml.start_run(run_id=run_id):
        gitml.log_param("q", "2")
    assert c.get_run(run_id).data.params == {"p": "1", "q": "2"}
    c.close()


def test_a_client_made_earlier_sees_a_new_run_at_once(repo):
    c = gitml.Client(repo)  # before the run exists, and long before its first commit is due
    with gitml.start_run() as run:
        run_id = run.info.run_id
        assert c.get_run(run_id).info.status == "RUNNING"
        assert [r.info.run_id for r in c.search_runs(["0"])] == [run_id]
        assert run_id in set(gitml.search_runs()["run_id"])
        gitml.log_metric("m", 1.0)
        assert c.get_run(run_id).data.metrics == {"m": 1.0}  # what the fluent API logged, too
        assert c.tracker.resolve(run_id[:8]) == run_id
    c.close()


def test_mlflowexception_is_the_root_with_mlflows_codes(repo):
    assert gitml.exceptions.MlflowException is gitml.GitmlError is gitml.MlflowException
    c = gitml.Client(repo)
    with pytest.raises(MlflowException) as e:
        c.get_run("0" * 32)
    assert isinstance(e.value, RunNotFoundError) and e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        gitml.search_runs(filter_string="metrics.m >")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    with gitml.start_run():
        gitml.log_param("p", "1")
        with pytest.raises(MlflowException) as e:
            gitml.log_param("p", "2")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        for bad_metric in (
            lambda: c.log_metric(gitml.active_run().info.run_id, "m", "abc"),
            lambda: gitml.log_metric("m", "abc"),
        ):
            with pytest.raises(MlflowException) as e:
                bad_metric()
            assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    err = MlflowException("custom", error_code="BAD_REQUEST")
    assert (err.message, err.error_code) == ("custom", "BAD_REQUEST")
    assert MlflowException.invalid_parameter_value("x").error_code == "INVALID_PARAMETER_VALUE"
    c.close()


def test_mlflow_names_for_the_client_entities_and_errors():
    from gitml.tracking import MlflowClient

    assert MlflowClient is gitml.MlflowClient is gitml.Client
    for name in (
        "Metric",
        "Param",
        "RunTag",
        "Run",
        "RunInfo",
        "RunData",
        "Experiment",
        "ViewType",
        "RunStatus",
        "FileInfo",
    ):
        assert getattr(gitml.entities, name) is getattr(gitml, name)
    assert gitml.entities.Metric("k", 1.0, 2, 3).step == 3
    from gitml import errors

    raised = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, gitml.GitmlError)}
    assert raised <= {getattr(gitml.exceptions, n) for n in gitml.exceptions.__all__}


def test_client_search_runs_pages_run_objects(repo):
    c = gitml.Client(repo)
    ids = []
    for i in range(5):
        run = c.create_run("0", start_time=1000 + i)
        c.log_metric(run.info.run_id, "m", float(i))
        ids.append(run.info.run_id)
    first = c.search_runs(["0"], max_results=2, order_by=["metrics.m DESC"])
    assert isinstance(first[0], gitml.Run) and first.token is not None
    seen, page = [], first
    while True:
        seen += [r.info.run_id for r in page]
        if page.token is None:
            break
        page = c.search_runs(["0"], max_results=2, order_by=["metrics.m DESC"], page_token=page.token)
    assert seen == ids[::-1]
    assert c.search_runs(["0"], max_results=5).token is None
    assert len(c.search_runs(experiment_names=["Default"])) == 5
    with pytest.raises(InvalidInputError, match="page_token"):
        c.search_runs(["0"], page_token="garbage")
    assert list(gitml.search_runs()["run_id"]) == ids[::-1]  # the fluent one stays a DataFrame
    c.close()


def test_length_limits_cut_values_and_refuse_keys(repo, caplog):
    c = gitml.Client(repo)
    with gitml.start_run() as run, caplog.at_level(logging.WARNING, "gitml"):
        gitml.log_param("p", "x" * 6001)
        gitml.set_tag("t", "y" * 8001)
        gitml.set_tag("mlflow.runName", "n" * 9000)
        with pytest.raises(InvalidInputError, match="250"):
            gitml.log_param("k" * 251, "v")
        with pytest.raises(InvalidInputError, match="250"):
            gitml.log_metric("k" * 251, 1.0)
    assert "truncated to 6000" in caplog.text and "truncated to 8000" in caplog.text
    got = c.get_run(run.info.run_id)
    assert (len(got.data.params["p"]), len(got.data.tags["t"]), len(got.info.run_name)) == (6000, 8000, 8000)
    with pytest.raises(InvalidInputError, match="500"):
        c.create_experiment("e" * 501)
    c.set_experiment_tag("0", "long", "v" * 20000)
    with pytest.raises(InvalidInputError, match="20000"):
        c.set_experiment_tag("0", "long", "v" * 20001)
    c.close()


def test_system_tags_mlflow_sets(repo):
    code = "import gitml\nwith gitml.start_run() as r: pass\nprint(r.info.run_id)\n"
    (repo / "job.py").write_text(code)
    from tests.conftest import git, run_python

    git(repo, "add", "job.py")
    git(repo, "commit", "-qm", "job")
    out = run_python(
        "import runpy, sys; sys.argv = ['job.py']; runpy.run_path('job.py', run_name='__main__')", cwd=repo
    )
    tags = gitml.get_run(out.stdout.strip()).data.tags
    assert tags["mlflow.source.name"] == "job.py" and tags["mlflow.source.type"] == "LOCAL"
    import getpass

    assert tags["mlflow.user"] == getpass.getuser()


def test_parent_run_artifact_uri_and_tracking_uri(repo):
    assert not gitml.is_tracking_uri_set()
    with gitml.start_run() as parent:
        with gitml.start_run(nested=True) as child:
            assert gitml.get_artifact_uri() == f"runs:/{child.info.run_id}"
            assert gitml.get_artifact_uri("model/w.pt") == f"runs:/{child.info.run_id}/model/w.pt"
    assert gitml.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id
    assert gitml.get_parent_run(parent.info.run_id) is None
    gitml.set_tracking_uri(str(repo))
    assert gitml.is_tracking_uri_set()
    gitml.flush_async_logging()


def test_load_table_joins_the_runs_tables(repo):
    runs = []
    for i in range(2):
        with gitml.start_run() as run:
            gitml.log_table({"x": [i, i + 10]}, "eval/t.json")
        runs.append(run.info.run_id)
    with gitml.start_run():
        gitml.log_text("no table here", "other.txt")
    frame = gitml.load_table("eval/t.json", extra_columns=["run_id"])
    assert sorted(zip(frame["x"], frame["run_id"], strict=False)) == [
        (0, runs[0]),
        (1, runs[1]),
        (10, runs[0]),
        (11, runs[1]),
    ]
    assert list(gitml.load_table("eval/t.json", run_ids=[runs[1]])["x"]) == [1, 11]
    with pytest.raises(InvalidInputError, match="no run has"):
        gitml.load_table("missing.json")


def test_load_image(repo):
    import numpy as np

    with gitml.start_run() as run:
        gitml.log_image(np.zeros((4, 5, 3), dtype=np.uint8), "img.png")
        gitml.log_image(np.ones((2, 2), dtype=np.uint8), key="sample", step=3)
    names = [f.path for f in gitml.Client(repo).list_artifacts(run.info.run_id, "images/sample")]
    assert names == ["images/sample/step_3.png"]
    try:
        import PIL  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidInputError, match="pip install pillow"):
            gitml.artifacts.load_image(f"runs:/{run.info.run_id}/img.png")
        return
    assert gitml.artifacts.load_image(f"runs:/{run.info.run_id}/img.png").size == (5, 4)


def test_log_input_records_datasets_searchable_by_name_digest_context(repo):
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0, 1]})
    train = gitml.data.from_pandas(df, source="data/train.csv", targets="y", name="train")
    arrays = gitml.data.from_numpy(np.arange(6.0).reshape(3, 2), targets=np.array([0, 1, 0]))
    assert (
        train.digest
        == gitml.data.from_pandas(df.copy(), name="train").digest
        != gitml.data.from_pandas(df.head(1)).digest
    )
    with gitml.start_run() as run:
        gitml.log_input(train, context="training", tags={"split": "a"})
        gitml.log_input(train, context="training")  # once per (dataset, context)
        gitml.log_input(arrays)
    with gitml.start_run() as other:
        gitml.log_metric("m", 1.0)
    inputs = gitml.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.source_type) for i in inputs] == [("train", "local"), ("dataset", "code")]
    assert {(t.key, t.value) for t in inputs[0].tags} == {("split", "a"), ("mlflow.data.context", "training")}
    assert json.loads(inputs[0].dataset.schema)["mlflow_colspec"][1] == {
        "type": "string",
        "name": "b",
        "required": True,
    }
    assert json.loads(inputs[1].dataset.profile)["features_shape"] == [3, 2]
    for text in ("datasets.name = 'train'", "datasets.context = 'training'", f"datasets.digest = '{train.digest}'"):
        assert list(gitml.search_runs(filter_string=text)["run_id"]) == [run.info.run_id], text
    assert gitml.get_run(other.info.run_id).inputs.dataset_inputs == []
    with pytest.raises(InvalidInputError, match="longer than 500"):
        gitml.data.from_pandas(df, name="n" * 501).to_dict()


def test_system_metrics_are_logged_as_averages_on_a_thread(repo, monkeypatch):
    from gitml.system_metrics import SystemMetricsMonitor

    got, done = [], threading.Event()

    def record(values, step):
        got.append((step, values))
        if len(got) == 2:
            done.set()

    monitor = SystemMetricsMonitor(record, interval=0.01, samples=2, path=str(repo))
    monitor.start()
    assert done.wait(10)
    monitor.stop()
    assert [step for step, _ in got[:2]] == [0, 1]
    keys = set(got[0][1])
    assert {
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/disk_usage_percentage",
    } <= keys
    assert 0 <= got[0][1]["system/system_memory_usage_percentage"] <= 100

    monkeypatch.setenv("GITML_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.01")
    gitml.enable_system_metrics_logging()
    try:
        with gitml.start_run() as run:
            monitor = run._monitor
            assert monitor is not None
            while monitor.step < 2 and monitor._thread.is_alive():
                monitor._thread.join(0.01)
        history = gitml.get_metric_history(run.info.run_id, "system/disk_usage_percentage")
        assert [m.step for m in history][:2] == [0, 1]
        with gitml.start_run(log_system_metrics=False) as quiet:
            assert quiet._monitor is None
    finally:
        gitml.disable_system_metrics_logging()


DIFFERENTIAL = r"""
import json, logging, os, sys
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
logging.disable(logging.WARNING)
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
c = MlflowClient()
out = {}
def case(name, f):
    try:
        out[name] = ["ok", f()]
    except MlflowException as e:
        out[name] = ["error", e.error_code]
    except TypeError:
        out[name] = ["TypeError", None]
run = c.create_run("0")
rid = run.info.run_id
case("param 6001", lambda: (c.log_param(rid, "p", "x" * 6001), len(c.get_run(rid).data.params["p"]))[1])
case("tag 8001", lambda: (c.set_tag(rid, "t", "x" * 8001), len(c.get_run(rid).data.tags["t"]))[1])
case("param key 251", lambda: c.log_param(rid, "k" * 251, "v"))
case("param changed", lambda: c.log_param(rid, "p", "other"))
case("metric not a number", lambda: c.log_metric(rid, "m", "abc"))
case("experiment name 501", lambda: c.create_experiment("e" * 501))
case("experiment tag 20001", lambda: c.set_experiment_tag("0", "k", "v" * 20001))
case("missing run", lambda: c.get_run("0" * 32).info.run_id)
case("unknown keyword", lambda: mlflow.log_metric("a", 1.0, bogus=1))
for i in range(2):
    c.create_run("0")
page = c.search_runs(["0"], max_results=2)
out["paging"] = [len(page), page.token is not None, len(c.search_runs(["0"], max_results=2, page_token=page.token))]
c.delete_run(rid)
case("deleted run write", lambda: c.log_param(rid, "q", "1"))
case("deleted run resume", lambda: mlflow.start_run(run_id=rid).info.run_id)
print(json.dumps(out))
"""


def _gitml_cases(c) -> dict:
    out: dict = {}

    def case(name, f):
        try:
            out[name] = ["ok", f()]
        except MlflowException as e:
            out[name] = ["error", e.error_code]
        except TypeError:
            out[name] = ["TypeError", None]

    rid = c.create_run("0").info.run_id
    case("param 6001", lambda: (c.log_param(rid, "p", "x" * 6001), len(c.get_run(rid).data.params["p"]))[1])
    case("tag 8001", lambda: (c.set_tag(rid, "t", "x" * 8001), len(c.get_run(rid).data.tags["t"]))[1])
    case("param key 251", lambda: c.log_param(rid, "k" * 251, "v"))
    case("param changed", lambda: c.log_param(rid, "p", "other"))
    case("metric not a number", lambda: c.log_metric(rid, "m", "abc"))
    case("experiment name 501", lambda: c.create_experiment("e" * 501))
    case("experiment tag 20001", lambda: c.set_experiment_tag("0", "k", "v" * 20001))
    case("missing run", lambda: c.get_run("0" * 32).info.run_id)
    case("unknown keyword", lambda: gitml.log_metric("a", 1.0, bogus=1))
    for _ in range(2):
        c.create_run("0")
    page = c.search_runs(["0"], max_results=2)
    out["paging"] = [len(page), page.token is not None, len(c.search_runs(["0"], max_results=2, page_token=page.token))]
    c.delete_run(rid)
    case("deleted run write", lambda: c.log_param(rid, "q", "1"))
    case("deleted run resume", lambda: gitml.start_run(run_id=rid).info.run_id)
    return out


def test_errors_limits_and_paging_agree_with_mlflow(repo, tmp_path, mlflow_python):  # noqa: F811
    result = subprocess.run(
        [mlflow_python, "-c", DIFFERENTIAL, str(tmp_path / "mlflow.db")], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    c = gitml.Client(repo)
    mine = _gitml_cases(c)
    c.close()
    # MLflow calls resuming a deleted run an INTERNAL_ERROR; gitml calls it what it is, a bad run id
    assert theirs.pop("deleted run resume") == ["error", "INTERNAL_ERROR"]
    assert mine.pop("deleted run resume") == ["error", "INVALID_PARAMETER_VALUE"]
    assert mine == theirs

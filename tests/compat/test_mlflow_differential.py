"""gitml's search against the real MLflow 3.17.2: the same runs, the same queries, the same answers.

The same runs (params, metrics with NaN, infinities, histories and gaps, tags,
backslashes and quotes, nested and deleted runs) and experiments are logged
through MLflow (a sqlite store, MLflow's default, in its own venv, by one
subprocess that also runs every query and prints JSON) and through gitml.
MLflow assigns its own run ids, so runs are matched by name. For each filter
the matched sets must be equal, or both sides must refuse it; for each
order_by the lists must be equal, in order. A filter in ``EXTENSIONS`` is one
MLflow refuses and gitml answers on purpose (docs/design.md, "Reading and search").
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import git
from tests.mlflow_venv import mlflow_python  # noqa: F401  (a fixture)

# the first test may install the venv (minutes): the suite's 300 s timeout is too short for it
pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(1800)]

BASE = 1_700_000_000_000
MODELS = ["cnn", "rnn", "cnn_large", "CNN", "mlp"]
LRS = ["0.1", "0.01", "0.001", "1e-4"]
TEAMS = ["vision", "Vision", "nlp", None]


def _runs() -> list[dict]:
    """The logged runs: plain values, then the awkward ones. Start times are distinct,
    so every ordering is total without the run_id tie-breaker (ids differ by side)."""
    runs = []
    for i in range(24):
        params = {"model": MODELS[i % 5], "lr": LRS[i % 4], "i": str(i)}
        if i % 6 == 5:
            del params["model"]
        acc = round((i * 37 % 20) / 20, 2)  # repeats: ties resolved by start_time
        metrics: dict[str, list] = {"acc": [[acc, 0, BASE + i]]}
        if i % 7 == 3:
            metrics["acc"] = [["nan", 0, BASE + i]]
        if i % 8 == 6:
            del metrics["acc"]
        if i % 5 == 1:  # a history: the latest is the highest step, not the last logged
            metrics["acc"] = [[0.05, 2, BASE + i], [0.99, 1, BASE + 99_000 + i]]
        metrics["loss"] = [["inf" if i == 4 else "-inf" if i == 9 else round(1 - acc, 3), 0, BASE]]
        if i % 4 == 2:
            metrics["val loss"] = [[i / 10, 0, BASE]]
        tags = {"team": TEAMS[i % 4]} if TEAMS[i % 4] else {}
        if i % 3 == 0:
            tags["my.tag"] = f"t{i % 2}"
        status = "FAILED" if i % 5 == 2 else "KILLED" if i % 11 == 7 else "RUNNING" if i % 9 == 8 else "FINISHED"
        start = BASE + ((i * 7) % 24) * 1000  # start order differs from name order
        runs.append(
            {
                "name": f"r{i:02}",
                "start": start,
                "status": status,
                "end": start + 500 * (i % 4),
                "params": params,
                "metrics": metrics,
                "tags": tags,
            }
        )
    specials = [
        ("it's", {"path": "C:\\data\\x", "model": "cnn"}, {"note": "50%_done"}),
        ("C:\\runs\\a", {"path": "C:\\data\\", "model": "rnn"}, {"note": 'say "hi"'}),
        ('say "hi"', {"path": "it''s", "my key": "x"}, {"note": "it's"}),
        ("Run With Space", {"path": "a\\'b"}, {"note": "%"}),
        ("parent", {"model": "cnn"}, {"team": "nlp"}),
    ]
    for j, (name, params, tags) in enumerate(specials):
        start = BASE + 100_000 + j * 1000
        runs.append(
            {
                "name": name,
                "start": start,
                "status": "FINISHED",
                "end": start + 10,
                "params": params,
                "metrics": {"acc": [[0.5 + j / 100, 0, BASE]]},
                "tags": tags,
            }
        )
    for j in range(2):
        start = BASE + 200_000 + j * 1000
        runs.append(
            {
                "name": f"child-{j}",
                "start": start,
                "status": "FINISHED",
                "end": start + 1,
                "params": {"model": "cnn"},
                "metrics": {"acc": [[0.7, 0, BASE]]},
                "tags": {"team": "nlp"},
                "parent": "parent",
            }
        )
    runs.append(
        {
            "name": "deleted",
            "start": BASE + 300_000,
            "status": "FINISHED",
            "end": BASE + 300_001,
            "params": {"model": "cnn"},
            "metrics": {"acc": [[0.9, 0, BASE]]},
            "tags": {},
            "deleted": True,
        }
    )
    return runs


EXPERIMENTS = [
    {"name": "churn", "tags": {"note": "name = x", "team": "a"}},
    {"name": "Churn-v2", "tags": {"team": "b"}},
    {"name": "vision", "tags": {}},
    {"name": "C:\\exp", "tags": {"path": "C:\\data\\x"}},
    {"name": "old", "tags": {"team": "a"}, "deleted": True},
    {"name": "zeta", "tags": {"team": "A"}},
]

FILTERS = [
    "",
    # metrics: every comparator; NaN, infinities, missing values, the latest point
    "metrics.acc > 0.5",
    "metrics.acc >= 0.5",
    "metrics.acc < 0.3",
    "metrics.acc <= 0.3",
    "metrics.acc = 0.85",
    "metrics.acc != 0.85",
    "metrics.acc = 0.05",
    "metrics.acc = 0.99",
    "metrics.acc != 0",
    "metrics.acc > -1",
    "metrics.acc>0.5",
    "metrics.acc > 1e-1",
    "metrics.acc > .5",
    "metrics.acc = 1.",
    "metrics.acc > -1e308",
    "metrics.loss > 1e308",
    "metrics.loss < -1e308",
    "metrics.loss != 0.15",
    "metrics.loss >= 0",
    "metric.acc > 0.5",
    "`metric`.acc > 0.5",
    "`metrics`.acc < 0.2",
    "metrics.`val loss` > 0.5",
    'metrics."val loss" <= 0.6',
    "metrics.`acc` = 0.5",
    "metrics.missing > 0",
    "metrics.missing != 0",
    # params
    "params.model = 'cnn'",
    "params.model != 'cnn'",
    'params.model = "rnn"',
    "params.model LIKE 'cnn%'",
    "params.model LIKE '%nn'",
    "params.model LIKE '_nn'",
    "params.model LIKE 'CNN'",
    "params.model ILIKE 'cnn'",
    "params.model ILIKE '%LARGE'",
    "params.model like 'c%'",
    "params.model LIKE '%'",
    "params.lr = '1e-4'",
    "params.lr LIKE '0.0%'",
    "params.model IS NULL",
    "params.model IS NOT NULL",
    "params.model is not null",
    "param.model = 'mlp'",
    "parameter.model = 'mlp'",
    "parameters.model = 'mlp'",
    "`params`.model = 'mlp'",
    "`param`.`my key` = 'x'",
    "params.`my key` = 'x'",
    'params."my key" = "x"',
    # quoted text is verbatim: backslashes are characters, no escapes
    "params.path = 'C:\\data\\x'",
    "params.path = 'C:\\data\\'",
    "params.path LIKE 'C:\\data\\%'",
    "params.path LIKE 'C:%'",
    "params.path = 'it''s'",
    "params.path = \"it''s\"",
    "params.path = 'a\\'b'",
    'params.path = "a\\\'b"',
    "params.path ILIKE '%\\%'",
    "params.path = 'C:\\data\\x' AND params.model = 'cnn'",
    # tags
    "tags.team = 'vision'",
    "tags.team != 'vision'",
    "tags.team ILIKE 'vision'",
    "tags.team LIKE 'V%'",
    "tags.team IS NULL",
    "tags.team IS NOT NULL",
    "tag.team = 'nlp'",
    "`tags`.team = 'nlp'",
    "tags.`my.tag` = 't0'",
    "tags.my.tag = 't1'",
    "tags.note = '50%_done'",
    "tags.note LIKE '50\\%%'",
    "tags.note LIKE '%\\_%'",
    "tags.note LIKE '50_%'",
    "tags.note = 'say \"hi\"'",
    'tags.note = "it\'s"',
    "tags.note = '%'",
    "tags.note LIKE '%'",
    "tags.`mlflow.runName` = 'r03'",
    "tags.mlflow.runName LIKE 'child%'",
    "tags.mlflow.parentRunId IS NOT NULL",
    "tags.mlflow.parentRunId IS NULL AND params.model = 'cnn'",
    # attributes and the run-name spellings
    "attributes.status = 'FAILED'",
    "status = 'RUNNING'",
    "status != 'FINISHED'",
    "attribute.status = 'KILLED'",
    "attr.status LIKE 'F%'",
    "run.status ILIKE 'failed'",
    "`attributes`.status = 'FAILED'",
    "attributes.run_name = 'r05'",
    "run_name = 'r05'",
    "attributes.`Run name` = 'r05'",
    "attributes.`Run Name` LIKE 'r1%'",
    "`run name` = 'r07'",
    'run_name = "it\'s"',
    "run_name = 'C:\\runs\\a'",
    "run_name LIKE 'C:\\%'",
    "run_name = 'say \"hi\"'",
    "run_name LIKE '%Space'",
    "run_name != 'r00'",
    "run_name ILIKE 'R0%'",
    "attributes.start_time > 1700000010000",
    "start_time >= 1700000010000",
    "created < 1700000005000",
    "Created = 1700000003000",
    "attributes.created > 1700000100000",
    "start_time > 1.7e12",
    "end_time > 1700000010000",
    "end_time != 0",
    "attributes.end_time <= 1700000005000",
    "run_id LIKE '%'",
    "run_id = 'nope'",
    "run_id IN ('nope', 'nada')",
    "run_id NOT IN ('nope')",
    "user_id LIKE '%'",
    "artifact_uri LIKE '%'",
    # datasets: none logged, so nothing matches (and both sides accept the grammar)
    "datasets.name = 'train'",
    "dataset.digest != 'x'",
    "datasets.context LIKE '%'",
    "datasets.name IN ('a', 'b')",
    "datasets.digest NOT IN ('a')",
    "`datasets`.name ILIKE 'x'",
    # AND chains
    "metrics.acc > 0.3 AND params.model = 'cnn' AND tags.team = 'nlp'",
    "params.model LIKE 'c%' and status = 'FINISHED' AND metrics.loss < 0.5",
    "tags.team IS NULL AND params.model IS NULL",
    # refused by both
    "metrics.acc = 'x'",
    "metrics.acc LIKE '0%'",
    "metrics.acc == 1",
    "metrics.acc <> 1",
    "params.model = 1",
    "params.model = cnn",
    "tags.team > 1",
    "foo.x = 1",
    "METRIX.acc > 1",
    "metrics.acc >",
    "params.model = 'cnn",
    "datasets.size = 'x'",
    "datasets.name = 1",
    "attributes.colour = 'red'",
    "colour = 'red'",
    "metrics.acc 1",
    "status = 1",
    "start_time > 'x'",
    "params.path = 'a\\'",
    "`metrix`.acc > 1",
    "attributes.start_time LIKE '1%'",
]

EXTENSIONS = [
    # OR and parentheses
    "metrics.acc > 0.8 OR params.model = 'mlp'",
    "(params.model = 'cnn')",
    "(metrics.acc > 0.8 OR metrics.acc < 0.1) AND tags.team = 'nlp'",
    # IN, IS NULL and order comparisons everywhere
    "params.model IN ('cnn', 'rnn')",
    "tags.team NOT IN ('nlp')",
    "metrics.acc IN (0.5, 0.85)",
    "metrics.acc IS NULL",
    "metrics.acc IS NOT NULL",
    "attributes.end_time IS NULL",
    "run_name IN ('r01', 'r02')",
    "attributes.status IN ('FAILED', 'KILLED')",
    "status NOT IN ('FINISHED')",
    "datasets.name IS NULL",
    "params.lr < '0.05'",
    "tags.team >= 'nlp'",
    "run_name > 'r2'",
    # names in any case, more attributes, bare keys with /, -, :, a leading +
    "METRICS.acc > 0.5",
    "Params.model = 'cnn'",
    "STATUS = 'FAILED'",
    "lifecycle_stage = 'active'",
    "experiment_id LIKE '%'",
    "metrics.acc > +0.5",
    "metrics.val/loss > 0",
]

# MLflow's parser lets these through (a dangling AND is dropped, two comparisons side
# by side are AND-ed); gitml points at the token instead.
STRICTER = ["metrics.acc > 1 AND", "AND metrics.acc > 1", "metrics.acc > 1 metrics.loss < 1"]

ORDERS = [
    [],
    ["metrics.acc"],
    ["metrics.acc DESC"],
    ["metrics.acc ASC"],
    ["metrics.loss"],
    ["metrics.loss DESC"],
    ["metrics.`val loss` DESC"],
    ["params.model"],
    ["params.model DESC"],
    ["params.lr", "metrics.acc DESC"],
    ["params.model DESC", "metrics.acc"],
    ["tags.team"],
    ["tags.team DESC", "params.lr ASC"],
    ["attributes.start_time"],
    ["start_time DESC"],
    ["created"],
    ["end_time"],
    ["end_time DESC"],
    ["status", "metrics.acc DESC"],
    ["attributes.run_name DESC"],
    ["run_name"],
    ["tags.`mlflow.runName`"],
    ["`metric`.acc desc"],
    ["metrics.missing", "params.i"],
    ["params.`my key` DESC"],
]
BAD_ORDERS = [
    ["metrics.acc DOWN"],
    ["metrics.acc DESC ASC"],
    ["foo.x"],
    ["attributes.colour"],
    ["acc"],
    ["metrics.acc", "metrics.acc DESC"],
    ["start_time", "created DESC"],
    ["datasets.name"],
]
ORDER_EXTENSIONS = [["attributes.`Run name`"], ["lifecycle_stage"]]

EXPERIMENT_FILTERS = [
    "",
    "name = 'churn'",
    "name != 'churn'",
    "attribute.name = 'vision'",
    "name LIKE 'C%'",
    "name ILIKE 'churn%'",
    "name LIKE '%\\%'",
    "name = 'C:\\exp'",
    "`name` = 'zeta'",
    "tags.note = 'name = x'",
    "tags.note LIKE '%name%'",
    "tags.team = 'a'",
    "tags.team ILIKE 'a'",
    "tag.team != 'a'",
    "tags.team IS NULL",
    "tags.team IS NOT NULL",
    "tags.path = 'C:\\data\\x'",
    "creation_time > 0",
    "last_update_time >= 0",
    "creation_time < 0",
    "name LIKE 'c%' AND tags.team = 'a'",
    "experiment_id != '0'",
    # refused by both
    "params.x = 'a'",
    "run_name = 'x'",
    "name = 1",
    "creation_time > 'x'",
    "tags.team > 1",
    "foo.x = 'a'",
]
EXPERIMENT_EXTENSIONS = [
    "attributes.name = 'churn'",
    "name = 'churn' OR name = 'zeta'",
    "name IN ('churn', 'zeta')",
    "name < 'd'",
    "creation_time > 1.5",
]
EXPERIMENT_ORDERS = [
    [],
    ["name"],
    ["name DESC"],
    ["creation_time"],
    ["creation_time DESC"],
    ["attribute.name ASC"],
    ["last_update_time DESC"],
    ["last_update_time", "name DESC"],
]
BAD_EXPERIMENT_ORDERS = [["tags.team"], ["foo"], ["name DOWN"], ["params.x"]]

MLFLOW_SCRIPT = r"""
import json, sys, time
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

spec = json.load(open(sys.argv[1]))
client = MlflowClient(tracking_uri=spec["uri"])


def tick():
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        pass


experiment = client.create_experiment("diff")
for e in spec["experiments"]:
    tick()
    eid = client.create_experiment(e["name"], tags=e["tags"])
    if e.get("deleted"):
        client.delete_experiment(eid)
ids = {}
for run in spec["runs"]:
    tags = dict(run["tags"])
    if run.get("parent"):
        tags["mlflow.parentRunId"] = ids[run["parent"]]
    run_id = client.create_run(experiment, start_time=run["start"], tags=tags, run_name=run["name"]).info.run_id
    ids[run["name"]] = run_id
    metrics = [Metric(k, float(v), ts, step) for k, points in run["metrics"].items() for v, step, ts in points]
    params = [Param(k, v) for k, v in run["params"].items()]
    client.log_batch(run_id, metrics=metrics, params=params)
    if run["status"] != "RUNNING":
        client.set_terminated(run_id, run["status"], end_time=run["end"])
    if run.get("deleted"):
        client.delete_run(run_id)


def answer(search):
    try:
        return {"ok": search()}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"[:400]}


def runs(filter_string="", order_by=None):
    found = client.search_runs([experiment], filter_string, ViewType.ACTIVE_ONLY, 1000, order_by)
    return [r.info.run_name for r in found]


def experiments(filter_string=None, order_by=None):
    found = client.search_experiments(ViewType.ACTIVE_ONLY, 1000, filter_string, order_by)
    return [e.name for e in found]


json.dump({
    "filters": [answer(lambda: runs(f)) for f in spec["filters"]],
    "orders": [answer(lambda: runs("", o)) for o in spec["orders"]],
    "experiment_filters": [answer(lambda: experiments(f)) for f in spec["experiment_filters"]],
    "experiment_orders": [answer(lambda: experiments(None, o)) for o in spec["experiment_orders"]],
}, sys.stdout)
"""


def _queries() -> dict:
    return {
        "filters": FILTERS + EXTENSIONS + STRICTER,
        "orders": ORDERS + BAD_ORDERS + ORDER_EXTENSIONS,
        "experiment_filters": EXPERIMENT_FILTERS + EXPERIMENT_EXTENSIONS,
        "experiment_orders": EXPERIMENT_ORDERS + BAD_EXPERIMENT_ORDERS,
    }


def _tick() -> None:
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        pass


def _gitml_answers(path, queries: dict) -> dict:
    """Log the same runs through gitml and answer the same queries."""
    import gitml
    from gitml.errors import GitmlError
    from gitml.runlog.entities import Metric, Param, ViewType

    git(path, "init", "-q")
    git(path, "commit", "-q", "--allow-empty", "-m", "initial")
    client = gitml.Client(path)
    try:
        experiment = client.create_experiment("diff")
        for e in EXPERIMENTS:
            _tick()
            eid = client.create_experiment(e["name"], tags=e["tags"])
            if e.get("deleted"):
                client.delete_experiment(eid)
        ids: dict[str, str] = {}
        for run in _runs():
            tags = dict(run["tags"])
            if run.get("parent"):
                tags["mlflow.parentRunId"] = ids[run["parent"]]
            run_id = client.create_run(experiment, start_time=run["start"], tags=tags, run_name=run["name"]).info.run_id
            ids[run["name"]] = run_id
            metrics = [Metric(k, float(v), ts, step) for k, points in run["metrics"].items() for v, step, ts in points]
            client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in run["params"].items()])
            if run["status"] != "RUNNING":
                client.set_terminated(run_id, run["status"], end_time=run["end"])
            if run.get("deleted"):
                client.delete_run(run_id)

        def answer(search) -> dict:
            try:
                return {"ok": search()}
            except GitmlError as error:
                return {"error": f"{type(error).__name__}: {error}"}

        def runs(filter_string="", order_by=None) -> list[str]:
            found = client.search_runs([experiment], filter_string, ViewType.ACTIVE_ONLY, 1000, order_by)
            if isinstance(found, list):  # MlflowClient's shape: Run objects
                return [r.info.run_name for r in found]
            return list(found["tags.mlflow.runName"])  # a DataFrame

        def experiments(filter_string=None, order_by=None) -> list[str]:
            return [e.name for e in client.search_experiments(ViewType.ACTIVE_ONLY, 1000, filter_string, order_by)]

        return {
            "filters": [answer(lambda f=f: runs(f)) for f in queries["filters"]],
            "orders": [answer(lambda o=o: runs("", o)) for o in queries["orders"]],
            "experiment_filters": [answer(lambda f=f: experiments(f)) for f in queries["experiment_filters"]],
            "experiment_orders": [answer(lambda o=o: experiments(None, o)) for o in queries["experiment_orders"]],
        }
    finally:
        client.close()


@pytest.fixture(scope="module")
def answers(mlflow_python, tmp_path_factory):  # noqa: F811
    """{"mlflow": ..., "gitml": ...}: each side's answer to every query, by kind and query."""
    tmp = tmp_path_factory.mktemp("differential")
    queries = _queries()
    spec = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "runs": _runs(), "experiments": EXPERIMENTS, **queries}
    (tmp / "spec.json").write_text(json.dumps(spec))
    (tmp / "mlflow_side.py").write_text(MLFLOW_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
    env.update(HOME=str(tmp), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", GIT_PYTHON_REFRESH="quiet")
    result = subprocess.run(
        [mlflow_python, str(tmp / "mlflow_side.py"), str(tmp / "spec.json")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow_answers = json.loads(result.stdout)

    home = tmp / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        (tmp / "project").mkdir()
        gitml_answers = _gitml_answers(tmp / "project", queries)
    return {"mlflow": mlflow_answers, "gitml": gitml_answers, "queries": queries}


def _pair(answers: dict, kind: str, query) -> tuple[dict, dict]:
    index = answers["queries"][kind].index(query)
    return answers["mlflow"][kind][index], answers["gitml"][kind][index]


def _without_default(answer: dict) -> dict:
    # MLflow's Default experiment has a creation time; gitml's implicit one has none
    return {"ok": [n for n in answer["ok"] if n != "Default"]} if "ok" in answer else answer


def _check_same(mlflow: dict, ours: dict, query, *, ordered: bool) -> None:
    if "error" in mlflow:
        assert "error" in ours, f"MLflow refuses {query!r} ({mlflow['error']}) but gitml answers {ours['ok']}"
        return
    assert "ok" in ours, f"MLflow answers {query!r} with {mlflow['ok']} but gitml refuses it: {ours['error']}"
    if ordered:
        assert ours["ok"] == mlflow["ok"]
    else:
        assert sorted(ours["ok"]) == sorted(mlflow["ok"])


@pytest.mark.parametrize("text", FILTERS)
def test_filter_matches_mlflow(answers, text):
    _check_same(*_pair(answers, "filters", text), text, ordered=False)


@pytest.mark.parametrize("text", EXTENSIONS)
def test_filter_extension_mlflow_refuses(answers, text):
    mlflow, ours = _pair(answers, "filters", text)
    assert "error" in mlflow, f"{text!r} is no extension: MLflow answers it"
    assert "ok" in ours, ours.get("error")


@pytest.mark.parametrize("text", STRICTER)
def test_filter_gitml_refuses_what_mlflow_lets_through(answers, text):
    mlflow, ours = _pair(answers, "filters", text)
    assert "ok" in mlflow and "error" in ours


@pytest.mark.parametrize("order_by", ORDERS + BAD_ORDERS, ids=str)
def test_order_matches_mlflow(answers, order_by):
    _check_same(*_pair(answers, "orders", order_by), order_by, ordered=True)


@pytest.mark.parametrize("order_by", ORDER_EXTENSIONS, ids=str)
def test_order_extension_mlflow_refuses(answers, order_by):
    mlflow, ours = _pair(answers, "orders", order_by)
    assert "error" in mlflow and "ok" in ours


@pytest.mark.parametrize("text", EXPERIMENT_FILTERS)
def test_experiment_filter_matches_mlflow(answers, text):
    mlflow, ours = _pair(answers, "experiment_filters", text)
    _check_same(_without_default(mlflow), _without_default(ours), text, ordered=False)


@pytest.mark.parametrize("text", EXPERIMENT_EXTENSIONS)
def test_experiment_filter_extension_mlflow_refuses(answers, text):
    mlflow, ours = _pair(answers, "experiment_filters", text)
    assert "error" in mlflow and "ok" in ours


@pytest.mark.parametrize("order_by", EXPERIMENT_ORDERS + BAD_EXPERIMENT_ORDERS, ids=str)
def test_experiment_order_matches_mlflow(answers, order_by):
    mlflow, ours = _pair(answers, "experiment_orders", order_by)
    _check_same(_without_default(mlflow), _without_default(ours), order_by, ordered=True)


def test_the_data_is_rich_enough(answers):
    """The comparisons mean something: most filters match some runs but not all."""
    mlflow = answers["mlflow"]["filters"]
    everything = len(mlflow[0]["ok"])
    partial = [a for a in mlflow if "ok" in a and 0 < len(a["ok"]) < everything]
    assert everything == len(_runs()) - 1  # the deleted run is not searched
    assert len(partial) > 90

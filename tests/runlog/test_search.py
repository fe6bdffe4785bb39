"""search_runs: MLflow's columns and grammar, plus OR and parentheses, and the index."""

import math
import os
import time

import pandas as pd
import pytest

import gitml
from gitml.errors import FilterSyntaxError
from tests.conftest import run_python


@pytest.fixture
def runs(repo):
    gitml.set_experiment("search")
    ids = {}
    for i, (p1, m1) in enumerate([("a", 0.9), ("b", 0.2), ("a", 0.4), ("c", 0.7), ("a", float("nan"))]):
        with gitml.start_run(run_name=f"r{i}", tags={"group": "x" if i % 2 else "y"}) as run:
            gitml.log_params({"p1": p1, "i": i})
            gitml.log_metrics({"m1": m1, "m2": i * 1.5})
        ids[f"r{i}"] = run.info.run_id
        time.sleep(0.002)  # distinct start times (ms) for the default order
    return ids


def names(frame: pd.DataFrame) -> list[str]:
    return list(frame["tags.mlflow.runName"])


def test_frame_has_mlflow_columns(runs):
    frame = gitml.search_runs()
    for column in (
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
        "metrics.m1",
        "metrics.m2",
        "params.p1",
        "params.i",
        "tags.group",
        "tags.mlflow.runName",
    ):
        assert column in frame.columns, column
    assert len(frame) == 5
    assert str(frame["start_time"].dtype).startswith("datetime64") and frame["metrics.m1"].dtype == "float64"
    assert names(frame) == ["r4", "r3", "r2", "r1", "r0"]  # newest first, as MLflow


def test_filters_and_order(runs):
    frame = gitml.search_runs(filter_string="metrics.m1 > 0.5 and params.p1 = 'a'")
    assert names(frame) == ["r0"]
    frame = gitml.search_runs(filter_string="params.p1 = 'b' OR (tags.group = 'y' AND metrics.m2 >= 3)")
    assert sorted(names(frame)) == ["r1", "r2", "r4"]
    frame = gitml.search_runs(filter_string="params.p1 IN ('b', 'c')", order_by=["metrics.m1 DESC"])
    assert names(frame) == ["r3", "r1"]
    frame = gitml.search_runs(order_by=["metrics.m1 ASC"])
    assert names(frame)[-1] == "r4"  # NaN sorts last
    frame = gitml.search_runs(filter_string="attributes.run_name LIKE 'r%'", max_results=2, order_by=["params.i"])
    assert names(frame) == ["r0", "r1"]
    frame = gitml.search_runs(filter_string=f"attributes.run_id = '{runs['r2']}'")
    assert names(frame) == ["r2"]
    assert len(gitml.search_runs(filter_string="tags.missing IS NULL")) == 5
    assert len(gitml.search_runs(filter_string="attributes.status = 'FINISHED'")) == 5


def test_list_output_and_experiment_names(runs):
    found = gitml.search_runs(experiment_names=["search"], output_format="list")
    assert {r.info.run_id for r in found} == set(runs.values())
    assert math.isnan(next(r for r in found if r.info.run_name == "r4").data.metrics["m1"])
    assert len(gitml.search_runs(search_all_experiments=True)) == 5
    with pytest.raises(gitml.ExperimentNotFoundError):
        gitml.search_runs(experiment_names=["nope"])


@pytest.mark.parametrize(
    "text, position",
    [
        ("metrics.m1 >", 12),
        ("metrics.m1 > 'x'", 13),
        ("bogus.x = 1", 0),
        ("params.p1 = 'a' AND", 19),
        ("(metrics.m1 > 1", 0),
    ],
)
def test_malformed_filters_point_at_the_token(runs, text, position):
    with pytest.raises(FilterSyntaxError) as info:
        gitml.search_runs(filter_string=text)
    assert info.value.position == position
    assert "position" in str(info.value)


def test_empty_experiment_gives_empty_frame(repo):
    gitml.set_experiment("empty")
    frame = gitml.search_runs()
    assert len(frame) == 0 and "run_id" in frame.columns


def test_index_sees_runs_written_by_another_process(runs, repo):
    assert len(gitml.search_runs()) == 5
    run_python(
        "import gitml\ngitml.set_experiment('search')\n"
        "with gitml.start_run(run_name='r5'):\n    gitml.log_metric('m1', 0.99)\n",
        cwd=repo,
    )
    frame = gitml.search_runs(filter_string="metrics.m1 > 0.95")
    assert names(frame) == ["r5"]


def test_corrupt_index_is_rebuilt(runs, repo):
    gitml.set_tracking_uri(None)  # drop the open index
    index = repo / ".git" / "gitml" / "index.sqlite3"
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(index) + suffix):
            os.unlink(str(index) + suffix)
    index.write_bytes(b"this is not sqlite" * 100)
    assert len(gitml.search_runs(experiment_names=["search"])) == 5


def test_deleted_index_is_rebuilt_from_git(runs, repo):
    gitml.set_tracking_uri(None)
    for name in os.listdir(repo / ".git" / "gitml"):
        if name.startswith("index.sqlite3"):
            os.unlink(repo / ".git" / "gitml" / name)
    frame = gitml.search_runs(experiment_names=["search"], filter_string="params.p1 = 'a'")
    assert sorted(names(frame)) == ["r0", "r2", "r4"]


def _tick() -> None:
    """Wait for the millisecond clock to move (experiments get distinct creation times)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        pass


@pytest.fixture
def experiments(client):
    ids = {}
    for name, tags in [("churn", {"note": "name = x"}), ("vision", {"team": "cv"}), ("Churn-v2", {})]:
        _tick()
        ids[name] = client.create_experiment(name, tags=tags)
    return ids


def experiment_names(found) -> list[str]:
    return [e.name for e in found]


@pytest.mark.parametrize(
    "order_by, expected",
    [
        (None, ["Churn-v2", "vision", "churn", "Default"]),  # newest first
        (["name"], ["Churn-v2", "Default", "churn", "vision"]),
        (["name DESC"], ["vision", "churn", "Default", "Churn-v2"]),
        (["creation_time"], ["churn", "vision", "Churn-v2", "Default"]),
        (["attribute.creation_time DESC"], ["Churn-v2", "vision", "churn", "Default"]),
        (["last_update_time DESC"], ["Churn-v2", "vision", "churn", "Default"]),
    ],
)
def test_search_experiments_order_by(client, experiments, order_by, expected):
    assert experiment_names(client.search_experiments(order_by=order_by)) == expected


def test_search_experiments_order_by_experiment_id(client, experiments):
    found = client.search_experiments(order_by=["experiment_id DESC"])
    ids = [e.experiment_id for e in found]
    assert ids == sorted(ids, key=int, reverse=True) and ids[-1] == "0"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tags.note = 'name = x'", ["churn"]),  # text inside a string literal stays a value
        ("name = 'churn'", ["churn"]),
        ("attribute.name ILIKE 'churn%'", ["Churn-v2", "churn"]),
        ("tags.team IS NOT NULL OR name LIKE 'C%'", ["Churn-v2", "vision"]),
        ("creation_time > 0 AND tags.team IS NULL", ["Churn-v2", "churn"]),
    ],
)
def test_search_experiments_filter(client, experiments, text, expected):
    assert experiment_names(client.search_experiments(filter_string=text)) == expected


def test_search_experiments_by_id(client, experiments):
    found = client.search_experiments(filter_string=f"experiment_id IN ('{experiments['vision']}', '0')")
    assert experiment_names(found) == ["vision", "Default"]


@pytest.mark.parametrize(
    "text, order_by, message",
    [
        ("params.x = 'a'", None, "unknown prefix 'params'"),
        ("run_name = 'x'", None, "unknown identifier 'run_name'"),
        (None, ["tags.team"], "experiments cannot be ordered by tags.team"),
        (None, ["name", "name DESC"], "attributes.name appears twice"),
    ],
)
def test_search_experiments_rejects_run_fields(client, experiments, text, order_by, message):
    with pytest.raises(FilterSyntaxError, match=message):
        client.search_experiments(filter_string=text, order_by=order_by)

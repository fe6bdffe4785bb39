"""gitml.pyfunc.spark_udf on a real Spark (PySpark in local mode, one session for the test run):
MLflow's calling forms and result types, models from runs and from the registry, the model's
bytes verified on the driver and shipped once, a tampered model refused before anything loads it."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

import gitml
import gitml.ops
import gitml.pyfunc
import gitml.sklearn
from gitml.errors import InvalidInputError, ModelIntegrityError
from gitml.pyfunc.shipping import ship_model

pytestmark = pytest.mark.slow  # the JVM starts once per session (10-30 s here), each job a few seconds


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return X, LogisticRegression(max_iter=500).fit(X, y)


class Labeller(gitml.pyfunc.PythonModel):
    """Output of several columns of several types; each worker process that loads it appends its
    pid to ``log`` (a file outside the model), so a test counts the loads."""

    def __init__(self, log: str, size: int = 0):
        self.log = log
        self.padding = b"x" * size  # a large pickle lives in the artifact cache, not in git

    def load_context(self, context):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")

    def predict(self, context, model_input, params=None):
        x = model_input["x"].astype(float)
        return pd.DataFrame(
            {
                "label": np.where(x > 2, "big", "small"),
                "score": x * (params or {}).get("factor", 1.5),
                "n": x.astype("int32"),
                "flag": x > 2,
            }
        )


def _logged(tmp_path, size: int = 0):
    from gitml.models import infer_signature

    log = str(tmp_path / "loads.txt")
    sample = pd.DataFrame({"x": [1.0, 3.0]})
    model = Labeller(log, size)
    signature = infer_signature(sample, model.predict(None, sample), params={"factor": 1.5})
    with gitml.start_run():
        info = gitml.pyfunc.log_model(name="model", python_model=model, signature=signature)
    return info, log


def test_a_runs_model_scores_in_each_calling_form_with_mlflows_default_type(spark, repo, iris):
    from pyspark.sql.functions import struct

    X, model = iris
    with gitml.start_run():
        info = gitml.sklearn.log_model(model, name="model", input_example=X.head(3))
    expected = model.predict(X)
    df = spark.createDataFrame(X)
    udf = gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="long")
    got = df.select(udf(struct(*X.columns)).alias("a"), udf(*X.columns).alias("b"), udf().alias("c")).toPandas()
    for column in "abc":
        np.testing.assert_array_equal(got[column].to_numpy(), expected)
    # columns passed by position take the signature's names, whatever Spark calls them
    renamed = df.toDF(*[f"c{i}" for i in range(4)])
    got = renamed.select(udf(*renamed.columns).alias("p")).toPandas()
    np.testing.assert_array_equal(got["p"].to_numpy(), expected)
    # no result_type: the output schema's (the labels' long column, as MLflow infers it: bigint)
    default = gitml.pyfunc.spark_udf(spark, info.model_uri)
    rows = df.select(default().alias("p")).toPandas()["p"]
    assert list(rows[:3]) == list(expected[:3])
    with pytest.raises(Exception, match="takes 4 required columns"):
        df.select(udf("sepal_length").alias("p")).collect()


def test_a_registered_models_uri_scores(spark, repo, iris):
    X, model = iris
    with gitml.start_run():
        gitml.sklearn.log_model(model, name="model", input_example=X.head(3), registered_model_name="iris")
    udf = gitml.pyfunc.spark_udf(spark, "models:/iris/1", result_type="double")
    got = spark.createDataFrame(X).select(udf().alias("p")).toPandas()["p"].to_numpy()
    np.testing.assert_array_equal(got, model.predict(X).astype(float))


def test_result_types_pick_output_columns_as_mlflows_do(spark, repo, tmp_path):
    info, _ = _logged(tmp_path)
    df = spark.createDataFrame(pd.DataFrame({"x": [1.0, 2.5, 3.0, 4.0]}))
    ask = {
        t: gitml.pyfunc.spark_udf(spark, info.model_uri, result_type=t)
        for t in (
            "string",
            "double",
            "int",
            "boolean",
            "array<double>",
            "array<string>",
            "label string, score double, flag boolean",
        )
    }
    got = df.select(*[u("x").alias(f"r{i}") for i, u in enumerate(ask.values())]).toPandas()
    assert list(got["r0"]) == ["small", "big", "big", "big"]  # string: the leftmost column
    assert list(got["r1"]) == [1.5, 3.75, 4.5, 6.0]  # double: the leftmost numeric column
    assert list(got["r2"]) == [1, 2, 3, 4]  # int: the leftmost column that fits in 32 bits
    assert list(got["r3"]) == [False, True, True, True]
    assert [list(v) for v in got["r4"]] == [[1.5, 1.0], [3.75, 2.0], [4.5, 3.0], [6.0, 4.0]]  # every numeric column
    assert [list(v) for v in got["r5"]][0] == ["small", "1.5", "1", "False"]
    assert [(r["label"], r["score"], r["flag"]) for r in got["r6"]] == [
        ("small", 1.5, False),
        ("big", 3.75, True),
        ("big", 4.5, True),
        ("big", 6.0, True),
    ]
    # the signature's params reach predict
    with_params = gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="double", params={"factor": 2.0})
    assert [r.p for r in df.select(with_params("x").alias("p")).collect()] == [2.0, 5.0, 6.0, 8.0]
    # a type the output has nothing of, and types spark_udf never returns
    with pytest.raises(Exception, match="no column 'missing' for the result type's field"):
        df.select(gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="missing double")("x")).collect()
    with pytest.raises(InvalidInputError, match="'map<string,int>' is not one of"):
        gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="map<string,int>")
    with pytest.raises(InvalidInputError, match="does not parse"):
        gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="no such type!")
    with pytest.raises(InvalidInputError, match="env_manager 'conda'"):
        gitml.pyfunc.spark_udf(spark, info.model_uri, env_manager="conda")


def test_the_model_ships_once_and_executors_never_read_the_repository(spark, repo, tmp_path):
    info, log = _logged(tmp_path)
    udf = gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="double")
    # what executors could fetch from is gone: the run's model cache and the artifact store
    for folder in (repo / ".git" / "gitml" / "cache", tmp_path / "home"):
        shutil.rmtree(folder, ignore_errors=True)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")  # many batches per task
    try:
        df = spark.range(0, 2000, numPartitions=8).selectExpr("cast(id % 5 as double) as x")
        got = df.select(udf("x").alias("p")).toPandas()["p"].to_numpy()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    np.testing.assert_array_equal(got, (np.arange(2000) % 5) * 1.5)
    pids = open(log).read().split()
    # 8 tasks of ~36 batches each (288 batches): each Python worker process loaded the model once,
    # and no more processes loaded it than there were tasks (Spark reuses a worker across tasks
    # when it can; after a failed task elsewhere in the session it may start new ones)
    assert len(pids) == len(set(pids)) and 1 <= len(pids) <= 8


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_model_is_refused_on_the_driver_before_anything_unpickles_it(spark, repo, tmp_path):
    info, _ = _logged(tmp_path, size=200_000)
    sha = gitml.ops.Operations(repo).artifact_manifest(info.run_id)["model/python_model.pkl"]["sha256"]
    cached = repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    assert cached.exists()
    marker = tmp_path / "pwned"
    os.chmod(cached, 0o644)
    cached.write_bytes(pickle.dumps(Evil(str(marker))))
    with pytest.raises(gitml.GitmlError, match="model/python_model.pkl"):
        gitml.pyfunc.spark_udf(spark, info.model_uri, result_type="double")
    assert not marker.exists()


def test_shipped_bytes_that_changed_on_the_way_are_refused_before_loading(repo, tmp_path):
    info, log = _logged(tmp_path)
    shipped = ship_model(info.model_uri)
    key = shipped.key()
    files = dict(shipped.files)
    marker = tmp_path / "pwned"
    files["python_model.pkl"] = pickle.dumps(Evil(str(marker)))
    with pytest.raises(ModelIntegrityError, match="shipped file 'python_model.pkl' does not match"):
        key.load(files)
    extra = dict(shipped.files, **{"extra.py": b""})
    with pytest.raises(ModelIntegrityError, match="shipped file 'extra.py'"):
        key.load(extra)
    assert not marker.exists() and not os.path.exists(log)
    model = key.load(shipped.files)
    assert key.load(lambda: pytest.fail("a loaded model is not loaded again")) is model

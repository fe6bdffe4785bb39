"""gitml.pyfunc.dask_predict on a real dask.distributed LocalCluster of 2 worker processes (one
cluster for the test run): a run's model over a partitioned frame read from Parquet, the model's
bytes in the graph once, a tampered model refused before any worker sees it."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

import gitml
import gitml.ops
import gitml.pyfunc
import gitml.sklearn

pytestmark = pytest.mark.slow  # the cluster's two worker processes start once per session


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return X, LogisticRegression(max_iter=500).fit(X, y)


class Counter(gitml.pyfunc.PythonModel):
    """Appends its process id to ``log`` each time a process loads it."""

    def __init__(self, log: str, size: int = 0):
        self.log = log
        self.padding = b"x" * size

    def load_context(self, context):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"double": model_input["x"] * 2, "pid": os.getpid()})


def test_a_runs_model_scores_parquet_partitions_on_the_cluster(dask_client, repo, iris, tmp_path):
    import dask.dataframe as dd

    X, model = iris
    with gitml.start_run():
        info = gitml.sklearn.log_model(model, name="model", input_example=X.head(3))
    big = pd.concat([X] * 20, ignore_index=True)
    big.to_parquet(tmp_path / "in.parquet")
    ddf = dd.read_parquet(tmp_path / "in.parquet").repartition(npartitions=6)
    scores = gitml.pyfunc.dask_predict(ddf, info.model_uri)
    assert scores.npartitions == 6 and scores.name == "prediction"
    scores.to_frame().to_parquet(tmp_path / "out")
    got = pd.read_parquet(tmp_path / "out")["prediction"].to_numpy()
    np.testing.assert_array_equal(got, model.predict(big))


def test_each_worker_process_loads_the_model_once(dask_client, repo, tmp_path):
    import dask.dataframe as dd

    log = str(tmp_path / "loads.txt")
    with gitml.start_run():
        info = gitml.pyfunc.log_model(name="model", python_model=Counter(log))
    os.remove(log) if os.path.exists(log) else None
    ddf = dd.from_pandas(pd.DataFrame({"x": np.arange(4000, dtype=float)}), npartitions=40)
    out = gitml.pyfunc.dask_predict(ddf, info.model_uri).compute()
    np.testing.assert_array_equal(out["double"].to_numpy(), np.arange(4000) * 2.0)
    workers = set(out["pid"])
    loads = open(log).read().split()
    assert len(workers) == 2  # both worker processes scored
    # once here (the output's form, from the first rows) and once in each worker process: 40
    # partitions, 3 loads
    assert sorted(loads) == sorted([str(os.getpid()), *map(str, workers)])


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_model_never_reaches_a_worker(dask_client, repo, tmp_path):
    import dask.dataframe as dd

    with gitml.start_run():
        info = gitml.pyfunc.log_model(name="model", python_model=Counter(str(tmp_path / "log"), 200_000))
    sha = gitml.ops.Operations(repo).artifact_manifest(info.run_id)["model/python_model.pkl"]["sha256"]
    cached = repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    marker = tmp_path / "pwned"
    os.chmod(cached, 0o644)
    cached.write_bytes(pickle.dumps(Evil(str(marker))))
    ddf = dd.from_pandas(pd.DataFrame({"x": [1.0, 2.0]}), npartitions=1)
    with pytest.raises(gitml.GitmlError, match="model/python_model.pkl"):
        gitml.pyfunc.dask_predict(ddf, info.model_uri)
    assert not marker.exists()

"""Spark batch scoring: gitml.pyfunc.spark_udf beside MLflow 3.17.2's mlflow.pyfunc.spark_udf, on
one Spark session, the same table and the same scikit-learn model.

    bash benchmarks/setup_mlflow.sh                 # once: the MLflow peer venv (benchmarks/peers.py)
    python benchmarks/run_spark_scoring.py          # 10 million rows (the issue's figure)
    python benchmarks/run_spark_scoring.py --rows 1000000 --repeat 1   # quick

This script re-runs itself in the MLflow venv's Python (MLflow must be importable by the driver),
with this checkout first on PYTHONPATH (gitml's own dependencies are there: benchmarks/
setup_mlflow.sh installs dulwich beside MLflow) and pyspark installed there when missing
(``peers.MLFLOW_SPARK``). The model: StandardScaler + LogisticRegression on 8 float columns, saved
once by MLflow (``mlflow.sklearn.save_model``, read by MLflow's UDF from that folder) and logged
once by gitml in a repository (``gitml.sklearn.log_model``; gitml's UDF takes ``runs:/<id>/model``,
so its figure includes downloading and verifying the model). The table: ``spark.range`` with 8
``rand`` columns, cached and counted first; each UDF scores every row into a ``sum`` (so Spark must
compute each prediction and brings back one number), result type ``double``, local[2], Arrow
batches of 10,000 rows (Spark's default). After one untimed pass of an identity pandas UDF over the
table (the JVM's warm-up), each side runs ``--repeat`` times, alternating which goes first in each
round; the best time counts. Figures go to benchmarks/out/spark_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
COLUMNS = [f"f{i}" for i in range(8)]


def _in_mlflow_venv(argv: list[str]) -> int:
    python = peers.MLFLOW_PY
    if not os.path.exists(python):
        sys.exit(f"no MLflow venv at {python}: run bash benchmarks/setup_mlflow.sh")
    probe = subprocess.run([python, "-c", "import pyspark"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", peers.MLFLOW_SPARK], check=True)
    env = dict(
        os.environ,
        PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        GITML_BENCH_INSIDE="1",
        PYSPARK_PYTHON=python,
        PYSPARK_DRIVER_PYTHON=python,
    )
    return subprocess.run([python, os.path.abspath(__file__), *argv], env=env).returncode


def _models(work: str):
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gitml
    import gitml.sklearn
    from gitml.models import infer_signature

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((5000, len(COLUMNS))), columns=COLUMNS)
    y = (X.sum(axis=1) + rng.normal(0, 0.3, len(X)) > len(COLUMNS) / 2).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    signature = infer_signature(X, model.predict(X).astype(float))
    mlflow_path = os.path.join(work, "mlflow-model")
    mlflow.sklearn.save_model(
        model,
        mlflow_path,
        serialization_format="cloudpickle",
        signature=mlflow.models.infer_signature(X, model.predict(X).astype(float)),
    )
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    subprocess.run(["git", "init", "-q", repo], check=True)
    subprocess.run(
        ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "init"],
        check=True,
    )
    client = gitml.Client(repo)
    gitml.set_tracking_uri(repo)
    with gitml.start_run():
        info = gitml.sklearn.log_model(model, name="model", signature=signature)
    client.close()
    return model, mlflow_path, info.model_uri


def _inside(args) -> None:
    import mlflow.pyfunc
    import pyspark
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import gitml.pyfunc

    work = tempfile.mkdtemp(prefix="gitml-spark-bench-")
    model, mlflow_path, gitml_uri = _models(work)
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName("gitml-spark-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = (
        spark.range(args.rows, numPartitions=args.partitions)
        .select(*[F.rand(seed=i).alias(c) for i, c in enumerate(COLUMNS)])
        .cache()
    )
    assert df.count() == args.rows
    check = df.limit(1000).toPandas()
    expected = float(model.predict(check).astype(float).sum())

    def make(side: str):
        started = time.perf_counter()
        if side == "gitml":
            udf = gitml.pyfunc.spark_udf(spark, gitml_uri, result_type="double")
        else:
            udf = mlflow.pyfunc.spark_udf(spark, mlflow_path, result_type="double", env_manager="local")
        return udf, time.perf_counter() - started

    figures: dict[str, dict] = {"gitml": {"runs": []}, "mlflow": {"runs": []}}
    for side in ("gitml", "mlflow"):  # the same answer first, on 1,000 rows
        udf, _ = make(side)
        got = spark.createDataFrame(check).select(F.sum(udf(*COLUMNS))).collect()[0][0]
        assert abs(got - expected) < 1e-9, (side, got, expected)
    warm = F.pandas_udf(lambda s: s, "double")  # the JVM's first pass over the table, untimed
    df.select(F.sum(warm("f0"))).collect()
    for round_ in range(args.repeat):
        for side in ("gitml", "mlflow") if round_ % 2 == 0 else ("mlflow", "gitml"):
            udf, made = make(side)
            started = time.perf_counter()
            df.select(F.sum(udf(*COLUMNS)).alias("s")).collect()
            seconds = time.perf_counter() - started
            figures[side]["runs"].append({"udf_s": round(made, 3), "score_s": round(seconds, 2)})
            print(
                f"{side}: {args.rows:,} rows in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s); "
                f"udf made in {made:.2f} s",
                flush=True,
            )
    for side in figures:
        best = min(r["score_s"] for r in figures[side]["runs"])
        figures[side]["best_s"] = best
        figures[side]["rows_per_s"] = round(args.rows / best)
    ratio = figures["gitml"]["rows_per_s"] / figures["mlflow"]["rows_per_s"]
    result = {
        "rows": args.rows,
        "partitions": args.partitions,
        "cores": args.cores,
        "pyspark": pyspark.__version__,
        "mlflow_version": mlflow.__version__,
        "ratio_gitml_over_mlflow": round(ratio, 3),
        **figures,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "spark_scoring.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"gitml {figures['gitml']['rows_per_s']:,} rows/s, MLflow {figures['mlflow']['rows_per_s']:,} rows/s: "
        f"{ratio:.2f}x"
    )
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if os.environ.get("GITML_BENCH_INSIDE") != "1":
        sys.exit(_in_mlflow_venv(sys.argv[1:]))
    _inside(args)


if __name__ == "__main__":
    main()

"""``gitml import mlflow`` beside MLflow reading the same store back (issue 25's speed bar).

A sqlite store made by MLflow 3.17.2 in its venv (the MLflow peer venv, benchmarks/peers.py):
N runs (default 2,000), each with 10 metrics x 100 steps, 5 params and 3 tags, logged with
``log_batch``. Then, each in a fresh process of MLflow's Python (gitml reaches it through
PYTHONPATH, as ``pip install "gitml[mlflow]"`` would have it):

- **mlflow read**: ``search_runs`` over every run (paged) and ``get_metric_history`` of every
  run and key: what MLflow itself takes to read the store back;
- **gitml import**: ``gitml import mlflow sqlite:///...`` into a fresh git repository (which
  reads the same through MLflow's client, then writes each run as one commit);
- **gitml import again**: the same command once more (nothing new: the idempotent path).

The bar: the import costs at most 2x the MLflow read.

    python benchmarks/run_import.py [--runs 2000] [--quick]

Prints a Markdown table and writes benchmarks/out/import.md (raw: .json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MLFLOW_PY = peers.MLFLOW_PY

MAKE = r"""
import sys, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
uri, n = sys.argv[1], int(sys.argv[2])
c = MlflowClient(uri)
exp = c.create_experiment("bench")
T0 = 1_700_000_000_000
for i in range(n):
    run = c.create_run(exp, start_time=T0 + i, run_name="run-%d" % i)
    rid = run.info.run_id
    metrics = [Metric("m%d" % k, (i + k + s) / 1000.0, T0 + i + s, s) for k in range(10) for s in range(100)]
    c.log_batch(rid, metrics=metrics, params=[Param("p%d" % k, str(i * k)) for k in range(5)],
                tags=[RunTag("t%d" % k, "v%d" % (i % 7)) for k in range(3)])
    c.set_terminated(rid, "FINISHED", end_time=T0 + i + 100)
"""

READ = r"""
import json, sys, time
from mlflow import MlflowClient
uri = sys.argv[1]
t0 = time.perf_counter()
c = MlflowClient(uri)
runs, token = [], None
while True:
    page = c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=1000, page_token=token)
    runs += list(page)
    token = page.token
    if not token:
        break
points = 0
for r in runs:
    for key in r.data.metrics:
        points += len(c.get_metric_history(r.info.run_id, key))
print(json.dumps({"runs": len(runs), "points": points, "seconds": time.perf_counter() - t0}))
"""


def _env() -> dict:
    sys.path.insert(0, ROOT)
    from tests.mlflow_venv import plugin_pythonpath

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=plugin_pythonpath(), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", GIT_PYTHON_REFRESH="quiet"
    )
    return env


def _timed(cmd: list[str], cwd: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="200 runs")
    args = ap.parse_args(argv)
    n = 200 if args.quick else args.runs
    sys.path.insert(0, ROOT)
    from tests.mlflow_venv import ensure_mlflow_python

    ensure_mlflow_python()
    env = _env()
    base = tempfile.mkdtemp(prefix="gitml-import-bench-")
    try:
        uri = f"sqlite:///{os.path.join(base, 'mlflow.db')}"
        print(f"making {n} runs x 10 metrics x 100 steps with MLflow ...", file=sys.stderr, flush=True)
        made_s, _ = _timed([MLFLOW_PY, "-c", MAKE, uri, str(n)], base, env)
        print("mlflow reading them back ...", file=sys.stderr, flush=True)
        read_wall, out = _timed([MLFLOW_PY, "-c", READ, uri], base, env)
        read = json.loads(out.strip().splitlines()[-1])
        repo = os.path.join(base, "repo")
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q", repo], check=True)
        print("gitml import ...", file=sys.stderr, flush=True)
        import_s, out = _timed([MLFLOW_PY, "-m", "gitml", "import", "mlflow", uri, "--json"], repo, env)
        summary = json.loads(out)
        again_s, out = _timed([MLFLOW_PY, "-m", "gitml", "import", "mlflow", uri, "--json"], repo, env)
        again = json.loads(out)
        assert summary["runs"] == read["runs"] == n and summary["metric_points"] == read["points"], (summary, read)
        assert again["runs"] == 0 and again["runs_present"] == n, again
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results = {
        "runs": n,
        "points": read["points"],
        "make_s": made_s,
        "mlflow_read_s": read_wall,
        "mlflow_read_inner_s": read["seconds"],
        "gitml_import_s": import_s,
        "gitml_import_again_s": again_s,
    }
    lines = [
        f"`gitml import mlflow` of a sqlite store made by MLflow 3.17.2: {n:,} runs x 10 metrics x 100 steps "
        f"({read['points']:,} points); each a fresh process, wall clock including interpreter start",
        "",
        "| step | seconds | / mlflow read |",
        "| --- | ---: | ---: |",
        f"| MLflow reads it back (`search_runs` + `get_metric_history` per run and key) | {read_wall:.1f} | 1.0x |",
        f"| `gitml import mlflow` (reads through MLflow's client, writes {n:,} run commits) | {import_s:.1f} | "
        f"{import_s / read_wall:.2f}x |",
        f"| `gitml import mlflow` again (nothing new) | {again_s:.1f} | {again_s / read_wall:.2f}x |",
    ]
    table = "\n".join(lines)
    print(table)
    out_dir = os.path.join(HERE, "out")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "import.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out_dir, "import.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

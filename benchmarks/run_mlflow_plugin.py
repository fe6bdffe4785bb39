"""The MLflow plugin's benchmark: W1-W3 driven through ``mlflow.*``, gitml's store vs MLflow's sqlite.

The workloads are tracking_workloads.py's (W1: one run, 10 keys x 2,000 ``log_metric``
calls; W2: N runs of batch calls; W3: ``search_runs`` with a filter and an order over the
runs W2 left), run with MLflow 3.17.2 in its venv (the MLflow peer venv, benchmarks/peers.py; gitml and the
plugin's entry points reach it through PYTHONPATH), each measurement in a fresh process.
The two columns differ only in the tracking URI: ``gitml:<repo>`` or ``sqlite:///<db>``;
MLflow's own per-call overhead is in both. Both are timed until everything is stored
(``mlflow.flush_async_logging()`` waits for gitml's background commits).

    python benchmarks/run_mlflow_plugin.py [--quick]

Prints a Markdown table and writes benchmarks/out/mlflow_plugin.md (raw: .json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MLFLOW_PY = peers.MLFLOW_PY
TOOLS = ("gitml-plugin", "mlflow-sqlite")
SIZES = {False: (500, 2000), True: (200, 500)}  # (W2 runs, W3 runs), keyed by --quick


def one(tool: str, workload: str, data_dir: str, n: int) -> None:
    """One measurement, in the MLflow venv: print its JSON line."""
    import time

    sys.path.insert(0, HERE)
    import tracking_workloads as tw

    os.makedirs(data_dir, exist_ok=True)
    os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", GIT_PYTHON_REFRESH="quiet")
    if tool == "gitml-plugin" and not os.path.isdir(os.path.join(data_dir, ".git")):
        tw.init_git_repo(data_dir)
    os.chdir(data_dir)
    t0 = time.perf_counter()
    import mlflow

    import_s = time.perf_counter() - t0
    uri = f"gitml:{data_dir}" if tool == "gitml-plugin" else f"sqlite:///{os.path.join(data_dir, 'mlflow.db')}"
    mlflow.set_tracking_uri(uri)
    tw.durable = lambda ml: ml.flush_async_logging()  # every call stored before the clock stops
    result = {"tool": tool, "workload": workload, "n": n, "import_s": import_s}
    result.update(tw.WORKLOADS[workload](mlflow, n))
    result["version"] = mlflow.__version__
    print(json.dumps(result), flush=True)


def measure(tool: str, workload: str, data_dir: str, n: int = 0) -> dict:
    cmd = [MLFLOW_PY, os.path.abspath(__file__), "--one", tool, workload, data_dir, str(n)]
    print(f"[{tool}] {workload} N={n} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode:
        raise RuntimeError(f"{tool} {workload} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=4, metavar=("TOOL", "WORKLOAD", "DIR", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        tool, workload, data_dir, n = args.one
        one(tool, workload, data_dir, int(n))
        return
    sys.path.insert(0, ROOT)
    from tests.mlflow_venv import ensure_mlflow_python, plugin_pythonpath

    ensure_mlflow_python()  # the venv, made by setup_mlflow.sh if missing
    os.environ["PYTHONPATH"] = plugin_pythonpath()  # gitml and its entry points, for MLflow's Python
    w2_n, w3_n = SIZES[args.quick]
    results: dict[str, dict] = {}
    base = tempfile.mkdtemp(prefix="gitml-mlflow-plugin-bench-")
    try:
        for tool in TOOLS:
            r = results[tool] = {}
            r["w1"] = measure(tool, "w1", os.path.join(base, f"{tool}-w1"))
            r["w2"] = measure(tool, "w2", os.path.join(base, f"{tool}-w2"), w2_n)
            w3_dir = os.path.join(base, f"{tool}-w3")
            measure(tool, "w2", w3_dir, w3_n)
            r["w3"] = measure(tool, "w3", w3_dir, w3_n)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    g, s = results["gitml-plugin"], results["mlflow-sqlite"]
    rows = [
        ("W1: 20,000 log_metric calls (calls/s)", g["w1"]["calls_per_s_total"], s["w1"]["calls_per_s_total"], True),
        (f"W2: {w2_n} runs of batch calls (runs/s)", g["w2"]["runs_per_s"], s["w2"]["runs_per_s"], True),
        (f"W3: search_runs over {w3_n} runs, first (s)", g["w3"]["first_s"], s["w3"]["first_s"], False),
        (f"W3: search_runs over {w3_n} runs, repeated (s)", g["w3"]["repeat_s"], s["w3"]["repeat_s"], False),
    ]
    assert g["w3"]["rows"] == s["w3"]["rows"] == g["w3"]["expected_rows"], (g["w3"], s["w3"])
    lines = [
        f"MLflow {s['w1'].get('version') or '3.17.2'} driving gitml's plugin vs its sqlite store (one run each)",
        "",
        "| workload | mlflow + gitml | mlflow + sqlite | gitml / sqlite |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, gv, sv, higher_better in rows:
        ratio = gv / sv if higher_better else sv / gv
        lines.append(f"| {name} | {gv:,.3g} | {sv:,.3g} | {ratio:.1f}x |")
    table = "\n".join(lines)
    print(table)
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "mlflow_plugin.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out, "mlflow_plugin.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

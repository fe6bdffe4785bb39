"""W1, W2 and W3 side by side with MLflow, in rounds: the ratios of issue 28, each taken within one round.

W1 (20,000 ``log_metric`` calls) against MLflow's file store, W2 (N runs of 10 params, 10 metrics,
5 tags) and W3 (the search over the runs of a W2 of N3 runs, first call in a fresh process,
import and pandas apart; and repeated) against MLflow's sqlite store. The machine is shared
and noisy: every round runs each tool once, one after the other, and its ratios are reported
per round. ``--baseline DIR`` also measures another gitml source tree (a folder holding
``gitml/``, e.g. ``git archive <commit> gitml | tar -x -C DIR``) in the same rounds.

    python benchmarks/run_tracking_rounds.py [--rounds 3] [--n 500] [--n3 2000] [--baseline DIR] [--gitml DIR]

Each measurement is a fresh process of ``tracking_workloads.py`` (see run_tracking.py).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import run_tracking as rt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=500, help="runs of W2")
    ap.add_argument("--n3", type=int, default=2000, help="runs W3 searches")
    ap.add_argument("--only", default="w1,w2,w3", help="comma-separated subset of w1,w2,w3")
    ap.add_argument("--baseline", help="another gitml source tree, measured in the same rounds")
    ap.add_argument("--gitml", default=rt.REPO_ROOT, help="the gitml source tree measured (default: this clone)")
    ap.add_argument(
        "--mlflow-w3", help="an MLflow sqlite store a W2 of N3 runs left (kept from an earlier run: 10 minutes here)"
    )
    ap.add_argument("--out", default=os.path.join(rt.HERE, "out"), help="output directory")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    mlflow_py, reason = rt.tool_command("mlflow-sqlite")
    if mlflow_py is None:
        sys.exit(reason)
    gitmls = {"gitml": os.path.abspath(args.gitml)}
    if args.baseline:
        gitmls["baseline"] = os.path.abspath(args.baseline)
    base = tempfile.mkdtemp(prefix="gitml-rounds-")

    def measure(tool, workload, where, n=0):
        if tool in gitmls:
            return rt.measure(sys.executable, {"PYTHONPATH": gitmls[tool]}, "gitml", workload, where, n)
        return rt.measure(mlflow_py, {}, tool, workload, where, n)

    rounds = []
    try:
        if "w3" in only:  # the runs W3 searches, written once per tool
            w3_dirs = {t: os.path.join(base, f"{t}-w3") for t in [*gitmls, "mlflow-sqlite"]}
            if args.mlflow_w3:
                w3_dirs["mlflow-sqlite"] = os.path.abspath(args.mlflow_w3)
            for tool, where in w3_dirs.items():
                if not (tool == "mlflow-sqlite" and args.mlflow_w3):
                    measure(tool, "w2", where, args.n3)
        for r in range(args.rounds):
            row = {}
            if "w1" in only:
                f = measure("mlflow-file", "w1", os.path.join(base, f"file-w1-{r}"))
                for tool in gitmls:
                    g = measure(tool, "w1", os.path.join(base, f"{tool}-w1-{r}"))
                    row[f"W1 {tool} calls/s (loop; loop + end_run)"] = (g["calls_per_s_loop"], g["calls_per_s_total"])
                    row[f"W1 {tool} / file store (loop; loop + end_run)"] = (
                        g["calls_per_s_loop"] / f["calls_per_s_loop"],
                        g["calls_per_s_total"] / f["calls_per_s_total"],
                    )
                row["W1 MLflow file store calls/s (loop; loop + end_run)"] = (
                    f["calls_per_s_loop"],
                    f["calls_per_s_total"],
                )
            if "w2" in only:
                s = measure("mlflow-sqlite", "w2", os.path.join(base, f"sqlite-w2-{r}"), args.n)
                for tool in gitmls:
                    g = measure(tool, "w2", os.path.join(base, f"{tool}-w2-{r}"), args.n)
                    row[f"W2 {tool} runs/s (per CPU s)"] = (g["runs_per_s"], g["runs_per_cpu_s"])
                    row[f"W2 {tool} / sqlite"] = (g["runs_per_s"] / s["runs_per_s"],)
                row["W2 MLflow sqlite runs/s"] = (s["runs_per_s"],)
            if "w3" in only:
                s = measure("mlflow-sqlite", "w3", w3_dirs["mlflow-sqlite"], args.n3)
                for tool in gitmls:
                    g = measure(tool, "w3", w3_dirs[tool], args.n3)
                    if g["rows"] != s["rows"]:
                        raise RuntimeError(f"W3 rows differ: {tool} {g['rows']}, MLflow {s['rows']}")
                    row[f"W3 {tool} first; repeated (ms)"] = (g["first_s"] * 1000, g["repeat_s"] * 1000)
                    row[f"W3 {tool} / sqlite (first; repeated)"] = (
                        s["first_s"] / g["first_s"],
                        s["repeat_s"] / g["repeat_s"],
                    )
                row["W3 MLflow sqlite first; repeated (ms)"] = (s["first_s"] * 1000, s["repeat_s"] * 1000)
            print(json.dumps(row), flush=True)
            rounds.append(row)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def cell(values):
        return "; ".join(f"{v:,.1f}" if v < 100 else f"{v:,.0f}" for v in values)

    lines = [
        f"W1, W2 (N={args.n}), W3 (N={args.n3}) in {args.rounds} rounds; ratios > 1: gitml faster",
        "",
        "| figure | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | median |",
        "|---|" + "---|" * (len(rounds) + 1),
    ]
    for key in rounds[0] if rounds else []:
        medians = tuple(statistics.median(r[key][i] for r in rounds) for i in range(len(rounds[0][key])))
        lines.append(f"| {key} | " + " | ".join(cell(r[key]) for r in rounds) + f" | {cell(medians)} |")
    table = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tracking_rounds.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()

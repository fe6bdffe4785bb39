"""Side-by-side tracking benchmark: gitml vs MLflow (file store and sqlite).

Every measurement runs tracking_workloads.py in a fresh subprocess: MLflow with
the interpreter of the MLflow peer venv, benchmarks/peers.py (see setup_mlflow.sh), gitml with
this interpreter.  Prints a Markdown table and writes it to
benchmarks/out/tracking.md (raw results: benchmarks/out/tracking.json).

    python benchmarks/run_tracking.py [--quick] [--tools gitml,mlflow-sqlite] [--repeat 3]
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
WORKLOADS_PY = os.path.join(HERE, "tracking_workloads.py")
MLFLOW_PY = peers.MLFLOW_PY
# Python caches compiled modules on a normal install; a machine-wide PYTHONDONTWRITEBYTECODE
# would make every gitml process compile its sources again (MLflow's venv has its .pyc files).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
TOOLS = ("gitml", "mlflow-file", "mlflow-sqlite")
SIZES = {False: (500, 5000), True: (200, 1000)}  # keyed by --quick


def tool_command(tool):
    """(python executable, extra env) for a tool, or (None, reason) if unavailable."""
    if tool == "gitml":
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
        probe = subprocess.run(
            [sys.executable, "-c", "from gitml import start_run, search_runs"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode:
            return None, "gitml is not importable: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
        return sys.executable, env
    if not os.path.exists(MLFLOW_PY):
        return None, f"{MLFLOW_PY} missing: run bash benchmarks/setup_mlflow.sh"
    return MLFLOW_PY, {}


def measure(python, env, tool, workload, data_dir, n=0):
    """Run one workload in a fresh process; return its JSON result."""
    cmd = [python, WORKLOADS_PY, tool, workload, "--dir", data_dir, "--n", str(n)]
    label = f"[{tool}] {workload}" + (f" N={n}" if n else "")
    print(f"{label} ...", end=" ", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env={**os.environ, **env}, capture_output=True, text=True)
    print(f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    if proc.returncode:
        raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def run_tool(tool, python, env, sizes, repeat, base_dir):
    """All workloads for one tool: {(workload, n): [result, ...]}."""

    def store(workload, n):
        return os.path.join(base_dir, f"{tool}-{workload}-{n}")

    def run(workload, n=0, times=1, data_from=""):
        data_dir = store(data_from or workload, n)
        return [measure(python, env, tool, workload, data_dir, n) for _ in range(times)]

    res = {
        ("import", 0): run("import", times=repeat),
        ("w1", 0): run("w1"),
        ("w2-single", sizes[0]): run("w2-single", sizes[0]),
    }
    for n in sizes:
        res[("w2", n)] = run("w2", n)  # also writes the runs searched by w3
        res[("w3", n)] = run("w3", n, times=repeat, data_from="w2")
    return res


def row_specs(sizes):
    """(label, workload, n, key, kind, aggregate); kind: rate (higher is better), time, count."""
    small, large = sizes
    rows = [
        ("import time", "import", 0, "import_s", "time", statistics.median),
        (
            "W1 log_metric calls/s, loop",
            "w1",
            0,
            "calls_per_s_loop",
            "rate",
            statistics.median,
        ),
        (
            "W1 log_metric calls/s, loop + end_run",
            "w1",
            0,
            "calls_per_s_total",
            "rate",
            statistics.median,
        ),
        (
            f"W2 runs/s, batch calls, N={small}",
            "w2",
            small,
            "runs_per_s",
            "rate",
            statistics.median,
        ),
        (
            f"W2 runs/s, batch calls, N={large}",
            "w2",
            large,
            "runs_per_s",
            "rate",
            statistics.median,
        ),
        (
            f"W2 runs/s, individual calls, N={small}",
            "w2-single",
            small,
            "runs_per_s",
            "rate",
            statistics.median,
        ),
    ]
    for n in sizes:
        rows += [
            (
                f"W3 first search, 1st process after writing, N={n}",
                "w3",
                n,
                "first_s",
                "time",
                lambda v: v[0],
            ),
            (
                f"W3 first search, fresh process (median), N={n}",
                "w3",
                n,
                "first_s",
                "time",
                statistics.median,
            ),
            (
                f"W3 repeated search (median of 5), N={n}",
                "w3",
                n,
                "repeat_s",
                "time",
                statistics.median,
            ),
            (f"W3 rows returned, N={n}", "w3", n, "rows", "count", lambda v: v[0]),
            (
                f"W3 pandas import before the first search (untimed above), N={n}",
                "w3",
                n,
                "pandas_import_s",
                "info",
                statistics.median,
            ),
        ]
    return rows


def fmt(value, kind):
    if value is None:
        return "–"
    if kind in ("time", "info"):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if kind == "rate":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    return str(value)


def speedup(gitml, other, kind):
    if gitml is None or other is None or kind in ("count", "info") or not gitml or not other:
        return "–"
    r = gitml / other if kind == "rate" else other / gitml
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


def markdown(results, tools, sizes, header):
    baselines = [t for t in tools if t != "gitml" and "gitml" in tools]
    cols = ["metric"] + list(tools) + [f"gitml speed-up vs {t}" for t in baselines]
    lines = header + ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    warnings = []
    for label, workload, n, key, kind, agg in row_specs(sizes):
        vals = {t: agg([r[key] for r in results[t][(workload, n)]]) for t in tools}
        cells = [label] + [fmt(vals[t], kind) for t in tools]
        cells += [speedup(vals["gitml"], vals[t], kind) for t in baselines]
        lines.append("| " + " | ".join(cells) + " |")
        if kind == "count":
            expected = results[tools[0]][(workload, n)][0]["expected_rows"]
            if any(v != expected for v in vals.values()):
                warnings.append(f"**Row counts differ at N={n}**: {vals} (expected {expected})")
    lines += [""] + warnings + ["Speed-up > 1 means gitml is faster (rates: gitml/MLflow; times: MLflow/gitml)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smaller W2/W3 sizes (200/1000 instead of 500/5000)",
    )
    ap.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)}",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="fresh processes for import and W3 (median)",
    )
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output directory")
    ap.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the generated stores / repositories",
    )
    args = ap.parse_args(argv)

    sizes = SIZES[args.quick]
    unknown = set(args.tools.split(",")) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    tools, results, versions, skipped = [], {}, {}, []
    base_dir = tempfile.mkdtemp(prefix="gitml-bench-")
    try:
        for tool in args.tools.split(","):
            python, env = tool_command(tool)
            if python is None:
                print(f"skipping {tool}: {env}", file=sys.stderr)
                skipped.append(f"{tool} ({env})")
                continue
            try:
                results[tool] = run_tool(tool, python, env, sizes, args.repeat, base_dir)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                skipped.append(f"{tool} (failed: {str(exc).splitlines()[0]})")
            else:
                versions[tool] = results[tool][("import", 0)][0]["version"]
                tools.append(tool)
    finally:
        if args.keep_data:
            print(f"data kept in {base_dir}", file=sys.stderr)
        else:
            shutil.rmtree(base_dir, ignore_errors=True)
    if not tools:
        sys.exit("no tool could be run")

    header = [
        "# Tracking benchmark: gitml vs MLflow",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} mode, "
        f"import and W3 first-call figures: median of {args.repeat} fresh processes; versions: "
        + ", ".join(f"{t} {v}" for t, v in versions.items())
        + (f"; skipped: {', '.join(skipped)}" if skipped else ""),
    ]
    table = markdown(results, tools, sizes, header)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tracking.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "tracking.json"), "w") as f:
        json.dump(
            {t: {f"{w}:{n}": v for (w, n), v in r.items()} for t, r in results.items()},
            f,
            indent=1,
        )
    print(table)


if __name__ == "__main__":
    main()

"""Run ONE tracking workload against ONE tool and print one JSON line.

Meant to be started in a fresh interpreter per measurement (see run_tracking.py),
so that import costs and caches never leak between measurements.  Only the
standard library is imported before the tool itself, so ``import_s`` is the
cost of importing the tool into a bare interpreter.

    python tracking_workloads.py TOOL WORKLOAD --dir DIR [--n N]

TOOL:      mlflow-file | mlflow-sqlite | gitml
WORKLOAD:  import   time of ``import mlflow`` / ``import gitml``
           w1       one run, 10 keys x 2,000 steps of individual log_metric calls
           w2       N runs, batch calls (log_params / log_metrics / set_tags)
           w2-single  N runs, one log_param / log_metric / set_tag call per value
           w3       search_runs over the runs a previous ``w2`` left in DIR

DIR is the tool's storage: the mlruns folder / sqlite database lives in it, or,
for gitml, it is the git repository (created on first use).
"""

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import time

TOOLS = ("mlflow-file", "mlflow-sqlite", "gitml")
EXPERIMENT = "bench"
SEED = 1234
W1_KEYS, W1_STEPS = 10, 2000
W3_FILTER = "metrics.m1 > 0.5 and params.p1 = 'a'"
W3_ORDER = ["metrics.m2 DESC"]
W3_REPEATS = 5


def prepare(tool, data_dir):
    """Environment and working directory, set up before the tool is imported."""
    os.makedirs(data_dir, exist_ok=True)
    if tool == "gitml":
        if not os.path.isdir(os.path.join(data_dir, ".git")):
            init_git_repo(data_dir)
        os.environ["GITML_REPO"] = data_dir
    else:
        # MLflow >= 3.x refuses the file store unless explicitly allowed.
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        # No network here: keep the telemetry thread from trying to send.
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ["DO_NOT_TRACK"] = "true"
    os.chdir(data_dir)


def init_git_repo(path):
    """A fresh repository with one commit holding a train.py, as a user would have."""
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]

    def run(*args):
        return subprocess.run(git + list(args), cwd=path, check=True, capture_output=True)

    run("init", "-q", "-b", "main")
    with open(os.path.join(path, "train.py"), "w") as f:
        f.write("print('training')\n")
    run("add", "train.py")
    run("commit", "-q", "-m", "initial")


def load(tool, data_dir):
    """Import the tool; return (module, import seconds)."""
    t0 = time.perf_counter()
    mod = importlib.import_module("gitml" if tool == "gitml" else "mlflow")
    if tool == "gitml":
        mod.search_runs  # noqa: B018  gitml imports its API lazily: count all of it here
    import_s = time.perf_counter() - t0
    if tool == "mlflow-file":
        mod.set_tracking_uri(f"file:{os.path.join(data_dir, 'mlruns')}")
    elif tool == "mlflow-sqlite":
        mod.set_tracking_uri(f"sqlite:///{os.path.join(data_dir, 'mlflow.db')}")
    return mod, import_s


def run_data(n):
    """Deterministic params / metrics / tags for n runs (same for every tool)."""
    rng = random.Random(SEED)
    runs = []
    for i in range(n):
        params = {f"p{k}": str(rng.randint(0, 99)) for k in range(10)}
        params["p0"] = str(i)
        params["p1"] = rng.choice("abcd")
        metrics = {f"m{k}": rng.random() for k in range(10)}
        tags = {f"t{k}": f"tag{rng.randint(0, 9)}" for k in range(5)}
        runs.append((params, metrics, tags))
    return runs


def expected_rows(n):
    return sum(1 for p, m, _ in run_data(n) if m["m1"] > 0.5 and p["p1"] == "a")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def w1(ml, _n):
    ml.set_experiment(EXPERIMENT)
    ml.start_run()
    keys = [f"k{j}" for j in range(W1_KEYS)]

    def loop():
        for i in range(W1_STEPS):
            for key in keys:
                ml.log_metric(key, i * 0.001, step=i)

    cpu = time.thread_time()
    loop_s, _ = timed(loop)
    loop_cpu = time.thread_time() - cpu
    cpu = time.process_time()  # (every thread's: gitml commits on a background thread)
    end_s, _ = timed(lambda: (ml.end_run(), durable(ml)))
    end_cpu = time.process_time() - cpu
    calls = W1_KEYS * W1_STEPS
    return {
        "calls": calls,
        "loop_s": loop_s,
        "end_run_s": end_s,
        "loop_cpu_us_per_call": loop_cpu / calls * 1e6,  # the logging thread's CPU time
        "end_run_cpu_ms": end_cpu * 1e3,  # the process's: every thread's CPU time until durable
        "calls_per_s_loop": calls / loop_s,
        "calls_per_s_total": calls / (loop_s + end_s),
    }


def durable(ml):
    """Wait until everything logged is committed (gitml commits ended runs in the
    background; MLflow's calls are synchronous), so both tools are timed to the same point."""
    if hasattr(ml, "flush") and ml.__name__ == "gitml":
        ml.flush()


def log_batch(ml, params, metrics, tags):
    ml.log_params(params)
    ml.log_metrics(metrics)
    ml.set_tags(tags)


def log_single(ml, params, metrics, tags):
    for k, v in params.items():
        ml.log_param(k, v)
    for k, v in metrics.items():
        ml.log_metric(k, v)
    for k, v in tags.items():
        ml.set_tag(k, v)


def children_cpu():
    """CPU seconds of this process's live children so far (gitml's ``gitml-commit`` process
    does a sweep's pack writing and ref moves: its time counts as the run's), from /proc."""
    me, total, tick = str(os.getpid()), 0.0, os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:  # ppid; then utime and stime, fields 14 and 15 of stat
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def make_w2(log):
    def w2(ml, n):
        ml.set_experiment(EXPERIMENT)
        runs = run_data(n)

        def loop():
            for params, metrics, tags in runs:
                with ml.start_run():
                    log(ml, params, metrics, tags)

        cpu, children = time.process_time(), children_cpu()
        secs, _ = timed(lambda: (loop(), durable(ml)))
        cpu = time.process_time() - cpu  # every thread's: the committer's too
        children = children_cpu() - children  # gitml's commit process, when one started
        total = cpu + children
        return {
            "runs": n,
            "secs": secs,
            "runs_per_s": n / secs,
            "cpu_s": cpu,
            "children_cpu_s": children,
            "runs_per_cpu_s": n / total,
        }

    return w2


def w3(ml, n):
    def search():
        return ml.search_runs(experiment_names=[EXPERIMENT], filter_string=W3_FILTER, order_by=W3_ORDER)

    # `import mlflow` loads pandas; gitml loads it on the first search. Load it here,
    # untimed but reported, so both first searches start from the same point.
    pandas_s, _ = timed(lambda: importlib.import_module("pandas"))
    first_s, result = timed(search)
    repeated = [timed(search)[0] for _ in range(W3_REPEATS)]
    return {
        "runs": n,
        "first_s": first_s,
        "pandas_import_s": pandas_s,
        "repeat_s": statistics.median(repeated),
        "rows": len(result),
        "expected_rows": expected_rows(n),
    }


WORKLOADS = {
    "import": None,
    "w1": w1,
    "w2": make_w2(log_batch),
    "w2-single": make_w2(log_single),
    "w3": w3,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tool", choices=TOOLS)
    ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("--dir", required=True, help="storage / repository directory")
    ap.add_argument("--n", type=int, default=0, help="number of runs (w2, w2-single, w3)")
    args = ap.parse_args(argv)

    data_dir = os.path.abspath(args.dir)
    prepare(args.tool, data_dir)
    ml, import_s = load(args.tool, data_dir)
    result = {
        "tool": args.tool,
        "workload": args.workload,
        "n": args.n,
        "import_s": import_s,
    }
    if WORKLOADS[args.workload]:
        result.update(WORKLOADS[args.workload](ml, args.n))
    result["version"] = getattr(ml, "__version__", None)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Starting a run in a large source tree: gitml's start_run beside `git status` and
MLflow's start_run, in repositories of 10k, 50k and 200k tracked files with two
modified files.

    python benchmarks/run_source_trees.py [--sizes 10000,50000,200000] [--repeat 3] [--checkout-only]

The repositories are built once under benchmarks/out/trees/<n>/ (commit by
`git fast-import`, files written by `git reset --hard`) and reused by later runs.
Each figure is the median over --repeat fresh processes; `start_run` is timed inside
the process, after `import` and `set_experiment` (MLflow: file store, the
interpreter of the MLflow peer venv, benchmarks/peers.py). gitml keeps git's index parsed in
.git/gitml/index-columns for the next process: "cold" is a start_run with that file
made stale first (it names another index's trailer), as after any git command that
rewrote the index (`git add`, `commit`).
Then `gitml checkout` of a run made on the commit before: HEAD on a commit that
changes five files of it (3 modified, 1 added, 1 removed), the run's commit checked out
(timed inside the process, as start_run) beside `git switch --detach` of the same
commit from the same place, interleaved; and `gitml diff RUN RUN --code` of runs on
the two commits beside `git diff` of the two commits.
The tables go to benchmarks/out/source_trees.md (with --checkout-only: the second
alone, to source_trees_checkout.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
MLFLOW_PY = peers.MLFLOW_PY
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as run_tracking.py: compiled modules are cached

# the workload, written into the repository (untracked) so both tools see a script in it
START = """\
import json, os, sys, time
tool = sys.argv[1]
if tool == "mlflow":
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import mlflow as ml
    ml.set_tracking_uri("file:" + sys.argv[2])
else:
    import gitml as ml
ml.set_experiment("trees")
t = time.perf_counter()
ml.start_run()
took = time.perf_counter() - t
ml.end_run()
print(json.dumps({"start_run": took}))
"""


CHECKOUT = """\
import json, sys, time
import gitml
import gitml.ops
c = gitml.ops.Operations(".")
t = time.perf_counter()
c.checkout_run(sys.argv[1])
print(json.dumps({"checkout": time.perf_counter() - t}))
"""

DIFF = """\
import json, sys, time
import gitml
import gitml.ops
c = gitml.ops.Operations(".")
t = time.perf_counter()
c.runs_code_diff(sys.argv[1], sys.argv[2])
print(json.dumps({"diff": time.perf_counter() - t}))
"""

RUN_ID = """\
import gitml
gitml.set_experiment("checkout")
with gitml.start_run() as r:
    print(r.info.run_id)
"""


def git(cwd: str, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, input=stdin, check=True, capture_output=True)
    return result.stdout.decode()


def build(n: int) -> str:
    """A repository of ``n`` files in folders of 100 (10 per parent), two of them modified."""
    path = os.path.join(OUT, "trees", str(n))
    if os.path.isdir(os.path.join(path, ".git")):
        git(path, "reset", "-q", "--hard")
    else:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        git(path, "init", "-q")
        lines = [b"commit refs/heads/main\ncommitter Bench <b@b> 0 +0000\ndata 5\ntree\n"]
        for i in range(n):
            body = b"value = %d\n" % i
            lines.append(
                b"M 100644 inline pkg%d/mod%d/f%d.py\ndata %d\n%s\n" % (i // 1000, i // 100 % 10, i, len(body), body)
            )
        git(path, "fast-import", "--quiet", stdin=b"".join(lines))
        git(path, "symbolic-ref", "HEAD", "refs/heads/main")
        git(path, "reset", "-q", "--hard")
    for i in (1, n // 2):
        with open(os.path.join(path, f"pkg{i // 1000}/mod{i // 100 % 10}/f{i}.py"), "a") as f:
            f.write("edited = True\n")
    with open(os.path.join(path, "start.py"), "w") as f:
        f.write(START)
    git(path, "status", "--porcelain")  # as a user's repository is: the index refreshed once
    return path


def git_status(path: str) -> float:
    t = time.perf_counter()
    git(path, "status", "--porcelain")
    return time.perf_counter() - t


def timed_git(path: str, *args: str) -> float:
    t = time.perf_counter()
    git(path, *args)
    return time.perf_counter() - t


def python_in(path: str, code: str, *args: str, python: str = sys.executable) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("GITML_REPO", None)
    result = subprocess.run([python, "-c", code, *args], cwd=path, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"failed in {path}: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip().splitlines()[-1]


def checkout(path: str, n: int, repeat: int) -> dict[str, float]:
    """Medians of `gitml checkout` of a run one commit back and `git switch` there, and
    of `gitml diff --code` of runs on the two commits and `git diff` of the commits."""
    git(path, "reset", "-q", "--hard")
    git(path, "switch", "-q", "main")
    a = git(path, "rev-parse", "HEAD").strip()
    if subprocess.run(["git", "rev-parse", "-q", "--verify", "bench-b"], cwd=path, capture_output=True).returncode:
        change = b"".join(
            b"M 100644 inline pkg%d/mod%d/f%d.py\ndata 8\nchanged\n\n" % (i // 1000, i // 100 % 10, i)
            for i in (3, n // 3, n - 1)
        )
        stream = (
            b"commit refs/heads/bench-b\ncommitter Bench <b@b> 0 +0000\ndata 2\nb\nfrom %s\n" % a.encode()
            + change
            + b"M 100644 inline pkg0/new.py\ndata 4\nnew\n\nD pkg0/mod0/f7.py\n"
        )
        git(path, "fast-import", "--quiet", stdin=stream)
    run_id = python_in(path, RUN_ID)
    git(path, "switch", "-q", "--detach", "bench-b")
    run_b = python_in(path, RUN_ID)
    git(path, "switch", "-q", "--detach", a)
    figures: dict[str, list[float]] = {"gitml": [], "git": [], "gitml diff": [], "git diff": []}
    for _ in range(repeat):
        figures["gitml diff"].append(json.loads(python_in(path, DIFF, run_id, run_b))["diff"])
        figures["git diff"].append(timed_git(path, "diff", a, "bench-b"))
        git(path, "switch", "-q", "--detach", "bench-b")
        figures["gitml"].append(json.loads(python_in(path, CHECKOUT, run_id))["checkout"])
        assert git(path, "rev-parse", "HEAD").strip() == a and not git(path, "status", "--porcelain", "-uno")
        git(path, "switch", "-q", "--detach", "bench-b")
        figures["git"].append(timed_git(path, "switch", "-q", "--detach", a))
    git(path, "switch", "-q", "main")
    return {k: statistics.median(v) for k, v in figures.items()}


def make_stale(folder: str) -> None:
    """The columns files in ``folder`` as git leaves them when it rewrites the index:
    whole, but of another index (the trailer they record, 16 bytes in, changed)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if not name.endswith(".tmp"):
            with open(os.path.join(folder, name), "r+b") as f:
                f.seek(16)
                f.write(b"\xff" * 20)


def start_run(python: str, tool: str, path: str, store: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("GITML_REPO", None)
    result = subprocess.run([python, "start.py", tool, store], cwd=path, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{tool} failed in {path}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["start_run"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkout-only", action="store_true", help="only the checkout and diff table")
    args = parser.parse_args(argv)
    rows = []
    checkouts: list[tuple[int, dict[str, float]]] = []
    mlflow = os.path.exists(MLFLOW_PY)
    for n in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        path = build(n)
        print(f"{n} files: built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        if args.checkout_only:
            checkouts.append((n, checkout(path, n, args.repeat)))
            continue
        with tempfile.TemporaryDirectory() as store:
            figures: dict[str, list[float]] = {"git status": [], "gitml": [], "cold": [], "mlflow": []}
            for _ in range(args.repeat):  # interleaved: the machine's load falls on every column
                figures["git status"].append(git_status(path))
                make_stale(os.path.join(path, ".git", "gitml", "index-columns"))
                figures["cold"].append(start_run(sys.executable, "gitml", path, store))
                figures["gitml"].append(start_run(sys.executable, "gitml", path, store))
                if mlflow:
                    figures["mlflow"].append(start_run(MLFLOW_PY, "mlflow", path, os.path.join(store, "mlruns")))
        med = {k: statistics.median(v) if v else None for k, v in figures.items()}
        rows.append((n, med))
        checkouts.append((n, checkout(path, n, args.repeat)))
    lines = (
        []
        if args.checkout_only
        else [
            "| files | git status | gitml start_run | cold | MLflow start_run | gitml / git status | cold / git status"
            " | MLflow / gitml |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    )
    for n, med in rows:
        ml = med["mlflow"]
        lines.append(
            f"| {n:,} | {med['git status']:.3f} s | {med['gitml']:.3f} s | {med['cold']:.3f} s | "
            + (f"{ml:.3f} s" if ml is not None else "n/a")
            + f" | {med['gitml'] / med['git status']:.2f} | {med['cold'] / med['git status']:.2f} | "
            + (f"{ml / med['gitml']:.2f}" if ml is not None else "n/a")
            + " |"
        )
    lines += [
        "",
        "| files | git switch --detach | gitml checkout RUN | gitml / git | git diff A B"
        " | gitml diff RUN RUN --code | gitml / git |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, med in checkouts:
        lines.append(
            f"| {n:,} | {med['git']:.3f} s | {med['gitml']:.3f} s | {med['gitml'] / med['git']:.2f} | "
            f"{med['git diff']:.3f} s | {med['gitml diff']:.3f} s | {med['gitml diff'] / med['git diff']:.2f} |"
        )
    load = os.getloadavg()[0]
    lines.append(f"\nload average {load:.1f} on {os.cpu_count()} cores; median of {args.repeat} interleaved repeats")
    table = "\n".join(lines)
    print(table)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "source_trees_checkout.md" if args.checkout_only else "source_trees.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()

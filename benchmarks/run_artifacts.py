"""W4 and W5: artifacts and sharing, gitml side by side with MLflow and git.

    python benchmarks/run_artifacts.py [--quick]

W4  log a folder (one 100 MB random file + 500 files of 4 KB) in a run, then the
    same folder in a second run: seconds for each, and bytes stored after each.
    gitml (local cache, default local remote) vs MLflow 3.17.2's file store
    (the MLflow peer venv, benchmarks/peers.py, made by setup_mlflow.sh).
W5  1,000 runs of W2's shape: ``gitml push`` to a bare repository and ``gitml
    fetch`` into a fresh clone, vs the real ``git push`` / ``git fetch`` of the
    same refs (refs/gitml/*) between the same kinds of repositories; the same
    through git daemon on loopback (git://); then 10
    more runs pushed on top (what the pre-push hook does every day).

Each figure is the median of --repeat runs; the table goes to benchmarks/out/artifacts.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MLFLOW_PY = peers.MLFLOW_PY
# Python caches compiled modules on a normal install; a machine-wide PYTHONDONTWRITEBYTECODE
# would make every gitml process compile its sources again (MLflow's venv has its .pyc files).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
ENV = {
    **os.environ,
    "PYTHONPATH": ROOT,
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@x",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@x",
}

W4_SCRIPT = """
import json, os, sys, time
tool, data, store = sys.argv[1], sys.argv[2], sys.argv[3]
if tool == "gitml":
    import gitml as ml
    ml.search_runs
else:
    import mlflow as ml
    ml.set_tracking_uri("file:" + os.path.join(store, "mlruns"))
def size(path):
    files = (os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    return sum(os.path.getsize(f) for f in files if not os.path.islink(f))
out = []
for k in range(2):
    with ml.start_run():
        t = time.perf_counter()
        ml.log_artifacts(data)
        secs = time.perf_counter() - t
    if tool == "gitml":
        ml.flush()
    out.append({"secs": secs, "bytes": size(store)})
print(json.dumps(out))
"""

W5_MAKE = """
import random, sys, gitml
gitml.set_experiment("w5")
rng = random.Random(1)
for i in range(int(sys.argv[1])):
    with gitml.start_run():
        gitml.log_params({f"p{j}": str(rng.randint(0, 99)) for j in range(10)})
        gitml.log_metrics({f"m{j}": rng.random() for j in range(10)})
        gitml.set_tags({f"t{j}": "x" for j in range(5)})
"""


def sh(args, cwd=None, python=None):
    t = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t


def git_repo(path):
    os.makedirs(path)
    sh(["git", "init", "-q", "-b", "main"], cwd=path)
    with open(os.path.join(path, "train.py"), "w") as f:
        f.write("print('train')\n")
    sh(["git", "add", "."], cwd=path)
    sh(["git", "commit", "-qm", "initial"], cwd=path)


def w4(tmp: str, tool: str, data: str) -> list[dict]:
    store = os.path.join(tmp, f"w4-{tool}-{time.time_ns()}")
    if tool == "gitml":
        git_repo(store)
        env = {**ENV, "GITML_REPO": store, "XDG_DATA_HOME": os.path.join(store, ".xdg")}
        python = sys.executable
    else:
        os.makedirs(store)
        env, python = ENV, MLFLOW_PY
    result = subprocess.run(
        [python, "-c", W4_SCRIPT, tool, data, store], cwd=store, env=env, check=True, capture_output=True, text=True
    )
    shutil.rmtree(store)
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def git_daemon(base: str):
    """``git daemon`` serving the repositories under ``base`` on a free loopback port, push enabled."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            base,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def w5(tmp: str, runs: int) -> dict:
    base = os.path.join(tmp, f"w5-{time.time_ns()}")
    src = os.path.join(base, "src")
    git_repo(src)
    subprocess.run([sys.executable, "-c", W5_MAKE, str(runs)], cwd=src, env=ENV, check=True)
    out = {}
    gitml = [sys.executable, "-m", "gitml.cli.main"]

    def transfer(kind: str, key: str, target) -> None:
        """Push all runs to a fresh bare repository, then fetch them into a fresh clone."""
        for tool in ("git", "gitml"):
            name = f"{kind}-{tool}.git"
            sh(["git", "init", "-q", "--bare", os.path.join(base, name)])
            url = target(name)
            clone = os.path.join(base, f"{kind}-{tool}-clone")
            if tool == "git":
                out[f"{key}push_git"] = sh(["git", "push", "-q", url, "refs/gitml/*:refs/gitml/*"], cwd=src)
                git_repo(clone)
                out[f"{key}fetch_git"] = sh(["git", "fetch", "-q", url, "refs/gitml/*:refs/gitml/*"], cwd=clone)
            else:
                out[f"{key}push_gitml"] = sh([*gitml, "push", url], cwd=src)
                git_repo(clone)
                out[f"{key}fetch_gitml"] = sh([*gitml, "fetch", url], cwd=clone)
            refs = subprocess.run(["git", "for-each-ref", "refs/gitml/runs"], cwd=clone, capture_output=True, text=True)
            out[f"{key}runs_{tool}"] = len(refs.stdout.splitlines())

    transfer("local", "", lambda name: os.path.join(base, name))  # a bare repository by path
    with git_daemon(base) as port:  # the same over the network: git daemon on loopback
        transfer("net", "net", lambda name: f"git://127.0.0.1:{port}/{name}")
    # the everyday case (the pre-push hook): 10 new runs on top of what the remote has
    subprocess.run([sys.executable, "-c", W5_MAKE, "10"], cwd=src, env=ENV, check=True)
    out["again_git"] = sh(
        ["git", "push", "-q", os.path.join(base, "local-git.git"), "refs/gitml/*:refs/gitml/*"], cwd=src
    )
    out["again_gitml"] = sh([*gitml, "push", os.path.join(base, "local-gitml.git")], cwd=src)
    shutil.rmtree(base)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 MB file and 200 runs")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("w4", "w5"), help="one workload only")
    args = ap.parse_args()
    big = (10 if args.quick else 100) << 20
    runs = 200 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="gitml-bench-art-") as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(os.path.join(data, "small"))
        with open(os.path.join(data, "big.bin"), "wb") as f:
            f.write(os.urandom(big))
        for i in range(500):
            with open(os.path.join(data, "small", f"f{i}.bin"), "wb") as f:
                f.write(os.urandom(4096))
        tools = ["gitml"] + (["mlflow-file"] if os.path.exists(MLFLOW_PY) else [])
        w4s = {t: [w4(tmp, t, data) for _ in range(args.repeat)] for t in tools} if args.only != "w5" else {}
        w5s = [w5(tmp, runs) for _ in range(args.repeat)] if args.only != "w4" else []

    def med(xs):
        return statistics.median(xs)

    lines = [
        "# Artifacts and sharing: gitml vs MLflow and git",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, median of {args.repeat}; "
        f"W4 folder: one {big >> 20} MB file + 500 files of 4 KB; W5: {runs} runs",
        "",
        "| figure | " + " | ".join(tools) + " | ratio |",
        "|---|" + "---|" * (len(tools) + 1),
    ]
    for k, label in ((0, "W4 first log_artifacts, s"), (1, "W4 second log_artifacts (same folder), s")) if w4s else ():
        vals = [med([r[k]["secs"] for r in w4s[t]]) for t in tools]
        ratio = f"{vals[1] / vals[0]:.1f}x faster" if len(vals) > 1 else ""
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {ratio} |")
    for k, label in (
        ((0, "W4 bytes stored after the first log, MB"), (1, "W4 bytes stored after the second log, MB")) if w4s else ()
    ):
        vals = [med([r[k]["bytes"] for r in w4s[t]]) / 2**20 for t in tools]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " | |")
    if w4s:
        g = [r[1]["secs"] / r[0]["secs"] for r in w4s["gitml"]]
        lines.append(f"| W4 second log / first log (gitml) | {med(g):.1%} | | |")
    if w5s:
        lines += ["", "| W5 | git | gitml | gitml / git |", "|---|---|---|---|"]
    for op, label in (
        ()
        if not w5s
        else (
            ("push", f"push {runs} runs"),
            ("fetch", f"fetch {runs} runs"),
            ("netpush", f"push {runs} runs over git://"),
            ("netfetch", f"fetch {runs} runs over git://"),
            ("again", "push 10 more runs"),
        )
    ):
        a, b = med([r[f"{op}_git"] for r in w5s]), med([r[f"{op}_gitml"] for r in w5s])
        ratios = sorted(r[f"{op}_gitml"] / r[f"{op}_git"] for r in w5s)
        lines.append(
            f"| {label}, s | {a:.2f} | {b:.2f} | {b / a:.2f} (runs: {', '.join(f'{x:.2f}' for x in ratios)}) |"
        )
    if w5s:
        lines.append(f"| runs arrived (git / gitml) | {w5s[0]['runs_git']} | {w5s[0]['runs_gitml']} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "artifacts.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

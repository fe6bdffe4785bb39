"""Many processes logging to one run: points/s with 1, 4 and 16 writers, gitml beside
MLflow's sqlite store (issue 27).

Each writer is a process with its own client (gitml: ``gitml.Client(flush_interval=0)``,
every call committed before it returns; MLflow: ``MlflowClient("sqlite:///...")``,
every call a transaction). It logs ``--points`` points to a key all writers share and
as many to its own, one call per point. The writers start logging together (after
their imports and clients are made, behind a start file); the figure is all points
over the time from that start to the last writer's end. Every point is then read back
and counted. Prints a Markdown table; writes benchmarks/out/one_run_writers.json.

    python benchmarks/run_one_run_writers.py [--points 100] [--writers 1,4,16] [--tools gitml,mlflow-sqlite]
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

WRITER = {
    "gitml": """
import os, sys, time, gitml
run_id, worker, points, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = gitml.Client(flush_interval=0)
open(go + "." + worker, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for step in range(points):
    client.log_metric(run_id, "shared", float(worker), step=step)
    client.log_metric(run_id, "w" + worker, float(step), step=step)
print(time.time())
client.close()
""",
    "mlflow-sqlite": """
import os, sys, time
from mlflow.tracking import MlflowClient
run_id, worker, points, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = MlflowClient(tracking_uri=os.environ["URI"])
client.get_run(run_id)
open(go + "." + worker, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for step in range(points):
    client.log_metric(run_id, "shared", float(worker), step=step)
    client.log_metric(run_id, "w" + worker, float(step), step=step)
print(time.time())
""",
}

SETUP = {
    "gitml": "import gitml\nwith gitml.Client() as c: print(c.create_run('0').info.run_id)",
    "mlflow-sqlite": "import os\nfrom mlflow.tracking import MlflowClient\n"
    "c = MlflowClient(tracking_uri=os.environ['URI'])\nprint(c.create_run(c.create_experiment('w')).info.run_id)",
}

COUNT = {
    "gitml": "import sys, gitml\nwith gitml.Client() as c:\n"
    "    keys = ['shared'] + [f'w{w}' for w in range(int(sys.argv[2]))]\n"
    "    print(sum(len(c.get_metric_history(sys.argv[1], k)) for k in keys))",
    "mlflow-sqlite": "import os, sys\nfrom mlflow.tracking import MlflowClient\n"
    "c = MlflowClient(tracking_uri=os.environ['URI'])\nkeys = ['shared'] + [f'w{w}' for w in range(int(sys.argv[2]))]\n"
    "print(sum(len(c.get_metric_history(sys.argv[1], k)) for k in keys))",
}


def python_of(tool: str) -> tuple[str, dict]:
    if tool == "gitml":
        return sys.executable, {"PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
    if not os.path.exists(peers.MLFLOW_PY):
        raise SystemExit(f"{peers.MLFLOW_PY} missing: run bash benchmarks/setup_mlflow.sh")
    return peers.MLFLOW_PY, {}


def measure(tool: str, writers: int, points: int) -> dict:
    python, extra = python_of(tool)
    with tempfile.TemporaryDirectory(prefix=f"writers-{tool}-") as work:
        env = {**os.environ, **extra, "URI": f"sqlite:///{work}/mlflow.db", "GIT_TERMINAL_PROMPT": "0"}
        if tool == "gitml":
            subprocess.run(["git", "init", "-q", work], check=True)

        def run(code: str, *args: object) -> str:
            done = subprocess.run(
                [python, "-c", code, *map(str, args)], cwd=work, env=env, capture_output=True, text=True, check=True
            )
            return done.stdout.strip().splitlines()[-1]

        run_id = run(SETUP[tool])
        go = os.path.join(work, "go")
        procs = [
            subprocess.Popen(
                [python, "-c", WRITER[tool], run_id, str(w), str(points), go],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(writers)
        ]
        while not all(os.path.exists(f"{go}.{w}") for w in range(writers)):
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit(f"{tool} writer failed: " + next(p.stderr.read() for p in procs if p.poll()))
            time.sleep(0.01)
        start = time.time()
        open(go, "w").close()
        ends = []
        for p in procs:
            out, err = p.communicate()
            if p.returncode:
                raise SystemExit(f"{tool} writer failed: {err[-2000:]}")
            ends.append(float(out.strip().splitlines()[-1]))
        seconds = max(ends) - start
        total = writers * points * 2
        counted = int(run(COUNT[tool], run_id, writers))
        load = os.getloadavg()[0]
    return {
        "tool": tool,
        "writers": writers,
        "points": total,
        "counted": counted,
        "seconds": round(seconds, 2),
        "points_per_s": round(total / seconds, 1),
        "load": round(load, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100, help="points per writer per key (two keys)")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--tools", default="gitml,mlflow-sqlite")
    args = parser.parse_args()
    results = []
    for writers in map(int, args.writers.split(",")):
        for tool in args.tools.split(","):
            result = measure(tool, writers, args.points)
            print(json.dumps(result), flush=True)
            results.append(result)
    print("\n| writers | tool | points | points/s | s | load avg |\n|---|---|---|---|---|---|")
    for r in results:
        lost = "" if r["counted"] == r["points"] else f" (read back {r['counted']})"
        print(
            f"| {r['writers']} | {r['tool']} | {r['points']}{lost} | {r['points_per_s']} | {r['seconds']} "
            f"| {r['load']} |"
        )
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "one_run_writers.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

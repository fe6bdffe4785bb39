"""`gitml serve` beside `mlflow models serve` on the same model, in one run.

    bash benchmarks/setup_mlflow.sh                # once: MLflow, scikit-learn in the peer venv (benchmarks/peers.py)
    python benchmarks/run_serving.py               # quick: 10 s per wrk load
    python benchmarks/run_serving.py --duration 30 # the issue's figures

The model: StandardScaler + LogisticRegression on breast_cancer (30 columns), saved
once by gitml.sklearn.save_model (MLflow loads that folder as its own). Loads, from wrk
on loopback with JSON dataframe_split bodies: 1 row over 16 connections, 1 row over 1
connection, 1,000 rows over 1 connection; each server with 1 and 2 workers (`-w`).
Also: cold load + one prediction in a fresh interpreter (median of 3), beside its floor
(the same imports and prediction by ``pickle.load`` with no framework) and Python's start
alone, each in the tool's own environment; server start to the first 200 from /ping
(``--start-only``: only these, each start repeated, no wrk loads); the workers' memory (RSS summed
over the server's process tree) after 1,000 bad requests (warm-up) and again after 10,000 more (malformed JSON, a
missing column, a wrong content type), and the size of the answer to a 5 MB malformed body. The table goes to
benchmarks/out/serving.md and the raw figures to benchmarks/out/serving.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
MLFLOW_PY = peers.MLFLOW_PY

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
"""
LOADS = [("1 row, 16 connections", 1, 16), ("1 row, 1 connection", 1, 1), ("1,000 rows, 1 connection", 1000, 1)]

COLD_GITML = """
import time; t = time.perf_counter()
import json, gitml.pyfunc, pandas as pd
m = gitml.pyfunc.load_model({path!r})
split = json.load(open({example!r}))
m.predict(pd.DataFrame(split["data"], columns=split["columns"], dtype="float64"))
print(time.perf_counter() - t)
"""
COLD_MLFLOW = COLD_GITML.replace("gitml.pyfunc", "mlflow.pyfunc")
# the floor any loader stands on: the same imports and prediction with no framework at all
COLD_FLOOR = """
import time; t = time.perf_counter()
import json, pickle, pandas as pd
m = pickle.load(open({pickle!r}, "rb"))
split = json.load(open({example!r}))
m.predict(pd.DataFrame(split["data"], columns=split["columns"], dtype="float64"))
print(time.perf_counter() - t)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


class Server:
    def __init__(self, tool: str, model: str, workers: int):
        self.port = _free_port()
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        if tool == "gitml":
            argv = [
                sys.executable,
                "-m",
                "gitml.cli.main",
                "serve",
                "-m",
                model,
                "-p",
                str(self.port),
                "-w",
                str(workers),
            ]
        else:
            env.pop("PYTHONPATH")
            env["PATH"] = os.path.dirname(MLFLOW_PY) + os.pathsep + env["PATH"]  # it execs `uvicorn`
            argv = [
                MLFLOW_PY,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                model,
                "-p",
                str(self.port),
                "-w",
                str(workers),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
            ]
        start = time.perf_counter()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        while not _ping(self.port):
            if self.proc.poll() is not None or time.perf_counter() - start > 180:
                self.log.seek(0)
                raise SystemExit(f"{tool} serve did not start: {self.log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.01)
        self.start_to_ping = time.perf_counter() - start
        self.cpu_to_ping = self.tree_cpu_s()

    def tree_cpu_s(self) -> float:
        """CPU seconds of the server's process tree (live processes, and children they reaped)."""
        tick, total, pids = os.sysconf("SC_CLK_TCK"), 0, [self.proc.pid]
        while pids:
            pid = pids.pop()
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
        return total / tick

    def tree_rss_mb(self) -> float:
        pids, total = [self.proc.pid], 0
        while pids:
            pid = pids.pop()
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        pids += [int(p) for p in f.read().split()]
            except (OSError, StopIteration):
                pass
        return total / 1024

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _wrk(port: int, body_file: str, connections: int, duration: int, lua: str) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            lua,
            f"http://127.0.0.1:{port}/invocations",
        ],
        env=dict(os.environ, BODY_FILE=body_file),
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _bad_requests(port: int, count: int) -> int:
    bodies = [
        (b'{"dataframe_split": {"columns": ["a"', "application/json"),
        (json.dumps({"dataframe_split": {"columns": ["nope"], "data": [[1.0]]}}).encode(), "application/json"),
        (b"x" * 1000, "text/plain"),
    ]
    refused = [0]

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(n):
            body, kind = bodies[i % len(bodies)]
            try:
                conn.request("POST", "/invocations", body, {"Content-Type": kind})
                response = conn.getresponse()
                response.read()
                refused[0] += 400 <= response.status < 500
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=worker, args=(count // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return refused[0]


def _big_bad_answer(port: int, mb: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/invocations", b'{"a": "' + b"x" * (mb * 1024 * 1024), {"Content-Type": "application/json"})
    size = len(conn.getresponse().read())
    conn.close()
    return size


CPU: dict = {}  # (tool, template) -> median CPU seconds of _cold's runs


def _cold(tool: str, model: str, example: str, repeat: int, template: str | None = None) -> float:
    """The median wall time of a fresh interpreter running ``template`` (default: the tool's
    load + predict) in the tool's environment, Python's start included (its median CPU
    time goes to ``CPU``)."""
    py = sys.executable if tool == "gitml" else MLFLOW_PY
    key = (tool, template)
    if template is None:
        template = COLD_GITML if tool == "gitml" else COLD_MLFLOW
    code = template.format(path=model, example=example, pickle=os.path.join(model, "model.pkl"))
    env = (
        dict(os.environ, PYTHONPATH=REPO_ROOT)
        if tool == "gitml"
        else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    )
    times, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([py, "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    CPU[key] = statistics.median(cpus)
    return statistics.median(times)


def _model(folder: str) -> tuple[str, dict[int, str], str]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gitml.sklearn
    from gitml.models import infer_signature

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    path = os.path.join(folder, "model")
    gitml.sklearn.save_model(model, path, signature=infer_signature(X, model.predict(X)))
    bodies = {}
    for rows in (1, 1000):
        bodies[rows] = os.path.join(folder, f"rows{rows}.json")
        sample = X.sample(rows, replace=rows > len(X), random_state=0)
        with open(bodies[rows], "w") as f:
            json.dump({"dataframe_split": {"columns": list(X.columns), "data": sample.values.tolist()}}, f)
    example = os.path.join(folder, "example.json")
    X.iloc[:1].to_json(example, orient="split", index=False)
    return path, bodies, example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk load (the issue's figures: 30)")
    parser.add_argument("--tools", default="gitml,mlflow")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--bad", type=int, default=10_000, help="bad requests for the memory figure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--start-only",
        action="store_true",
        help="only the cold load, its floor and the start to the first /ping (no wrk loads)",
    )
    args = parser.parse_args()
    tools = args.tools.split(",")
    if "mlflow" in tools and not os.path.exists(MLFLOW_PY):
        raise SystemExit("run benchmarks/setup_mlflow.sh first (or --tools gitml)")
    results: dict = {"duration_s": args.duration, "load_average": os.getloadavg()[0], "tools": {}}
    with tempfile.TemporaryDirectory() as folder:
        lua = os.path.join(folder, "post.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA)
        model, bodies, example = _model(folder)
        for tool in tools:
            figures: dict = {
                "cold_load_predict_s": _cold(tool, model, example, args.repeat),
                "floor_load_predict_s": _cold(tool, model, example, args.repeat, COLD_FLOOR),
                "python_start_s": _cold(tool, model, example, args.repeat, "pass"),
                "loads": {},
            }
            figures["cpu_s"] = {
                "cold_load_predict": CPU[(tool, None)],
                "floor_load_predict": CPU[(tool, COLD_FLOOR)],
                "python_start": CPU[(tool, "pass")],
            }
            for workers in (int(w) for w in args.workers.split(",")):
                starts, cpus = [], []
                for _ in range(args.repeat if args.start_only else 1):
                    server = Server(tool, model, workers)
                    starts.append(server.start_to_ping)
                    cpus.append(server.cpu_to_ping)
                    if args.start_only:
                        server.stop()
                figures.setdefault("start_to_ping_s", {})[workers] = statistics.median(starts)
                figures["cpu_s"][f"start_to_ping_w{workers}"] = statistics.median(cpus)
                if args.start_only:
                    continue
                try:
                    for label, rows, connections in LOADS:
                        got = _wrk(server.port, bodies[rows], connections, args.duration, lua)
                        got["rows_per_s"] = got["rps"] * rows
                        figures["loads"][f"{label}, -w {workers}"] = got
                        print(tool, f"-w {workers}", label, got, flush=True)
                    if workers == max(int(w) for w in args.workers.split(",")):
                        fresh = server.tree_rss_mb()
                        _bad_requests(server.port, 1000)  # warm-up: the first of each refusal imports and caches
                        before = server.tree_rss_mb()
                        refused = _bad_requests(server.port, args.bad)
                        figures["memory"] = {
                            "fresh_mb": fresh,
                            "before_mb": before,
                            "after_mb": server.tree_rss_mb(),
                            "bad": args.bad,
                            "answered_4xx": refused,
                        }
                        figures["answer_to_5mb_bad_body_bytes"] = _big_bad_answer(server.port, 5)
                        print(tool, figures["memory"], figures["answer_to_5mb_bad_body_bytes"], flush=True)
                finally:
                    server.stop()
            results["tools"][tool] = figures
    os.makedirs(OUT, exist_ok=True)
    name = "serving_start" if args.start_only else "serving"
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = _table(results)
    with open(os.path.join(OUT, f"{name}.md"), "w") as f:
        f.write(table)
    print(table)


def _table(results: dict) -> str:
    tools = list(results["tools"])
    lines = [
        f"wrk {results['duration_s']} s per load; load average at start {results['load_average']:.1f}",
        "",
        "| figure | " + " | ".join(tools) + " |",
        "|---|" + "---|" * len(tools),
    ]
    first = results["tools"][tools[0]]
    for load in first["loads"]:
        cells = []
        for tool in tools:
            got = results["tools"][tool]["loads"].get(load)
            cells.append(
                ""
                if got is None
                else f"{got['rps']:.0f} req/s ({got['rows_per_s']:.0f} rows/s), p50 {got['p50_ms']:.1f} ms, "
                f"p99 {got['p99_ms']:.1f} ms" + (f", {got['non_2xx']} non-2xx" if got["non_2xx"] else "")
            )
        lines.append(f"| {load} | " + " | ".join(cells) + " |")

    def timed(tool: str, wall: float, cpu: str) -> str:
        return f"{wall:.2f} s ({results['tools'][tool]['cpu_s'][cpu]:.2f} s CPU)"

    lines.append(
        "| cold load + predict | "
        + " | ".join(timed(t, results["tools"][t]["cold_load_predict_s"], "cold_load_predict") for t in tools)
        + " |"
    )
    lines.append(
        "| the floor: pickle.load + predict, no framework | "
        + " | ".join(timed(t, results["tools"][t]["floor_load_predict_s"], "floor_load_predict") for t in tools)
        + " |"
    )
    lines.append(
        "| Python's start alone | "
        + " | ".join(timed(t, results["tools"][t]["python_start_s"], "python_start") for t in tools)
        + " |"
    )
    for workers in first.get("start_to_ping_s", {}):
        lines.append(
            f"| start to first /ping, -w {workers} | "
            + " | ".join(
                timed(t, results["tools"][t]["start_to_ping_s"][workers], f"start_to_ping_w{workers}") for t in tools
            )
            + " |"
        )
    if "memory" not in first:
        return "\n".join(lines) + "\n"
    lines.append(
        "| RSS fresh / after 1,000 bad requests / after N more | "
        + " | ".join(
            f"{results['tools'][t]['memory']['fresh_mb']:.0f} / {results['tools'][t]['memory']['before_mb']:.0f} / "
            f"{results['tools'][t]['memory']['after_mb']:.0f} MB "
            f"({results['tools'][t]['memory']['bad']} sent, {results['tools'][t]['memory']['answered_4xx']} 4xx)"
            for t in tools
        )
        + " |"
    )
    lines.append(
        "| answer to a 5 MB malformed body | "
        + " | ".join(f"{results['tools'][t]['answer_to_5mb_bad_body_bytes']:,} bytes" for t in tools)
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

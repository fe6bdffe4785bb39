"""gitml ui against MLflow's UI, measured in a real browser (Playwright + Debian's chromium).

    python benchmarks/run_ui.py                      # 20,000 gitml runs, 2,000 MLflow runs, 1M points
    python benchmarks/run_ui.py --runs 2000 --points 200000 --mlflow-runs 500   # a quick look

Builds a repository of N runs in one experiment (10 params, 10 metrics, 5 tags each:
what ``start_run`` makes, written by scale_repo.py with gitml's own writers, ~1 min for
20,000) and one run whose metric ``big`` has P points with a one-point spike (logged
through the Client); starts ``gitml ui`` on it and measures:
the runs table's first page ready in the browser, a sort and a filter in the browser,
the server's page response, the P-point chart's request and draw (and whether the
spike is drawn), and the server's peak memory. MLflow 3.17.2 (the MLflow peer venv, benchmarks/peers.py)
gets the same kind of runs in its sqlite store through log_batch (M runs: logging
20,000 runs into MLflow takes long, so M defaults to 2,000, and is printed) and the
same P-point metric; ``mlflow ui`` is timed to its runs table and to the metric's chart,
whose history request is read to see whether the spike came back. The machine is
shared: compare the ratios, not the absolute figures. Results go to benchmarks/out/ui.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import peers  # benchmarks/peers.py: where the peer venvs live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLFLOW_PY = peers.MLFLOW_PY
SPIKE = 1000.0
T0 = 1_700_000_000_000

MLFLOW_LOGGER = r"""
import os, random, sys, time
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
db, runs, points, spike = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = MlflowClient(tracking_uri=f"sqlite:///{db}")
exp = c.create_experiment("bench")
rng = random.Random(1234)
t = time.time()
for i in range(runs):
    r = c.create_run(exp, run_name=f"run-{i:05d}", start_time=1_700_000_000_000 + i)
    c.log_batch(r.info.run_id, params=[Param(f"p{k}", rng.choice("abcd")) for k in range(10)],
                metrics=[Metric(f"m{k}", rng.random(), 1_700_000_000_000, 0) for k in range(10)])
    c.set_terminated(r.info.run_id)
big = c.create_run(exp, run_name="big").info.run_id
batch = []
for s in range(points):
    batch.append(Metric("big", spike if s == points // 2 + 7 else (s % 1000) / 1000.0, 1_700_000_000_000 + s, s))
    if len(batch) == 1000:
        c.log_batch(big, metrics=batch); batch = []
if batch:
    c.log_batch(big, metrics=batch)
c.set_terminated(big)
print(exp, big, round(time.time() - t, 1))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def build_gitml(path: str, runs: int, points: int) -> tuple[str, str, float]:
    """N runs in one experiment, built by scale_repo.py with gitml's own record, tree and
    pack writers (what ``start_run``, 10 params, 10 metrics, 5 tags, ``end_run`` makes;
    20,000 runs through the API take minutes), then one run logging the big metric through
    the Client."""
    code = f"""
import sys, time
sys.path.insert(0, {os.path.join(ROOT, "benchmarks")!r})
import gitml, gitml.ops, scale_repo
t = time.time()
scale_repo.build({runs}, {path!r}, experiments=1)
c = gitml.ops.Operations({path!r})
exp = c.get_experiment_by_name(scale_repo.experiment_names(1)[0]).experiment_id
big = c.create_run(exp, run_name="big").info.run_id
value = lambda s: {SPIKE} if s == {points} // 2 + 7 else (s % 1000) / 1000.0
c.log_batch(big, metrics=[("big", value(s), {T0} + s, s) for s in range({points})])
c.set_terminated(big)
c.close()
print(exp, big, round(time.time() - t, 1))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}
    )
    if done.returncode != 0:
        raise SystemExit(f"building the gitml repository failed:\n{done.stderr[-3000:]}")
    out = done.stdout.split()
    return out[0], out[1], float(out[2])


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_get(url: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        urllib.request.urlopen(url, timeout=60).read()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_gitml(page, base: str, exp: str, big: str, points: int) -> dict:
    out: dict = {}
    cols = ",".join([f"metrics.m{k}" for k in range(6)] + [f"params.p{k}" for k in range(4)])
    api = f"{base}/api/runs?experiment={exp}&limit=50&columns={cols}"
    out["server_first_page_s"] = timed_get(api, repeat=1)  # the server's first search
    out["server_page_s"] = timed_get(api)
    out["server_sort_s"] = timed_get(api + "&sort=metrics.m3&desc=1")
    out["server_filter_s"] = timed_get(
        api + "&filter=" + urllib.request.quote("metrics.m1 > 0.5 AND (params.p1 = 'a' OR tags.t1 = 'tag3')")
    )
    t = time.perf_counter()
    page.goto(f"{base}/runs?experiment={exp}")
    page.wait_for_selector("#runs-table tbody tr:nth-child(50)")
    out["browser_table_s"] = time.perf_counter() - t
    t = time.perf_counter()
    page.click("#runs-table th[data-sort='metrics.m3']")
    page.wait_for_selector("#runs-table th[data-sort='metrics.m3']:has-text('▼')")
    out["browser_sort_s"] = time.perf_counter() - t
    t = time.perf_counter()
    page.fill("#filter", "metrics.m1 > 0.5 AND (params.p1 = 'a' OR tags.t1 = 'tag3')")
    page.press("#filter", "Enter")
    page.wait_for_function("() => window.gitmlTimings.filter(t => t.kind === 'table').length >= 3")
    out["browser_filter_s"] = time.perf_counter() - t
    out["chart_request_cold_s"] = timed_get(f"{base}/api/series?runs={big}&key=big&width=1000", repeat=1)
    out["chart_request_s"] = timed_get(f"{base}/api/series?runs={big}&key=big&width=1000")
    page.goto(f"{base}/chart?runs={big}&key=big")
    page.wait_for_function("() => window.gitmlCharts.length > 0 && !!window.gitmlCharts[0].plot")
    timing = page.evaluate("window.gitmlTimings.filter(t => t.kind === 'chart')[0]")
    out["browser_chart_request_s"] = timing["request"] / 1000
    out["browser_chart_draw_s"] = timing["draw"] / 1000
    out["chart_points_drawn"] = page.evaluate("window.gitmlCharts[0].plot.data[0].length")
    out["spike_drawn"] = page.evaluate(
        f"Math.max(...window.gitmlCharts[0].plot.data[1].filter(v => v !== null)) === {SPIKE}"
    )
    return out


FIRST_CHART = r"""
import json, shutil, sys, time
import pandas
import gitml
import gitml.ops
from gitml.ui.app import Reader, chart_series
repo, big, cold = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
client = gitml.ops.Operations(repo)
if cold:
    shutil.rmtree(client.cache_dir("histories"), ignore_errors=True)
client.get_run(big)  # the server's Client is open and has read runs before a chart is asked for
reader = Reader(client)
t = time.perf_counter()
chart_series(reader, [big], "big", axis="step", lo=None, hi=None, width=1000, smooth=0.0)
print(json.dumps({"s": time.perf_counter() - t, "parsed": reader.chunks.parsed, "loaded": reader.chunks.loaded}))
"""


def measure_first_chart(repo: str, big: str, repeat: int = 5) -> dict:
    """The first chart request of a server that just started, in a fresh process each
    time: without the parsed-history cache (parses every chunk, then keeps them) and with
    it (loads them). Medians of ``repeat``; the cache is left filled."""
    out = {}
    for name, cold in (("first_chart_no_cache_s", "1"), ("first_chart_cached_s", "0")):
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", FIRST_CHART, repo, big, cold],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": ROOT},
                ).stdout
            )
            for _ in range(repeat)
        ]
        out[name] = statistics.median(r["s"] for r in runs)
        out[name.replace("_s", "_chunks")] = f"{runs[-1]['parsed']} parsed, {runs[-1]['loaded']} loaded"
    return out


def measure_mlflow(page, base: str, exp: str, big: str) -> dict:
    """MLflow's UI server answering the requests its pages make (runs search, the chart's
    history, sampled to 320 points as its UI asks), then its pages in the browser."""
    out: dict = {}
    search = json.dumps(
        {"experiment_ids": [exp], "max_results": 100, "order_by": ["attributes.start_time DESC"]}
    ).encode()

    def post_search(body: bytes) -> float:
        times = []
        for _ in range(5):
            request = urllib.request.Request(
                f"{base}/ajax-api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
            )
            t = time.perf_counter()
            urllib.request.urlopen(request, timeout=120).read()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    out["server_page_s"] = post_search(search)
    out["server_filter_s"] = post_search(
        json.dumps(
            {"experiment_ids": [exp], "max_results": 100, "filter": "metrics.m1 > 0.5 AND params.p1 = 'a'"}
        ).encode()
    )
    url = f"{base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={big}&metric_key=big&max_results=320"
    out["chart_request_s"] = timed_get(url)
    values = [m["value"] for m in json.loads(urllib.request.urlopen(url, timeout=120).read())["metrics"]]
    out["chart_points_sent"] = len(values)
    out["spike_drawn"] = SPIKE in values
    try:
        t = time.perf_counter()
        page.goto(f"{base}/#/experiments/{exp}", wait_until="commit")
        page.wait_for_selector("text=run-0", timeout=60_000)
        out["browser_table_s"] = time.perf_counter() - t
    except Exception as e:  # seen here: a blank page for minutes (no network for what it loads?)
        out["browser_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--mlflow-runs", type=int, default=2_000)
    parser.add_argument("--mlflow-points", type=int, default=100_000, help="MLflow logs about 2,000 points/s here")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = tempfile.mkdtemp(prefix="gitml-ui-bench-")
    servers = []
    results: dict = {"runs": args.runs, "points": args.points}
    try:
        exp, big, took = build_gitml(os.path.join(work, "repo"), args.runs, args.points)
        results["gitml_build_s"] = took
        print(f"gitml: {args.runs} runs + {args.points:,} points logged in {took:.0f} s", flush=True)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gitml.cli.main", "-C", os.path.join(work, "repo"), "ui", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": ROOT},
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        servers.append(server)
        wait_http(f"http://127.0.0.1:{port}/static/ui.css")
        mlflow_base = None
        if not args.no_mlflow and os.path.exists(MLFLOW_PY):
            db = os.path.join(work, "mlflow.db")
            out = subprocess.run(
                [MLFLOW_PY, "-c", MLFLOW_LOGGER, db, str(args.mlflow_runs), str(args.mlflow_points), str(SPIKE)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            m_exp, m_big = out[0], out[1]
            results["mlflow_runs"] = args.mlflow_runs
            results["mlflow_build_s"] = float(out[2])
            results["mlflow_points"] = args.mlflow_points
            print(
                f"mlflow: {args.mlflow_runs} runs + {args.mlflow_points:,} points logged in {float(out[2]):.0f} s",
                flush=True,
            )
            m_port = free_port()
            mlflow_bin = os.path.join(os.path.dirname(MLFLOW_PY), "mlflow")
            m_server = subprocess.Popen(
                [
                    mlflow_bin,
                    "ui",
                    "--backend-store-uri",
                    f"sqlite:///{db}",
                    "--port",
                    str(m_port),
                    "--host",
                    "127.0.0.1",
                    "--workers",
                    "1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
                cwd=work,
                start_new_session=True,
            )
            servers.append(m_server)
            wait_http(f"http://127.0.0.1:{m_port}/health", 180)
            mlflow_base = f"http://127.0.0.1:{m_port}"
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            results["gitml"] = measure_gitml(page, f"http://127.0.0.1:{port}", exp, big, args.points)
            results["gitml"]["server_peak_rss_mb"] = peak_rss_mb(server.pid)
            if mlflow_base:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                try:
                    results["mlflow"] = measure_mlflow(page, mlflow_base, m_exp, m_big)
                except Exception as e:  # its UI changed: report, keep gitml's figures
                    results["mlflow"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            browser.close()
        results["gitml"].update(measure_first_chart(os.path.join(work, "repo"), big))
        results["load_average"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        for s in servers:  # each server was started in its own process group: end it and its workers
            os.killpg(s.pid, signal.SIGTERM)
            try:
                s.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(s.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ui.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = [
        f"# gitml ui: {args.runs:,} runs, a {args.points:,}-point metric",
        "",
        "| figure | gitml | target | MLflow |",
        "|---|---|---|---|",
    ]
    g, m = results["gitml"], results.get("mlflow", {})
    rows = [
        ("runs table, first page in the browser (s)", g["browser_table_s"], "<= 1", m.get("browser_table_s")),
        ("sort in the browser (s)", g["browser_sort_s"], "<= 0.5", None),
        ("filter in the browser (s)", g["browser_filter_s"], "<= 0.5", None),
        ("server: first page after start (s)", g["server_first_page_s"], "", None),
        ("server: one page (s)", g["server_page_s"], "<= 0.2", m.get("server_page_s")),
        ("server: sorted page (s)", g["server_sort_s"], "<= 0.2", None),
        ("server: filtered page (s)", g["server_filter_s"], "<= 0.2", m.get("server_filter_s")),
        ("chart request, first of the server (after its warm-up) (s)", g["chart_request_cold_s"], "<= 0.3", None),
        ("first chart of a fresh process, no history cache (parses) (s)", g["first_chart_no_cache_s"], "", None),
        ("first chart of a fresh process, history cache filled (s)", g["first_chart_cached_s"], "<= 0.3", None),
        ("chart request (s)", g["chart_request_s"], "<= 0.3", m.get("chart_request_s")),
        (
            "chart in the browser: request / draw (s)",
            f"{g['browser_chart_request_s']:.3f} / {g['browser_chart_draw_s']:.3f}",
            "<= 0.3 / 0.1",
            None,
        ),
        ("points sent to the chart", g["chart_points_drawn"], "", m.get("chart_points_sent")),
        ("spike drawn", g["spike_drawn"], "yes", m.get("spike_drawn")),
        ("server peak memory (MB)", g["server_peak_rss_mb"], "<= 500", None),
    ]
    for name, a, target, b in rows:
        fa = f"{a:.3f}" if isinstance(a, float) else str(a)
        fb = "" if b is None else f"{b:.3f}" if isinstance(b, float) else str(b)
        lines.append(f"| {name} | {fa} | {target} | {fb} |")
    lines.append("")
    lines.append(f"Load average at the end: {results['load_average']} (2 cores, shared).")
    if "mlflow_runs" in results:
        lines.append("")
        lines.append(
            f"MLflow's store held {results['mlflow_runs']:,} runs (gitml's {args.runs:,}) "
            f"and a {results['mlflow_points']:,}-point metric with the same spike "
            "(logging takes MLflow minutes per 100,000 points)."
        )
    if m.get("error"):
        lines.append(f"MLflow's UI server could not be measured: {m['error']}")
    if m.get("browser_error"):
        lines.append(f"MLflow's runs page in the browser: {m['browser_error']}")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "ui.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

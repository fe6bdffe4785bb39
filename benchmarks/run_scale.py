"""Growth table: gitml at 1,000, 10,000 and 100,000 runs, MLflow (sqlite) beside it.

    python benchmarks/run_scale.py [--sizes 1000,10000,100000] [--mlflow-runs 20000]
    python benchmarks/run_scale.py --mlflow-only out/mlflow-20k.json  # then --mlflow-json it
    python benchmarks/run_scale.py --skip-remotes  # creation, search, gitml runs/show alone

Each size's repository (W2-shaped runs across 50 experiments, built by
``scale_repo.py`` with gitml's own writers) is built once and cached under
``benchmarks/out/scale/``; every measurement works on a copy (objects hard-linked)
and runs in a fresh process, whose peak memory (maxrss) is reported too:

- create: W2 (1,000 runs through ``gitml.start_run`` & co.) in the big repository, runs/s
  (the median of 5 processes; the sizes taken in turn, so that the machine's drift over
  minutes hits every size alike);
- search: W3's filter and order over every experiment, first call in a fresh
  process (``import pandas`` excluded, reported apart; the median of 3 processes) and
  repeated (median of 5);
- ``gitml runs`` (newest 20) and ``gitml show RUN``, whole commands;
- push (all runs to an empty bare repository by path) and fetch (into a fresh
  repository) against ``git push`` / ``git fetch`` of the same refs;
- push of 10 new runs to the remote that holds the others (the runs made by the creation
  step pushed first, untimed; the median of 3 rounds).

MLflow 3.17.2 on sqlite (the MLflow peer venv, benchmarks/peers.py): W2 and W3 at ``--mlflow-runs``.
Table: benchmarks/out/scale.md.

``--shape sweep`` measures the other way users make a large repository: one process (a
hyperparameter sweep) runs W2's fluent loop for all N runs of one experiment
(``tracking_workloads.py gitml w2 --n N``, built once and cached too), and the first
commands after it are timed on copies of what it left, each right after the sweep and
again in the next process: the search (first call and repeated), ``gitml runs -n 20``,
push of all runs against ``git push`` and fetch against ``git fetch``; with the shape the
sweep left (packs, loose run refs, objects, snapshot segments) and its own rate.
Table: benchmarks/out/scale-sweep.md.
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
CACHE = os.path.join(HERE, "out", "scale")
# bump when scale_repo.py changes what it builds
# (2: packs merged; 3: snapshot stamped; 4: and its names; 5: by segments)
BUILDER_VERSION = 5
MLFLOW_PY = peers.MLFLOW_PY
WORKLOADS_PY = os.path.join(HERE, "tracking_workloads.py")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
GITML = [sys.executable, "-m", "gitml.cli.main"]
CREATED = 1000  # runs each creation process makes

SEARCH = """
import json, statistics, sys, time
t = time.perf_counter(); import pandas; pandas_s = time.perf_counter() - t
t, c = time.perf_counter(), time.process_time()
import gitml
search = lambda: gitml.search_runs(search_all_experiments=True,
    filter_string="metrics.m1 > 0.5 and params.p1 = 'a'", order_by=["metrics.m2 DESC"])
frame = search(); first, first_cpu = time.perf_counter() - t, time.process_time() - c
repeats, cpus = [], []
for _ in range(5):
    t, c = time.perf_counter(), time.process_time(); search()
    repeats.append(time.perf_counter() - t); cpus.append(time.process_time() - c)
print(json.dumps({"pandas_s": pandas_s, "first_s": first, "repeat_s": statistics.median(repeats), "rows": len(frame),
                  "first_cpu_s": first_cpu, "repeat_cpu_s": statistics.median(cpus)}))
"""


def timed(args, cwd, env=None) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout), peak measured with /usr/bin/time."""
    secs, _cpu, rss, out = timed_cpu(args, cwd, env)
    return secs, rss, out


def timed_cpu(args, cwd, env=None) -> tuple[float, float, float, str]:
    """(seconds, CPU seconds (user + system), peak MB, stdout): on a machine other jobs
    share, the CPU time shows what the command costs when it has a core to itself. The
    disk's pending writes are flushed first: a push of 100,000 runs leaves hundreds of
    megabytes to write back, which slowed the fsyncs of the next step by a fifth."""
    os.sync()
    t = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "RSS %M CPU %U %S", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    secs = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{args} failed: {proc.stderr[-2000:]}")
    line = [line.split() for line in proc.stderr.splitlines() if line.startswith("RSS ")][-1]
    return secs, float(line[3]) + float(line[4]), int(line[1]) / 1024, proc.stdout


def cached_repo(n: int) -> str:
    path = os.path.join(CACHE, f"runs-{n}-v{BUILDER_VERSION}")
    if not os.path.exists(os.path.join(path, ".done")):
        shutil.rmtree(path, ignore_errors=True)
        print(f"building {n} runs in {path} (once) ...", file=sys.stderr, flush=True)
        secs, rss, _ = timed([sys.executable, os.path.join(HERE, "scale_repo.py"), str(n), path], HERE)
        with open(os.path.join(path, ".done"), "w") as f:
            json.dump({"build_s": secs, "rss_mb": rss}, f)
    return path


def work_copy(src: str, dst: str) -> None:
    """Objects hard-linked (packs never change), everything else copied."""
    subprocess.run(["cp", "-al", src, dst], check=True)
    for root, _dirs, files in os.walk(os.path.join(dst, ".git")):
        if os.path.join(".git", "objects") in root:
            continue
        for name in files:
            path = os.path.join(root, name)
            shutil.copy2(path, path + ".tmp")
            os.replace(path + ".tmp", path)


def environment(n: int, tmp: str) -> tuple[str, dict]:
    work = os.path.join(tmp, f"work-{n}")
    home = os.path.join(tmp, "home")
    os.makedirs(home, exist_ok=True)
    return work, {"GITML_REPO": work, "HOME": home, "PYTHONPATH": REPO_ROOT}


def measure_reads(n: int, tmp: str, *, remotes: bool = True) -> dict:
    """Search, ``gitml runs``/``show``, and push and fetch of every run, in a copy of
    the cached repository (kept for the steps that write)."""
    out: dict = {"n": n}
    work, env = environment(n, tmp)
    work_copy(cached_repo(n), work)
    searches = []
    for _ in range(3):  # each a first call in a fresh process: the median of 3 (one varies by 2x here)
        secs, rss, text = timed([sys.executable, "-c", SEARCH], work, env)
        searches.append({**json.loads(text.strip().splitlines()[-1]), "rss_mb": rss})
    out["search"] = sorted(searches, key=lambda s: s["first_s"])[1]
    for step, args in (("runs", ["runs", "-n", "20"]), ("show", ["show", "run-5"])):
        runs = [timed_cpu([*GITML, *args], work, env) for _ in range(3)]  # the median of 3
        secs, cpu, rss, _ = sorted(runs)[1]
        out[step] = {"s": secs, "cpu_s": cpu, "rss_mb": rss}
    # remotes: all runs pushed to an empty bare repository, fetched into a fresh one
    for tool in ("git", "gitml") if remotes else ():
        bare = os.path.join(tmp, f"remote-{tool}-{n}.git")
        subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        args = ["git", "push", "-q", bare, "refs/gitml/*:refs/gitml/*"] if tool == "git" else [*GITML, "push", bare]
        secs, rss, _ = timed(args, work, env)
        out[f"push_{tool}"] = {"s": secs, "rss_mb": rss}
        clone = os.path.join(tmp, f"clone-{tool}-{n}")
        subprocess.run(["git", "init", "-q", clone], check=True)
        args = ["git", "fetch", "-q", bare, "refs/gitml/*:refs/gitml/*"] if tool == "git" else [*GITML, "fetch", bare]
        secs, rss, _ = timed(args, clone, {**env, "GITML_REPO": clone})
        out[f"fetch_{tool}"] = {"s": secs, "rss_mb": rss}
        shutil.rmtree(clone)
    return out


SWEEP_VERSION = 2  # bump when what the sweep builds changes (2: its packs settled at its end)


def cached_sweep(n: int) -> str:
    """A repository of ``n`` runs made by one process's fluent loop (W2), built once."""
    path = os.path.join(CACHE, f"sweep-{n}-v{SWEEP_VERSION}")
    if not os.path.exists(os.path.join(path, ".done")):
        shutil.rmtree(path, ignore_errors=True)
        print(f"sweeping {n} runs in one process into {path} (once) ...", file=sys.stderr, flush=True)
        secs, cpu, rss, text = timed_cpu(
            [sys.executable, WORKLOADS_PY, "gitml", "w2", "--dir", path, "--n", str(n)], HERE, {"PYTHONPATH": REPO_ROOT}
        )
        with open(os.path.join(path, ".done"), "w") as f:
            json.dump(
                {
                    "build_s": secs,
                    "cpu_s": cpu,
                    "rss_mb": rss,
                    "w2": json.loads(text.strip().splitlines()[-1]),
                    "load": os.getloadavg()[1],  # the 5-minute load average: the sweep lasts many
                },
                f,
            )
    return path


def repo_shape(path: str) -> dict:
    """Packs, loose run refs, objects and snapshot segments of a repository."""
    import sqlite3

    counts = dict(
        line.split(": ")
        for line in subprocess.run(
            ["git", "count-objects", "-v"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    loose = sum(len(files) for _root, _dirs, files in os.walk(os.path.join(path, ".git", "refs", "gitml", "runs")))
    db = sqlite3.connect(os.path.join(path, ".git", "gitml", "index.sqlite3"))
    try:
        segments = db.execute("SELECT count(*) FROM snapshot WHERE name = 'refs'").fetchone()[0]
    finally:
        db.close()
    journals = len(os.listdir(os.path.join(path, ".git", "gitml", "journal")))
    return {
        "packs": int(counts["packs"]),
        "pack_mb": int(counts["size-pack"]) / 1024,
        "objects": int(counts["in-pack"]) + int(counts["count"]),
        "loose_refs": loose,
        "segments": segments,
        "journals": journals,
    }


def measure_sweep(n: int, tmp: str, *, remotes: bool = True) -> dict:
    """The first commands after a sweep of ``n`` runs in one process, each on its own copy of
    what the sweep left, right after it and again in the next process."""
    source = cached_sweep(n)
    with open(os.path.join(source, ".done")) as f:
        out: dict = {"n": n, "shape": repo_shape(source), "build": json.load(f)}
    work, env = environment(n, tmp)
    shutil.rmtree(work, ignore_errors=True)
    work_copy(source, work)
    searches = []
    for _ in range(2):  # right after the sweep, then the next process
        secs, rss, text = timed([sys.executable, "-c", SEARCH], work, env)
        searches.append({**json.loads(text.strip().splitlines()[-1]), "rss_mb": rss, "load": os.getloadavg()[0]})
    out["search_after"], out["search_next"] = searches
    out["shape_after_search"] = repo_shape(work)
    shutil.rmtree(work)
    work_copy(source, work)
    runs = [timed_cpu([*GITML, "runs", "-n", "20"], work, env) for _ in range(2)]
    load = os.getloadavg()[0]
    out["runs_after"], out["runs_next"] = ({"s": s_, "cpu_s": c, "rss_mb": r, "load": load} for s_, c, r, _ in runs)
    for tool in ("git", "gitml") if remotes else ():
        bare = os.path.join(tmp, f"remote-{tool}-{n}.git")
        subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        args = ["git", "push", "-q", bare, "refs/gitml/*:refs/gitml/*"] if tool == "git" else [*GITML, "push", bare]
        secs, cpu, rss, _ = timed_cpu(args, work, env)
        out[f"push_{tool}"] = {"s": secs, "cpu_s": cpu, "rss_mb": rss, "load": os.getloadavg()[0]}
        clone = os.path.join(tmp, f"clone-{tool}-{n}")
        subprocess.run(["git", "init", "-q", clone], check=True)
        args = ["git", "fetch", "-q", bare, "refs/gitml/*:refs/gitml/*"] if tool == "git" else [*GITML, "fetch", bare]
        secs, cpu, rss, _ = timed_cpu(args, clone, {**env, "GITML_REPO": clone})
        out[f"fetch_{tool}"] = {"s": secs, "cpu_s": cpu, "rss_mb": rss, "load": os.getloadavg()[0]}
        shutil.rmtree(clone)
        shutil.rmtree(bare)
    shutil.rmtree(work)
    return out


def sweep_table(results: list[dict]) -> str:
    head = ["step, after a sweep in one process"] + [f"{r['n']:,} runs" for r in results] + ["target"]
    rows = []

    def _gitml_rss(r):
        for k, v in r.items():
            if isinstance(v, dict) and "rss_mb" in v and k != "build" and not k.endswith("_git"):
                yield v["rss_mb"]

    def row(label, fn, target=""):
        rows.append([label] + [fn(r) for r in results] + [target])

    def load(step) -> str:
        return f"; load {step['load']:.1f}" if "load" in step else ""

    row(
        "sweep (W2 in one process, runs/s; per CPU s; peak MB)",
        lambda r: (
            f"{r['build']['w2']['runs_per_s']:.0f}; {r['build']['w2']['runs_per_cpu_s']:.0f}; "
            f"{r['build']['rss_mb']:.0f}{load(r['build'])}"
        ),
    )
    row(
        "  its start and end apart from the loop (s; the end settles the packs)",
        lambda r: f"{r['build']['build_s'] - r['build']['w2']['secs']:.1f}",
    )
    row(
        "  left: packs (MB); loose run refs; objects",
        lambda r: (
            f"{r['shape']['packs']} ({r['shape']['pack_mb']:.0f}); {r['shape']['loose_refs']}; "
            f"{r['shape']['objects']:,}"
        ),
    )
    row("  left: snapshot segments; journals", lambda r: f"{r['shape']['segments']}; {r['shape']['journals']}")
    row(
        "first search, right after (s; CPU s)",
        lambda r: (
            f"{r['search_after']['first_s']:.3f}; {r['search_after']['first_cpu_s']:.3f}{load(r['search_after'])}"
        ),
        "<= 0.5",
    )
    row(
        "  in the next process (s; CPU s)",
        lambda r: f"{r['search_next']['first_s']:.3f}; {r['search_next']['first_cpu_s']:.3f}{load(r['search_next'])}",
    )
    row(
        "repeated search, right after (s; CPU s)",
        lambda r: f"{r['search_after']['repeat_s']:.4f}; {r['search_after']['repeat_cpu_s']:.4f}",
        "<= 0.05",
    )
    row(
        "  import pandas, apart (s); rows found",
        lambda r: f"{r['search_after']['pandas_s']:.3f}; {r['search_after']['rows']}",
    )
    row(
        "gitml runs -n 20, right after (s; CPU s)",
        lambda r: f"{r['runs_after']['s']:.3f}; {r['runs_after']['cpu_s']:.3f}{load(r['runs_after'])}",
        "<= 0.3",
    )
    row(
        "  in the next process (s; CPU s)",
        lambda r: f"{r['runs_next']['s']:.3f}; {r['runs_next']['cpu_s']:.3f}{load(r['runs_next'])}",
    )
    for kind in ("push", "fetch") if all("push_git" in r for r in results) else ():
        row(
            f"{kind} all: gitml / git (s; CPU s)",
            lambda r, k=kind: (
                f"{r[f'{k}_gitml']['s']:.2f} / {r[f'{k}_git']['s']:.2f}"
                f" ({r[f'{k}_gitml']['s'] / r[f'{k}_git']['s']:.2f}x); "
                f"{r[f'{k}_gitml']['cpu_s']:.1f} / {r[f'{k}_git']['cpu_s']:.1f}"
                f" ({r[f'{k}_gitml']['cpu_s'] / r[f'{k}_git']['cpu_s']:.2f}x){load(r[f'{k}_gitml'])}"
            ),
            "<= 1.0x",
        )
    row(
        "peak memory, any gitml step after it (MB)",
        lambda r: f"{max(_gitml_rss(r)):.0f}",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def measure_creation(results: list[dict], tmp: str, rounds: int = 5) -> None:
    """W2 (``CREATED`` runs a process: what packing the loose refs costs, once per 1,024
    runs, is in it) in each size's repository, the sizes taken in turn round after round:
    a shared machine's speed drifts by up to 2x over minutes, and a size measured minutes
    after another would show that drift as growth. The median of ``rounds`` per size."""
    creations: dict[int, list[dict]] = {r["n"]: [] for r in results}
    for _ in range(rounds):
        for r in results:
            work, env = environment(r["n"], tmp)
            secs, rss, text = timed(
                [sys.executable, WORKLOADS_PY, "gitml", "w2", "--dir", work, "--n", str(CREATED)], work, env
            )
            creations[r["n"]].append({**json.loads(text.strip().splitlines()[-1]), "rss_mb": rss})
    first = creations[results[0]["n"]]
    for r in results:
        mine = creations[r["n"]]
        r["create"] = sorted(mine, key=lambda c: c["runs_per_s"])[len(mine) // 2]
        # each round's rate against the first size's in the same round: the machine's phase cancels out
        r["create_ratio"] = statistics.median(
            c["runs_per_s"] / f["runs_per_s"] for c, f in zip(mine, first, strict=False)
        )


def measure_push_of_new_runs(out: dict, tmp: str, *, remotes: bool = True) -> None:
    """10 new runs pushed to the remote that holds the others (the runs made by the
    creation step pushed first, untimed): the median of 3 rounds. Then the copy goes."""
    n = out["n"]
    work, env = environment(n, tmp)
    if remotes:
        remote = os.path.join(tmp, f"remote-gitml-{n}.git")
        subprocess.run([*GITML, "push", remote], cwd=work, env={**os.environ, **env}, check=True, capture_output=True)
        pushes = []
        for _ in range(3):  # 10 new runs made (untimed), then pushed
            subprocess.run(
                [sys.executable, WORKLOADS_PY, "gitml", "w2", "--dir", work, "--n", "10"],
                cwd=work,
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            secs, cpu, rss, text = timed_cpu([*GITML, "push", remote], work, env)
            assert "10 ref(s) pushed" in text or "11 ref(s) pushed" in text, text  # the runs (and their experiment)
            pushes.append({"s": secs, "cpu_s": cpu, "rss_mb": rss})
        out["push10"] = sorted(pushes, key=lambda p: p["s"])[1]
        for tool in ("git", "gitml"):
            shutil.rmtree(os.path.join(tmp, f"remote-{tool}-{n}.git"))
    shutil.rmtree(work)


def measure_mlflow(n: int, tmp: str) -> dict | None:
    if not os.path.exists(MLFLOW_PY):
        return None
    data = os.path.join(tmp, "mlflow")
    _, rss_w2, text = timed([MLFLOW_PY, WORKLOADS_PY, "mlflow-sqlite", "w2", "--dir", data, "--n", str(n)], tmp)
    w2 = json.loads(text.strip().splitlines()[-1])
    _, rss_w3, text = timed([MLFLOW_PY, WORKLOADS_PY, "mlflow-sqlite", "w3", "--dir", data, "--n", str(n)], tmp)
    w3 = json.loads(text.strip().splitlines()[-1])
    return {
        "n": n,
        "runs_per_s": w2["runs_per_s"],
        "first_s": w3["first_s"],
        "repeat_s": w3["repeat_s"],
        "pandas_s": w3["pandas_import_s"],
        "rss_mb": max(rss_w2, rss_w3),
    }


def table(results: list[dict], mlflow: dict | None) -> str:
    head = (
        ["step"] + [f"{r['n']:,} runs" for r in results] + ([f"MLflow sqlite, {mlflow['n']:,} runs"] if mlflow else [])
    )
    rows = []

    def row(label, fn, ml=""):
        rows.append([label] + [fn(r) for r in results] + ([ml] if mlflow else []))

    row(
        "create (W2, runs/s; per CPU s)",
        lambda r: f"{r['create']['runs_per_s']:.0f}; {r['create'].get('runs_per_cpu_s', 0):.0f}",
        mlflow and f"{mlflow['runs_per_s']:.0f}",
    )
    row(f"  create, rate / {results[0]['n']:,} runs' in the same round", lambda r: f"{r.get('create_ratio', 0):.0%}")
    row(
        "search, first call (s; CPU s)",
        lambda r: f"{r['search']['first_s']:.3f}; {r['search'].get('first_cpu_s', 0):.3f}",
        mlflow and f"{mlflow['first_s']:.3f}",
    )
    row(
        "search, repeated (s; CPU s)",
        lambda r: f"{r['search']['repeat_s']:.3f}; {r['search'].get('repeat_cpu_s', 0):.3f}",
        mlflow and f"{mlflow['repeat_s']:.3f}",
    )
    row(
        "  import pandas, apart (s)", lambda r: f"{r['search']['pandas_s']:.3f}", mlflow and f"{mlflow['pandas_s']:.3f}"
    )
    row("  rows found", lambda r: str(r["search"]["rows"]))
    row("gitml runs, newest 20 (s; CPU s)", lambda r: f"{r['runs']['s']:.3f}; {r['runs'].get('cpu_s', 0):.3f}")
    row("gitml show RUN (s; CPU s)", lambda r: f"{r['show']['s']:.3f}; {r['show'].get('cpu_s', 0):.3f}")
    for kind in ("push", "fetch") if all("push10" in r for r in results) else ():
        row(
            f"{kind} all: gitml / git (s)",
            lambda r, k=kind: (
                f"{r[f'{k}_gitml']['s']:.2f} / {r[f'{k}_git']['s']:.2f}"
                f" ({r[f'{k}_gitml']['s'] / r[f'{k}_git']['s']:.2f}x)"
            ),
        )
    if all("push10" in r for r in results):
        row("push 10 new runs (s)", lambda r: f"{r['push10']['s']:.3f}")
    row(
        "peak memory, any gitml step (MB)",
        lambda r: f"{max(v['rss_mb'] for k, v in r.items() if isinstance(v, dict) and not k.endswith('_git')):.0f}",
        mlflow and f"{mlflow['rss_mb']:.0f}",
    )
    if all("push_git" in r for r in results):
        row(
            "  git push / git fetch, apart (MB)",
            lambda r: f"{r['push_git']['rss_mb']:.0f} / {r['fetch_git']['rss_mb']:.0f}",
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help="1000,10000,100000 (per-process), 50000 (sweep)")
    ap.add_argument("--mlflow-runs", type=int, default=20000, help="0: no MLflow column")
    ap.add_argument(
        "--mlflow-json",
        help="MLflow's column from this file (written by --mlflow-only) "
        "instead of measuring it: its 20,000 runs take most of an hour here",
    )
    ap.add_argument("--mlflow-only", metavar="FILE", help="measure MLflow's column alone, into FILE")
    ap.add_argument("--skip-remotes", action="store_true", help="no push or fetch steps (the tracking side alone)")
    ap.add_argument(
        "--shape",
        choices=("per-process", "sweep"),
        default="per-process",
        help="per-process: repositories built 1,000 runs a process (the growth table); "
        "sweep: all runs made by one process, then the first commands after it (--sizes 50000)",
    )
    args = ap.parse_args()
    args.sizes = args.sizes or ("50000" if args.shape == "sweep" else "1000,10000,100000")
    if args.shape == "sweep":
        os.makedirs(CACHE, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gitml-scale-sweep-") as tmp:
            results = [measure_sweep(int(n), tmp, remotes=not args.skip_remotes) for n in args.sizes.split(",")]
        text = sweep_table(results) + "\n\nLoad average (1, 5, 15 min) at the end: %.1f %.1f %.1f on %d cores" % (
            *os.getloadavg(),
            os.cpu_count() or 0,
        )
        print(text)
        os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
        with open(os.path.join(HERE, "out", "scale-sweep.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(HERE, "out", "scale-sweep.json"), "w") as f:
            json.dump(results, f, indent=1)
        return
    if args.mlflow_only:
        with tempfile.TemporaryDirectory(prefix="gitml-scale-mlflow-") as tmp:
            with open(args.mlflow_only, "w") as f:
                json.dump(measure_mlflow(args.mlflow_runs, tmp), f)
        return
    os.makedirs(CACHE, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="gitml-scale-") as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            print(f"measuring {n} runs ...", file=sys.stderr, flush=True)
            results.append(measure_reads(n, tmp, remotes=not args.skip_remotes))
        print("measuring run creation, the sizes in turn ...", file=sys.stderr, flush=True)
        measure_creation(results, tmp)
        for r in results:
            measure_push_of_new_runs(r, tmp, remotes=not args.skip_remotes)
        if args.mlflow_json:
            with open(args.mlflow_json) as f:
                mlflow = json.load(f)
        else:
            mlflow = measure_mlflow(args.mlflow_runs, tmp) if args.mlflow_runs else None
    text = table(results, mlflow) + "\n\nLoad average (1, 5, 15 min) at the end: %.1f %.1f %.1f on %d cores" % (
        *os.getloadavg(),
        os.cpu_count() or 0,
    )
    print(text)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "scale.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(HERE, "out", "scale.json"), "w") as f:
        json.dump({"gitml": results, "mlflow": mlflow}, f, indent=1)


if __name__ == "__main__":
    main()

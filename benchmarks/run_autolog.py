"""Autolog's overhead: ``gitml.autolog()`` beside ``mlflow.autolog()`` on the same training script.

    bash benchmarks/setup_mlflow.sh               # once: MLflow 3.17.2 and scikit-learn in its peer venv
    python benchmarks/run_autolog.py              # quick: 10 fits, 3 repeats
    python benchmarks/run_autolog.py --fits 30 --repeats 5

The script: scikit-learn fits on breast_cancer (569 x 30), alternating a
StandardScaler + LogisticRegression pipeline (a classifier: metrics, confusion matrix, ROC and
PR plots) and a Ridge (a regressor) on the same data. Each tool runs it in its own
environment, in a fresh interpreter per repeat, with autolog on and off; one warm-up fit
(imports of matplotlib, the first run, MLflow's database) is left out, then the loop of
``--fits`` fits is timed. Overhead per fit = (time with autolog - time without) / fits; the
ratio is gitml's over MLflow's (below 1: gitml's autolog costs less). MLflow logs into
sqlite (its default store in 3.x), gitml into a git repository, each in a fresh folder.
The table goes to benchmarks/out/autolog.md and the figures to benchmarks/out/autolog.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import peers  # benchmarks/peers.py: where the peer venvs live

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")

SCRIPT = """
import sys, time, warnings
warnings.simplefilter("ignore")
import {lib} as lib
{setup}
if {autolog}:
    lib.autolog()
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_breast_cancer(return_X_y=True, as_frame=True)

def fit(i):
    if i % 2 == 0:
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    else:
        Ridge(alpha=1.0 + i).fit(X, y.astype(float))

fit(0)  # warm-up: imports, the first run, the store
start = time.perf_counter()
for i in range({fits}):
    fit(i)
print(time.perf_counter() - start)
"""


def _time(tool: str, autolog: bool, fits: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"gitml-bench-autolog-{tool}-") as folder:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if tool == "gitml":
            subprocess.run(["git", "init", "-q", folder], check=True)
            subprocess.run(
                [
                    "git",
                    "-C",
                    folder,
                    "-c",
                    "user.name=b",
                    "-c",
                    "user.email=b@b",
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    "init",
                ],
                check=True,
            )
            python, setup, env["PYTHONPATH"] = sys.executable, "", REPO_ROOT
        else:
            python, setup = peers.MLFLOW_PY, 'lib.set_tracking_uri("sqlite:///mlflow.db")'
            env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"})
        code = SCRIPT.format(lib=tool, setup=setup, autolog=autolog, fits=fits)
        done = subprocess.run([python, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"{tool} (autolog={autolog}) failed:\n{done.stderr[-3000:]}")
        return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.repeats):  # interleaved, so that a busy spell hits both tools
        for tool in ("gitml", "mlflow"):
            for autolog in (False, True):
                figures.setdefault(tool, {}).setdefault("on" if autolog else "off", []).append(
                    _time(tool, autolog, args.fits)
                )
    rows, overhead = [], {}
    for tool, times in figures.items():
        on, off = statistics.median(times["on"]), statistics.median(times["off"])
        overhead[tool] = (on - off) / args.fits
        rows.append(
            f"| {tool} | {off / args.fits * 1000:.1f} ms | {on / args.fits * 1000:.1f} ms | "
            f"{overhead[tool] * 1000:.1f} ms |"
        )
    ratio = overhead["gitml"] / overhead["mlflow"] if overhead["mlflow"] > 0 else float("nan")
    table = (
        "| tool | per fit, autolog off | per fit, autolog on | autolog's overhead per fit |\n"
        "| --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + f"\n\ngitml's overhead / MLflow's: **{ratio:.2f}x** ({args.fits} fits, median of {args.repeats} runs each)\n"
    )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "autolog.md"), "w") as f:
        f.write(table)
    with open(os.path.join(OUT, "autolog.json"), "w") as f:
        json.dump(
            {
                "fits": args.fits,
                "repeats": args.repeats,
                "seconds": figures,
                "overhead_per_fit": overhead,
                "ratio": ratio,
            },
            f,
            indent=1,
        )
    print(table)


if __name__ == "__main__":
    main()

"""Autolog's overhead: ``gitml.autolog()`` beside ``mlflow.autolog()`` on the same training script.

    bash benchmarks/setup_mlflow.sh               # once: MLflow 3.17.2 and scikit-learn in its peer venv
    python benchmarks/run_autolog.py              # quick: 10 fits, 3 repeats, every script
    python benchmarks/run_autolog.py --fits 30 --repeats 5 --cases keras,lightning

The scripts (``--cases``): ``sklearn``, scikit-learn fits on breast_cancer (569 x 30), alternating a
StandardScaler + LogisticRegression pipeline (a classifier: metrics, confusion matrix, ROC and
PR plots) and a Ridge (a regressor) on the same data; ``xgboost``, an ``XGBClassifier`` of 20
trees with an ``eval_set``; ``keras``, a 16-32-2 MLP for 5 epochs with a validation split
(``KERAS_BACKEND=torch``); ``lightning``, the same MLP as a LightningModule for 5 epochs with
validation (``mlflow.pytorch.autolog()`` and ``gitml.pytorch.autolog()``: MLflow 3.17.2's
``mlflow.autolog()`` fails to enable Lightning with ``lightning`` 2.6). Each tool runs it in its own
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
import os, sys, time, warnings
warnings.simplefilter("ignore")
os.environ["KERAS_BACKEND"] = "torch"
import {lib} as lib
{setup}
if {autolog}:
    {enable}
{body}
fit(0)  # warm-up: imports, the first run, the store
start = time.perf_counter()
for i in range({fits}):
    fit(i)
print(time.perf_counter() - start)
"""

CASES = {  # name -> (how autolog is enabled, the training code defining fit(i))
    "sklearn": (
        "lib.autolog()",
        """
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
""",
    ),
    "xgboost": (
        "lib.autolog()",
        """
import xgboost
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True, as_frame=True)

def fit(i):
    xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=i).fit(X, y, eval_set=[(X, y)], verbose=False)
""",
    ),
    "keras": (
        "lib.keras.autolog()",
        """
import keras, numpy as np
X = np.random.default_rng(0).normal(size=(512, 16)).astype("float32")
y = (X[:, 0] > 0).astype("int64")

def fit(i):
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, y, batch_size=64, epochs=5, validation_split=0.2, verbose=0)
""",
    ),
    "lightning": (
        "lib.pytorch.autolog()",
        """
import lightning, numpy as np, torch
X = torch.from_numpy(np.random.default_rng(0).normal(size=(512, 16)).astype("float32"))
y = (X[:, 0] > 0).long()
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=64)

class Net(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, i):
        loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss
    def validation_step(self, batch, i):
        self.log("val_loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)

def fit(i):
    lightning.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False).fit(Net(), loader, loader)
""",
    ),
}


def _time(tool: str, autolog: bool, fits: int, case: str = "sklearn") -> float:
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
        enable, body = CASES[case]
        if tool == "mlflow" and case in ("keras", "lightning"):
            setup += "; import mlflow.keras, mlflow.pytorch"
        elif case in ("keras", "lightning"):
            setup = "import gitml.keras, gitml.pytorch"
        code = SCRIPT.format(lib=tool, setup=setup, autolog=autolog, fits=fits, enable=enable, body=body)
        done = subprocess.run([python, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"{tool} (autolog={autolog}) failed:\n{done.stderr[-3000:]}")
        return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    figures: dict[str, dict[str, dict[str, list[float]]]] = {}
    for _ in range(args.repeats):  # interleaved, so that a busy spell hits both tools
        for case in cases:
            for tool in ("gitml", "mlflow"):
                for autolog in (False, True):
                    figures.setdefault(case, {}).setdefault(tool, {}).setdefault("on" if autolog else "off", []).append(
                        _time(tool, autolog, args.fits, case)
                    )
    rows, overhead, ratios = [], {}, {}
    for case, tools in figures.items():
        for tool, times in tools.items():
            on, off = statistics.median(times["on"]), statistics.median(times["off"])
            overhead[f"{case}/{tool}"] = (on - off) / args.fits
            rows.append(
                f"| {case} | {tool} | {off / args.fits * 1000:.1f} ms | {on / args.fits * 1000:.1f} ms | "
                f"{overhead[f'{case}/{tool}'] * 1000:.1f} ms |"
            )
        theirs = overhead[f"{case}/mlflow"]
        ratios[case] = overhead[f"{case}/gitml"] / theirs if theirs > 0 else float("nan")
    table = (
        "| script | tool | per fit, autolog off | per fit, autolog on | autolog's overhead per fit |\n"
        "| --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\ngitml's overhead / MLflow's: "
        + ", ".join(f"{case} **{ratio:.2f}x**" for case, ratio in ratios.items())
        + f" ({args.fits} fits, median of {args.repeats} runs each)\n"
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
                "ratio": ratios,
            },
            f,
            indent=1,
        )
    print(table)


if __name__ == "__main__":
    main()

"""A small real training script: logistic regression by gradient descent on synthetic data.

Run it inside any git repository; every run is recorded by gitml:

    python train.py --lr 0.5 --epochs 50
"""

import argparse
import os
import tempfile

import numpy as np

import gitml

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

rng = np.random.default_rng(args.seed)
X = rng.normal(size=(2000, 5))
true_w = np.array([1.5, -2.0, 0.5, 0.0, 1.0])
y = (X @ true_w + rng.normal(scale=0.5, size=2000) > 0).astype(float)
train, test = slice(0, 1600), slice(1600, None)

gitml.set_experiment("quickstart")
with gitml.start_run(run_name=f"lr-{args.lr}") as run:
    gitml.log_params(vars(args))
    w = np.zeros(5)
    for epoch in range(args.epochs):
        p = 1 / (1 + np.exp(-X[train] @ w))
        w -= args.lr * X[train].T @ (p - y[train]) / len(p)
        loss = -np.mean(y[train] * np.log(p + 1e-12) + (1 - y[train]) * np.log(1 - p + 1e-12))
        gitml.log_metric("train_loss", float(loss), step=epoch)
    predicted = (X[test] @ w) > 0
    accuracy = float(np.mean(predicted == y[test]))
    gitml.log_metric("test_accuracy", accuracy)
    gitml.set_tag("model", "logistic-regression")
    with tempfile.TemporaryDirectory() as out:  # the model: its weights and a summary
        np.save(os.path.join(out, "weights.npy"), w)
        with open(os.path.join(out, "README.txt"), "w") as f:
            f.write(f"logistic regression, 5 features, lr={args.lr}, {args.epochs} epochs\n")
        gitml.log_artifacts(out, "model")
    gitml.log_dict({"weights": [round(float(v), 4) for v in w], "test_accuracy": accuracy}, "summary.json")
    gitml.log_table(
        {"actual": y[test].astype(int).tolist(), "predicted": predicted.astype(int).tolist()}, "predictions.json"
    )
    print(f"run {run.info.run_id[:8]}: lr={args.lr} test_accuracy={accuracy:.3f}")

"""A small real training script: a linear classifier (scikit-learn's SGDClassifier) on the
breast-cancer dataset that ships with scikit-learn, one epoch at a time.

Run it inside any git repository; every run is recorded by gitml:

    python train.py --lr 0.01 --epochs 20
"""

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gitml
import gitml.sklearn

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

data = load_breast_cancer(as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=args.seed)
scaler = StandardScaler().fit(X_train)
classifier = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=args.lr, random_state=args.seed)

gitml.set_experiment("quickstart")
with gitml.start_run(run_name=f"lr-{args.lr}") as run:
    gitml.log_params(vars(args))
    for epoch in range(args.epochs):
        classifier.partial_fit(scaler.transform(X_train), y_train, classes=np.array([0, 1]))
        gitml.log_metric(
            "train_loss", log_loss(y_train, classifier.predict_proba(scaler.transform(X_train))), step=epoch
        )
    model = make_pipeline(scaler, classifier)
    accuracy = accuracy_score(y_test, model.predict(X_test))
    gitml.log_metric("test_accuracy", accuracy)
    gitml.set_tag("model", "sgd-logistic")
    gitml.sklearn.log_model(model, name="model", input_example=X_test.head(3))
    gitml.log_dict({"test_accuracy": accuracy, "features": list(data.feature_names)}, "summary.json")
    print(f"run {run.info.run_id[:8]}: lr={args.lr} test_accuracy={accuracy:.3f}")

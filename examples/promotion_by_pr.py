"""Promotion by pull request, end to end: two clones of one bare "team" remote.

    python examples/promotion_by_pr.py [FOLDER]        (default: a new temporary folder)

Alice trains a model and registers it; Bob proposes promoting it to production (a branch
changing .gitml/stages.yaml); CI checks the proposal and writes its report; the branch is
merged; CI on main applies it (the stage tag) and pushes; Bob resolves
models:/iris@production in his clone. FOLDER holds everything, never this clone.
"""

import os
import subprocess
import sys
import tempfile

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import gitml
import gitml.pyfunc
import gitml.sklearn
from gitml.cli.main import cli

CLONE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
root = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="gitml-promotion-")
if os.path.commonpath([root, CLONE]) == CLONE:
    sys.exit(f"promotion_by_pr: {root} is inside gitml's clone; name a folder elsewhere")
os.makedirs(root, exist_ok=True)
os.environ.setdefault("GITML_ARTIFACT_REMOTE", os.path.join(root, "team-artifacts"))  # the team's store


def git(where: str, *args: str) -> str:
    print(f"\n[{os.path.basename(where)}] $ git {' '.join(args)}")
    return subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, text=True).stdout


def gitml_cli(where: str, *args: str) -> None:
    print(f"\n[{os.path.basename(where)}] $ gitml {' '.join(args)}")
    cli(["-C", where, *args], standalone_mode=False)


team = os.path.join(root, "team.git")
alice, bob, ci = (os.path.join(root, n) for n in ("alice", "bob", "ci"))
subprocess.run(["git", "init", "-q", "--bare", "-b", "main", team], check=True)
git(root, "clone", "-q", team, alice)
with open(os.path.join(alice, "README.md"), "w") as f:
    f.write("# iris\n")
git(alice, "add", "README.md")
git(alice, "-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "-qm", "start")
git(alice, "push", "-q", "origin", "HEAD:main")

# Alice trains, logs the model, registers it and pushes runs and tags.
gitml.set_tracking_uri(alice)
X, y = load_iris(return_X_y=True, as_frame=True)
with gitml.start_run(run_name="iris-logreg") as run:
    model = LogisticRegression(max_iter=500).fit(X, y)
    gitml.log_metric("accuracy", model.score(X, y))
    gitml.sklearn.log_model(model, name="model", input_example=X.head(2))
gitml.flush()
gitml_cli(alice, "registry", "register", "iris", f"{run.info.run_id}:model")
gitml_cli(alice, "push", "origin")

# Bob proposes the promotion: a branch changing .gitml/stages.yaml, pushed for review.
git(root, "clone", "-q", team, bob)
gitml_cli(bob, "fetch", "origin")
gitml_cli(bob, "registry", "propose", "iris", "v1.0.0", "production")
branch = "gitml/promote/iris/production/v1.0.0"
git(bob, "push", "-q", "origin", branch)

# CI on the pull request: a fresh checkout of the branch checks it and writes the report.
git(root, "clone", "-q", "--branch", branch, team, ci)
git(ci, "fetch", "-q", "origin", "+refs/heads/main:refs/remotes/origin/main")
gitml_cli(ci, "fetch", "origin")
report = os.path.join(root, "registry-check.md")
gitml_cli(ci, "registry", "check", "--base", "origin/main", "--report", report)
with open(report) as f:
    print(f.read())

# The review passes: the branch is merged into main.
git(alice, "fetch", "-q", "origin")
git(alice, "merge", "-q", "--ff-only", f"origin/{branch}")
git(alice, "push", "-q", "origin", "HEAD:main")

# CI on main after the merge applies the promotion (the stage tag) and pushes it.
git(ci, "fetch", "-q", "origin")
git(ci, "checkout", "-q", "-B", "main", "origin/main")
gitml_cli(ci, "registry", "apply")
gitml_cli(ci, "push", "origin")

# Bob resolves the production model after a fetch; it is checked against its run first.
gitml_cli(bob, "fetch", "origin")
gitml.set_tracking_uri(bob)
production = gitml.pyfunc.load_model("models:/iris@production")
print(f"\nIn Bob's clone, models:/iris@production predicts {[int(p) for p in production.predict(X.head(3))]}.")

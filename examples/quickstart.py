"""The whole lifecycle on a fresh machine, with nothing but gitml and a temporary folder:
train a scikit-learn model on a dataset that ships with scikit-learn (three runs), log
params, metrics and the model, search and compare the runs, register the best model and
promote it, serve it over HTTP and query it, and share it all with a teammate through a
git remote and an artifact folder.

    python -m pip install -e ".[sklearn,serve,report]"
    python examples/quickstart.py [FOLDER]        (default: a new temporary folder)

Everything is written under FOLDER (a local repository, a bare "team" repository and a
"team" artifact folder): never inside this clone.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from dulwich import porcelain

import gitml as ml
from gitml.cli.main import cli

HERE = os.path.dirname(os.path.abspath(__file__))
CLONE = os.path.dirname(HERE)
root = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="gitml-quickstart-")
if os.path.commonpath([root, CLONE]) == CLONE:
    sys.exit(f"quickstart: {root} is inside gitml's clone; name a folder elsewhere")
if os.path.exists(os.path.join(root, "project")):
    shutil.rmtree(root)
folder = os.path.join(root, "project")
os.makedirs(folder)
print(f"Working in {root}")
AUTHOR = b"Quickstart <quickstart@example.com>"

# 1. A project: a git repository holding the training script.
shutil.copy(os.path.join(HERE, "train.py"), os.path.join(folder, "train.py"))
repo = porcelain.init(folder)
porcelain.add(repo, [os.path.join(folder, "train.py")])
porcelain.commit(repo, message=b"Add training script", author=AUTHOR, committer=AUTHOR)
repo.close()

# 2. Three training runs; the third with an uncommitted edit (recorded with the run).
env = {**os.environ, "PYTHONPATH": CLONE + os.pathsep + os.environ.get("PYTHONPATH", "")}
for lr in ("0.001", "0.01"):
    subprocess.run([sys.executable, "train.py", "--lr", lr], cwd=folder, env=env, check=True)
with open(os.path.join(folder, "train.py"), "a") as f:
    f.write("# tried a longer schedule\n")
subprocess.run([sys.executable, "train.py", "--lr", "0.1", "--epochs", "40"], cwd=folder, env=env, check=True)


def gitml(*args: str, where: str = folder) -> None:
    print(f"\n$ gitml {' '.join(args)}")
    cli(["-C", where, *args], standalone_mode=False)


# 3. What gitml recorded: the runs, a search, a comparison, a diff of the code, lineage, artifacts.
gitml("runs")
gitml("runs", "--filter", "metrics.test_accuracy > 0.9 and params.epochs = '40'")
gitml("compare", "lr-0.001", "lr-0.01", "lr-0.1", "-o", os.path.join(root, "report", "compare.md"))
with open(os.path.join(root, "report", "compare.md")) as f:
    print(f.read())
gitml("diff", "lr-0.001", "lr-0.1", "--code")
gitml("log", "lr-0.1", "-n", "3")
gitml("artifacts", "ls", "lr-0.1", "model")

# 4. Register the best run's model and promote it.
with ml.Client(folder) as client:
    best = client.search_runs(order_by=["metrics.test_accuracy DESC"], max_results=1)[0]
gitml("registry", "register", "cancer", f"{best.info.run_id}:model", "-m", "best of the quickstart")
gitml("registry", "promote", "cancer", "v1.0.0", "production")
gitml("registry", "show", "cancer")

# 5. Serve models:/cancer@production over HTTP (MLflow's scoring protocol) and query it.
server = subprocess.Popen(
    [sys.executable, "-m", "gitml", "serve", "-m", "models:/cancer@production", "--port", "0"],
    cwd=folder,
    env=env,
    stderr=subprocess.PIPE,
    text=True,
)
try:
    line = server.stderr.readline()  # "gitml serve: models:/... on http://127.0.0.1:PORT ..."
    url = next((w for w in line.split() if w.startswith("http://")), None)
    if url is None:
        sys.exit(f"quickstart: the server did not start: {line}{server.stderr.read()}")
    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer(as_frame=True).data.head(5)
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split")}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        print(f"\n$ curl -d '{{\"dataframe_split\": ...5 rows}}' {url}/invocations\n{response.read().decode()}")
finally:
    server.terminate()
    server.wait(timeout=30)

# 6. Share: the team's git remote and artifact store (here two folders), set in the
# committed config so that every clone uses the same store.
team = os.path.join(root, "team.git")
porcelain.init(team, bare=True).close()
gitml("config", "--committed", "artifacts.remote", "../team-artifacts")  # from the top of the work tree
with porcelain.open_repo_closing(folder) as repo:
    porcelain.add(repo, [os.path.join(folder, ".gitml", "config.yaml")])
    porcelain.commit(repo, message=b"Share artifacts in the team store", author=AUTHOR, committer=AUTHOR)
    branch = b"refs/heads/" + porcelain.active_branch(repo)
    porcelain.push(repo, team, [branch + b":" + branch], errstream=open(os.devnull, "wb"))
gitml("push", team)  # uploads the artifacts first, then the runs' refs and the registry's tags

teammate = os.path.join(root, "teammate")
porcelain.clone(team, teammate, errstream=open(os.devnull, "wb")).close()
gitml("pull", where=teammate)  # origin: the runs, the registry, and the artifacts from the team store
gitml("runs", where=teammate)

import gitml.pyfunc  # noqa: E402  (the Python API, in the teammate's clone)

ml.set_tracking_uri(teammate)
model = gitml.pyfunc.load_model("models:/cancer@production")  # checked against the run's hashes first
print(
    f"\nIn the teammate's clone, models:/cancer@production predicts {[int(p) for p in model.predict(rows)]} for 5 rows."
)
print(f"\nThe runs are git refs and the registry git tags: try `git -C {folder} for-each-ref refs/gitml refs/tags`.")

"""End to end on a fresh machine: a git repository, three training runs, search, compare,
artifacts, and sharing with a teammate through a git remote and an artifact folder.

    python examples/quickstart.py [FOLDER]        (default: ./gitml-quickstart)

It makes FOLDER/project a git repository holding examples/train.py, commits it,
trains three times (the third with an uncommitted edit), then shows what gitml
recorded: the runs table, a search, the diff of two runs, a run's lineage and its
artifacts. Then it shares them: FOLDER/team.git stands for the team's git host and
FOLDER/team-artifacts for its object store; a teammate's clone pulls the runs and
reads a model.
"""

import os
import shutil
import subprocess
import sys

from dulwich import porcelain

from gitml.cli.main import cli

HERE = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "gitml-quickstart")
if os.path.exists(root):
    shutil.rmtree(root)
folder = os.path.join(root, "project")
os.makedirs(folder)
shutil.copy(os.path.join(HERE, "train.py"), os.path.join(folder, "train.py"))
repo = porcelain.init(folder)
porcelain.add(repo, [os.path.join(folder, "train.py")])
porcelain.commit(repo, message=b"Add training script", author=b"Quickstart <quickstart@example.com>",
                 committer=b"Quickstart <quickstart@example.com>")
repo.close()

env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
for lr in ("0.05", "0.5"):
    subprocess.run([sys.executable, "train.py", "--lr", lr], cwd=folder, env=env, check=True)
with open(os.path.join(folder, "train.py"), "a") as f:
    f.write("# tried a longer schedule\n")  # an uncommitted edit: recorded with the run
subprocess.run([sys.executable, "train.py", "--lr", "1.0", "--epochs", "60"], cwd=folder, env=env, check=True)


def gitml(*args: str, where: str = folder) -> None:
    print(f"\n$ gitml {' '.join(args)}")
    cli(["-C", where, *args], standalone_mode=False)


gitml("runs")
gitml("runs", "--filter", "metrics.test_accuracy > 0.8 and params.epochs = '60'")
gitml("diff", "lr-0.05", "lr-1.0", "--code")
gitml("log", "lr-1.0", "-n", "3")
gitml("artifacts", "ls", "lr-1.0", "model")

# Sharing: the team's git remote and artifact store (here two folders), set in the
# committed config so that every clone uses the same store.
team = os.path.join(root, "team.git")
porcelain.init(team, bare=True).close()
gitml("config", "--committed", "artifacts.remote", "../team-artifacts")  # from the top of the work tree
with porcelain.open_repo_closing(folder) as repo:
    porcelain.add(repo, [os.path.join(folder, ".gitml", "config.yaml")])
    porcelain.commit(repo, message=b"Share artifacts in the team store", author=b"Quickstart <quickstart@example.com>",
                     committer=b"Quickstart <quickstart@example.com>")
    branch = b"refs/heads/" + porcelain.active_branch(repo)
    porcelain.push(repo, team, [branch + b":" + branch], errstream=open(os.devnull, "wb"))
gitml("push", team)  # uploads the artifacts first, then the runs' refs

teammate = os.path.join(root, "teammate")
porcelain.clone(team, teammate, errstream=open(os.devnull, "wb")).close()
gitml("pull", where=teammate)  # origin: the runs, and their artifacts from the team store
gitml("runs", where=teammate)

import gitml as ml  # noqa: E402  (the Python API, in the teammate's clone)

with ml.Client(teammate) as client:
    best = client.search_runs(order_by=["metrics.test_accuracy DESC"], max_results=1)[0]
    summary = client.artifacts.read_bytes(best.info.run_id, "summary.json").decode()
    print(f"\nIn the teammate's clone, the best run {best.info.run_id[:8]} ({best.info.run_name}): {summary}")
print(f"\nThe runs are git refs: try `git -C {folder} for-each-ref refs/gitml`.")

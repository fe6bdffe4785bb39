"""End to end on a fresh machine: a git repository, three training runs, search, compare.

    python examples/quickstart.py [FOLDER]        (default: ./gitml-quickstart)

It makes FOLDER a git repository holding examples/train.py, commits it, trains
three times (the third with an uncommitted edit), then shows what gitml
recorded: the runs table, a search, the diff of two runs and a run's lineage.
"""

import os
import shutil
import subprocess
import sys

from dulwich import porcelain

from gitml.cli.main import cli

HERE = os.path.dirname(os.path.abspath(__file__))
folder = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "gitml-quickstart")
if os.path.exists(folder):
    shutil.rmtree(folder)
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


def gitml(*args: str) -> None:
    print(f"\n$ gitml {' '.join(args)}")
    cli(["-C", folder, *args], standalone_mode=False)


gitml("runs")
gitml("runs", "--filter", "metrics.test_accuracy > 0.8 and params.epochs = '60'")
gitml("diff", "lr-0.05", "lr-1.0", "--code")
gitml("log", "lr-1.0", "-n", "3")
print(f"\nThe runs are git refs in {folder}: try `git -C {folder} for-each-ref refs/gitml`.")

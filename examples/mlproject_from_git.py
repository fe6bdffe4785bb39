"""An MLproject run from a git URL at a tag: `gitml run file://.../projects.git --version v1.0`.

    python examples/mlproject_from_git.py [FOLDER]        (default: a new temporary folder)

FOLDER/projects.git stands for a team's project repository (an MLproject with a typed
parameter, tagged v1.0, then changed on main); FOLDER/experiments is where the run is
recorded. The run's parent is the project's commit at the tag, so `gitml show` and
`gitml log` show exactly which code ran. FOLDER holds everything, never this clone.
"""

import os
import subprocess
import sys
import tempfile

from gitml.cli.main import cli

CLONE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
root = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="gitml-mlproject-")
if os.path.commonpath([root, CLONE]) == CLONE:
    sys.exit(f"mlproject_from_git: {root} is inside gitml's clone; name a folder elsewhere")
os.makedirs(root, exist_ok=True)
IDENTITY = ["-c", "user.name=Team", "-c", "user.email=team@example.com"]


def git(where: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, text=True).stdout


def gitml(where: str, *args: str) -> None:
    print(f"\n$ gitml {' '.join(args)}")
    cli(["-C", where, *args], standalone_mode=False)


# The project: an MLproject with a typed parameter, tagged v1.0, then changed on main.
source = os.path.join(root, "project-src")
os.makedirs(source, exist_ok=True)
git(source, "init", "-q", "-b", "main")
with open(os.path.join(source, "MLproject"), "w") as f:
    f.write(
        "name: fit-line\n"
        "entry_points:\n"
        "  main:\n"
        "    parameters:\n"
        "      slope: {type: float, default: 1.0}\n"
        "    command: python fit.py --slope {slope}\n"
    )
with open(os.path.join(source, "fit.py"), "w") as f:
    f.write(
        "import argparse, gitml\n"
        "p = argparse.ArgumentParser(); p.add_argument('--slope', type=float); a = p.parse_args()\n"
        "with gitml.start_run():\n"  # GITML_RUN_ID, set by gitml run, makes this the project's run
        "    for step in range(5):\n"
        "        gitml.log_metric('error', abs(a.slope - 2.0) / (step + 1), step=step)\n"
        "    gitml.set_tag('code', 'v1.0')\n"
    )
git(source, "add", ".")
git(source, *IDENTITY, "commit", "-qm", "fit a line")
git(source, *IDENTITY, "tag", "-a", "v1.0", "-m", "first release")
with open(os.path.join(source, "fit.py"), "a") as f:
    f.write("raise SystemExit('main is work in progress')\n")
git(source, *IDENTITY, "commit", "-qam", "work in progress")
projects = os.path.join(root, "projects.git")
subprocess.run(["git", "clone", "-q", "--bare", source, projects], check=True)

# The experiments repository runs the tagged code: parameters are typed, the run recorded here.
experiments = os.path.join(root, "experiments")
os.makedirs(experiments, exist_ok=True)
git(experiments, "init", "-q")
url = "file://" + projects
env_path = os.environ.get("PYTHONPATH", "")
os.environ["PYTHONPATH"] = CLONE + (os.pathsep + env_path if env_path else "")  # gitml importable by fit.py
gitml(
    experiments, "run", url, "--version", "v1.0", "-P", "slope=1.5", "--run-name", "slope-1.5", "--env-manager", "local"
)
gitml(experiments, "show", "slope-1.5")
gitml(experiments, "log", "slope-1.5", "-n", "2")

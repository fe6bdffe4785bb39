"""`gitml run` of a project in a virtualenv: the first run (which builds the
environment) beside the second (which reuses it), and the local environment.

    python benchmarks/run_projects.py [--repeat 3] [--requirements "six"]

Each repeat uses a fresh cache (GITML_CACHE_DIR) and a fresh recording repository;
the project's script starts gitml, logs one metric and ends. Times are wall clock of
the whole `gitml run` process, median over --repeat. --requirements adds pip
requirements to python_env.yaml (the default, none, keeps it offline; the venv then
has no pip). The table goes to benchmarks/out/projects.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")

MLPROJECT = """\
name: bench
python_env: python_env.yaml
entry_points:
  main:
    parameters: {alpha: {type: float, default: 0.1}}
    command: "python train.py {alpha}"
"""
TRAIN = "import sys, gitml\nwith gitml.start_run():\n    gitml.log_metric('alpha', float(sys.argv[1]))\n"


def _git(cwd: str, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _project(root: str, requirements: list[str]) -> str:
    folder = os.path.join(root, "recording")
    os.makedirs(os.path.join(folder, "proj"))
    _git(folder, "init", "-q")
    with open(os.path.join(folder, "proj", "MLproject"), "w") as f:
        f.write(MLPROJECT)
    with open(os.path.join(folder, "proj", "train.py"), "w") as f:
        f.write(TRAIN)
    deps = "".join(f"\n  - {r}" for r in requirements)
    with open(os.path.join(folder, "proj", "python_env.yaml"), "w") as f:
        f.write(f'python: "{sys.version_info.major}.{sys.version_info.minor}"\ndependencies:{deps or " []"}\n')
    _git(folder, "add", ".")
    _git(folder, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "project")
    return folder


def _timed(folder: str, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", "run", "proj", *args],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requirements", default="", help="comma-separated pip requirements")
    args = parser.parse_args()
    requirements = [r for r in args.requirements.split(",") if r]
    rows: dict[str, list[float]] = {
        "virtualenv, first run (builds)": [],
        "virtualenv, second run (reuses)": [],
        "local": [],
    }
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="gitml-bench-projects-") as root:
            folder = _project(root, requirements)
            env = {**os.environ, "PYTHONPATH": REPO_ROOT, "GITML_CACHE_DIR": os.path.join(root, "cache")}
            rows["virtualenv, first run (builds)"].append(_timed(folder, env))
            rows["virtualenv, second run (reuses)"].append(_timed(folder, env))
            rows["local"].append(_timed(folder, env, "--env-manager", "local"))
    lines = [
        f"`gitml run` of a one-metric project, median of {args.repeat} "
        f"(requirements: {', '.join(requirements) or 'none'})",
        "",
        "| run | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {statistics.median(times):.2f} |" for name, times in rows.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "projects.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

"""MLflow's own tracking and registry tests, on SQLite and on a ``gitml:`` repository.

    python benchmarks/mlflow_conformance.py /work/shared/mlflow-tests [--files F ...]
        [--stores sqlite gitml] [--timeout 120] [--json out.json [--resume]] [--write-differences]

``TESTS_DIR`` holds a snapshot of MLflow's ``tests/`` and its ``pyproject.toml`` (never copied
into this project). Each test file runs in the MLflow venv (``benchmarks/peers.py``), once per
store, with the pytest plugin ``benchmarks/mlflow_conformance_plugin.py``: on ``gitml`` it
makes MLflow's ``db_uri`` fixture (the tracking and registry URI of every test) a fresh
``gitml:`` repository. The run happens in a temporary folder holding symlinks to
``TESTS_DIR/tests`` and its ``pyproject.toml`` (MLflow's conftest writes its reports relative
to the working directory). Missing test dependencies are pip-installed into the MLflow venv.

It prints a table (passed / failed per file and store) and compares the tests that pass on
SQLite and not on gitml with ``benchmarks/mlflow_expected_differences.txt`` (one line per test:
``<node id> -- <reason>``): an unexpected difference, or a listed test that now passes on both,
is reported (exit status 1). ``--write-differences`` rewrites that file from this run, keeping the
reasons already written and giving a new difference the first line of its failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.peers import MLFLOW_VERSION  # noqa: E402
from tests.mlflow_venv import ensure_mlflow_python, plugin_pythonpath  # noqa: E402

FILES = [
    "tests/tracking/_tracking_service/test_tracking_service_client.py",
    "tests/tracking/test_client.py",
    "tests/tracking/fluent/test_fluent.py",
    "tests/tracking/test_tracking.py",
    "tests/tracking/_model_registry/test_model_registry_fluent.py",
    "tests/tracking/test_model_registry.py",
    "tests/test_runs.py",
    "tests/tracking/test_log_image.py",
    "tests/tracking/test_log_figure.py",
    "tests/tracking/test_rest_tracking.py",
]
# import name -> pip name: what MLflow's test files import beyond MLflow itself
EXTRAS = {
    "pytest": "pytest",
    "pytest_timeout": "pytest-timeout",
    "pytest_asyncio": "pytest-asyncio",
    "polars": "polars",
    "PIL": "pillow",
    "matplotlib": "matplotlib",
    "plotly": "plotly",
    "psutil": "psutil",
}
DIFFERENCES = os.path.join(HERE, "mlflow_expected_differences.txt")


def install_extras(python: str) -> None:
    check = (
        "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    missing = subprocess.run([python, "-c", check, *EXTRAS], capture_output=True, text=True, check=True).stdout.split()
    if missing:
        print(f"installing into the MLflow venv: {', '.join(EXTRAS[m] for m in missing)}", flush=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *(EXTRAS[m] for m in missing)], check=True)


def run_file(python: str, tests_dir: str, test_file: str, store: str, timeout: int, pythonpath: str) -> dict[str, dict]:
    """``{node id: {"outcome": passed|failed|error|skipped, "message": first line}}``."""
    with tempfile.TemporaryDirectory(prefix="mlflow-conformance-") as work:
        os.symlink(os.path.join(tests_dir, "tests"), os.path.join(work, "tests"))
        os.symlink(os.path.join(tests_dir, "pyproject.toml"), os.path.join(work, "pyproject.toml"))
        report = os.path.join(work, "report.xml")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
        env.update(
            PYTHONPATH=pythonpath,
            GITML_CONFORMANCE_STORE=store,
            MLFLOW_DISABLE_TELEMETRY="true",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
            GIT_PYTHON_REFRESH="quiet",
        )
        command = [
            python,
            "-m",
            "pytest",
            test_file,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "benchmarks.mlflow_conformance_plugin",
            "-o",
            "addopts=",
            f"--timeout={timeout}",
            f"--junitxml={report}",
        ]
        subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        if not os.path.exists(report):
            return {f"{test_file}::<collection>": {"outcome": "error", "message": "pytest wrote no report"}}
        return parse_report(report, test_file)


def parse_report(path: str, test_file: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{test_file}::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or child.text or "").strip().splitlines()[0:1]
                message = message[0][:200] if message else ""
                break
        if outcome == "error" and name in out and out[name]["outcome"] == "passed":
            outcome = "error"  # a teardown error after a pass: counted as an error
        out[name] = {"outcome": outcome, "message": message}
    return out


def read_differences() -> dict[str, str]:
    found: dict[str, str] = {}
    if os.path.exists(DIFFERENCES):
        for line in open(DIFFERENCES, encoding="utf-8"):
            if line.strip() and not line.startswith("#"):
                node, _, reason = line.rstrip("\n").partition(" -- ")
                found[node.strip()] = reason.strip()
    return found


def write_differences(differ: dict[str, str], known: dict[str, str]) -> None:
    header = (
        "# MLflow's own tests that pass on SQLite and not on a gitml: repository\n"
        "# (benchmarks/mlflow_conformance.py), one per line: <node id> -- <reason>\n"
    )
    lines = [f"{node} -- {known.get(node) or differ[node]}\n" for node in sorted(differ)]
    with open(DIFFERENCES, "w", encoding="utf-8") as f:
        f.write(header + "".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests_dir")
    parser.add_argument("--files", nargs="+", default=FILES)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "gitml"], choices=["sqlite", "gitml"])
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test")
    parser.add_argument("--json", help="write every test's outcome here")
    parser.add_argument("--resume", action="store_true", help="keep the files --json already has")
    parser.add_argument("--write-differences", action="store_true")
    args = parser.parse_args(argv)
    tests_dir = os.path.abspath(args.tests_dir)
    python = ensure_mlflow_python()
    install_extras(python)
    pythonpath = plugin_pythonpath()
    results: dict[str, dict[str, dict]] = {}
    if args.resume and args.json and os.path.exists(args.json):
        with open(args.json) as f:
            results = json.load(f)
    rows = []
    for test_file in args.files:
        row = [test_file]
        for store in args.stores:
            started = time.monotonic()
            done = {n: r for n, r in results.get(store, {}).items() if n.startswith(test_file + "::")}
            found = done or run_file(python, tests_dir, test_file, store, args.timeout, pythonpath)
            results.setdefault(store, {}).update(found)
            if args.json:  # after each file: a long run interrupted keeps what it ran (--resume)
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1, sort_keys=True)
            count = {
                o: sum(1 for r in found.values() if r["outcome"] == o) for o in ("passed", "failed", "error", "skipped")
            }
            row.append(f"{count['passed']} / {count['failed'] + count['error']}")
            print(f"{test_file} [{store}]: {count} in {time.monotonic() - started:.0f}s", flush=True)
        rows.append(row)
    print(f"\nMLflow {MLFLOW_VERSION}'s tests (passed / failed+error per file)\n")
    print("| file | " + " | ".join(args.stores) + " |")
    print("|---|" + "---|" * len(args.stores))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if set(args.stores) != {"sqlite", "gitml"}:
        return 0
    sqlite, gitml = results["sqlite"], results["gitml"]
    differ = {
        node: gitml.get(node, {"message": "not run on gitml"})["message"] or gitml.get(node, {}).get("outcome", "")
        for node, r in sqlite.items()
        if r["outcome"] == "passed" and gitml.get(node, {}).get("outcome") != "passed"
    }
    known = read_differences()
    ran = {node for node in sqlite if any(node.startswith(f + "::") for f in args.files)}
    unexpected = sorted(set(differ) - set(known))
    fixed = sorted(n for n in known if n in ran and n not in differ)
    print(
        f"\n{len(differ)} tests pass on sqlite and not on gitml; {len(unexpected)} not in "
        f"{os.path.relpath(DIFFERENCES, ROOT)}; {len(fixed)} listed there now pass"
    )
    for node in unexpected:
        print(f"  unexpected: {node} -- {differ[node]}")
    for node in fixed:
        print(f"  now passes: {node}")
    if args.write_differences:
        kept = {n: r for n, r in known.items() if n not in ran}
        write_differences({**kept, **differ}, known)
    return 1 if unexpected or fixed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Clones as CI makes them, of a repository served by ``git daemon`` and by ``git http-backend``
behind an HTTP server on loopback: a shallow clone (``--depth 1``: the runs' source commits are
not in it) and a partial clone (``--filter=blob:none``: the registered model's files are not in
it, the served repository allowing filters). Each fetches the runs, loads the registered model,
logs a run of its own and pushes it; the team's clone then fetches that run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gitml.cli.main import cli
from tests.conftest import ROOT, git
from tests.store.test_http_backend import http_backend
from tests.store.test_remote import for_each_ref, git_daemon

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # about 30 s each here: a model trained, two clones

LOG = """
import json, sys
import gitml, gitml.sklearn
from gitml.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=500, C=float(sys.argv[1])).fit(X, y)
with gitml.start_run(run_name=sys.argv[2]) as run:
    gitml.log_param("C", sys.argv[1])
    gitml.log_metric("acc", float(model.score(X, y)))
    gitml.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)),
                            registered_model_name=sys.argv[3] if len(sys.argv) > 3 else None)
print(json.dumps({"run": run.info.run_id, "expected": model.predict(X.iloc[:5]).tolist()}))
"""


def _log(cwd: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOG, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gitml(repo: Path, *args: str, code: int = 0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *args])
    assert result.exit_code == code, result.output
    return result


@contextlib.contextmanager
def _served(kind: str, base: Path, name: str):
    if kind == "git":
        with git_daemon(base) as port:
            yield f"git://127.0.0.1:{port}/{name}"
    else:
        with http_backend(base) as (root, _handler):
            yield f"{root}/{name}"


@pytest.fixture
def team(repo, tmp_path):
    """The team's repository: a model registered as ``iris`` from a run on the first commit,
    two commits after it, all pushed to a bare repository that allows filters."""
    trained = _log(repo, "1.0", "first", "iris")
    for i in range(2):
        (repo / "train.py").write_text(f"print('training {i}')\n")
        git(repo, "commit", "-qam", f"change {i}")
    base = tmp_path / "served"
    base.mkdir()
    bare = base / "team.git"
    git(base, "init", "-q", "--bare", bare.name)
    git(bare, "config", "uploadpack.allowFilter", "true")
    git(bare, "config", "http.receivepack", "true")
    git(repo, "push", "-q", str(bare), "main")
    _gitml(repo, "push", str(bare))
    source = git(repo, "rev-parse", "main~2").strip()
    return {
        "repo": repo,
        "base": base,
        "bare": bare,
        "run": trained["run"],
        "expected": trained["expected"],
        "source": source,
    }


def _input(tmp_path: Path) -> str:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True, as_frame=True)
    path = tmp_path / "rows.csv"
    X.iloc[:5].to_csv(path, index=False)
    return str(path)


def _missing(clone: Path, sha: str) -> bool:
    return (
        subprocess.run(
            ["git", "cat-file", "-e", sha],
            cwd=clone,
            capture_output=True,
            env={"GIT_NO_LAZY_FETCH": "1", "PATH": "/usr/bin:/bin"},
        ).returncode
        != 0
    )


def _use_clone(team, clone: Path, url: str, tmp_path: Path) -> None:
    """What a CI job does in ``clone``: fetch the runs, score with the registered model and
    with the run's, log a run and push it; the team's clone then fetches it."""
    _gitml(clone, "fetch", url)
    assert for_each_ref(clone, "refs/gitml/runs") == for_each_ref(team["bare"], "refs/gitml/runs")
    rows = _input(tmp_path)
    for uri in ("models:/iris/1", f"runs:/{team['run']}/model"):
        result = _gitml(clone, "predict", "-m", uri, "-i", rows)
        assert json.loads(result.output)["predictions"] == team["expected"]
    assert team["run"][:8] in _gitml(clone, "runs").output
    assert "first" in _gitml(clone, "show", team["run"]).output
    mine = _log(clone, "0.5", "ci")
    result = _gitml(clone, "push", url)
    assert "1 ref(s) pushed" in result.output
    _gitml(clone, "push", url)  # again: the fetched run (its source commit cut away, maybe) is not a problem
    _gitml(team["repo"], "fetch", url)
    result = _gitml(team["repo"], "predict", "-m", f"runs:/{mine['run']}/model", "-i", rows)
    assert json.loads(result.output)["predictions"] == mine["expected"]
    git(team["bare"], "fsck", "--strict")


@pytest.mark.parametrize("kind", ["git", "http"])
def test_a_shallow_clone_fetches_runs_loads_models_and_logs_runs(team, tmp_path, kind):
    """``--depth 1`` and the runs fetched as shallow as the branch (git's own fetch of
    refs/gitml/* at depth 1): the first run's commit is there, its source commit is not."""
    clone = tmp_path / "shallow"
    with _served(kind, team["base"], "team.git") as url:
        git(tmp_path, "clone", "-q", "--depth", "1", url, str(clone))
        git(clone, "fetch", "-q", "--depth", "1", "origin", "+refs/gitml/*:refs/gitml/*")
        assert _missing(clone, team["source"]) and not _missing(
            clone,
            for_each_ref(clone)[
                next(ref for ref in for_each_ref(clone) if ref.endswith(team["run"].encode()))
            ].decode(),
        )
        _use_clone(team, clone, url, tmp_path)
    import gitml

    with gitml.Client(clone) as client:  # the run reads whole; its history stops at the cut
        assert client.get_run(team["run"]).data.params == {"C": "1.0"}


@pytest.mark.parametrize("kind", ["git", "http"])
def test_a_partial_clone_fetches_the_blobs_it_lacks_from_its_remote(team, tmp_path, kind):
    clone = tmp_path / "partial"
    with _served(kind, team["base"], "team.git") as url:
        git(tmp_path, "clone", "-q", "--filter=blob:none", url, str(clone))
        assert git(clone, "config", "remote.origin.promisor").strip() == "true"
        tree = git(clone, "rev-parse", "refs/tags/iris@v1.0.0^{}:.gitml/run/artifacts/model").strip()
        pickle = next(
            line.split()[2] for line in git(clone, "ls-tree", tree).splitlines() if line.endswith("model.pkl")
        )
        assert _missing(clone, pickle)  # the registered model's file is on the remote only
        _use_clone(team, clone, url, tmp_path)
        assert not _missing(clone, pickle)  # fetched from the clone's remote when the model loaded
    git(clone, "fsck", "--connectivity-only")

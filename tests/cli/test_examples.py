"""The examples run: the README's first command (the whole lifecycle), an MLproject from a
git URL at a tag, a promotion by pull request."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, git


@pytest.mark.timeout(300)
def test_quickstart_runs_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), str(tmp_path / "qs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "lr-0.001" in out and "lr-0.1" in out and "+# tried a longer schedule" in out
    assert "model/MLmodel" in out and "(baseline)" in out and "★" in out  # gitml compare's report
    assert (tmp_path / "qs" / "report" / "compare-train_loss.png").exists()
    assert "cancer: production now holds v1.0.0" in out
    assert '{"predictions": [' in out  # gitml serve answered
    assert "6 ref(s) pushed" in out  # three runs, their experiment, a version and a stage tag
    assert "In the teammate's clone, models:/cancer@production predicts [" in out
    for repo in ("project", "team.git", "teammate"):
        git(tmp_path / "qs" / repo, "fsck", "--strict")
    assert len(git(tmp_path / "qs" / "teammate", "for-each-ref", "refs/gitml/runs").splitlines()) == 3


def test_quickstart_never_writes_inside_the_clone(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), os.path.join(ROOT, "qs-here")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "inside gitml's clone" in result.stderr
    assert not os.path.exists(os.path.join(ROOT, "qs-here"))


def _example(name: str, folder, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name), str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.timeout(120)
def test_mlproject_from_a_git_url_at_a_tag(tmp_path):
    out = _example("mlproject_from_git.py", tmp_path / "ml", tmp_path).stdout
    tagged = git(tmp_path / "ml" / "projects.git", "rev-parse", "v1.0^{commit}").strip()
    assert f"mlflow.source.git.commit   {tagged}" in out  # the tag's code ran, not main's
    assert "code                       v1.0" in out and "slope  1.5" in out
    git(tmp_path / "ml" / "experiments", "fsck", "--strict")


@pytest.mark.timeout(180)
def test_promotion_by_pull_request_end_to_end(tmp_path):
    out = _example("promotion_by_pr.py", tmp_path / "pr", tmp_path).stdout
    assert "### iris: production → v1.0.0" in out and "all checks pass" in out  # CI's check report
    assert "iris: production -> v1.0.0 (iris#production#1)" in out  # applied after the merge
    assert "models:/iris@production predicts [0, 0, 0]" in out
    assert "refs/tags/iris#production#1" in git(tmp_path / "pr" / "team.git", "for-each-ref", "refs/tags")
    for clone in ("alice", "bob", "ci", "team.git"):
        git(tmp_path / "pr" / clone, "fsck", "--strict")

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
        cwd=tmp_path, env=env, capture_output=True, text=True,
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
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode != 0 and "inside gitml's clone" in result.stderr
    assert not os.path.exists(os.path.join(ROOT, "qs-here"))

"""The README's first command: the end-to-end example runs on a fresh folder."""

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
    assert "lr-0.05" in out and "lr-1.0" in out and "+# tried a longer schedule" in out
    assert "model/weights.npy" in out
    assert "4 ref(s) pushed" in out and "4 new" in out  # three runs and their experiment
    assert "In the teammate's clone, the best run" in out and '"test_accuracy"' in out
    for repo in ("project", "team.git", "teammate"):
        git(tmp_path / "qs" / repo, "fsck", "--strict")
    assert len(git(tmp_path / "qs" / "teammate", "for-each-ref", "refs/gitml/runs").splitlines()) == 3

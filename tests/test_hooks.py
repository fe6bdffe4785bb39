"""The pre-push hook: a plain `git push` also pushes runs and their artifacts."""

import os
import sys

from click.testing import CliRunner

import gitml
from gitml.cli.hooks import PRE_PUSH, pre_push_hook
from gitml.cli.main import cli
from tests.conftest import ROOT, git


def test_hook_file_matches_what_install_writes():
    with open(os.path.join(ROOT, "hooks", "pre-push")) as f:
        assert f.read() == PRE_PUSH


def test_git_push_also_pushes_runs(repo, tmp_path, monkeypatch):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    with gitml.start_run() as run:
        gitml.log_text("x" * 100_000, "big.txt")
    gitml.flush()
    result = CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"])
    assert result.exit_code == 0 and "pre-push" in result.output
    # no gitml command on the PATH: the hook runs the Python that installed it
    assert f"python={sys.executable}" in (repo / ".git" / "hooks" / "pre-push").read_text()
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(p, "gitml"))))
    monkeypatch.setenv("PYTHONPATH", ROOT)
    git(repo, "push", "-q", "--dry-run", "origin", "HEAD:refs/heads/main")
    git(repo, "push", "-vn", "origin", "HEAD:refs/heads/main")  # short flags together
    assert git(origin, "for-each-ref", "refs/gitml/runs") == ""  # a dry run pushes nothing
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert run.info.run_id in git(origin, "for-each-ref", "refs/gitml/runs")
    assert any(files for _, _, files in os.walk(tmp_path / "store"))
    # an existing foreign hook is not replaced without --force
    (repo / ".git" / "hooks" / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"]).exit_code == 1
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install", "--force"]).exit_code == 0


def test_install_goes_where_git_looks_for_hooks(repo, tmp_path):
    """From a linked worktree: the common hooks folder; with core.hooksPath: that folder."""
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    assert CliRunner().invoke(cli, ["-C", str(worktree), "hooks", "install"]).exit_code == 0
    assert (repo / ".git" / "hooks" / "pre-push").exists()
    git(repo, "config", "core.hooksPath", ".githooks")
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"]).exit_code == 0
    assert (repo / ".githooks" / "pre-push").read_text() == pre_push_hook(sys.executable)

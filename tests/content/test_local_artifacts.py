"""The per-user default artifact store must not silently break a team: a push of runs whose large
artifacts live only in this user's default store, to a git remote other people reach, stops with
the fix named (unless ``--allow-local-artifacts``); the teammate who meets such a run is told why.
Through a real ``git daemon`` on loopback."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

import gitml
from gitml.cli.main import cli
from tests.conftest import git
from tests.store.test_remote import git_daemon

pytestmark = pytest.mark.timeout(120)


def invoke(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)], prog_name="gitml")
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


@pytest.fixture
def daemon(repo, tmp_path):
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "team.git")
    git(repo, "push", "-q", str(base / "team.git"), "main")
    with git_daemon(base) as port:
        yield f"git://127.0.0.1:{port}/team.git", base / "team.git"


def log_model(repo, name: str, size: int) -> str:
    gitml.set_experiment("team")
    (repo / "weights.bin").write_bytes(os.urandom(size))
    with gitml.start_run(run_name=name) as run:
        gitml.log_artifact(str(repo / "weights.bin"))
    gitml.flush()
    return run.info.run_id


def test_a_push_of_large_local_artifacts_to_a_shared_remote_stops_with_the_fix(repo, daemon):
    url, bare = daemon
    run_id = log_model(repo, "big", 200_000)  # over artifacts.inline_max_bytes: not in git
    refused = invoke(repo, "push", url, code=1)
    line = refused.stderr.strip()
    assert "\n" not in line and line.startswith(f"gitml: run {run_id}'s artifact 'weights.bin' would stay in ")
    assert "this user's default store" in line and url in line
    assert "gitml config --committed artifacts.remote" in line and "--allow-local-artifacts" in line
    assert git(bare, "for-each-ref", "refs/gitml") == ""  # nothing moved
    invoke(repo, "push", url, "--allow-local-artifacts")
    assert run_id in git(bare, "for-each-ref", "refs/gitml")


def test_small_artifacts_a_shared_store_or_a_remote_here_push_as_before(repo, daemon, tmp_path):
    url, bare = daemon
    log_model(repo, "small", 1_000)  # inline: teammates read it from git
    invoke(repo, "push", url)
    assert "refs/gitml/runs/" in git(bare, "for-each-ref", "refs/gitml")
    log_model(repo, "big", 200_000)
    here = tmp_path / "mine.git"
    git(tmp_path, "init", "-q", "--bare", str(here))
    invoke(repo, "push", str(here))  # a path on this machine: this user's own
    shared = tmp_path / "shared-artifacts"
    invoke(repo, "config", "artifacts.remote", shared)
    invoke(repo, "push", url)  # a configured store: the objects go there
    assert any(shared.rglob("*")) and "big" in invoke(repo, "runs").stdout


def test_the_teammate_who_lacks_the_objects_is_told_why(repo, daemon, tmp_path, monkeypatch):
    url, _ = daemon
    run_id = log_model(repo, "big", 200_000)
    invoke(repo, "push", url, "--allow-local-artifacts")
    teammate = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", url, str(teammate))
    monkeypatch.setenv("HOME", str(tmp_path / "teammate-home"))  # another user: another default store
    pulled = invoke(teammate, "pull", code=1)  # the runs arrive; their large artifacts cannot
    assert "that is this user's default store" in pulled.stderr and run_id in invoke(teammate, "runs", "--json").stdout
    failed = invoke(teammate, "artifacts", "get", run_id, "weights.bin", "-o", tmp_path / "w.bin", code=1)
    line = failed.stderr.strip()
    assert "\n" not in line and "is not in the artifact remote" in line
    assert "that is this user's default store: whoever logged the run must share an artifact remote" in line
    assert "gitml config --committed artifacts.remote URL" in line

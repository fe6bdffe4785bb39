"""Repositories in formats gitml cannot write (SHA-256 objects, reftable refs, unknown
extensions) are refused before anything is written, by every entry point."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

import gitml
from gitml.errors import RepositoryError, UnsupportedRepositoryError
from gitml.store.git import open_store
from tests.conftest import ROOT, git


def _git_version() -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", git(".", "--version"))[:2])


def snapshot(path) -> dict[str, str]:
    """Every file and folder under ``path`` with its content's hash: byte-identical means equal."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), path)] = "dir"
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


def project(path, *init_args, config: dict[str, str] | None = None):
    git(path.parent, "init", "-q", *init_args, str(path))
    for key, value in (config or {}).items():
        git(path, "config", key, value)
    (path / "train.py").write_text("print('training')\n")
    if not config:  # a repository git itself cannot use (an extension it lacks) gets no commit
        git(path, "add", ".")
        git(path, "commit", "-qm", "initial")
    return path


def cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def reftable_project(tmp_path):
    path = tmp_path / "reftable"
    if _git_version() >= (2, 45):
        return project(path, "--ref-format=reftable")
    # git before 2.45 cannot make one: the configuration is what `git init --ref-format=reftable` writes
    return project(path, config={"core.repositoryformatversion": "1", "extensions.refStorage": "reftable"})


UNSUPPORTED = {
    "sha256": lambda tmp: project(tmp / "sha256", "--object-format=sha256"),
    "reftable": reftable_project,
    "unknown extension": lambda tmp: project(
        tmp / "unknown", config={"core.repositoryformatversion": "1", "extensions.futureThing": "true"}
    ),
    "format version 2": lambda tmp: project(tmp / "v2", config={"core.repositoryformatversion": "2"}),
    "version 0 with sha256": lambda tmp: project(tmp / "v0", config={"extensions.objectFormat": "sha256"}),
}
SHOWN = {
    "sha256": "extensions.objectformat = sha256",
    "reftable": "extensions.refstorage = reftable",
    "unknown extension": "extensions.futurething",
    "format version 2": "core.repositoryformatversion = 2",
    "version 0 with sha256": "extensions.objectformat = sha256",
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_client_and_cli_refuse_and_leave_the_repository_untouched(tmp_path, monkeypatch, kind):
    path = UNSUPPORTED[kind](tmp_path)
    before = snapshot(path)
    with pytest.raises(UnsupportedRepositoryError) as raised:
        gitml.Client(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and SHOWN[kind] in message.lower()
    with pytest.raises(RepositoryError):
        open_store(path / "sub" if (path / "sub").is_dir() else path, create=True)
    monkeypatch.chdir(path)
    with pytest.raises(UnsupportedRepositoryError):  # the fluent API, from inside the repository
        with gitml.start_run():
            gitml.log_param("p", 1)
    for args in (["runs"], ["init", "."], ["gc"], ["-C", ".", "runs"]):
        result = cli(*args, cwd=path)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and SHOWN[kind] in lines[0].lower() and "unexpected" not in lines[0], (args, lines)
    assert snapshot(path) == before
    if kind == "sha256":
        git(path, "fsck", "--strict")


def test_a_subfolder_of_a_sha256_repository_is_refused_with_the_repository_named(tmp_path):
    path = project(tmp_path / "sha256", "--object-format=sha256")
    (path / "src").mkdir()
    with pytest.raises(UnsupportedRepositoryError, match=re.escape(str(path)) + ":"):
        gitml.Client(path / "src")
    assert not (path / ".git" / "gitml").exists()


@pytest.mark.parametrize("kind", ["sha256", "reftable"])
def test_local_push_and_fetch_refuse_a_repository_of_another_format(repo, tmp_path, kind):
    with gitml.start_run() as run:
        gitml.log_param("p", 1)
    gitml.flush()
    bare = tmp_path / f"{kind}.git"
    if kind == "sha256":
        git(tmp_path, "init", "-q", "--bare", "--object-format=sha256", str(bare))
    elif _git_version() >= (2, 45):
        git(tmp_path, "init", "-q", "--bare", "--ref-format=reftable", str(bare))
    else:
        git(tmp_path, "init", "-q", "--bare", str(bare))
        git(bare, "config", "core.repositoryformatversion", "1")
        git(bare, "config", "extensions.refStorage", "reftable")
    before = snapshot(bare)
    result = cli("push", str(bare), cwd=repo)
    assert result.returncode == 1 and SHOWN[kind] in result.stderr.lower() and str(bare) in result.stderr
    result = cli("fetch", str(bare), cwd=repo)
    assert result.returncode == 1 and SHOWN[kind] in result.stderr.lower()
    assert snapshot(bare) == before
    assert gitml.get_run(run.info.run_id).data.params == {"p": "1"}


def test_extensions_that_change_neither_objects_nor_refs_are_accepted(tmp_path):
    path = project(tmp_path / "wt")
    git(path, "config", "core.repositoryformatversion", "1")
    git(path, "config", "extensions.worktreeConfig", "true")
    git(path, "config", "extensions.objectFormat", "sha1")
    c = gitml.Client(path)
    try:
        run = c.create_run("0")
        c.log_param(run.info.run_id, "p", "1")
        c.set_terminated(run.info.run_id)
        assert c.get_run(run.info.run_id).data.params == {"p": "1"}
    finally:
        c.close()
    git(path, "fsck", "--strict")

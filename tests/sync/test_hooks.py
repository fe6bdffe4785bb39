"""The pre-push hook: a plain `git push` also pushes runs and their artifacts."""

import os
import shutil
import subprocess
import sys

from click.testing import CliRunner

import gitml
from gitml.cli.hooks import HOOK_NAMES, hook_source, hook_text, pre_push_hook
from gitml.cli.main import cli
from tests.conftest import ROOT, git


def test_each_hook_is_kept_once_and_installed_from_there():
    """One copy of each hook, package data; install writes it with the Python put in."""
    folder = os.path.join(ROOT, "gitml", "cli", "hookscripts")
    assert sorted(os.listdir(folder)) == sorted(HOOK_NAMES)
    assert not any(os.path.exists(os.path.join(ROOT, "hooks", name)) for name in HOOK_NAMES)
    for name in HOOK_NAMES:
        path = os.path.join(folder, name)
        with open(path) as f:
            text = f.read()
        assert text == hook_source(name) and text.startswith("#!/bin/sh\n# gitml ")
        assert os.access(path, os.X_OK)
        assert hook_text(name, "/opt/py/bin/python") == text.replace('python="python3"', "python=/opt/py/bin/python", 1)


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
    monkeypatch.setenv(
        "PATH",
        os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(p, "gitml"))
        ),
    )
    monkeypatch.setenv("PYTHONPATH", ROOT)
    git(repo, "push", "-q", "--dry-run", "origin", "HEAD:refs/heads/main")
    git(repo, "push", "-vn", "origin", "HEAD:refs/heads/main")  # short flags together
    assert git(origin, "for-each-ref", "refs/gitml/runs") == ""  # a dry run pushes nothing
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert run.info.run_id in git(origin, "for-each-ref", "refs/gitml/runs")
    assert any(files for _, _, files in os.walk(tmp_path / "store"))
    # an existing foreign hook is kept and run first, or replaced with --force
    (repo / ".git" / "hooks" / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"]).exit_code == 0
    assert (repo / ".git" / "hooks" / "pre-push.pre-gitml").read_text() == "#!/bin/sh\nexit 0\n"
    (repo / ".git" / "hooks" / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (repo / ".git" / "hooks" / "pre-push.pre-gitml").unlink()
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install", "--force"]).exit_code == 0
    assert not (repo / ".git" / "hooks" / "pre-push.pre-gitml").exists()


def test_install_goes_where_git_looks_for_hooks(repo, tmp_path):
    """From a linked worktree: the common hooks folder; with core.hooksPath: that folder."""
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    assert CliRunner().invoke(cli, ["-C", str(worktree), "hooks", "install"]).exit_code == 0
    assert (repo / ".git" / "hooks" / "pre-push").exists()
    git(repo, "config", "core.hooksPath", ".githooks")
    assert CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"]).exit_code == 0
    assert (repo / ".githooks" / "pre-push").read_text() == pre_push_hook(sys.executable)


def _install(repo, *args):
    result = CliRunner().invoke(cli, ["-C", str(repo), "hooks", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _minimal_path(tmp_path) -> dict:
    """The environment of a GUI client running git: PATH holds git alone (and sh for git itself)."""
    bare = tmp_path / "bin"
    if not bare.exists():
        bare.mkdir()
        for tool in ("git", "sh"):
            os.symlink(shutil.which(tool), bare / tool)
    return {**os.environ, "PATH": str(bare)}


def _remote_with_runs(repo, tmp_path, monkeypatch):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    monkeypatch.setenv("PYTHONPATH", ROOT)
    return origin


def test_existing_hook_is_chained_with_its_input_and_verdict(repo, tmp_path, monkeypatch):
    origin = _remote_with_runs(repo, tmp_path, monkeypatch)
    theirs = '#!/bin/sh\ncat > "$(dirname "$0")/../seen"\necho "$1" >> "$(dirname "$0")/../seen"\nexit ${VERDICT:-0}\n'
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(theirs)
    hook.chmod(0o755)
    with gitml.start_run() as run:
        pass
    gitml.flush()
    assert "runs pre-push.pre-gitml first" in _install(repo, "install")
    # their hook says no: git refuses the push, and no run goes either
    result = subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:refs/heads/main"],
        cwd=repo,
        env={**os.environ, "VERDICT": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and git(origin, "for-each-ref") == ""
    subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:refs/heads/main"], cwd=repo, env=_minimal_path(tmp_path), check=True
    )
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (repo / ".git" / "seen").read_text() == f"HEAD {head} refs/heads/main {'0' * 40}\norigin\n"
    assert run.info.run_id in git(origin, "for-each-ref", "refs/gitml/runs")
    # installing again keeps the chain; uninstall puts their hook back as it was
    _install(repo, "install")
    assert (repo / ".git" / "hooks" / "pre-push.pre-gitml").read_text() == theirs
    assert "removed" in _install(repo, "uninstall")
    assert hook.read_text() == theirs and os.access(hook, os.X_OK)
    assert not (repo / ".git" / "hooks" / "pre-push.pre-gitml").exists()
    assert "no gitml pre-push hook" in _install(repo, "uninstall")


def test_under_pre_commit_gitml_goes_in_the_legacy_hook(repo):
    pre_commit = (
        "#!/usr/bin/env bash\n# File generated by pre-commit: https://pre-commit.com\n"
        "# ID: 138fd403232d2ddd5efb44317e38bf03\n"
    )
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(pre_commit)
    _install(repo, "install")
    assert hook.read_text() == pre_commit  # pre-commit's script runs pre-push.legacy
    assert (repo / ".git" / "hooks" / "pre-push.legacy").read_text() == pre_push_hook(sys.executable)
    _install(repo, "uninstall")
    assert hook.read_text() == pre_commit and not (repo / ".git" / "hooks" / "pre-push.legacy").exists()


def test_post_merge_and_post_checkout_fetch_runs_with_a_minimal_path(repo, tmp_path, monkeypatch):
    origin = _remote_with_runs(repo, tmp_path, monkeypatch)
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    git(tmp_path, "clone", "-q", str(origin), "teammate")
    teammate = tmp_path / "teammate"
    git(teammate, "branch", "-q", "other")
    _install(teammate, "install", "--hook", "post-merge", "--hook", "post-checkout")
    # new code and a run on the remote
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "v2")
    with gitml.start_run() as first:
        pass
    gitml.flush()
    assert CliRunner().invoke(cli, ["-C", str(repo), "push", "origin"]).exit_code == 0
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    env = _minimal_path(tmp_path)
    subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=teammate, env=env, check=True, capture_output=True)
    assert first.info.run_id in git(teammate, "for-each-ref", "refs/gitml/runs")
    with gitml.start_run() as second:
        pass
    gitml.flush()
    assert CliRunner().invoke(cli, ["-C", str(repo), "push", "origin"]).exit_code == 0
    subprocess.run(
        ["git", "checkout", "-q", "-b", "same-commit"], cwd=teammate, env=env, check=True
    )  # no switch of commit
    assert second.info.run_id not in git(teammate, "for-each-ref", "refs/gitml/runs")
    subprocess.run(["git", "checkout", "-q", "other"], cwd=teammate, env=env, check=True, capture_output=True)
    assert second.info.run_id in git(teammate, "for-each-ref", "refs/gitml/runs")
    _install(teammate, "uninstall", "--all")
    assert not os.listdir(teammate / ".git" / "hooks") or not any(
        "gitml" in (teammate / ".git" / "hooks" / n).read_text()
        for n in ("post-merge", "post-checkout")
        if (teammate / ".git" / "hooks" / n).exists()
    )


HOSTILE = "import pathlib\npathlib.Path({marker!r}).write_text({what!r})\n"


def test_code_committed_in_the_work_tree_never_runs_as_gitml(repo, tmp_path, monkeypatch, installed_python):
    """A teammate commits a top-level ``gitml/`` package, then a ``gitml.py``: the victim's
    pull, checkout of their branch and push run the installed gitml, which fetches and
    pushes the runs, and never the committed code, even with the current folder on PYTHONPATH."""
    origin = _remote_with_runs(repo, tmp_path, monkeypatch)
    marker = tmp_path / "attacker-code-ran"
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    git(tmp_path, "clone", "-q", str(origin), "victim")
    victim = tmp_path / "victim"
    subprocess.run(
        [
            installed_python,
            "-I",
            "-m",
            "gitml",
            "-C",
            str(victim),
            "hooks",
            "install",
            "--hook",
            "pre-push",
            "--hook",
            "post-merge",
            "--hook",
            "post-checkout",
        ],
        check=True,
        capture_output=True,
    )
    assert f"python={installed_python}" in (victim / ".git" / "hooks" / "post-merge").read_text()
    # the teammate (repo): a gitml package on main, with a run of that commit pushed
    (repo / "gitml").mkdir()
    for name in ("__init__.py", "__main__.py"):
        (repo / "gitml" / name).write_text(HOSTILE.format(marker=str(marker), what="package"))
    git(repo, "add", "gitml")
    git(repo, "commit", "-qm", "vendor gitml")
    with gitml.start_run() as pulled:
        pass
    gitml.flush()
    assert CliRunner().invoke(cli, ["-C", str(repo), "push", "origin"]).exit_code == 0
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    # ... and a gitml.py on a branch to review
    git(repo, "checkout", "-qb", "review")
    git(repo, "rm", "-rq", "gitml")
    (repo / "gitml.py").write_text(HOSTILE.format(marker=str(marker), what="module"))
    git(repo, "add", "gitml.py")
    git(repo, "commit", "-qm", "a gitml module")
    with gitml.start_run() as reviewed:
        pass
    gitml.flush()
    assert CliRunner().invoke(cli, ["-C", str(repo), "push", "origin"]).exit_code == 0
    git(repo, "push", "-q", "origin", "review")

    env = {**os.environ, "PYTHONPATH": os.pathsep + "."}  # the current folder on the path, twice
    subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=victim, env=env, check=True, capture_output=True)
    assert (victim / "gitml" / "__main__.py").exists() and not marker.exists()
    assert pulled.info.run_id in git(victim, "for-each-ref", "refs/gitml/runs")  # the hook did its job
    subprocess.run(["git", "checkout", "-q", "review"], cwd=victim, env=env, check=True, capture_output=True)
    assert (victim / "gitml.py").exists() and not marker.exists()
    assert reviewed.info.run_id in git(victim, "for-each-ref", "refs/gitml/runs")
    with gitml.Client(victim) as c:
        mine = c.create_run("0", run_name="the victim's").info.run_id
        c.set_terminated(mine)
    subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:refs/heads/victim"], cwd=victim, env=env, check=True, capture_output=True
    )
    assert not marker.exists()
    assert mine in git(origin, "for-each-ref", "refs/gitml/runs")
    # without isolation the same command runs the teammate's code: the attack is real
    subprocess.run([installed_python, "-m", "gitml", "--help"], cwd=victim, env=env, capture_output=True)
    assert marker.read_text() == "module"
    git(victim, "checkout", "-q", "main")
    marker.unlink()
    subprocess.run([installed_python, "-m", "gitml", "--help"], cwd=victim, env=env, capture_output=True)
    assert marker.read_text() == "package"


def test_hooks_of_an_earlier_gitml_are_named_until_installed_again(repo, tmp_path, monkeypatch):
    """A hook written before isolation (``python -m gitml``) runs committed code as gitml:
    push and fetch say so, once per such hook, until ``gitml hooks install`` rewrites it."""
    origin = _remote_with_runs(repo, tmp_path, monkeypatch)
    with gitml.start_run():
        pass
    gitml.flush()
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-push", "post-merge"):
        (hooks / name).write_text(hook_text(name, sys.executable).replace(" -I -m gitml", " -m gitml"))
    for command in ("push", "fetch"):
        result = CliRunner().invoke(cli, ["-C", str(repo), command, str(origin)])
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2 and "gitml hooks install --hook post-merge" in warnings[1], result.stderr
    _install(repo, "install", "--hook", "pre-push", "--hook", "post-merge")
    result = CliRunner().invoke(cli, ["-C", str(repo), "push", str(origin)])
    assert result.exit_code == 0 and "earlier gitml" not in result.stderr


def test_a_failed_run_push_is_reported_and_never_blocks_the_git_push(repo, tmp_path, monkeypatch, installed_python):
    """README: the hook's failure is reported, never blocks the push. The runs' artifacts
    cannot go to the configured store (nothing answers there): the branch still arrives, the
    runs do not, and stderr says so and what to run later."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    with gitml.start_run() as run:
        gitml.log_text("x" * 100_000, "big.txt")  # past the inline size: the store must hold it
    gitml.flush()
    subprocess.run([installed_python, "-I", "-m", "gitml", "-C", str(repo), "hooks", "install"], check=True)
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "http://127.0.0.1:9/store")
    done = subprocess.run(["git", "push", "origin", "HEAD:refs/heads/main"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert git(origin, "rev-parse", "refs/heads/main").strip() == git(repo, "rev-parse", "HEAD").strip()
    assert run.info.run_id not in git(origin, "for-each-ref", "refs/gitml/runs")
    assert "gitml: artifact remote http://127.0.0.1:9/store" in done.stderr  # nothing answers there
    assert "gitml: runs were not pushed to origin (see above); run 'gitml push origin' later" in done.stderr


def test_a_foreign_hook_with_its_chained_name_taken_is_one_line_and_left_alone(repo):
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-push.pre-gitml").write_text("#!/bin/sh\nexit 1\n")
    result = CliRunner().invoke(cli, ["-C", str(repo), "hooks", "install"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"gitml: {hooks / 'pre-push'} is not gitml's and {hooks / 'pre-push.pre-gitml'} exists: "
        "move one of them, or use --force"
    ]
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\nexit 0\n"
    assert (hooks / "pre-push.pre-gitml").read_text() == "#!/bin/sh\nexit 1\n"

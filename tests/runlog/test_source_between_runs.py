"""Runs made one after another in one process record the code as it is at each start: the
snapshot's caches (the parsed index, the tree built for a set of changes) are checked against
the files each time, so an edit between two runs shows, even one that keeps the file's size
and time (git's racily clean entries: only the content tells). Judged by git itself."""

from __future__ import annotations

import os
import shutil
import subprocess

import gitml
from tests.conftest import git


def git_blob(text: str) -> str:
    return subprocess.run(["git", "hash-object", "--stdin"], input=text, capture_output=True, text=True).stdout.strip()


def git_tree(repo) -> str:
    """The tree git records for the work tree as it is (on a copy of the index)."""
    copy = os.path.join(repo, ".git", "index.judge")
    shutil.copy2(os.path.join(repo, ".git", "index"), copy)
    env = dict(os.environ, GIT_INDEX_FILE=copy)
    try:
        subprocess.run(["git", "add", "-u"], cwd=repo, env=env, check=True, capture_output=True)
        return subprocess.run(
            ["git", "write-tree"], cwd=repo, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
    finally:
        os.unlink(copy)


def recorded(repo, run_id: str) -> tuple[str, str, bool]:
    """The blob of train.py in the run's commit, the tree of everything but ``.gitml``, and the dirty flag."""
    gitml.flush()
    ref = next(line for line in git(repo, "for-each-ref", "--format=%(refname)").split() if line.endswith(run_id))
    blob = git(repo, "rev-parse", f"{ref}:train.py").strip()
    entries = [line for line in git(repo, "ls-tree", ref).splitlines() if not line.endswith("\t.gitml")]
    tree = subprocess.run(
        ["git", "mktree"], cwd=repo, input="\n".join(entries) + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    source = gitml.get_run(run_id).source
    assert source is not None
    return blob, tree, source.dirty


def one_run() -> str:
    with gitml.start_run() as run:
        gitml.log_param("p", "1")
    return run.info.run_id


def edit_keeping_size_and_time(path, text: str, st: os.stat_result) -> None:
    assert len(text.encode()) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def test_an_edit_between_runs_shows_even_with_the_same_size_and_time(repo):
    path = repo / "train.py"
    original = path.read_text()
    st = os.stat(path)
    os.utime(repo / ".git/index", ns=(st.st_mtime_ns, st.st_mtime_ns))  # the entry as new as the index: racy
    clean = git_tree(repo)
    seen = []
    for text in (original, "print('trainiNG')\n", "print('TRAINING')\n", original):
        if text != original or seen:
            edit_keeping_size_and_time(path, text, st)
        run_id = one_run()
        blob, tree, dirty = recorded(repo, run_id)
        assert (blob, tree) == (git_blob(text), git_tree(repo)), text
        assert dirty == (tree != clean)
        seen.append(tree)
    assert seen[0] == seen[3] == clean and len({seen[0], seen[1], seen[2]}) == 3


def test_an_edit_between_runs_with_a_new_time_shows_and_its_undoing_too(repo):
    path = repo / "train.py"
    original = path.read_text()
    texts = [original, "print('training, longer')\n", "x = 1\n", original]
    trees = []
    for i, text in enumerate(texts):
        if i:
            path.write_text(text)
            os.utime(path, ns=(os.stat(path).st_mtime_ns + i * 1000, os.stat(path).st_mtime_ns + i * 1000))
        blob, tree, _ = recorded(repo, one_run())
        assert (blob, tree) == (git_blob(text), git_tree(repo)), text
        trees.append(tree)
    assert trees[0] == trees[3] and len(set(trees)) == 3

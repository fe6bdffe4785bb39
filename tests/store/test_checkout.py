"""gitml's commit switch (gitml/store/checkout.py) judged by the real git: the same switch
done by `git switch --detach` in a copy of the repository leaves the same index entries
(`git ls-files -s -t`) and the same files on disk; `git status` is clean, `git
write-tree` (which trusts the cache tree) gives the target's tree, `git fsck` is clean."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from gitml.errors import ConflictError, IndexLockedError
from gitml.names import RECORD_DIR
from gitml.store.git import open_store
from gitml.store.gitindex import read_index
from gitml.store.worktree import restore
from tests.conftest import git


def files_on_disk(root) -> dict[str, tuple[str, bytes]]:
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full).encode())
            else:
                with open(full, "rb") as f:
                    out[rel] = ("x" if st.st_mode & 0o100 else "f", f.read())
        for name in dirs:  # empty folders (a gitlink's) count too
            if not os.listdir(os.path.join(folder, name)):
                out[os.path.relpath(os.path.join(folder, name), root) + "/"] = ("dir", b"")
    return out


def gitml_switch(repo, target: str) -> None:
    with open_store(repo) as store:
        commit = git(repo, "rev-parse", target).strip().encode()
        restore(store, commit, store.commit(commit).tree, branch=None, skip=RECORD_DIR)


def assert_switch_as_git(repo, tmp_path, target: str) -> None:
    """gitml switches ``repo`` to ``target``; git does it in a copy; the two agree."""
    twin = tmp_path / "twin"
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(repo, twin, symlinks=True)
    git(twin, "switch", "-q", "--detach", target)
    gitml_switch(repo, target)
    assert_columns_kept_are_the_file(repo)  # before git rewrites the index (git status may)
    tree = git(repo, "rev-parse", f"{target}^{{tree}}").strip()
    assert git(repo, "rev-parse", "HEAD").strip() == git(repo, "rev-parse", target).strip()
    assert git(repo, "ls-files", "-s", "-t") == git(twin, "ls-files", "-s", "-t")
    assert files_on_disk(repo) == files_on_disk(twin)
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "diff-index", "--cached", "HEAD") == ""
    assert git(repo, "write-tree").strip() == tree  # the cache tree we wrote is true
    git(repo, "fsck", "--no-progress")
    git(repo, "update-index", "--refresh")  # every entry's stat data matches its file


def columns_of(index) -> tuple:
    return (
        index.version,
        index.checksum,
        index.paths,
        index.stat_data,
        list(index.flags),
        index.cached_trees,
        list(index.modes),
        index.mtimes,
    )


def assert_columns_kept_are_the_file(repo) -> None:
    """What the switch kept of the index it wrote (for this process and the next) is
    what parsing the file gives."""
    from gitml.store import gitindex
    from gitml.store.worktree import _columns_path

    index_path = str(repo / ".git/index")
    with open(index_path, "rb") as f:
        parsed = gitindex.parse_index(f.read(), index_path)
    assert columns_of(read_index(index_path)) == columns_of(parsed)
    gitindex._cache.clear()  # as a new process
    with open_store(repo) as store:
        columns = _columns_path(store, index_path)
    assert columns_of(gitindex._load_columns(columns, parsed.checksum)) == columns_of(parsed)


@pytest.fixture
def two_commits(repo):
    """``repo`` with commit ``a`` and commit ``b``: files added, removed, modified, a file
    becoming a folder and a folder a file, an execute bit, symbolic links, a submodule."""
    for path in ("src/a.py", "src/pkg/b.py", "docs/x.md", "docs/y.md", "gone/deep/f.txt", "node", "run.sh"):
        os.makedirs(os.path.dirname(repo / path) or repo, exist_ok=True)
        (repo / path).write_text(f"{path}\n")
    os.symlink("src/a.py", repo / "link")
    git(repo, "add", ".")
    sub = "1" * 40
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub},vendor/sub")
    os.makedirs(repo / "vendor/sub")
    git(repo, "commit", "-qm", "a")
    git(repo, "tag", "a")
    (repo / "src/a.py").write_text("modified\n")
    os.makedirs(repo / "src/new")
    (repo / "src/new/n.py").write_text("added\n")
    git(repo, "rm", "-rq", "gone", "docs")
    (repo / "docs").write_text("a file where a folder was\n")
    os.unlink(repo / "node")
    os.makedirs(repo / "node")
    (repo / "node/inner.txt").write_text("a folder where a file was\n")
    os.chmod(repo / "run.sh", 0o755)
    os.unlink(repo / "link")
    os.symlink("README.md", repo / "link")
    os.unlink(repo / "src/pkg/b.py")
    os.symlink("../a.py", repo / "src/pkg/b.py")
    git(repo, "add", "-A")
    git(repo, "update-index", "--cacheinfo", f"160000,{'2' * 40},vendor/sub")  # the submodule moves
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'3' * 40},vendor/new")  # and one comes
    git(repo, "commit", "-qm", "b")
    git(repo, "tag", "b")
    git(repo, "switch", "-q", "--detach", "a")
    return repo


@pytest.mark.parametrize("form", ["v2", "v4", "split"])
def test_switch_back_and_forth_as_git_does(two_commits, tmp_path, form):
    repo = two_commits
    if form == "v4":
        git(repo, "update-index", "--index-version", "4")
    elif form == "split":
        git(repo, "update-index", "--split-index")
    assert_switch_as_git(repo, tmp_path, "b")
    assert_switch_as_git(repo, tmp_path, "a")
    assert_switch_as_git(repo, tmp_path, "b")


def test_sparse_checkout_keeps_skip_worktree_entries(two_commits, tmp_path):
    repo = two_commits
    git(repo, "sparse-checkout", "set", "--cone", "--skip-checks", "docs", "node")
    assert not (repo / "src/a.py").exists()
    assert_switch_as_git(repo, tmp_path, "b")  # src/new/n.py comes in skip-worktree
    assert not (repo / "src/a.py").exists() and not (repo / "src/new").exists()
    assert_switch_as_git(repo, tmp_path, "a")


def test_sparse_index_directories_change_as_one_entry(two_commits, tmp_path):
    repo = two_commits
    git(repo, "sparse-checkout", "set", "--cone", "--sparse-index", "docs")
    assert_switch_as_git(repo, tmp_path, "b")
    assert git(repo, "ls-files", "-s", "--sparse").count("040000") >= 1  # still a sparse index


def test_a_held_index_lock_is_refused_and_nothing_changes(two_commits):
    repo = two_commits
    (repo / ".git/index.lock").write_bytes(b"")
    before = files_on_disk(repo)
    with pytest.raises(IndexLockedError, match="index.lock"):
        gitml_switch(repo, "b")
    assert files_on_disk(repo) == before and git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "a")
    os.unlink(repo / ".git/index.lock")
    (repo / "src/a.py").write_text("my edit\n")
    with pytest.raises(ConflictError, match="uncommitted"):
        gitml_switch(repo, "b")
    assert (repo / "src/a.py").read_text() == "my edit\n"


def test_untracked_file_in_a_folder_becoming_a_file_is_refused(two_commits):
    repo = two_commits
    (repo / "docs/notes.txt").write_text("mine\n")
    with pytest.raises(ConflictError, match="docs/notes.txt"):
        gitml_switch(repo, "b")
    assert (repo / "docs/notes.txt").read_text() == "mine\n"
    os.unlink(repo / "docs/notes.txt")
    gitml_switch(repo, "b")
    assert (repo / "docs").read_text() == "a file where a folder was\n"


def test_switch_reads_only_the_trees_that_differ(repo, tmp_path):
    lines = [f"M 100644 inline d{i}/e/f.py\ndata {len(str(i)) + 1}\n{i}\n" for i in range(300)]
    stream = "commit refs/heads/main\ncommitter T <t@t> 0 +0000\ndata 4\nbig\nfrom HEAD\n" + "".join(lines)
    stream += "commit refs/heads/other\ncommitter T <t@t> 0 +0000\ndata 4\none\nfrom refs/heads/main\n"
    stream += "M 100644 inline d7/e/f.py\ndata 8\nchanged\n"
    git(repo, "fast-import", "--quiet", input_text=stream)
    git(repo, "reset", "-q", "--hard")
    with open_store(repo) as store:
        reads: list[bytes] = []
        read = store.tree
        store.tree = lambda sha: reads.append(sha) or read(sha)
        other = git(repo, "rev-parse", "other").strip().encode()
        restore(store, other, store.commit(other).tree, branch="try", skip=RECORD_DIR)
    assert len(reads) <= 30  # roots, d7, d7/e in each of the walks of restore: not 300 folders
    assert (repo / "d7/e/f.py").read_text() == "changed\n"
    assert git(repo, "status", "--porcelain") == "" and git(repo, "branch", "--show-current").strip() == "try"
    assert git(repo, "write-tree").strip() == git(repo, "rev-parse", "other^{tree}").strip()
    trees = read_index(str(repo / ".git/index")).cached_trees  # kept whole: the next snapshot rebuilds nothing
    assert trees[b""].hex() == git(repo, "rev-parse", "other^{tree}").strip()
    assert trees[b"d8/e"].hex() == git(repo, "rev-parse", "other:d8/e").strip() and len(trees) == 1 + 2 * 300


def test_unmerged_index_is_refused(two_commits):
    """A conflict resolved to HEAD's content is clean on disk, but git's index still has
    its stages: git refuses to switch, and so do we (the snapshot takes a conflicted path
    as changed; the stages would otherwise outlive the switch)."""
    repo = two_commits
    git(repo, "switch", "-q", "-c", "side")
    (repo / "README.md").write_text("side\n")
    git(repo, "commit", "-qam", "side")
    git(repo, "switch", "-q", "--detach", "a")
    (repo / "README.md").write_text("here\n")
    git(repo, "commit", "-qam", "here")
    git(repo, "merge", "-q", "side", check=False)
    assert "UU README.md" in git(repo, "status", "--porcelain")
    (repo / "README.md").write_text("here\n")
    index = (repo / ".git/index").read_bytes()
    with pytest.raises(ConflictError, match="uncommitted"):
        gitml_switch(repo, "b")
    assert (repo / ".git/index").read_bytes() == index and not (repo / ".git/index.lock").exists()


def test_a_missing_index_is_refused_not_taken_as_empty(two_commits):
    from gitml.errors import RepositoryError

    repo = two_commits
    os.unlink(repo / ".git/index")
    with pytest.raises(RepositoryError, match="index"):
        gitml_switch(repo, "b")
    assert not (repo / ".git/index").exists() and (repo / "docs/x.md").exists()
    git(repo, "reset", "-q")
    gitml_switch(repo, "b")
    assert git(repo, "status", "--porcelain") == ""


def test_a_tree_reaching_into_dot_git_is_refused(two_commits):
    """A commit whose tree holds `.git/hooks/post-checkout` (git fsck refuses such a tree;
    it can still arrive) never gets that file written."""
    repo = two_commits
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="#!/bin/sh\necho owned\n").strip()
    hooks = git(repo, "mktree", input_text=f"100755 blob {blob}\tpost-checkout\n").strip()
    dot_git = git(repo, "mktree", input_text=f"040000 tree {hooks}\thooks\n").strip()
    root = git(repo, "mktree", input_text=f"040000 tree {dot_git}\t.GIT\n100644 blob {blob}\tREADME.md\n").strip()
    evil = git(repo, "commit-tree", root, "-p", "HEAD", "-m", "evil").strip()
    before, files = git(repo, "rev-parse", "HEAD"), files_on_disk(repo)
    with pytest.raises(ConflictError, match="not a path git checks out"):
        gitml_switch(repo, evil)
    assert files_on_disk(repo) == files  # refused before anything was written
    assert not (repo / ".git/hooks/post-checkout").exists() and not (repo / ".GIT").exists()
    assert git(repo, "rev-parse", "HEAD") == before and not (repo / ".git/index.lock").exists()

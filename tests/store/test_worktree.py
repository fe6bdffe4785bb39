"""The source snapshot against the real git: the tree of a dirty work tree equals what
``git add -u && git write-tree`` records (on a copy of the index), whatever the index's
format; diff and checkout read only what differs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from gitml.errors import IndexFormatError
from gitml.store.git import open_store
from gitml.store.gitindex import GitIndex, read_index
from gitml.store.worktree import snapshot, tree_changes
from tests.conftest import git


def git_tree(repo) -> str:
    """What git records for the work tree: tracked files as they are on disk."""
    copy = os.path.join(repo, ".git", "index.judge")
    shutil.copy2(os.path.join(repo, ".git", "index"), copy)  # its time too: racy entries stay racy
    env = dict(os.environ, GIT_INDEX_FILE=copy)
    try:
        subprocess.run(["git", "add", "-u"], cwd=repo, env=env, check=True, capture_output=True)
        out = subprocess.run(["git", "write-tree"], cwd=repo, env=env, check=True, capture_output=True, text=True)
    finally:
        os.unlink(copy)
    return out.stdout.strip()


def our_tree(repo) -> str:
    with open_store(repo) as store:
        snap = snapshot(store)
        store.write(snap.objects)  # so git can read what we built
    assert snap.tree is not None
    return snap.tree.decode()


def ls_files(repo, *extra) -> list[tuple[int, str, int, str]]:
    out = []
    for line in git(repo, "ls-files", "-s", *extra).splitlines():
        info, path = line.split("\t", 1)
        mode, sha, stage = info.split()
        out.append((int(mode, 8), sha, int(stage), path))
    return out


def entries(index: GitIndex) -> list[tuple[int, str, int, str]]:
    return [
        (m, s.hex(), (f >> 12) & 3, p.decode())
        for p, m, s, f in zip(index.paths, index.modes, index.shas, index.flags, strict=False)
    ]


@pytest.fixture
def tree_repo(repo):
    """The ``repo`` fixture with folders, an executable and a symbolic link."""
    for path in ("src/a.py", "src/pkg/b.py", "src/pkg/c.py", "docs/x.md", "z/deep/er/f.txt", "run.sh"):
        os.makedirs(os.path.dirname(repo / path), exist_ok=True)
        (repo / path).write_text(f"{path}\n")
    os.chmod(repo / "run.sh", 0o755)
    os.symlink("src/a.py", repo / "link")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "tree")
    return repo


def dirty(repo) -> None:
    """Every kind of change a run must capture, staged and not."""
    (repo / "src/pkg/b.py").write_text("changed\n")
    (repo / "docs/x.md").write_text("staged\n")
    git(repo, "add", "docs/x.md")
    (repo / "docs/x.md").write_text("staged, then changed again\n")
    os.unlink(repo / "z/deep/er/f.txt")
    os.chmod(repo / "run.sh", 0o644)
    os.unlink(repo / "link")
    os.symlink("README.md", repo / "link")
    (repo / "untracked.py").write_text("not source\n")


@pytest.mark.parametrize("form", ["v2", "v3", "v4", "split", "no cache tree"])
def test_snapshot_equals_git_for_every_index_format(tree_repo, form):
    repo = tree_repo
    if form == "no cache tree":
        from dulwich.repo import Repo

        with Repo(str(repo)) as r:
            r.open_index().write()  # dulwich writes no TREE extension: every tree is built
        assert read_index(str(repo / ".git/index")).cached_trees == {}
    elif form == "split":
        git(repo, "update-index", "--split-index")
        (repo / "new.py").write_text("added after the split\n")
        git(repo, "add", "new.py")  # lands in the split file, over the shared index
        git(repo, "rm", "-q", "--cached", "src/a.py")
    else:
        git(repo, "update-index", "--index-version", form[1])
    if form == "v3":
        (repo / "later.py").write_text("intent to add\n")
        git(repo, "add", "-N", "later.py")  # extended flags: version 3
    dirty(repo)
    index = read_index(str(repo / ".git/index"))
    assert index is not None and entries(index) == ls_files(repo)
    assert index.version == {"v2": 2, "v3": 3, "v4": 4}.get(form, 2)
    assert our_tree(repo) == git_tree(repo)
    git(repo, "fsck", "--strict")


def test_clean_work_tree_is_the_head_tree_and_not_dirty(tree_repo):
    with open_store(tree_repo) as store:
        snap = snapshot(store)
    assert not snap.dirty and snap.tree.decode() == git(tree_repo, "rev-parse", "HEAD^{tree}").strip()
    assert snap.objects == []


def test_assume_unchanged_and_skip_worktree_are_taken_from_the_index(tree_repo):
    repo = tree_repo
    git(repo, "update-index", "--assume-unchanged", "src/a.py")
    git(repo, "update-index", "--skip-worktree", "src/pkg/c.py")
    (repo / "src/a.py").write_text("git does not look at this\n")
    os.unlink(repo / "src/pkg/c.py")
    (repo / "src/pkg/b.py").write_text("but this changed\n")
    with open_store(repo) as store:
        snap = snapshot(store)
        store.write(snap.objects)
    assert snap.dirty
    assert git(repo, "show", f"{snap.tree.decode()}:src/a.py") == "src/a.py\n"
    assert git(repo, "show", f"{snap.tree.decode()}:src/pkg/c.py") == "src/pkg/c.py\n"
    assert snap.tree.decode() == git_tree(repo)


def test_sparse_index_directories_keep_their_trees(tree_repo):
    repo = tree_repo
    git(repo, "sparse-checkout", "init", "--cone", "--sparse-index")
    git(repo, "sparse-checkout", "set", "src")
    assert not (repo / "docs").exists()
    sparse = ls_files(repo, "--sparse")
    assert (0o040000, git(repo, "rev-parse", "HEAD:docs").strip(), 0, "docs/") in sparse
    index = read_index(str(repo / ".git/index"))
    assert entries(index) == sparse
    (repo / "src/pkg/b.py").write_text("changed in the sparse checkout\n")
    assert our_tree(repo) == git_tree(repo)
    assert git(repo, "rev-parse", f"{our_tree(repo)}:docs").strip() == git(repo, "rev-parse", "HEAD:docs").strip()


def test_submodule_is_kept_as_a_gitlink(tree_repo, tmp_path):
    repo = tree_repo
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "s.txt").write_text("sub\n")
    git(sub, "add", ".")
    git(sub, "commit", "-qm", "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(repo, "commit", "-qm", "submodule")
    (repo / "src/a.py").write_text("changed beside a submodule\n")
    tree = our_tree(repo)
    assert tree == git_tree(repo)
    assert git(repo, "ls-tree", tree, "vendor/sub").startswith("160000 commit ")


def test_racily_clean_entry_is_hashed(tree_repo):
    """An edit of the same size in the index's own tick keeps size and time: only the
    content tells, as in git."""
    repo = tree_repo
    path = repo / "src/a.py"
    st = os.stat(path)
    os.utime(repo / ".git/index", ns=(st.st_mtime_ns, st.st_mtime_ns))  # entry as new as the index: racy
    path.write_text("src/A.py\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time
    index = read_index(str(repo / ".git/index"))
    i = index.paths.index(b"src/a.py")
    assert (index.sizes[i], index.mtimes[i]) == (os.stat(path).st_size, os.stat(path).st_mtime_ns)
    with open_store(repo) as store:
        snap = snapshot(store)
    assert snap.dirty and snap.tree.decode() == git_tree(repo)


def test_conflicted_paths_record_the_file_on_disk(tree_repo):
    repo = tree_repo
    git(repo, "checkout", "-qb", "other")
    (repo / "src/a.py").write_text("theirs\n")
    git(repo, "commit", "-qam", "theirs")
    git(repo, "checkout", "-q", "main")
    (repo / "src/a.py").write_text("ours\n")
    git(repo, "commit", "-qam", "ours")
    git(repo, "merge", "-q", "other", check=False)
    index = read_index(str(repo / ".git/index"))
    assert entries(index) == ls_files(repo)
    assert {s for _, _, s, p in entries(index) if p == "src/a.py"} == {1, 2, 3}
    tree = our_tree(repo)
    assert "<<<<<<<" in git(repo, "show", f"{tree}:src/a.py")
    assert git(repo, "show", f"{tree}:src/pkg/b.py") == "src/pkg/b.py\n"


def test_index_damaged_in_place_is_refused_not_misread(tree_repo):
    """A writer that does not rename (or a torn copy) leaves a file whose checksum
    fails: no snapshot is made from it, and nothing is written."""
    repo = tree_repo
    index_path = repo / ".git/index"
    data = bytearray(index_path.read_bytes())
    data[100] ^= 0xFF  # one flipped byte in the middle of an entry
    index_path.write_bytes(bytes(data))
    with open_store(repo) as store, pytest.raises(IndexFormatError, match="checksum"):
        snapshot(store)
    index_path.write_bytes(bytes(data[: len(data) // 2]))  # half written
    with open_store(repo) as store, pytest.raises(IndexFormatError, match="checksum"):
        snapshot(store)


def test_index_rewritten_by_git_meanwhile_gives_one_of_its_versions(tree_repo):
    """git replaces the index by renaming a lock file over it: each snapshot sees one
    whole version, never a mix, while git adds and drops a file over and over."""
    import threading

    repo = tree_repo
    (repo / "extra.py").write_text("tracked every other moment\n")
    (repo / "src/a.py").write_text("changed\n")
    without = git_tree(repo)
    git(repo, "add", "extra.py")
    with_extra = git_tree(repo)
    stop = threading.Event()

    def toggle():
        while not stop.is_set():
            git(repo, "rm", "-q", "--cached", "extra.py")
            git(repo, "add", "extra.py")

    thread = threading.Thread(target=toggle)
    thread.start()
    seen = set()
    try:
        with open_store(repo) as store:
            for _ in range(40):
                seen.add(snapshot(store).tree.decode())
    finally:
        stop.set()
        thread.join()
    assert seen <= {without, with_extra}


def test_unknown_required_extension_is_refused(tree_repo):
    import hashlib

    index_path = tree_repo / ".git/index"
    body = index_path.read_bytes()[:-20] + b"abcd\0\0\0\0"  # lower case: git would refuse it too
    index_path.write_bytes(body + hashlib.sha1(body).digest())
    assert "abcd" in subprocess.run(["git", "status"], cwd=tree_repo, capture_output=True, text=True).stderr
    with pytest.raises(IndexFormatError, match="'abcd' extension"):
        read_index(str(index_path))


def test_a_thousand_files_with_a_few_changes_match_git(repo):
    """At some scale: only the changed paths' trees are new; git agrees on the tree."""
    lines = []
    for i in range(1000):
        lines.append(f"M 100644 inline d{i % 20}/e{i % 7}/f{i}.py\ndata {len(str(i)) + 1}\n{i}\n")
    stream = "commit refs/heads/main\ncommitter T <t@t> 0 +0000\ndata 4\nbig\nfrom HEAD\n" + "".join(lines)
    git(repo, "fast-import", "--quiet", input_text=stream)
    git(repo, "reset", "-q", "--hard")
    (repo / "d13/e1/f113.py").write_text("changed\n")
    os.unlink(repo / "d5/e0/f805.py")
    with open_store(repo) as store:
        snap = snapshot(store)
        store.write(snap.objects)
    assert snap.tree.decode() == git_tree(repo)
    new_trees = [o for o in snap.objects if o.type_name == b"tree"]
    assert len(new_trees) == 5  # root, d13, d13/e1, d5, d5/e0: the rest came from git's cache tree


def finished_run(client) -> bytes:
    """A run made now; its last commit."""
    run_id = client.create_run("0").info.run_id
    client.set_terminated(run_id)
    return client.get_run(run_id).source.run_commit.encode()


def _counting_tree_reads(store) -> list[bytes]:
    reads: list[bytes] = []
    read = store.tree

    def tree(sha):
        reads.append(sha)
        return read(sha)

    store.tree = tree
    return reads


def test_tree_changes_reads_only_differing_subtrees(repo):
    import gitml
    from gitml.runlog.lineage import code_diff

    for i in range(200):
        os.makedirs(repo / f"d{i}", exist_ok=True)
        (repo / f"d{i}/f.py").write_text(f"{i}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "many folders")
    c = gitml.Client(repo)
    ca = finished_run(c)
    (repo / "d7/f.py").write_text("changed\n")
    cb = finished_run(c)
    store = c.tracker.store
    reads = _counting_tree_reads(store)
    patch = code_diff(store, ca, cb, labels=("a", "b"))
    assert "-7\n+changed\n" in patch and patch.count("+++ ") == 1
    assert len(reads) <= 6  # the two roots, the two d7, the two .gitml: not 200 folders
    reads.clear()
    changes = tree_changes(store, store.commit(ca).tree, store.commit(cb).tree, skip=".gitml/run")
    assert list(changes) == ["d7/f.py"] and len(reads) <= 6
    c.close()


def test_checkout_writes_only_what_the_run_changed(tree_repo):
    import gitml
    from gitml.names import RECORD_DIR
    from gitml.store.worktree import restore

    repo = tree_repo
    dirty(repo)
    os.unlink(repo / "untracked.py")
    c = gitml.Client(repo)
    run_commit = finished_run(c)
    expected = git_tree(repo)
    git(repo, "reset", "-q", "--hard")
    store = c.tracker.store
    head = git(repo, "rev-parse", "HEAD").strip().encode()
    reads = _counting_tree_reads(store)
    restore(store, head, store.commit(run_commit).tree, branch="replay", skip=RECORD_DIR)
    assert len(reads) < 30
    assert git_tree(repo) == expected
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "replay"
    c.close()


def test_checkout_of_a_run_on_an_older_commit(tree_repo):
    import gitml
    from gitml.errors import ConflictError
    from gitml.names import RECORD_DIR
    from gitml.store.worktree import restore

    repo = tree_repo
    old = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src/a.py").write_text("the run's edit\n")
    c = gitml.Client(repo)
    run_commit = finished_run(c)
    expected = git_tree(repo)
    git(repo, "checkout", "-q", "--", ".")
    git(repo, "rm", "-q", "docs/x.md")
    git(repo, "commit", "-qm", "docs gone")
    (repo / "docs").mkdir()
    (repo / "docs/x.md").write_text("my untracked notes\n")  # the run's commit tracks this path
    store = c.tracker.store
    run_tree = store.commit(run_commit).tree
    with pytest.raises(ConflictError, match="docs/x.md"):
        restore(store, old.encode(), run_tree, branch=None, skip=RECORD_DIR)
    assert (repo / "docs/x.md").read_text() == "my untracked notes\n"
    os.unlink(repo / "docs/x.md")
    restore(store, old.encode(), run_tree, branch=None, skip=RECORD_DIR)
    assert git(repo, "rev-parse", "HEAD").strip() == old
    assert git_tree(repo) == expected
    assert git(repo, "status", "--porcelain").strip() == "M src/a.py"
    c.close()


def test_snapshot_searches_the_packs_only_for_what_changed(repo):
    """The cache tree's unchanged folders are vouched for by HEAD's trees along the
    changed paths, not by a search of every pack for each of them."""
    lines = [f"M 100644 inline d{i}/f.py\ndata {len(str(i)) + 1}\n{i}\n" for i in range(300)]
    stream = "commit refs/heads/main\ncommitter T <t@t> 0 +0000\ndata 4\nbig\nfrom HEAD\n" + "".join(lines)
    git(repo, "fast-import", "--quiet", input_text=stream)
    git(repo, "reset", "-q", "--hard")
    (repo / "d7/f.py").write_text("changed\n")
    with open_store(repo) as store:
        lookups: list[bytes] = []
        contains = store.contains
        store.contains = lambda sha: lookups.append(sha) or contains(sha)
        reads = _counting_tree_reads(store)
        snap = snapshot(store)
        store.write(snap.objects)
    assert snap.tree.decode() == git_tree(repo)
    assert len(lookups) <= 4 and len(reads) <= 2  # the new blob and trees; HEAD's root (and d7)

"""What code a run ran: the HEAD commit plus the uncommitted changes to tracked files.

Like ``git status``, a file is re-read only when its size or time differs from
the index entry (or the entry is racily clean); its blob is then hashed and
compared. Untracked files are not part of a run's source, as in ``git stash``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from dulwich.objects import Blob, ShaFile

from gitml.store.git import GitStore, tree_from_files

GITLINK_MODE = 0o160000
SYMLINK_MODE = 0o120000


@dataclass
class Snapshot:
    """The source of a run: commit, branch, dirty flag and the tree that ran."""

    commit: bytes | None
    branch: str | None
    dirty: bool
    tree: bytes | None
    objects: list[ShaFile] = field(default_factory=list)


_index_tree_cache: dict[tuple, tuple[bytes | None, list[ShaFile]]] = {}


def snapshot(store: GitStore) -> Snapshot:
    """Take the snapshot of the work tree of ``store`` as it is now."""
    head = store.head()
    head_tree = store.commit(head.commit).tree if head.commit else None
    if store.workdir is None:
        return Snapshot(head.commit, head.branch, False, head_tree)
    index_path = store.repo.index_path()
    try:
        ist = os.stat(index_path)
    except FileNotFoundError:
        return Snapshot(head.commit, head.branch, False, head_tree)
    entries = _index_entries(store, index_path, ist)
    from dulwich.index import ConflictedIndexEntry  # only a run's start needs the index

    racy_ns = ist.st_mtime_ns
    files: dict[str, tuple[int, bytes]] = {}
    changed: list[tuple[str, Blob | None]] = []
    for path, entry in entries:
        name = path.decode("utf-8", "surrogateescape")
        full = os.path.join(store.workdir, name)
        if isinstance(entry, ConflictedIndexEntry):
            entry = entry.this or entry.ancestor or entry.other
            if entry is None:
                continue
        if entry.mode == GITLINK_MODE:
            files[name] = (entry.mode, entry.sha)
            continue
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            changed.append((name, None))  # deleted: dirty, and absent from the tree
            continue
        mode = _mode(st)
        mtime_ns = _entry_mtime_ns(entry)
        if st.st_size == entry.size and st.st_mtime_ns == mtime_ns and mtime_ns < racy_ns and mode == entry.mode:
            files[name] = (entry.mode, entry.sha)
            continue
        blob = _blob_of(full, st)
        if blob.id != entry.sha or mode != entry.mode:
            changed.append((name, blob))
        files[name] = (mode, blob.id)
    key = (store.controldir, ist.st_mtime_ns, ist.st_size, ist.st_ino, tuple((n, b and b.id) for n, b in changed))
    cached = _index_tree_cache.get(key)
    if cached is None:
        trees: list[ShaFile] = []
        cached = (tree_from_files(files, trees) if files else None, trees)
        _index_tree_cache.clear()
        _index_tree_cache[key] = cached
    tree, trees = cached
    dirty = bool(changed) or tree != head_tree
    objects: list[ShaFile] = []
    if dirty:
        contains = store.contains
        objects = [o for o in [*(b for _, b in changed if b), *trees] if not contains(o.id)]
    return Snapshot(head.commit, head.branch, dirty, tree, objects)


_index_cache: dict[tuple, list] = {}


def _index_entries(store: GitStore, path: str, st: os.stat_result) -> list:
    """The entries of the index file, parsed again only when the file changed."""
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    entries = _index_cache.get(key)
    if entries is None:
        entries = list(store.repo.open_index().items())
        _index_cache.clear()
        _index_cache[key] = entries
    return entries


def tracked_paths(store: GitStore) -> set[str]:
    """The paths git tracks (the index), from the same cache a snapshot uses."""
    index_path = store.repo.index_path()
    try:
        st = os.stat(index_path)
    except FileNotFoundError:
        return set()
    return {p.decode("utf-8", "surrogateescape") for p, _ in _index_entries(store, index_path, st)}


def _mode(st: os.stat_result) -> int:
    if stat.S_ISLNK(st.st_mode):
        return SYMLINK_MODE
    return 0o100755 if st.st_mode & 0o100 else 0o100644


def _entry_mtime_ns(entry) -> int:
    mtime = entry.mtime
    if isinstance(mtime, tuple):
        return mtime[0] * 1_000_000_000 + mtime[1]
    return int(mtime * 1_000_000_000)


def _blob_of(path: str, st: os.stat_result) -> Blob:
    if stat.S_ISLNK(st.st_mode):
        return Blob.from_string(os.fsencode(os.readlink(path)))
    with open(path, "rb") as f:
        return Blob.from_string(f.read())


def restore(store: GitStore, commit: bytes | None, files: dict[str, tuple[int, bytes]], *, branch: str | None) -> None:
    """Check out ``commit`` (detached, or as a new ``branch``), then write ``files``
    into the work tree as uncommitted changes, removing tracked files absent from it.

    Refuses when the work tree has uncommitted changes to tracked files.
    """
    from dulwich import porcelain

    from gitml.errors import ConflictError, RepositoryError

    if store.workdir is None:
        raise RepositoryError("this repository has no work tree to check out into")
    from dulwich.refs import check_ref_format

    from gitml.errors import InvalidInputError

    if branch is not None:
        if not check_ref_format(f"refs/heads/{branch}".encode()):
            raise InvalidInputError(f"{branch!r} is not a valid branch name")
        if commit is None:
            raise ConflictError("the run was made before the first commit: there is no commit to branch from")
        if store.ref(f"refs/heads/{branch}".encode()) is not None:
            raise ConflictError(f"branch {branch!r} already exists")
    current = snapshot(store)
    if current.dirty:
        raise ConflictError("the work tree has uncommitted changes to tracked files; commit or stash them first")
    tracked = tracked_paths(store)
    for path in sorted(files):
        if path not in tracked and os.path.lexists(os.path.join(store.workdir, path)):
            raise ConflictError(f"the untracked file {path!r} would be overwritten; move or remove it first")
    if commit is not None:
        porcelain.checkout(store.repo, commit.decode(), new_branch=branch)
    base = store.files(store.commit(commit).tree) if commit else {}
    root = os.path.realpath(store.workdir)
    for path in sorted(set(base) | set(files)):
        if base.get(path) == files.get(path):
            continue
        full = os.path.realpath(os.path.join(root, path))
        if not full.startswith(root + os.sep):
            raise ConflictError(f"refusing to write {path!r} outside the work tree")
        if path not in files:
            if os.path.lexists(full):
                os.unlink(full)
            continue
        mode, sha = files[path]
        if mode == GITLINK_MODE:
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if os.path.lexists(full):
            os.unlink(full)
        data = store.blob(sha)
        if mode == SYMLINK_MODE:
            os.symlink(os.fsdecode(data), full)
        else:
            with open(full, "wb") as f:
                f.write(data)
            os.chmod(full, 0o755 if mode == 0o100755 else 0o644)

"""What code a run ran: the HEAD commit plus the uncommitted changes to tracked files.

Like ``git status``, a file is re-read only when its size, time or kind differs from
the index entry (or the entry is racily clean); its blob is then hashed and compared.
Entries git marks assume-unchanged or skip-worktree, gitlinks (submodules) and the
directory entries of a sparse index are taken from the index without a look at the
disk. The tree is built only along the paths of changed files: every other directory
keeps the tree id git's cache tree (the index's ``TREE`` extension) holds for it.
Untracked files are not part of a run's source, as in ``git stash``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Literal

from dulwich.objects import Blob, ShaFile, Tree

from gitml.store.git import TREE_MODE, GitStore
from gitml.store.gitindex import (
    ASSUME_VALID,
    INTENT_TO_ADD,
    SKIP_WORKTREE,
    STAGE_MASK,
    GitIndex,
    index_mtime_ns,
    read_index,
)
from gitml.store.ids import oid, refname

GITLINK_MODE = 0o160000
SYMLINK_MODE = 0o120000
_KIND = 0o170100  # file type and the owner's execute bit: all of a mode git records


@dataclass
class Snapshot:
    """The source of a run: commit, branch, dirty flag and the tree that ran."""

    commit: bytes | None
    branch: str | None
    dirty: bool
    tree: bytes | None
    objects: list[ShaFile] = field(default_factory=list)


# a changed path -> (mode, raw sha, content) of what is on disk, or None: gone
Changes = dict[bytes, "tuple[int, bytes, bytes] | None"]

_tree_memo: dict[tuple, tuple[bytes | None, list[tuple[bytes, bytes]]]] = {}


def snapshot(store: GitStore, *, keep: bool = True) -> Snapshot:
    """Take the snapshot of the work tree of ``store`` as it is now (``keep=False``: the
    index's columns are not saved for the next process, as when it is about to be rewritten)."""
    head = store.head()
    head_tree = store.commit(head.commit).tree if head.commit else None
    if store.workdir is None:
        return Snapshot(head.commit, head.branch, False, head_tree)
    index_path = store.repo.index_path()
    index = read_index(index_path, columns=_columns_path(store, index_path), keep=keep)
    if index is None:
        return Snapshot(head.commit, head.branch, False, head_tree)
    changes = worktree_changes(store.workdir, index, index_mtime_ns(index_path), filemode=_filemode(store))
    key = (index_path, index.checksum, tuple((p, c and c[:2]) for p, c in sorted(changes.items())))
    memo = _tree_memo.get(key)
    if memo is None:
        new_trees: list[tuple[bytes, bytes]] = []
        root = _TreeBuilder(store, index, changes, new_trees, head_tree).build(b"", 0, len(index.paths))
        memo = (root.hex().encode() if root else None, new_trees)
        _tree_memo.clear()
        _tree_memo[key] = memo
    tree, new_trees = memo
    dirty = bool(changes) or tree != head_tree
    objects: list[ShaFile] = []
    if dirty:
        for change in changes.values():
            if change and not store.contains(change[1].hex().encode()):
                objects.append(Blob.from_string(change[2]))
        for sha, raw in new_trees:
            hexsha = sha.hex().encode()
            if not store.contains(hexsha):
                objects.append(Tree.from_raw_string(Tree.type_num, raw, oid(hexsha)))
    return Snapshot(head.commit, head.branch, dirty, tree, objects)


def worktree_changes(workdir: str, index: GitIndex, racy_ns: int, *, filemode: bool = True) -> Changes:
    """The tracked paths whose file differs from the index entry (as ``git diff``)."""
    mask = _KIND if filemode else 0o170000
    special = ASSUME_VALID | SKIP_WORKTREE | STAGE_MASK | INTENT_TO_ADD
    changes: Changes = {}
    conflicted: set[bytes] = set()
    lstat = os.lstat
    columns = zip(index.paths, index.mtime_s, index.mtime_ns, index.modes, index.sizes, index.flags, strict=False)
    fd = os.open(workdir, os.O_RDONLY)
    try:
        for i, (path, mtime_s, mtime_ns, mode, size, flags) in enumerate(columns):
            mtime = mtime_s * 1_000_000_000 + mtime_ns
            if flags & special:
                if flags & (ASSUME_VALID | SKIP_WORKTREE) and not flags & (STAGE_MASK | INTENT_TO_ADD):
                    continue  # taken from the index, as git does
                if flags & STAGE_MASK:
                    if path in conflicted:
                        continue
                    conflicted.add(path)
                size = -1  # always the file on disk: a conflict's result or an added file
            elif mode == GITLINK_MODE or mode == TREE_MODE:
                continue
            try:
                st = lstat(path, dir_fd=fd)
            except OSError:
                changes[path] = None  # deleted (or a folder now): absent from the tree
                continue
            if st.st_size == size and st.st_mtime_ns == mtime and mtime < racy_ns and st.st_mode & mask == mode & mask:
                continue
            sha = index.sha(i) if size >= 0 else b""
            change = _recheck(path, fd, st, mode, sha, size, mtime, racy_ns, mask)
            if change is not False:
                changes[path] = change
    finally:
        os.close(fd)
    return changes


def _recheck(
    path: bytes, fd: int, st: os.stat_result, mode: int, sha: bytes, size: int, mtime: int, racy_ns: int, mask: int
) -> tuple[int, bytes, bytes] | None | Literal[False]:
    """An entry whose stat data does not vouch for it: False when unchanged, else the change."""
    if stat.S_ISDIR(st.st_mode):
        return None  # a file replaced by a folder: the file is gone
    disk_mode = SYMLINK_MODE if stat.S_ISLNK(st.st_mode) else 0o100755 if st.st_mode & 0o100 else 0o100644
    if mask != _KIND and disk_mode != SYMLINK_MODE and mode != SYMLINK_MODE:
        disk_mode = mode  # core.fileMode false: the index's execute bit stands
    if disk_mode == mode and st.st_size == size and mtime < racy_ns:
        recorded_s, recorded_ns = divmod(mtime, 1_000_000_000)
        if recorded_ns == 0 and st.st_mtime_ns // 1_000_000_000 == recorded_s:
            return False  # an index written without nanoseconds: seconds decide, as in git
    if disk_mode == SYMLINK_MODE:
        data = os.fsencode(os.readlink(path, dir_fd=fd))
    else:
        try:
            file_fd = os.open(path, os.O_RDONLY, dir_fd=fd)
        except OSError:
            return None
        with open(file_fd, "rb") as f:
            data = f.read()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).digest()
    if blob == sha and disk_mode == mode:
        return False
    return disk_mode, blob, data


class _TreeBuilder:
    """Trees of the index with the changes applied, rebuilt only where something changed."""

    def __init__(
        self,
        store: GitStore,
        index: GitIndex,
        changes: Changes,
        out: list[tuple[bytes, bytes]],
        head_tree: bytes | None,
    ):
        self.store, self.index, self.changes, self.out = store, index, changes, out
        self.heads: dict[bytes, dict[bytes, tuple[int, bytes]]] = {}  # folder -> HEAD's tree of it, as read
        self.head_tree = head_tree
        self.dirty_dirs = {b""}
        for path in changes:
            parts = path.split(b"/")
            for n in range(1, len(parts)):
                self.dirty_dirs.add(b"/".join(parts[:n]))

    def build(self, directory: bytes, lo: int, hi: int) -> bytes | None:
        """The raw id of the tree of ``directory`` (entries ``lo:hi``), None when empty."""
        if directory not in self.dirty_dirs:
            cached = self.index.cached_trees.get(directory)
            if cached is not None and self._stored(directory, cached.hex().encode()):
                return cached
        index, changes = self.index, self.changes
        paths = index.paths
        prefix = directory + b"/" if directory else b""
        start = len(prefix)
        entries: list[bytes] = []
        i = lo
        last = None
        while i < hi:
            path = paths[i]
            slash = path.find(b"/", start)
            if slash >= 0:
                name = path[start:slash]
                j = bisect_left(paths, path[:slash] + b"0", i, hi)  # past every path below name/
                if slash == len(path) - 1 and j == i + 1 and index.modes[i] == TREE_MODE:
                    sha: bytes | None = index.sha(i)  # a sparse index's directory: its tree as git has it
                else:
                    sha = self.build(path[:slash], i, j)
                if sha is not None:
                    entries.append(b"40000 %s\0%s" % (name, sha))
                i = j
                continue
            i += 1
            if path == last:
                continue  # the other stages of a conflicted path
            last = path
            if path in changes:
                change = changes[path]
                if change is None:
                    continue
                mode, sha = change[0], change[1]
            else:
                mode, sha = _normal_mode(index.modes[i - 1]), index.sha(i - 1)
            entries.append(b"%o %s\0%s" % (mode, path[start:], sha))
        if not entries:
            return None
        raw = b"".join(entries)
        tree_id = hashlib.sha1(b"tree %d\0" % len(raw) + raw).digest()
        self.out.append((tree_id, raw))
        return tree_id

    def _stored(self, directory: bytes, tree: bytes) -> bool:
        """Whether the cache tree's ``tree`` for ``directory`` is in the object store:
        without a lookup when HEAD has it there (one tree read per changed folder, not
        one pack search per unchanged one)."""
        parent, _, name = directory.rpartition(b"/")
        entry = self._head(parent).get(name)
        return entry is not None and entry[1] == tree or self.store.contains(tree)

    def _head(self, directory: bytes) -> dict[bytes, tuple[int, bytes]]:
        """HEAD's tree of ``directory`` (empty when HEAD has none there)."""
        entries = self.heads.get(directory)
        if entries is None:
            if not directory:
                sha = self.head_tree
            else:
                parent, _, name = directory.rpartition(b"/")
                entry = self._head(parent).get(name)
                sha = entry[1] if entry is not None and entry[0] == TREE_MODE else None
            entries = self.store.tree(sha) if sha else {}
            self.heads[directory] = entries
        return entries


def _normal_mode(mode: int) -> int:
    if mode & 0o170000 == 0o100000:
        return 0o100755 if mode & 0o100 else 0o100644
    return mode


def _columns_path(store: GitStore, index_path: str) -> str:
    """Where the parsed columns of this index are kept (one file per work tree)."""
    name = hashlib.sha1(os.fsencode(os.path.abspath(index_path))).hexdigest()[:16]
    return os.path.join(store.gitml_dir, "index-columns", name)


_filemodes: dict[str, tuple[tuple[int, int, int], bool]] = {}  # config path -> (its stat, core.fileMode)


def _filemode(store: GitStore) -> bool:
    """``core.fileMode``, read again only when the config file changed (git rewrites it by a
    rename): parsing it for every run was a tenth of ``start_run`` (W2)."""
    path = os.path.join(store.commondir, "config")
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        stamp = None
    hit = _filemodes.get(path)
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        value = store.repo.get_config().get_boolean((b"core",), b"filemode", True)
    except (KeyError, ValueError):
        value = True
    if stamp is not None:
        _filemodes[path] = (stamp, value)
    return value


def is_tracked(store: GitStore, path: str) -> bool:
    """Whether git's index tracks ``path`` (relative, ``/``-separated)."""
    index = read_index(store.repo.index_path())
    return index is not None and os.fsencode(path) in index


def tree_changes(
    store: GitStore, old: bytes | None, new: bytes | None, *, skip: str | None = None, prefix: str = ""
) -> dict[str, tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]]:
    """``{path: (old entry, new entry)}`` for the files that differ between two trees
    (None: absent). Subtrees with equal ids are not read: the cost follows the
    difference, not the size of the trees. ``skip`` names a folder left out."""
    out: dict[str, tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]] = {}
    a = store.tree(old) if old else {}
    b = store.tree(new) if new else {}
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        if ea == eb:
            continue
        path = prefix + name.decode("utf-8", "surrogateescape")
        if path == skip:
            continue
        tree_a = ea[1] if ea and ea[0] == TREE_MODE else None
        tree_b = eb[1] if eb and eb[0] == TREE_MODE else None
        if tree_a or tree_b:
            out.update(tree_changes(store, tree_a, tree_b, skip=skip, prefix=path + "/"))
        file_a = ea if ea and not tree_a else None
        file_b = eb if eb and not tree_b else None
        if file_a or file_b:
            out[path] = (file_a, file_b)
    return out


def _untracked_in_the_way(store: GitStore, path: str) -> str | None:
    """An untracked file at ``path`` (or, where a folder of tracked files stands, in it)."""
    full = os.path.join(store.workdir or "", path)
    if not os.path.lexists(full) or is_tracked(store, path):
        return None
    if not os.path.isdir(full) or os.path.islink(full):
        return path
    for folder, _dirs, files in os.walk(full):  # a folder the checkout replaces with a file
        for name in files:
            inner = os.path.relpath(os.path.join(folder, name), store.workdir or "").replace(os.sep, "/")
            if not is_tracked(store, inner):
                return inner
    return None


def restore(store: GitStore, commit: bytes | None, run_tree: bytes, *, branch: str | None, skip: str) -> None:
    """Check out ``commit`` (detached, or as a new ``branch``), then write the files of
    ``run_tree`` (less the folder ``skip``) that differ from it into the work tree as
    uncommitted changes, removing the tracked files absent from it.

    Refuses when the work tree has uncommitted changes to tracked files, or when a
    file the run adds exists untracked.
    """
    from dulwich.refs import check_ref_format

    from gitml.errors import ConflictError, InvalidInputError, RepositoryError

    if store.workdir is None:
        raise RepositoryError("this repository has no work tree to check out into")
    if branch is not None:
        if not check_ref_format(refname(f"refs/heads/{branch}".encode())):
            raise InvalidInputError(f"{branch!r} is not a valid branch name")
        if commit is None:
            raise ConflictError("the run was made before the first commit: there is no commit to branch from")
        if store.ref(f"refs/heads/{branch}".encode()) is not None:
            raise ConflictError(f"branch {branch!r} already exists")
    current = snapshot(store, keep=commit is None or commit == store.head().commit)
    index_path = store.repo.index_path()
    if current.tree is not None and not os.path.exists(index_path):
        raise RepositoryError(f"git's index {index_path} is missing; `git reset` rebuilds it from HEAD")
    if current.dirty:
        raise ConflictError("the work tree has uncommitted changes to tracked files; commit or stash them first")
    # the work tree is clean, so what git tracks now is the current tree: a path the
    # commit or the run has and that tree lacks is untracked if it exists
    base = store.commit(commit).tree if commit else None
    added = tree_changes(store, current.tree, run_tree, skip=skip)
    if base is not None and commit != current.commit:
        added.update(tree_changes(store, current.tree, base))
    for path, (now, then) in sorted(added.items()):
        if now is None and then is not None:
            untracked = _untracked_in_the_way(store, path)
            if untracked is not None:
                raise ConflictError(f"the untracked file {untracked!r} would be overwritten; move or remove it first")
    if base is not None and commit != current.commit:
        # the files that differ written, git's index rewritten (see gitml.store.checkout)
        from gitml.store.checkout import switch

        columns = _columns_path(store, index_path)
        index = read_index(index_path, columns=columns) or GitIndex(2, b"")
        switch(store, index_path, index, current.tree, base, columns=columns)
    if commit is not None:
        # as dulwich's porcelain.update_head, without importing porcelain (60 ms)
        refs = store.repo.refs
        if branch is not None:
            ref = f"refs/heads/{branch}".encode()
            if not refs.add_if_new(refname(ref), oid(commit)):
                raise ConflictError(f"branch {branch!r} already exists")
            refs.set_symbolic_ref(refname(b"HEAD"), refname(ref))
        else:
            del refs[refname(b"HEAD")]
            refs[refname(b"HEAD")] = oid(commit)
    root = os.path.realpath(store.workdir)
    for path, (_, entry) in sorted(tree_changes(store, base, run_tree, skip=skip).items()):
        # the folder resolved, not the file: a symbolic link being replaced is not followed
        folder, name = os.path.split(os.path.join(root, path))
        full = os.path.join(os.path.realpath(folder), name)
        if not full.startswith(root + os.sep):
            raise ConflictError(f"refusing to write {path!r} outside the work tree")
        if entry is None:
            if os.path.lexists(full):
                os.unlink(full)
            continue
        mode, sha = entry
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

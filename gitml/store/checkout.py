"""Switching the work tree and git's index from one commit's tree to another's, in time
that follows what differs (as ``git switch --detach``, without the git binary).

The two trees are walked together and subtrees with equal ids are not read; only the
files that differ are written or removed. git's index is then written anew: the
entries of unchanged paths keep their stat data as they were, the written files get
theirs, and the cache tree (``TREE``) holds the target's tree of every folder along the
changed paths (so the next snapshot rebuilds nothing). The index is written as git
writes it: under ``index.lock`` (taken with ``O_EXCL``, refused when another process
holds it), renamed over the index when complete. It is written as version 2 (3 when an
entry has extended flags); a split index (``link``) is written whole, a sparse index
keeps its ``sdir``; extensions that would be stale (untracked cache, fsmonitor, the
offset tables, resolve-undo) are dropped, as git drops them when it cannot keep them.

Entries git marks skip-worktree are updated in the index and left alone on disk; a
path the target adds is marked skip-worktree when a cone-mode sparse checkout leaves
it out. The caller checks the work tree is clean first (:func:`gitml.store.worktree.restore`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from array import array
from bisect import bisect_left
from itertools import accumulate

from gitml.errors import ConflictError, IndexLockedError
from gitml.store.git import TREE_MODE, GitStore
from gitml.store.gitindex import SKIP_WORKTREE, GitIndex, remember, written_index

GITLINK_MODE = 0o160000
SYMLINK_MODE = 0o120000

# a changed path -> (old entry, new entry): (mode, raw id) or None; a sparse index's
# directory entry is a path ending in "/" with TREE_MODE
Changes = dict[bytes, "tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]"]


def switch(
    store: GitStore,
    index_path: str,
    index: GitIndex,
    old_tree: bytes | None,
    new_tree: bytes,
    *,
    columns: str | None = None,
) -> None:
    """Make the work tree and the index at ``index_path`` (``index``, as read) hold
    ``new_tree`` instead of ``old_tree``, which they hold now. HEAD is not moved. The
    new index's columns are kept in ``columns`` (see :func:`gitml.store.gitindex.read_index`)."""
    assert store.workdir is not None
    lock = index_path + ".lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise IndexLockedError(lock) from None
    try:
        changes: Changes = {}
        new_dirs: dict[bytes, bytes | None] = {b"": bytes.fromhex(new_tree.decode())}
        _walk(store, index, old_tree, new_tree, b"", changes, new_dirs)
        for path in changes:  # before anything is written: as `git fsck` refuses such trees
            if any(part in (b"", b".", b"..") or part.lower() == b".git" for part in path.rstrip(b"/").split(b"/")):
                raise ConflictError(f"refusing to write {os.fsdecode(path)!r}: not a path git checks out")
        sparse = _SparseCone.read(store)
        rows = _apply(store.workdir, store, index, changes, sparse)
        data, written = _encode(index, changes, rows, new_dirs, _entry_bytes(index_path, index))
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
        os.close(fd)
        fd = -1
        os.replace(lock, index_path)
        remember(index_path, written, columns=columns)  # the next snapshot does not parse it again
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        raise


def _walk(
    store: GitStore,
    index: GitIndex,
    old: bytes | None,
    new: bytes | None,
    prefix: bytes,
    out: Changes,
    dirs: dict[bytes, bytes | None],
) -> None:
    """The files (and sparse directory entries) that differ below ``prefix``; ``dirs``
    gets the target's raw tree id (None: gone) of every folder walked."""
    a = store.tree(old) if old else {}
    b = store.tree(new) if new else {}
    for name in a.keys() | b.keys():
        ea, eb = a.get(name), b.get(name)
        if ea == eb:
            continue
        path = prefix + name
        tree_a = ea[1] if ea and ea[0] == TREE_MODE else None
        tree_b = eb[1] if eb and eb[0] == TREE_MODE else None
        if tree_a and _is_sparse_dir(index, path + b"/"):
            # a sparse index holds the folder as one entry: its tree id changes, no more
            dirs[path] = bytes.fromhex(tree_b.decode()) if tree_b else None
            out[path + b"/"] = (
                (TREE_MODE, bytes.fromhex(tree_a.decode())),
                (TREE_MODE, bytes.fromhex(tree_b.decode())) if tree_b else None,
            )
        elif tree_a or tree_b:
            dirs[path] = bytes.fromhex(tree_b.decode()) if tree_b else None
            _walk(store, index, tree_a, tree_b, path + b"/", out, dirs)
        file_a = (ea[0], bytes.fromhex(ea[1].decode())) if ea and not tree_a else None
        file_b = (eb[0], bytes.fromhex(eb[1].decode())) if eb and not tree_b else None
        if file_a or file_b:
            out[path] = (file_a, file_b)


def _is_sparse_dir(index: GitIndex, path: bytes) -> bool:
    i = bisect_left(index.paths, path)
    return i < len(index.paths) and index.paths[i] == path and index.modes[i] == TREE_MODE


def _find(index: GitIndex, path: bytes) -> int:
    """The position of ``path``'s entry in ``index``, or -1."""
    i = bisect_left(index.paths, path)
    return i if i < len(index.paths) and index.paths[i] == path else -1


class _SparseCone:
    """Which new paths a cone-mode sparse checkout leaves out of the work tree."""

    def __init__(self, recursive: set[bytes], parents: set[bytes]):
        self.recursive, self.parents = recursive, parents

    @classmethod
    def read(cls, store: GitStore) -> _SparseCone | None:
        from dulwich.config import ConfigFile

        # `git sparse-checkout` writes its settings to config.worktree
        configs = [store.repo.get_config()]
        worktree_config = os.path.join(store.repo.controldir(), "config.worktree")
        if os.path.exists(worktree_config):
            configs.insert(0, ConfigFile.from_path(worktree_config))

        def setting(name: bytes, default: bool) -> bool:
            for config in configs:
                value = config.get_boolean((b"core",), name)
                if value is not None:
                    return value
            return default

        try:
            if not setting(b"sparseCheckout", False):
                return None
            if not setting(b"sparseCheckoutCone", False):  # unset: patterns, as in git
                return None  # patterns as in .gitignore: new paths are written (see design.md)
        except ValueError:
            return None
        try:
            with open(os.path.join(store.repo.controldir(), "info", "sparse-checkout"), "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        included: set[bytes] = set()
        parents: set[bytes] = set()
        for line in (raw.strip() for raw in lines):
            if line.startswith(b"!/") and line.endswith(b"/*/"):
                parents.add(line[2:-3])
            elif line.startswith(b"/") and line.endswith(b"/") and line != b"/":
                included.add(line[1:-1])
        return cls(included - parents, parents)

    def excludes(self, path: bytes) -> bool:
        folder = path.rpartition(b"/")[0]
        if not folder or folder in self.parents:
            return False
        parts = folder.split(b"/")
        return not any(b"/".join(parts[:n]) in self.recursive for n in range(1, len(parts) + 1))


_Row = tuple[bytes, int]  # an entry's 60 bytes of stat data and id, its flags (extended above 16 bits)


def _apply(
    workdir: str, store: GitStore, index: GitIndex, changes: Changes, sparse: _SparseCone | None
) -> dict[bytes, _Row | None]:
    """Change the work tree; the new index row of every changed path (None: removed)."""
    root = os.path.realpath(workdir)
    rows: dict[bytes, _Row | None] = {}
    keep: dict[bytes, int] = {}  # a skip-worktree path -> its flags: not on disk, left so
    removed_from: set[bytes] = set()
    for path in sorted(changes, reverse=True):  # files before the folders holding them
        old, new = changes[path]
        i = _find(index, path)
        flags = index.flags[i] if i >= 0 else 0
        if flags & SKIP_WORKTREE or path.endswith(b"/"):
            keep[path] = flags
        elif old is not None:
            full = _inside(root, path)
            if os.path.lexists(full) and not os.path.isdir(full) or os.path.islink(full):
                os.unlink(full)
            elif old[0] == GITLINK_MODE and new is None:
                _prune(root, path)  # a submodule's folder goes when empty, as in git
            removed_from.add(path.rpartition(b"/")[0])
        if new is None:
            rows[path] = None
    for folder in sorted(removed_from, key=len, reverse=True):
        _prune(root, folder)
    for path in sorted(changes):
        new = changes[path][1]
        if new is None:
            continue
        mode, sha = new
        if path in keep or changes[path][0] is None and sparse is not None and sparse.excludes(path):
            flags = keep.get(path, SKIP_WORKTREE) | SKIP_WORKTREE
            rows[path] = (b"\0" * 24 + struct.pack(">I", mode) + b"\0" * 12 + sha, flags)
            continue
        full = _inside(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if mode == GITLINK_MODE:  # a submodule: its folder, not filled (git without --recurse-submodules)
            os.makedirs(full, exist_ok=True)
            rows[path] = (b"\0" * 24 + struct.pack(">I", mode) + b"\0" * 12 + sha, 0)
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            os.rmdir(full)  # a folder becoming a file: emptied above (untracked files were refused)
        data = store.blob(sha.hex().encode())
        if mode == SYMLINK_MODE:
            os.symlink(os.fsdecode(data), full)
        else:
            file_fd = os.open(
                full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o777 if mode == 0o100755 else 0o666
            )
            with open(file_fd, "wb") as f:
                f.write(data)
        rows[path] = (_stat_data(os.lstat(full), mode, sha), 0)
    return rows


def _inside(root: str, path: bytes) -> str:
    """``path`` under ``root``, its folder resolved (a link there is not followed out)."""
    folder, name = os.path.split(os.path.join(root, os.fsdecode(path)))
    full = os.path.join(os.path.realpath(folder), name)
    if not full.startswith(root + os.sep):
        raise ConflictError(f"refusing to write {os.fsdecode(path)!r} outside the work tree")
    return full


def _prune(root: str, folder: bytes) -> None:
    """Remove ``folder`` and its parents while they are empty (as git does)."""
    while folder:
        try:
            os.rmdir(os.path.join(root, os.fsdecode(folder)))
        except OSError:
            return
        folder = folder.rpartition(b"/")[0]


def _stat_data(st: os.stat_result, mode: int, sha: bytes) -> bytes:
    m = 0xFFFFFFFF
    if stat.S_ISLNK(st.st_mode):
        mode = SYMLINK_MODE
    return (
        struct.pack(
            ">10I",
            int(st.st_ctime) & m,
            st.st_ctime_ns % 1_000_000_000,
            int(st.st_mtime) & m,
            st.st_mtime_ns % 1_000_000_000,
            st.st_dev & m,
            st.st_ino & m,
            mode,
            st.st_uid & m,
            st.st_gid & m,
            st.st_size & m,
        )
        + sha
    )


def _entry_bytes(index_path: str, index: GitIndex) -> tuple[bytes, list[int]] | None:
    """The index file as read and where each entry starts in it (one past the last at
    the end), when its entries can be copied as they are: version 2 or 3, not split.
    A Python loop over 200,000 entries to encode them again costs 0.4 s; this 0.02 s."""
    if index.version not in (2, 3):
        return None
    try:
        with open(index_path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    paths, flags = index.paths, index.flags
    if raw[-20:] != index.checksum or len(raw) < 32 or struct.unpack_from(">I", raw, 8)[0] != len(paths):
        return None
    sizes = [(70 + n) & ~7 for n in map(len, paths)]
    if flags and max(flags) >= 1 << 16:
        for i in [i for i, f in enumerate(flags) if f >> 16]:
            sizes[i] = (72 + len(paths[i])) & ~7
    offsets = list(accumulate(sizes, initial=12))
    pos, end = offsets[-1], len(raw) - 20
    while pos + 8 <= end:  # the extensions follow the entries exactly, and none is a split index's
        name, size = struct.unpack_from(">4sI", raw, pos)
        if name == b"link":
            return None
        pos += 8 + size
    if pos != end:
        return None
    return raw, offsets


def _encode(
    index: GitIndex,
    changes: Changes,
    rows: dict[bytes, _Row | None],
    new_dirs: dict[bytes, bytes | None],
    copy: tuple[bytes, list[int]] | None,
) -> tuple[bytes, GitIndex]:
    """The new index file: unchanged entries as they were (their bytes copied from
    ``copy`` when given), ``rows`` for the changed paths."""
    paths, stat_data, flags = index.paths, index.stat_data, index.flags
    changed = sorted(changes)
    out: list[bytes] = []
    extended = bool(flags) and max(flags) >= 1 << 16 or any(r and r[1] >= 1 << 16 for r in rows.values())
    new_paths: list[bytes] = []
    new_stat: list[bytes] = []
    new_flags = array(flags.typecode)
    lo = 0
    for path in changed + [None]:
        hi = len(paths) if path is None else bisect_left(paths, path, lo)
        if copy is not None:
            out.append(copy[0][copy[1][lo] : copy[1][hi]])
            new_flags.extend(flags[lo:hi])
        else:
            out.extend(_entry(stat_data[i * 60 : i * 60 + 60], flags[i], paths[i]) for i in range(lo, hi))
            new_flags.extend(_flags(flags[i], paths[i]) for i in range(lo, hi))
        new_paths.extend(paths[lo:hi])
        new_stat.append(stat_data[lo * 60 : hi * 60])
        if path is None:
            break
        lo = hi
        while lo < len(paths) and paths[lo] == path:
            lo += 1  # the old entry (and any stages) give way to the new row
        row = rows.get(path)
        if row is not None:
            out.append(_entry(row[0], row[1], path))
            new_paths.append(path)
            new_stat.append(row[0])
            new_flags.append(_flags(row[1], path))
    cache_tree, valid = _tree_extension(index, new_paths, new_dirs)
    extensions = [cache_tree]
    if TREE_MODE in index.modes:
        extensions.append(b"sdir" + struct.pack(">I", 0))
    version = 3 if extended else 2
    body = b"".join([struct.pack(">4sII", b"DIRC", version, len(new_paths)), *out, *extensions])
    checksum = hashlib.sha1(body).digest()
    return body + checksum, written_index(version, checksum, new_paths, new_stat, new_flags, valid)


def _flags(flags: int, path: bytes) -> int:
    """An entry's flags as written: the name's length, the extended bit when extended."""
    base = (flags & 0xB000) | min(len(path), 0xFFF)
    return flags & 0xFFFF0000 | base | 0x4000 if flags >> 16 else base


def _entry(stat60: bytes, flags: int, path: bytes) -> bytes:
    flags = _flags(flags, path)
    if flags >> 16:
        head = stat60 + struct.pack(">HH", flags & 0xFFFF, flags >> 16)
    else:
        head = stat60 + struct.pack(">H", flags)
    size = (len(head) + len(path) + 8) & ~7
    return head + path + b"\0" * (size - len(head) - len(path))


def _tree_extension(
    index: GitIndex, paths: list[bytes], new_dirs: dict[bytes, bytes | None]
) -> tuple[bytes, dict[bytes, bytes]]:
    """git's cache tree for ``paths``: the folders walked get the target's trees, the
    others keep theirs; a folder with no entries left is dropped. With it, the valid
    trees by folder (as :class:`GitIndex` holds them)."""
    trees: dict[bytes, bytes | None] = {}
    for folder, sha in index.cached_trees.items():
        trees[folder] = sha
    for folder, new in new_dirs.items():
        if new is None:
            trees.pop(folder, None)
        else:
            trees[folder] = new
    children: dict[bytes, list[bytes]] = {}
    for folder in list(trees):
        while folder:
            parent = folder.rpartition(b"/")[0]
            kids = children.setdefault(parent, [])
            if folder in kids:
                break
            kids.append(folder)
            trees.setdefault(parent, None)  # a folder git had no valid tree for
            folder = parent
    out: list[bytes] = []
    valid: dict[bytes, bytes] = {}

    def emit(folder: bytes) -> int:
        if folder:
            lo = bisect_left(paths, folder + b"/")
            count = bisect_left(paths, folder + b"0", lo) - lo
        else:
            count = len(paths)
        if count == 0:
            return 0
        kids = children.get(folder, [])
        at = len(out)
        out.append(b"")
        emitted = sum(emit(kid) for kid in kids)
        sha = trees.get(folder)
        name = folder.rpartition(b"/")[2]
        out[at] = name + b"\0%d %d\n" % (count if sha else -1, emitted) + (sha or b"")
        if sha:
            valid[folder] = sha
        return 1

    emit(b"")
    body = b"".join(out)
    return b"TREE" + struct.pack(">I", len(body)) + body, valid

"""Listing many refs fast, and packing them, beside dulwich's ref container.

Writes of single refs go through dulwich (``set_if_equals``: git's lock files).
Listing tens of thousands of run refs through it costs a name check per ref,
so here:

- loose refs are read only in folders whose modification time changed since
  the last listing, unless the folder changed too close to that listing to
  trust its time ("racily clean", as git treats index entries);
- ``packed-refs`` is parsed once per change of the file, keeping only the
  lines under the prefix asked for, and only well-formed ones;
- :func:`pack_refs` moves loose refs into ``packed-refs`` the way
  ``git pack-refs`` does: every pruned ref is locked while packed-refs is
  rewritten, and deleted only after the new packed-refs is in place.
"""

from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from dulwich.file import FileLocked, GitFile

from gitml.errors import RepositoryError

_HEX40 = re.compile(rb"[0-9a-f]{40}")
log = logging.getLogger("gitml")
RACY_SECONDS = 2.0  # a filesystem keeping whole seconds (FAT keeps two): a change can hide in one
RACY_SECONDS_FINE = 0.05  # one keeping nanoseconds: the kernel's clock for them ticks in milliseconds


def _racy(mtime_ns: int) -> float:
    """How long after a change its folder's time cannot be trusted to show the next one."""
    return RACY_SECONDS if mtime_ns % 1_000_000_000 == 0 else RACY_SECONDS_FINE
PACKED_REFS_TIMEOUT = 10.0  # seconds to wait for another writer's packed-refs.lock


class RefLister:
    def __init__(self, controldir: str):
        self.controldir = controldir
        self._dirs: dict[str, tuple[tuple, float, dict[bytes, bytes]]] = {}
        self._packed: tuple[tuple, dict[bytes, bytes]] | None = None
        self.loose: set[bytes] = set()  # the loose refs of the last listing

    def under(self, prefix: str) -> dict[bytes, bytes]:
        """``{ref: sha}`` for every ref whose name starts with ``prefix``."""
        result = {}
        bprefix = prefix.encode()
        for name, sha in self.packed().items():
            if name.startswith(bprefix):
                result[name] = sha
        root = os.path.join(self.controldir, *prefix.rstrip("/").split("/"))
        self.loose = set()
        for dirpath, _dirnames, filenames in os.walk(root):
            loose = self._loose_in(dirpath, filenames)
            self.loose.update(loose)
            result.update(loose)
        return result

    def _loose_in(self, dirpath: str, filenames: list[str]) -> dict[bytes, bytes]:
        try:
            st = os.stat(dirpath)
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_ino, st.st_ctime_ns, len(filenames))
        cached = self._dirs.get(dirpath)
        if cached and cached[0] == key and cached[0][0] / 1e9 < cached[1] - _racy(cached[0][0]):
            return cached[2]
        listed_at = time.time()
        rel = os.path.relpath(dirpath, self.controldir).replace(os.sep, "/")
        names = [fn for fn in filenames if not fn.endswith(".lock")]
        values = [_read_ref(os.path.join(dirpath, fn)) for fn in names]
        found = {f"{rel}/{fn}".encode(): value for fn, value in zip(names, values) if value is not None}
        self._dirs[dirpath] = (key, listed_at, found)
        return found

    def packed(self) -> dict[bytes, bytes]:
        path = os.path.join(self.controldir, "packed-refs")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        if self._packed and self._packed[0] == key and key[0] / 1e9 < time.time() - _racy(key[0]):
            return self._packed[1]
        refs = {}
        with open(path, "rb") as f:
            for line in f:
                if line[:1] in (b"#", b"^"):
                    continue
                sha, _, name = line.rstrip(b"\n").partition(b" ")
                if _HEX40.fullmatch(sha) and name.startswith(b"refs/") and b".." not in name:
                    refs[name] = sha
        self._packed = (key, refs)
        return refs


def _read_ref(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        value = os.read(fd, 41).rstrip(b"\n")
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)
    return value if _HEX40.fullmatch(value) else None


def parallel_map(fn, items) -> list:
    """``map`` on 8 threads (creating lock files waits on the disk); plain ``map`` when
    threads can no longer start (at interpreter exit)."""
    items = list(items)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(fn, items))
    except RuntimeError:
        return [fn(item) for item in items]


STALE_LOCK_SECONDS = 10.0  # a ref lock is held for milliseconds: one this old was left by a killed writer


def break_stale_lock(lock_path: str, max_age: float | None = None) -> bool:
    """Remove a lock file older than ``max_age`` seconds (a writer that died holding it,
    e.g. killed with SIGKILL), saying so; returns whether it did."""
    max_age = STALE_LOCK_SECONDS if max_age is None else max_age
    try:
        age = time.time() - os.stat(lock_path).st_mtime
        if age < max_age:
            return False
        os.unlink(lock_path)
    except FileNotFoundError:
        return False
    log.warning("gitml: removed %s, left %.0f s ago by a writer that did not finish", lock_path, age)
    return True


def lock_packed_refs(commondir: str, *, timeout: float | None = None) -> GitFile:
    """``packed-refs`` opened for rewriting under its lock file, waiting with back-off
    while another writer holds it (git waits too: ``core.packedRefsTimeout``)."""
    path = os.path.join(commondir, "packed-refs")
    timeout = PACKED_REFS_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return GitFile(path, "wb")
        except FileLocked:
            if break_stale_lock(path + ".lock"):
                continue
            if time.monotonic() > deadline:
                raise RepositoryError(
                    f"{path}.lock has existed for {timeout:.0f} s: another git or gitml is writing refs, "
                    "or one was killed while it did (then remove that file)"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def read_packed_refs(commondir: str) -> dict[bytes, bytes]:
    """``packed-refs`` as ``{ref: sha}``, every line kept as it is (peeled lines dropped:
    git peels again): what a rewrite under the lock must carry over."""
    try:
        with open(os.path.join(commondir, "packed-refs"), "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    packed = {}
    for line in lines:
        if line[:1] not in (b"#", b"^") and b" " in line:
            sha, name = line.split(b" ", 1)
            packed[name] = sha
    return packed


def write_packed_refs(f, packed: dict[bytes, bytes]) -> None:
    """Write ``{ref: sha}`` as a packed-refs file, sorted; no peeled lines (git peels on demand)."""
    f.write(b"# pack-refs with: sorted \n")
    f.writelines(packed[name] + b" " + name + b"\n" for name in sorted(packed))


def pack_refs(repo, names: list[bytes]) -> int:
    """Move the loose refs ``names`` into packed-refs, as ``git pack-refs`` does.

    Refs whose lock another writer holds are left loose. Returns how many were packed.
    """
    refs = repo.refs
    locks = []
    def take(name: bytes):
        path = refs.refpath(name)
        try:
            lock = GitFile(path, "wb")
        except FileLocked:
            return None
        try:
            with open(path, "rb") as f:
                value = f.read(41).rstrip(b"\n")
        except FileNotFoundError:
            lock.abort()
            return None
        if not _HEX40.fullmatch(value):
            lock.abort()
            return None
        return name, path, value, lock

    try:
        locks = [held for held in parallel_map(take, names) if held is not None]
        if not locks:
            return 0
        with lock_packed_refs(repo.commondir()) as f:
            packed = read_packed_refs(repo.commondir())
            packed.update({name: value for name, _, value, _ in locks})
            write_packed_refs(f, packed)
        for _name, path, _value, _lock in locks:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return len(locks)
    finally:
        for *_, lock in locks:
            lock.abort()

"""The local cache of artifact objects (``.git/gitml/cache/``): one file per object,
named by its SHA-256 (``<2 hex>/<62 hex>``), every read checked against the name; what
it lacks, or holds damaged, is fetched from the artifact remote
(:class:`gitml.content.cas.ContentStore` gives it its download).

Adding a file to the cache clones it (reflink) where the filesystem can and
copies it otherwise, hashing what was copied in the same pass. It is never
hard-linked: a training loop that rewrites ``model.pt`` in place each epoch
would change every earlier checkpoint's object with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gitml.errors import GitmlError, IntegrityError
from gitml.names import check_sha256

CHUNK = 1 << 20
FICLONE = 0x40049409

# The only names gitml writes or deletes in a cache or remote folder: objects, and its own
# temporaries beside them (``incoming`` ones, not yet hashed, at the top of the cache only).
OBJECT_FOLDER = re.compile(r"[0-9a-f]{2}")
OBJECT_FILE = re.compile(r"[0-9a-f]{62}")
TEMPORARY = re.compile(r"(?:[0-9a-f]{62}|incoming)\.gitml-tmp-[0-9]+-[0-9a-f]{12}")


def temporary_name(path: str) -> str:
    """A name beside ``path`` that only this process writes, and that gc recognises exactly."""
    return f"{path}.gitml-tmp-{os.getpid()}-{os.urandom(6).hex()}"


def object_key(sha256: str) -> str:
    """``<2 hex>/<62 hex>``; anything but a SHA-256 is refused: it must never name another path."""
    return f"{check_sha256(sha256, 'artifact object id')[:2]}/{sha256[2:]}"


def _hash_file(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _copy_hashing(src: str, dst: str) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (a reflink where the filesystem can) and hash it: the
    hash names exactly the bytes stored, even if ``src`` changes meanwhile."""
    try:
        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return _hash_file(dst)  # the clone: a snapshot, whatever happens to src
    except OSError:
        pass
    before = _stat_key(os.stat(src))
    # the kernel copies (copy_file_range) while another thread hashes: hashlib lets go of the GIL
    hashing = ThreadPoolExecutor(max_workers=1)
    try:
        digest = hashing.submit(_hash_file, src)
        shutil.copyfile(src, dst)
        sha, size = digest.result()
    finally:
        hashing.shutdown()
    if _stat_key(os.stat(src)) != before or os.path.getsize(dst) != size:
        return _hash_file(dst)  # src changed while it was copied: name what was stored
    return sha, size


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _drop_old_temporaries(folder: str, older_than: float, *, incoming: bool) -> int:
    """Delete gitml's own temporaries older than ``older_than`` in an object folder: only
    ``<2 hex>/<62 hex>.gitml-tmp-*`` (and, with ``incoming``, ``incoming.gitml-tmp-*`` at
    the top). Nothing else is touched, and no symbolic link is followed: the folder may
    be one a committed config named."""
    dropped = 0

    def scan(path: str):
        try:
            with os.scandir(path) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []

    for top in scan(folder):
        if OBJECT_FOLDER.fullmatch(top.name) and top.is_dir(follow_symlinks=False):
            found = [e for e in scan(top.path) if TEMPORARY.fullmatch(e.name) and not e.name.startswith("incoming")]
        elif incoming and top.name.startswith("incoming") and TEMPORARY.fullmatch(top.name):
            found = [top]
        else:
            continue
        for entry in found:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < older_than:
                    os.unlink(entry.path)
                    dropped += 1
            except FileNotFoundError:
                pass
    return dropped


class LocalCache:
    """The objects cached in this clone; ``fetch(sha256, what=, size=)`` puts a missing one
    here from the remote (verified)."""

    def __init__(self, folder: str, fetch: Callable[..., None]):
        self.folder = folder
        self._fetch = fetch

    def path(self, sha256: str) -> str:
        return os.path.join(self.folder, object_key(sha256))

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def add_file(self, path: str) -> tuple[str, int]:
        """Put a copy of a file in the cache (hashing it); returns ``(sha256, size)``."""
        os.makedirs(self.folder, exist_ok=True)
        tmp = temporary_name(os.path.join(self.folder, "incoming"))
        try:
            sha, size = _copy_hashing(path, tmp)
            dst = self.path(sha)
            if not os.path.exists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(tmp, dst)
            else:  # logged again: `gitml gc` keeps what was used lately, and this run may not be committed yet
                try:
                    os.utime(dst)
                except OSError:
                    pass
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha, size

    def add_files(self, paths: list[str], *, workers: int = 4) -> list[tuple[str, int]]:
        """:meth:`add_file` for many files, hashing in parallel (hashlib releases the GIL)."""
        if len(paths) < 2:
            return [self.add_file(p) for p in paths]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.add_file, paths))

    def add_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        dst = self.path(sha)
        if not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = temporary_name(dst)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dst)
        return sha, len(data)

    def copy_to(self, sha256: str, dst: str, *, what: str, size: int | None) -> None:
        """Write object ``sha256`` to ``dst``, verified; fetched from the remote if not
        cached, or if the cached copy turns out damaged (which is then dropped).
        ``size``: what the manifest records (a download stops past it)."""
        for attempt in (1, 2):
            src = self.ensure(sha256, what=what, size=size)
            tmp = temporary_name(dst)
            digest = hashlib.sha256()
            try:
                with open(src, "rb") as s, open(tmp, "wb") as d:
                    while chunk := s.read(CHUNK):
                        digest.update(chunk)
                        d.write(chunk)
                if digest.hexdigest() == sha256:
                    os.replace(tmp, dst)
                    return
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            self._drop_damaged(sha256, what=what, last=attempt == 2, size=size)

    def read_bytes(self, sha256: str, *, what: str, size: int | None) -> bytes:
        """The bytes of an object, verified (a damaged cached copy is fetched again)."""
        for attempt in (1, 2):
            with open(self.ensure(sha256, what=what, size=size), "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() == sha256:
                return data
            self._drop_damaged(sha256, what=what, last=attempt == 2, size=size)
        raise AssertionError("unreachable")

    def _drop_damaged(self, sha256: str, *, what: str, last: bool, size: int | None) -> None:
        """A cached copy does not match its hash: it is never kept. The caller fetches
        it again from the remote once; if the remote has no good copy, say so."""
        os.unlink(self.path(sha256))
        if last:
            raise IntegrityError(f"{what}: object {sha256} does not match its hash (removed from the cache)")
        try:
            self._fetch(sha256, what=what, size=size)
        except GitmlError as e:
            raise IntegrityError(
                f"{what}: cached object {sha256} does not match its hash (removed from the cache), "
                f"and the remote has no good copy: {e}"
            ) from None

    def ensure(self, sha256: str, *, what: str, size: int | None) -> str:
        """The cache path of an object, downloading (and verifying) it if needed."""
        path = self.path(sha256)
        if not os.path.exists(path):
            self._fetch(sha256, what=what, size=size)
        return path

    def verify(self, sha256: str) -> bool:
        path = self.path(sha256)
        return os.path.exists(path) and _hash_file(path)[0] == sha256

    def objects(self) -> set[str]:
        found: set[str] = set()
        try:
            prefixes = os.listdir(self.folder)
        except FileNotFoundError:
            return found
        for prefix in prefixes:
            if not OBJECT_FOLDER.fullmatch(prefix) or not os.path.isdir(os.path.join(self.folder, prefix)):
                continue
            for name in os.listdir(os.path.join(self.folder, prefix)):
                if OBJECT_FILE.fullmatch(name):
                    found.add(prefix + name)
        return found

    def drop(self, sha256: str) -> None:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            pass

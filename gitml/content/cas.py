"""Content-addressed artifact objects: a local cache and an fsspec remote.

An object is a file named by its SHA-256: ``<root>/<2 hex>/<62 hex>``, in the
cache (``.git/gitml/cache/``) and in the remote (any fsspec URL). Every read,
from either, is checked against the name; a mismatch is refused and the bad
copy is never kept. A stat cache (size, mtime, inode, ctime → hash), like
git's index, spares re-hashing a file logged again unchanged.

:class:`ContentStore` is the remote store (upload, download, listing, gc marks), and the
one door to the two parts beside it: the local cache (:mod:`gitml.content.cache`) and what
a push knows of the remote (:mod:`gitml.content.pushstate`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gitml.content.cache import (
    CHUNK,
    OBJECT_FILE,
    OBJECT_FOLDER,
    LocalCache,
    _drop_old_temporaries,
    object_key,
    temporary_name,
)
from gitml.content.config import DEFAULT_TIMEOUT, default_remote
from gitml.content.pushstate import PushState
from gitml.content.statcache import StatCache
from gitml.errors import (
    ArtifactRemoteError,
    GitmlError,
    IntegrityError,
    ObjectMissingError,
    RemoteTimeoutError,
    UnconfirmedRemoteError,
)

_BACKEND_HINTS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}


class ContentStore:
    """The objects of one repository: its cache folder and its artifact remote."""

    def __init__(
        self,
        cache_dir: str,
        remote_url: str,
        storage_options: dict | None = None,
        *,
        state_dir: str,
        timeout: float = DEFAULT_TIMEOUT,
        unconfirmed: str | None = None,
        uncontacted: str | None = None,
    ):
        """``timeout``: seconds a remote may stay silent (per request; a question such as
        "is this object there" gets twice that in all, retries included). ``unconfirmed``:
        why writes and deletes on the remote are refused (None: they are allowed).
        ``uncontacted``: why the remote is not to be contacted at all, reads included."""
        self.cache_dir = cache_dir
        self.remote_url = remote_url.rstrip("/")
        self.storage_options = storage_options or {}
        self.timeout = timeout
        self.unconfirmed = unconfirmed
        self.uncontacted = uncontacted
        self.stat_cache = StatCache(os.path.join(state_dir, "statcache.sqlite3"))
        state = os.path.join(state_dir, "remotes", hashlib.sha1(self.remote_url.encode()).hexdigest()[:16])
        self.cache = LocalCache(cache_dir, self.download)
        self.push_state = PushState(state)  # what a push knows of this remote
        self._fs = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.stat_cache.close()

    # -- the cache (gitml.content.cache) ----------------------------------
    def cache_path(self, sha256: str) -> str:
        return self.cache.path(sha256)

    def has_local(self, sha256: str) -> bool:
        return self.cache.has(sha256)

    def add_file(self, path: str) -> tuple[str, int]:
        """Put a copy of a file in the cache (hashing it); returns ``(sha256, size)``."""
        return self.cache.add_file(path)

    def add_files(self, paths: list[str], *, workers: int = 4) -> list[tuple[str, int]]:
        """:meth:`add_file` for many files, hashing in parallel."""
        return self.cache.add_files(paths, workers=workers)

    def add_bytes(self, data: bytes) -> tuple[str, int]:
        return self.cache.add_bytes(data)

    def copy_to(self, sha256: str, dst: str, *, what: str, size: int | None) -> None:
        """Write object ``sha256`` to ``dst``, verified (fetched from the remote if need be)."""
        self.cache.copy_to(sha256, dst, what=what, size=size)

    def read_bytes(self, sha256: str, *, what: str, size: int | None) -> bytes:
        """The bytes of an object, verified (a damaged cached copy is fetched again)."""
        return self.cache.read_bytes(sha256, what=what, size=size)

    def ensure_local(self, sha256: str, *, what: str, size: int | None) -> str:
        """The cache path of an object, downloading (and verifying) it if needed."""
        return self.cache.ensure(sha256, what=what, size=size)

    def verify_local(self, sha256: str) -> bool:
        return self.cache.verify(sha256)

    def local_objects(self) -> set[str]:
        return self.cache.objects()

    def drop_local(self, sha256: str) -> None:
        self.cache.drop(sha256)

    def drop_stale_temporaries(self, older_than: float) -> int:
        """Delete the half-written files a killed process left in the cache (and, for a
        folder remote this clone may write, there) before ``older_than`` (a time); returns
        how many. Only gitml's own names are touched (:data:`TEMPORARY`)."""
        dropped = _drop_old_temporaries(self.cache_dir, older_than, incoming=True)
        if self.unconfirmed is None and ("://" not in self.remote_url or self.remote_url.startswith("file://")):
            dropped += _drop_old_temporaries(self.remote_url.removeprefix("file://"), older_than, incoming=False)
        return dropped

    # -- the remote ------------------------------------------------------
    @property
    def fs(self):
        """The remote's filesystem: every contact with the remote goes through it."""
        if self.uncontacted is not None:
            raise UnconfirmedRemoteError(self.uncontacted)
        if self._fs is None:
            with self._lock:
                if self._fs is None:
                    self._fs, self._root = _open_remote(self.remote_url, self.storage_options, self.timeout)
        return self._fs

    def _ask(self, method: str, sha256: str):
        """``fs.<method>(key of sha256)`` within a deadline (on backends that can keep one:
        fsspec's asynchronous ones, S3 among them; a local folder needs none)."""
        fs = self.fs
        from fsspec.asyn import AsyncFileSystem
        from fsspec.exceptions import FSTimeoutError

        deadline = {"timeout": 2 * self.timeout} if isinstance(fs, AsyncFileSystem) else {}
        try:
            return getattr(fs, method)(self._remote_key(sha256), **deadline)
        except FSTimeoutError:
            raise RemoteTimeoutError(
                f"artifact remote {self.remote_url} did not answer within {2 * self.timeout:g} s "
                f"({method} of object {sha256[:12]}); artifacts.timeout sets how long to wait"
            ) from None

    def check_writable(self) -> None:
        """Raise :class:`UnconfirmedRemoteError` if this clone may not write or delete on the remote."""
        if self.unconfirmed is not None:
            raise UnconfirmedRemoteError(self.unconfirmed)

    def _remote_key(self, sha256: str) -> str:
        self.fs  # noqa: B018  (opens the remote, sets _root)
        return f"{self._root}/{object_key(sha256)}" if self._root else object_key(sha256)

    # -- what a push knows of the remote (gitml.content.pushstate) ----------
    def confirmed_commits(self) -> AbstractSet[bytes]:
        """Run commits whose artifact objects (their own and their ancestors') are all
        known to be on this remote: a push need not look at them again."""
        return self.push_state.confirmed_commits()

    def confirm_commits(self, commits: Iterable[bytes]) -> None:
        self.push_state.confirm_commits(commits)

    def all_confirmed(self, packed_refs_digest: bytes) -> bool:
        """Whether every run commit the packed-refs of this sha256 names was confirmed."""
        return self.push_state.all_confirmed(packed_refs_digest)

    def confirm_packed_refs(self, packed_refs_digest: bytes) -> None:
        """Mark every run commit of the packed-refs of this sha256 confirmed (each was)."""
        self.push_state.confirm_packed_refs(packed_refs_digest)

    def forget_remote(self, shas: Iterable[str]) -> None:
        """Objects found missing or damaged on the remote: the next push uploads them
        again, over what is there (and looks at every run commit again)."""
        self.push_state.forget(shas)

    def missing_on_remote(self, shas: set[str], *, ask: bool = False) -> set[str]:
        """Which objects the remote lacks (asked once per object; answers kept locally;
        with ``ask``, asked again: a remote gc may have deleted what no ref named).
        Objects :meth:`forget_remote` was told about count as lacking."""
        damaged = shas & self.push_state.damaged()
        todo = shas - damaged - (set() if ask else self.push_state.known())
        if not todo:
            return damaged
        try:
            if len(todo) > 2048:  # a listing costs less than this many questions
                have = todo & self.remote_objects()  # in a folder: regular files under real folders
            elif _is_local(self.fs):  # a link or special file there is no object: a push writes over it
                have = {s for s in todo if self._regular_in_folder(s)}
            else:
                with ThreadPoolExecutor(max_workers=16) as pool:
                    flags = list(pool.map(lambda s: self._ask("exists", s), sorted(todo)))
                have = {s for s, ok in zip(sorted(todo), flags, strict=False) if ok}
        except GitmlError:
            raise
        except Exception as e:  # fsspec backends raise their own kinds (botocore, aiohttp, ...)
            raise ArtifactRemoteError(f"artifact remote {self.remote_url} cannot be listed: {_timed_out(e)}") from None
        self.push_state.remember(have)
        return (todo - have) | damaged

    def _regular_in_folder(self, sha256: str) -> bool:
        """Whether a folder remote holds the object as a regular file under a real folder
        (no symbolic link below the root is followed)."""
        folder, name = object_key(sha256).split("/")
        try:
            return stat.S_ISDIR(os.lstat(os.path.join(self._root or "/", folder)).st_mode) and stat.S_ISREG(
                os.lstat(os.path.join(self._root or "/", folder, name)).st_mode
            )
        except OSError:
            return False

    def upload(
        self,
        shas: set[str],
        *,
        what: Callable[[str], str] = lambda s: s,
        progress: Callable[[int, int], None] | None = None,
        workers: int = 8,
        lost: set[str] | None = None,
        checked: bool = False,
    ) -> int:
        """Upload objects (verified first) the remote lacks; returns how many were sent.
        With ``checked``, ``shas`` are known to be lacking (from :meth:`missing_on_remote`).

        An object whose cached copy is missing or corrupt raises :class:`IntegrityError`,
        or, given a ``lost`` set, is added to it and skipped.
        """
        missing = sorted(shas if checked else self.missing_on_remote(shas))
        if not missing:
            return 0
        self.check_writable()
        fs = self.fs
        if _protocol(fs) in ("http", "https"):
            raise ArtifactRemoteError(
                f"artifact remote {self.remote_url} is read-only (http); "
                f"{len(missing)} object(s) cannot be uploaded there"
            )
        local = self.cache_path

        def send(sha: str) -> int:
            if not self.verify_local(sha):
                if lost is None:
                    raise IntegrityError(f"{what(sha)}: cached object {sha} is missing or corrupt; cannot upload it")
                lost.add(sha)
                return 0
            key = self._remote_key(sha)
            parent = key.rsplit("/", 1)[0]
            try:
                if _is_local(fs):
                    fs.makedirs(parent, exist_ok=True)
                    if os.path.islink(parent):  # would write wherever it points
                        raise IntegrityError(
                            f"the remote's folder {parent} is a symbolic link; nothing is written there"
                        )
                    tmp = temporary_name(key)
                    fs.put_file(local(sha), tmp)
                    fs.mv(tmp, key)
                else:
                    fs.put_file(local(sha), key)
            except Exception as e:
                raise ArtifactRemoteError(
                    f"upload of {what(sha)} to {self.remote_url} failed: {_timed_out(e)}"
                ) from None
            self.push_state.remember([sha])
            size = os.path.getsize(local(sha))
            if progress:
                progress(1, size)
            return size

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(send, missing):
                pass
        self.push_state.repaired(set(missing) - (lost or set()))
        return len(missing) - len(lost or ())

    def download(self, sha256: str, *, what: str, size: int | None) -> None:
        """Fetch an object from the remote into the cache, verified; a bad copy is refused.

        ``size`` is what the run's manifest records: the read stops one byte past it
        (an object replaced by a huge file, or a link to ``/dev/zero``, costs no more),
        and a folder remote's symbolic links and special files are refused unread."""
        fs = self.fs
        dst = self.cache_path(sha256)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = temporary_name(dst)
        digest = hashlib.sha256()
        try:
            try:
                with self._open_object(fs, sha256) as src, open(tmp, "wb") as out:

                    def keep(chunk: bytes) -> None:
                        digest.update(chunk)
                        out.write(chunk)

                    got = _read_bounded(src, size, keep)
            except FileNotFoundError:
                raise ObjectMissingError(
                    f"{what}: object {sha256} is not in the artifact remote {self.remote_url}"
                    + _missing_hint(self.remote_url)
                ) from None
            except IntegrityError as e:  # a link or special file in a folder remote
                raise IntegrityError(f"{what}: {e}") from None
            except Exception as e:
                raise ArtifactRemoteError(
                    f"{what}: download of {sha256} from {self.remote_url} failed: {_timed_out(e)}"
                ) from None
            if size is not None and got > size:  # fewer bytes: the hash says whether they are the object
                raise IntegrityError(
                    f"{what}: the remote's object {sha256} is larger than the {size} bytes its manifest records; "
                    f"refused after {got} bytes"
                )
            if digest.hexdigest() != sha256:
                raise IntegrityError(f"{what}: the remote's object {sha256} does not match its hash; refused")
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _open_object(self, fs, sha256: str):
        """The remote's object, open for reading. In a folder, no symbolic link below the
        root is followed and only a regular file is opened (a FIFO would block, a device
        never end); elsewhere, in blocks of :data:`CHUNK` (a backend's default block of
        50 MiB would be fetched whole past the size the manifest records)."""
        if not _is_local(fs):
            return fs.open(self._remote_key(sha256), "rb", block_size=CHUNK)
        folder, name = object_key(sha256).split("/")
        try:
            parent = os.open(os.path.join(self._root or "/", folder), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except NotADirectoryError:  # a symbolic link (O_NOFOLLOW), or a file
            raise IntegrityError(f"the remote's folder {folder}/ is a symbolic link or no folder; refused") from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise IntegrityError(f"the remote's folder {folder}/ is a symbolic link; refused") from None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=parent)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise IntegrityError(f"the remote's object {sha256} is a symbolic link; refused") from None
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IntegrityError(f"the remote's object {sha256} is a special file, not a regular one; refused")
        return os.fdopen(fd, "rb")

    def verify_remote(self, sha256: str, *, size: int | None = None) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` for an object on the remote (read whole
        up to one byte past ``size``, what the manifest records)."""
        digest = hashlib.sha256()
        fs = self.fs
        try:
            with self._open_object(fs, sha256) as src:
                got = _read_bounded(src, size, digest.update)
        except FileNotFoundError:
            return "missing"
        except IntegrityError:
            return "corrupt"
        except GitmlError:
            raise
        except Exception as e:
            raise ArtifactRemoteError(f"artifact remote {self.remote_url} cannot be read: {_timed_out(e)}") from None
        return "ok" if digest.hexdigest() == sha256 and (size is None or got <= size) else "corrupt"

    def remote_objects(self) -> set[str]:
        """Every object on the remote: the ``<2 hex>/<62 hex>`` entries right under its
        root, nothing deeper or named otherwise (one listing; a folder is read only at
        those two levels, without following symbolic links)."""
        fs = self.fs
        if _is_local(fs):
            return self._local_remote_objects()
        root = self._root.rstrip("/")
        names = set()
        for path in fs.find(root):
            rest = path.replace("\\", "/")
            if root:
                if not rest.startswith(root + "/"):
                    continue
                rest = rest[len(root) + 1 :]
            folder, _, name = rest.partition("/")
            if OBJECT_FOLDER.fullmatch(folder) and OBJECT_FILE.fullmatch(name):
                names.add(folder + name)
        return names

    def _local_remote_objects(self) -> set[str]:
        names: set[str] = set()
        with os.scandir(self._root or "/") as tops:
            folders = [e for e in tops if OBJECT_FOLDER.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        for folder in folders:
            with os.scandir(folder.path) as entries:
                names.update(
                    folder.name + e.name
                    for e in entries
                    if OBJECT_FILE.fullmatch(e.name) and e.is_file(follow_symlinks=False)
                )
        return names

    def remote_modified(self, sha256: str) -> float | None:
        """When an object was written to the remote (seconds since the epoch), if the
        backend says (a folder's mtime, S3's LastModified, ...)."""
        try:
            info = self._ask("info", sha256)
        except FileNotFoundError:
            return None
        for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
            value = info.get(key)
            if isinstance(value, (int, float)):
                return float(value)
            if hasattr(value, "timestamp"):
                return value.timestamp()
        return None

    def delete_remote(self, sha256: str) -> None:
        self.check_writable()
        self._ask("rm", sha256)

    # -- the artifact remote's deletion marks (two-phase gc) --------------------
    def _marks_folder(self) -> str:
        self.fs  # noqa: B018  (opens the remote, sets _root)
        return f"{self._root}/{GC_MARKS}" if self._root else GC_MARKS

    def gc_marks(self) -> list[GcMark]:
        """The deletion marks on the remote (:class:`GcMark`, oldest first): objects a gc found
        unreferenced and will delete once the mark is ``keep_recent`` old, unless written again
        since. A mark that cannot be read is left out (it deletes nothing)."""
        fs = self.fs
        folder = self._marks_folder()
        try:
            entries = fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []
        except Exception as e:
            raise ArtifactRemoteError(
                f"artifact remote {self.remote_url}: its gc marks cannot be listed: {_timed_out(e)}"
            ) from None
        marks = []
        for entry in entries:
            name = entry["name"].rsplit("/", 1)[-1]
            if not _MARK_NAME.fullmatch(name) or entry.get("type") == "directory":
                continue
            written = _entry_time(entry)
            if written is None or not 0 < entry.get("size", 0) <= MARK_MAX_BYTES:
                continue
            try:
                with fs.open(entry["name"], "rb") as f:
                    text = f.read(MARK_MAX_BYTES + 1)
            except Exception:
                continue
            shas = {line for line in text.decode("ascii", "replace").split("\n") if _SHA.fullmatch(line)}
            marks.append(GcMark(entry["name"], written, frozenset(shas)))
        return sorted(marks, key=lambda m: m.written)

    def write_gc_mark(self, shas: Iterable[str]) -> None:
        """Mark objects for deletion by a later gc (see :meth:`gc_marks`)."""
        self.check_writable()
        lines = sorted(set(shas))
        fs = self.fs
        for i in range(0, len(lines), MARK_MAX_BYTES // 65):
            key = f"{self._marks_folder()}/{int(time.time() * 1000)}-{uuid.uuid4().hex}.txt"
            data = "".join(f"{sha}\n" for sha in lines[i : i + MARK_MAX_BYTES // 65]).encode()
            try:
                if _is_local(fs):
                    fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
                with fs.open(key, "wb") as f:
                    f.write(data)
            except Exception as e:
                raise ArtifactRemoteError(
                    f"artifact remote {self.remote_url}: a gc mark cannot be written: {_timed_out(e)}"
                ) from None

    def drop_gc_mark(self, mark: GcMark) -> None:
        self.check_writable()
        try:
            self.fs.rm(mark.key)
        except FileNotFoundError:
            pass  # another gc's, done meanwhile


GC_MARKS = "gitml-gc"  # the remote's folder of deletion marks (no object key looks like it)
MARK_MAX_BYTES = 4 << 20  # a mark lists at most this much (64,000 objects); more make more marks
_MARK_NAME = re.compile(r"[0-9]{1,16}-[0-9a-f]{32}\.txt")
_SHA = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class GcMark:
    """Objects a gc found unreferenced (``shas``), as written to the remote at ``written``
    (the remote's clock, seconds since the epoch) under ``key``."""

    key: str
    written: float
    shas: frozenset[str]


def _entry_time(entry: dict) -> float | None:
    """When the remote says an entry was written (a folder's mtime, S3's LastModified, ...)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if value is not None and hasattr(value, "timestamp"):
            return float(value.timestamp())
    return None


def _read_bounded(src, size: int | None, consume: Callable[[bytes], object]) -> int:
    """Read ``src`` in chunks into ``consume``, stopping one byte past ``size``; returns
    the bytes read."""
    got = 0
    limit = None if size is None else size + 1
    while limit is None or got < limit:
        chunk = src.read(CHUNK if limit is None else min(CHUNK, limit - got))
        if not chunk:
            break
        consume(chunk)
        got += len(chunk)
    return got


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _timed_out(error: Exception) -> str:
    """``_one_line``, saying so plainly when a backend gave up waiting."""
    from fsspec.exceptions import FSTimeoutError

    name = type(error).__name__
    if isinstance(error, (FSTimeoutError, TimeoutError)) or name in ("ReadTimeoutError", "ConnectTimeoutError"):
        return f"timed out ({_one_line(error)}); artifacts.timeout sets how long to wait"
    return _one_line(error)


def _protocol(fs) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _is_local(fs) -> bool:
    return _protocol(fs) in ("file", "local")


def _with_timeouts(protocol: str, options: dict, timeout: float) -> dict:
    """S3's options with the connect and read timeouts and botocore's retries bounded
    (s3fs waits 15 s per read and retries 5 times over botocore's own retries), unless
    the options set their own."""
    if protocol not in ("s3", "s3a"):
        return options
    options = dict(options)
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})  # 2 attempts in all
    options["config_kwargs"] = config
    return options


def _open_remote(url: str, options: dict, timeout: float = DEFAULT_TIMEOUT):
    """``(filesystem, root path)`` for an fsspec URL, with an install hint for a missing backend."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options = _with_timeouts(protocol, options, timeout)
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        package = _BACKEND_HINTS.get(protocol, f"the fsspec backend for {protocol}://")
        raise ArtifactRemoteError(f"artifact remote {url} needs {package}: pip install {package}") from None
    except (ValueError, OSError) as e:
        raise ArtifactRemoteError(f"artifact remote {url} cannot be opened: {e}") from None
    if _is_local(fs):
        os.makedirs(root, exist_ok=True)
    if protocol in ("s3", "s3a") and isinstance(getattr(fs, "retries", None), int):
        fs.retries = min(fs.retries, 2)  # s3fs's own retries, each over botocore's
    return fs, root.rstrip("/")


def _missing_hint(remote_url: str) -> str:
    """What to do about an object missing from this user's default store: it was most likely logged
    by a teammate whose artifacts stayed in their own default store."""
    if os.path.abspath(remote_url) != os.path.abspath(default_remote()):
        return ""
    return (
        "; that is this user's default store: whoever logged the run must share an artifact remote "
        "(gitml config --committed artifacts.remote URL) and push again, and you set the same one"
    )

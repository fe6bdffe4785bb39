"""Lock files as git takes them, and a record of the ones gitml holds.

A lock is ``<path>.lock``, created exclusively; the new content is written into
it and renamed over ``<path>``. The lock file's content *is* the new file, so
nothing else may go in it. git never breaks another writer's lock, and neither
does gitml: a lock is removed only when its owner is provably dead.

The proof: a gitml process that takes locks in a repository holds an ``flock`` on
its own owner file ``<common>/gitml/locks/<host>.<pid>.<nonce>`` for as long as it
lives, and appends ``<inode> <ctime_ns> <lock path>`` to it for each lock file it
creates, once the lock holds its content. The kernel drops the flock when the
process dies (however it dies, and at a reboot), so an owner file whose flock can
be taken belongs to a dead process, and a lock file whose inode and change time
match one of its lines was left by it. Any other lock, git's or one whose owner
died before recording it, is waited for and then reported.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import socket
import threading
import uuid

from gitml.store.perms import shared_file_mode, shared_setting
from gitml.errors import LockHeld  # noqa: F401  (defined there, raised here)

log = logging.getLogger("gitml")

OWNERS_DIR = os.path.join("gitml", "locks")
TRUNCATE_BYTES = 1 << 16  # an owner file's lines are dropped past this size when it holds no lock


class LockOwner:
    """This process's owner file in one repository: made when a lock is first taken,
    and deleted when the process exits holding none (or, after exit began, as soon as
    it holds none: the committer drains its queue at exit)."""

    def __init__(self, commondir: str):
        self.dir = os.path.join(commondir, OWNERS_DIR)
        self.pid = os.getpid()
        self.path = ""
        self.fd = -1
        self.held: set[str] = set()
        self._guard = threading.Lock()
        atexit.register(self.close)

    def _open(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, f"{_host()}.{self.pid}.{uuid.uuid4().hex[:8]}")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        for name in os.listdir(self.dir):  # owner files of processes that died: dropped when they hold no lock
            if name != os.path.basename(self.path):
                release_dead(os.path.join(self.dir, name))

    def _drop(self) -> None:
        if self.fd >= 0:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = -1

    def record(self, lock: str, fd: int) -> None:
        st = os.fstat(fd)
        with self._guard:
            if self.fd < 0:
                self._open()
            self.held.add(lock)
            os.write(self.fd, f"{st.st_ino} {st.st_ctime_ns} {lock}\n".encode())

    def forget(self, lock: str) -> None:
        with self._guard:
            self.held.discard(lock)
            if self.held or self.fd < 0:
                return
            if _exiting:
                self._drop()
            elif os.fstat(self.fd).st_size > TRUNCATE_BYTES:
                os.ftruncate(self.fd, 0)

    def close(self) -> None:
        global _exiting
        _exiting = True
        if os.getpid() != self.pid:
            return  # a forked child shares the parent's file and its flock
        with self._guard:
            if not self.held:
                self._drop()


_exiting = False  # set when the interpreter's exit handlers run
_owners: dict[str, LockOwner] = {}
_owners_guard = threading.Lock()


def owner(commondir: str) -> LockOwner:
    """This process's owner file in the repository at ``commondir``."""
    key = os.path.normpath(commondir)
    with _owners_guard:
        found = _owners.get(key)
        if found is None or found.pid != os.getpid():
            found = _owners[key] = LockOwner(key)
        return found


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace(os.sep, "_") or "host"


class LockFile:
    """``<path>.lock``, taken as git takes it; the content is written at :meth:`close`,
    then renamed over ``path``; :meth:`abort` removes the lock. Raises
    :class:`LockHeld` when the lock exists."""

    def __init__(self, path: str, commondir: str):
        self.path = path
        self.lock = path + ".lock"
        self._owner = owner(commondir)
        self._commondir = commondir
        try:
            self._fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            raise LockHeld(self.lock) from None
        self._owner.record(self.lock, self._fd)
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def writelines(self, lines) -> None:
        self._chunks.extend(lines)

    def abort(self) -> None:
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        try:
            os.unlink(self.lock)
        finally:
            self._owner.forget(self.lock)

    def close(self) -> None:
        """Write the content, record the lock's new state, and rename it into place."""
        if self._fd < 0:
            return
        try:
            view = memoryview(b"".join(self._chunks))
            while view:
                view = view[os.write(self._fd, view):]
            if shared_setting(self._commondir):  # core.sharedRepository, as git adjusts the files it makes
                os.fchmod(self._fd, shared_file_mode(self._commondir, 0o666))
            self._owner.record(self.lock, self._fd)
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = -1
        try:
            os.replace(self.lock, self.path)
        except BaseException:
            try:
                os.unlink(self.lock)
            except FileNotFoundError:
                pass
            raise
        finally:
            self._owner.forget(self.lock)

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def release_dead(owner_file: str, *, lock: str | None = None) -> bool:
    """If ``owner_file`` belongs to a gitml process that has died: remove ``lock`` if that
    process left it, and the owner file once none of its locks remains. Returns whether
    ``lock`` was removed."""
    if not os.path.basename(owner_file).startswith(_host() + "."):
        return False  # another machine's process: whether it lives cannot be seen from here
    try:
        fd = os.open(owner_file, os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # alive (or another gitml is looking at it right now)
        left = _locks_left(fd)
        removed = False
        if lock is not None and lock in left:
            removed = True
            os.unlink(lock)  # the flock on the owner file keeps every other gitml away meanwhile
            left.remove(lock)
            log.warning("gitml: removed %s, left by gitml process %s, which died holding it", lock, _pid(owner_file))
        if not left:
            os.unlink(owner_file)
        return removed
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _pid(owner_file: str) -> str:
    return os.path.basename(owner_file).split(".")[1]


def _locks_left(fd: int) -> list[str]:
    """The lock files recorded in an owner file that still exist as recorded."""
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    recorded: dict[str, set[tuple[int, int]]] = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        ino, ctime, path = (line.split(" ", 2) + ["", ""])[:3]
        if ino.isdigit() and ctime.isdigit() and path:
            recorded.setdefault(path, set()).add((int(ino), int(ctime)))
    left = []
    for path, states in recorded.items():
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if (st.st_ino, st.st_ctime_ns) in states:
            left.append(path)
    return left


def release_if_dead(lock: str, commondir: str) -> bool:
    """Remove ``lock`` if a gitml process that has died left it (saying so); else False."""
    folder = os.path.join(commondir, OWNERS_DIR)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return False
    return any(release_dead(os.path.join(folder, name), lock=lock) for name in names)


def holder(lock: str, commondir: str) -> str:
    """Who holds ``lock``, for a message: a running gitml process, or one gitml does not know."""
    folder = os.path.join(commondir, OWNERS_DIR)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if lock in _locks_left(fd):
                return f"gitml process {_pid(name)} on {name.split('.')[0]} holds it and is still running"
        finally:
            os.close(fd)
    return "no gitml process holds it: if no git process is running either, one was killed while writing; remove that file"

"""Lock files as git takes them, and a record of the ones gitml holds.

A lock is ``<path>.lock``, created exclusively; the new content is written into
it and renamed over ``<path>``. The lock file's content *is* the new file, so
nothing else may go in it. git never breaks another writer's lock, and neither
does gitml: a lock is removed only when its owner is provably dead.

The proof: a gitml process that takes locks in a repository holds an ``flock`` on
its own owner file ``<common>/gitml/locks/<host>.<pid>.<nonce>`` for as long as it
lives, so an owner file whose flock can be taken belongs to a dead process (the
kernel drops the flock however the process dies, and at a reboot). Before it takes
a lock it appends ``w<k> <lock path>`` to that file, creates the witness file
``<owner file>.d/<k>`` and hard-links the witness as the lock (``link`` fails when
the lock exists, as ``O_EXCL`` does); the witness goes once the lock is renamed
into place or removed. So a lock left by a dead gitml process is exactly a lock
that is the same file as a witness of that process: there is no moment at which a
lock exists that its owner has not recorded. (Recording the lock's inode after an
``O_EXCL`` create left such a moment: a process killed in it, and under GIL
contention it lasts milliseconds, left a lock nobody could prove dead; the next
command waited 30 s and could not commit the runs its journal held.) Any other
lock, git's, is waited for and then reported. Where the file system has no hard
links, the lock is created with ``O_EXCL`` and its inode and change time are
recorded (``<ino> <ctime_ns> <lock path>``), with that moment.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import socket
import threading
import uuid

from gitml.errors import LockHeld  # noqa: F401  (defined there, raised here)
from gitml.store.perms import shared_file_mode, shared_setting

log = logging.getLogger("gitml")

OWNERS_DIR = os.path.join("gitml", "locks")
WITNESSES = ".d"  # <owner file>.d/<k>: the witness of the owner's k-th lock
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}  # link(2) where a file system has no hard links
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
        self.held: dict[str, int] = {}  # lock -> how many of this process's threads hold or try it
        self._count = 0  # witnesses made: each lock's has a new number
        self._pins = 0  # callers about to take many locks (see pin)
        self._guard = threading.Lock()
        atexit.register(self.close)

    def _open(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, f"{_host()}.{self.pid}.{uuid.uuid4().hex[:8]}")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.mkdir(self.path + WITNESSES)
        for name in os.listdir(self.dir):  # owner files of processes that died: dropped when they hold no lock
            if name != os.path.basename(self.path) and not name.endswith(WITNESSES):
                release_dead(os.path.join(self.dir, name))

    def _drop(self) -> None:
        if self.fd >= 0:
            _remove_witnesses(self.path)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = -1

    def witness(self, lock: str) -> str:
        """Record that this process is about to take ``lock``; the path of the witness
        file to create and link as the lock."""
        with self._guard:
            if self.fd < 0:
                self._open()
            self._count += 1
            self.held[lock] = self.held.get(lock, 0) + 1
            os.write(self.fd, f"w{self._count} {lock}\n".encode())
            return os.path.join(self.path + WITNESSES, str(self._count))

    def record(self, lock: str, fd: int) -> None:
        """Record ``lock``'s inode and change time (where there are no hard links)."""
        st = os.fstat(fd)
        with self._guard:
            if self.fd < 0:
                self._open()
            self.held[lock] = self.held.get(lock, 0) + 1
            os.write(self.fd, f"{st.st_ino} {st.st_ctime_ns} {lock}\n".encode())

    def forget(self, lock: str) -> None:
        with self._guard:
            count = self.held.pop(lock, 0) - 1
            if count > 0:
                self.held[lock] = count
            if self.held or self.fd < 0:
                return
            if _exiting and not self._pins:
                self._drop()
            elif os.fstat(self.fd).st_size > TRUNCATE_BYTES:
                os.ftruncate(self.fd, 0)

    def pin(self) -> None:
        """Keep the owner file while a burst of locks is taken (a tracker's close: the last
        commits, packing the run refs): after exit began it was dropped whenever no lock was
        held, and made again for the next, a third of a long process's exit. Undo with :meth:`unpin`."""
        with self._guard:
            self._pins += 1

    def unpin(self) -> None:
        with self._guard:
            self._pins -= 1
            if not self._pins and not self.held and _exiting:
                self._drop()

    def close(self) -> None:
        global _exiting
        _exiting = True
        if os.getpid() != self.pid:
            return  # a forked child shares the parent's file and its flock
        with self._guard:
            if not self.held and not self._pins:
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
        self._witness: str | None = self._owner.witness(self.lock)
        try:
            self._fd = os.open(self._witness, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except BaseException:
            self._owner.forget(self.lock)
            raise
        try:
            os.link(self._witness, self.lock)
        except FileExistsError:
            self._let_go()
            raise LockHeld(self.lock) from None
        except OSError as e:
            if e.errno not in _NO_LINKS:
                self._let_go()
                raise
            self._let_go()  # no hard links here: the lock itself, exclusively, recorded once it exists
            self._witness = None
            try:
                self._fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                raise LockHeld(self.lock) from None
            self._owner.record(self.lock, self._fd)
        except BaseException:
            self._let_go()
            raise
        self._chunks: list[bytes] = []

    def _let_go(self) -> None:
        """Close the lock's file and remove its witness (the lock itself is the caller's)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._witness is not None:
            try:
                os.unlink(self._witness)
            except FileNotFoundError:
                pass
        self._owner.forget(self.lock)

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def writelines(self, lines) -> None:
        self._chunks.extend(lines)

    def abort(self) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self.lock)
        finally:
            self._let_go()

    def close(self) -> None:
        """Write the content, and rename the lock into place."""
        if self._fd < 0:
            return
        try:
            view = memoryview(b"".join(self._chunks))
            while view:
                view = view[os.write(self._fd, view) :]
            if shared_setting(self._commondir):  # core.sharedRepository, as git adjusts the files it makes
                os.fchmod(self._fd, shared_file_mode(self._commondir, 0o666))
            if self._witness is None:
                self._owner.record(self.lock, self._fd)  # its new change time
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        try:
            os.replace(self.lock, self.path)
        except BaseException:
            try:
                os.unlink(self.lock)
            except FileNotFoundError:
                pass
            raise
        finally:
            self._let_go()

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def release_dead(owner_file: str, *, lock: str | None = None) -> bool:
    """If ``owner_file`` belongs to a gitml process that has died: remove ``lock`` if that
    process left it, and the owner file (with its witnesses) once none of its locks
    remains. Returns whether ``lock`` was removed."""
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
        left = _locks_left(fd, owner_file)
        removed = False
        if lock is not None and lock in left:
            removed = True
            os.unlink(lock)  # the flock on the owner file keeps every other gitml away meanwhile
            del left[lock]
            log.warning("gitml: removed %s, left by gitml process %s, which died holding it", lock, _pid(owner_file))
        if not left:
            _remove_witnesses(owner_file)
            os.unlink(owner_file)
        return removed
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _pid(owner_file: str) -> str:
    return os.path.basename(owner_file).split(".")[1]


def _remove_witnesses(owner_file: str) -> None:
    folder = owner_file + WITNESSES
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _locks_left(fd: int, owner_file: str) -> dict[str, None]:
    """The lock files recorded in an owner file that are still the files it made: the
    same file as their witness, or (no hard links) of the recorded inode and change time."""
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    witnessed: dict[str, list[str]] = {}
    recorded: dict[str, set[tuple[int, int]]] = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        first, _, rest = line.partition(" ")
        if first[:1] == "w" and first[1:].isdigit() and rest:
            witnessed.setdefault(rest, []).append(first[1:])
            continue
        ctime, _, path = rest.partition(" ")
        if first.isdigit() and ctime.isdigit() and path:
            recorded.setdefault(path, set()).add((int(first), int(ctime)))
    left: dict[str, None] = {}
    for path in witnessed.keys() | recorded.keys():
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if (st.st_ino, st.st_ctime_ns) in recorded.get(path, ()):
            left[path] = None
            continue
        for k in witnessed.get(path, ()):
            try:
                if os.path.samestat(st, os.lstat(os.path.join(owner_file + WITNESSES, k))):
                    left[path] = None
                    break
            except FileNotFoundError:
                continue
    return left


def release_if_dead(lock: str, commondir: str) -> bool:
    """Remove ``lock`` if a gitml process that has died left it (saying so); else False."""
    folder = os.path.join(commondir, OWNERS_DIR)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return False
    return any(release_dead(os.path.join(folder, name), lock=lock) for name in names if not name.endswith(WITNESSES))


def holder(lock: str, commondir: str) -> str:
    """Who holds ``lock``, for a message: a running gitml process, or one gitml does not know."""
    folder = os.path.join(commondir, OWNERS_DIR)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(WITNESSES):
            continue
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if lock in _locks_left(fd, os.path.join(folder, name)):
                return f"gitml process {_pid(name)} on {name.split('.')[0]} holds it and is still running"
        finally:
            os.close(fd)
    return (
        "no gitml process holds it: if no git process is running either, one was killed while writing; remove that file"
    )

"""The write-ahead journal of a process's run writers, under ``.git/gitml/journal/``.

Every logging call appends one line (one ``write`` per call) before it returns,
so a killed process loses nothing it logged. One journal serves every run a
process writes; each run has a slot number. Lines, tab-separated::

    gitml-journal 2                               header
    R <slot> <experiment_id> <run_id>             a run joins the journal
    C <slot> <json object>                        the run was created (meta, tags, source)
    M <slot> <key> <value> <step> <timestamp>     metric point
    P <slot> <key> <json string>                  param
    T <slot> <key> <json string>                  tag set
    D <slot> <key>                                tag deleted
    S <slot> <json object>                        meta fields (status, end_time, ...)
    A <slot> <json object>                        artifact (path, sha256, size, inline blob)

The process holds an exclusive ``flock`` on its journal while alive; a journal
whose lock can be taken belongs to a dead process and is replayed by recovery.
A journal counts the writers whose lines it holds uncommitted: a *retired* one
(a long process moved on to a fresh journal) stays open, and on disk, until the
last of them has committed; deleting it while ended runs still waited for the
committer lost them (129 of 50,000 runs in one process).
Each run commit records, in a ``Gitml-Journal: <name> <offset>`` trailer, the
journal's size when the commit was prepared: the run's lines before it are in
the commit, the ones after it are not.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import uuid

from gitml.errors import CorruptRecordError, JournalWriteError

MAGIC = "gitml-journal 2"
_write = os.write


class _JournalRetired(RuntimeError):
    """The journal takes no new run: the process moved on to a fresh one."""


class Journal:
    """An open, locked, append-only journal shared by a process's writers."""

    def __init__(self, directory: str, prefix: str = ""):
        os.makedirs(directory, exist_ok=True)
        self.name = f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}.log"
        self.path = os.path.join(directory, self.name)
        self._slots = 0
        self._users: set[int] = set()  # slots of writers that may hold uncommitted lines here
        self._retired = False
        self._lock = threading.Lock()
        # Made locked and with its header under another name, then renamed: a journal
        # is never seen unlocked. Another process's recovery took a journal in the
        # moment between its creation and its flock for a dead one, found it empty and
        # deleted it; the lines written to it after that were lost (a group writer's).
        building = os.path.join(directory, f".{self.name}.new")
        self.fd = os.open(building, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.write(f"{MAGIC}\n")
            os.rename(building, self.path)
        except BaseException:
            os.close(self.fd)
            os.unlink(building)
            raise

    def register(self, experiment_id: str, run_id: str, *, write: bool = True) -> int:
        """A slot number for a run's lines in this journal (held until :meth:`release`).
        ``write=False``: the caller writes the slot's ``R`` line (:func:`encode_run`) itself,
        before any other line of the slot and with the first of them (a new run's creation)."""
        with self._lock:
            if self._retired:
                raise _JournalRetired(self.name)
            self._slots += 1
            slot = self._slots
            self._users.add(slot)
        if write:
            self.write(encode_run(slot, experiment_id, run_id))
        return slot

    def release(self, slot: int) -> None:
        """The run of ``slot`` has committed every line it has here (and writes no more);
        a retired journal whose runs have all committed is deleted."""
        with self._lock:
            self._users.discard(slot)
            done = self._retired and not self._users
        if done:
            self.close(remove=True)

    @property
    def users(self) -> int:
        """How many runs may hold uncommitted lines here."""
        return len(self._users)

    def retire(self) -> bool:
        """Take no more runs; delete the journal once its runs have committed (now, if
        they have). True if it was deleted now."""
        with self._lock:
            self._retired = True
            done = not self._users
        if done:
            self.close(remove=True)
        return done

    def write(self, text: str) -> None:
        """Append whole lines (see :meth:`append`)."""
        self.append(text.encode())

    def append(self, data: bytes) -> None:
        """Append whole lines, encoded, or raise :class:`JournalWriteError` and leave the
        journal as it was: a short ``write`` (a full disk) is continued, and a line that
        cannot be finished is cut off again, so what a returned call logged is all there."""
        lock = self._lock  # one writer at a time: a torn line is ours to cut
        lock.acquire()  # (its methods: a `with` cost 0.1 us more a call, W1)
        try:
            try:
                written = _write(self.fd, data)  # whole, all but always: no view made per line
            except OSError as e:  # (nothing written)
                raise JournalWriteError(self.path, e) from None
            if written < len(data):
                self._write_rest(data, written)
        finally:
            lock.release()

    def _write_rest(self, data: bytes, written: int) -> None:
        """Finish a short write, or cut its part off again and raise (call with the lock held)."""
        view = memoryview(data)
        try:
            while written < len(data):
                written += _write(self.fd, view[written:])
        except OSError as e:
            if written:
                try:  # O_APPEND: the file position is the end of our partial line
                    os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR) - written)
                except OSError:
                    pass
            raise JournalWriteError(self.path, e) from None

    def size(self) -> int:
        with self._lock:  # not a closed descriptor's number, which the process may reuse
            if self.fd < 0:
                raise JournalWriteError(self.path, OSError(9, "the journal is closed"))
            return os.fstat(self.fd).st_size

    def close(self, *, remove: bool) -> None:
        """Close (and with ``remove``, delete) the journal; deleted only while the lock is
        held, so that no recovery of another process can be replaying it."""
        with self._lock:
            if self.fd < 0:
                return
            if remove:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            os.close(self.fd)
            self.fd = -1


def metric_prefix(slot: int, key: str) -> bytes:
    """The start of a metric point's ``M`` line, the same for every point of a key: a writer
    keeps it and formats the rest, ``%r\\t%d\\t%d\\n`` of value, step and timestamp (the text
    ``f"{value!r}\\t{step}\\t{timestamp}\\n"`` makes of a float and ints)."""
    return f"M\t{slot}\t{key}\t".encode()


def metric_columns(lines: list[bytes]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The step, timestamp and value texts of ``M`` lines as a writer makes them (:func:`metric_prefix`),
    as three lists (C-speed splits of their joined text: no Python step per line)."""
    if len(lines) == 1:  # (a run's metrics logged once each: W2)
        fields = lines[0][:-1].split(b"\t")
        if len(fields) != 6:
            raise ValueError("not one metric point a line")
        return [fields[4]], [fields[5]], [fields[3]]
    fields = b"".join(lines).replace(b"\n", b"\t").split(b"\t")
    if len(fields) != 6 * len(lines) + 1:  # (a key holds no tab: check_key)
        raise ValueError("not one metric point a line")  # a writer's own lines: never met
    return fields[4::6], fields[5::6], fields[3::6]


def encode_run(slot: int, experiment_id: str, run_id: str) -> str:
    return f"R\t{slot}\t{experiment_id}\t{run_id}\n"


def encode_create(slot: int, meta: dict, tags: dict, source_commit: bytes | None, source_tree: bytes | None) -> str:
    data = {
        "meta": meta,
        "tags": tags,
        "source_commit": source_commit.decode() if source_commit else None,
        "source_tree": source_tree.decode() if source_tree else None,
    }
    return f"C\t{slot}\t{json.dumps(data)}\n"


# ``json.dumps`` of a string is this C function behind two Python calls (a tenth of a W2 run's
# logging calls went to them): the same text, called directly
_json_text = json.encoder.encode_basestring_ascii


def encode_param(slot: int, key: str, value: str) -> str:
    return f"P\t{slot}\t{key}\t{_json_text(value) if type(value) is str else json.dumps(value)}\n"


def encode_tag(slot: int, key: str, value: str | None) -> str:
    if value is None:
        return f"D\t{slot}\t{key}\n"
    return f"T\t{slot}\t{key}\t{_json_text(value) if type(value) is str else json.dumps(value)}\n"


def encode_artifact(slot: int, path: str, sha256: str, size: int, blob: str | None) -> str:
    return f"A\t{slot}\t{json.dumps({'path': path, 'sha256': sha256, 'size': size, 'blob': blob})}\n"


def encode_meta(slot: int, fields: dict) -> str:
    return f"S\t{slot}\t{json.dumps(fields)}\n"


def try_lock(path: str) -> int | None:
    """Open and lock the journal of a dead process; None while its process lives."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def registered_runs(path: str) -> set[str]:
    """The run ids a journal's ``R`` lines name (readable while its writer holds the lock)."""
    runs = set()
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"R\t"):
                    parts = line.rstrip(b"\n").split(b"\t")
                    if len(parts) == 4:
                        runs.add(parts[3].decode("ascii", "replace"))
    except FileNotFoundError:
        pass
    return runs


def replay(data: bytes, name: str) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int, tuple]]]:
    """Parse a journal: ``({slot: (experiment_id, run_id)}, [(slot, end offset, entry)])``.

    A torn last line (no newline: the process died mid-write) is ignored.
    """
    if not data.startswith(MAGIC.encode() + b"\n"):
        raise CorruptRecordError(f"journal {name}", "missing header")
    return parse(data, len(MAGIC) + 1, name)


def parse(data: bytes, offset: int, name: str) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int, tuple]]]:
    """Parse the whole lines of ``data`` from ``offset`` (a line's start), as :func:`replay`."""
    runs: dict[int, tuple[str, str]] = {}
    entries: list[tuple[int, int, tuple]] = []
    end = data.rfind(b"\n") + 1
    while offset < end:
        stop = data.index(b"\n", offset) + 1
        line = data[offset : stop - 1].decode("utf-8", "replace")
        offset = stop
        parts = line.split("\t")
        try:
            kind, slot = parts[0], int(parts[1])
            if kind == "R":
                runs[slot] = (parts[2], parts[3])
            elif kind == "M":
                entries.append((slot, stop, ("M", parts[2], float(parts[3]), int(parts[4]), int(parts[5]))))
            elif kind in ("P", "T"):
                entries.append((slot, stop, (kind, parts[2], json.loads("\t".join(parts[3:])))))
            elif kind == "D":
                entries.append((slot, stop, ("D", parts[2])))
            elif kind in ("S", "C", "A"):
                entries.append((slot, stop, (kind, json.loads("\t".join(parts[2:])))))
            else:
                raise ValueError(kind)
        except (ValueError, IndexError):
            raise CorruptRecordError(f"journal {name}", f"unreadable line {line[:80]!r}") from None
    return runs, entries

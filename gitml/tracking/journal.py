"""The write-ahead journal of a run writer, under ``.git/gitml/journal/``.

Every logging call appends one line (one ``write`` per call) before it returns,
so a killed process loses nothing it logged. Lines, tab-separated::

    gitml-journal 1 <experiment_id> <run_id>      header
    M <key> <value> <step> <timestamp>           metric point
    P <key> <json string>                        param
    T <key> <json string>                        tag set
    D <key>                                      tag deleted
    S <json object>                              meta fields (status, end_time, ...)
    C <json object>                              run created (meta, tags, source)

The writer holds an exclusive ``flock`` on its journal while alive; a journal
whose lock can be taken belongs to a dead process and is replayed by
:func:`gitml.tracking.recovery.recover`. Each run commit records, in a
``Gitml-Journal: <name> <offset>`` trailer, how far each journal is committed.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator

from gitml.errors import CorruptRecordError

MAGIC = "gitml-journal 1"


class Journal:
    """An open, locked, append-only journal."""

    def __init__(self, directory: str, experiment_id: str, run_id: str):
        os.makedirs(directory, exist_ok=True)
        self.name = f"{run_id}-{uuid.uuid4().hex[:12]}.log"
        self.path = os.path.join(directory, self.name)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.offset = 0
        self.write(f"{MAGIC} {experiment_id} {run_id}\n")

    def write(self, text: str) -> None:
        data = text.encode()
        os.write(self.fd, data)
        self.offset += len(data)

    def metric(self, key: str, value: float, step: int, timestamp: int) -> None:
        data = f"M\t{key}\t{value!r}\t{step}\t{timestamp}\n".encode()
        os.write(self.fd, data)
        self.offset += len(data)

    def close(self, *, remove: bool) -> None:
        if self.fd < 0:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = -1


def encode_create(meta: dict, tags: dict, source_commit: bytes | None, source_tree: bytes | None) -> str:
    data = {
        "meta": meta,
        "tags": tags,
        "source_commit": source_commit.decode() if source_commit else None,
        "source_tree": source_tree.decode() if source_tree else None,
    }
    return f"C\t{json.dumps(data)}\n"


def encode_param(key: str, value: str) -> str:
    return f"P\t{key}\t{json.dumps(value)}\n"


def encode_tag(key: str, value: str) -> str:
    return f"T\t{key}\t{json.dumps(value)}\n"


def encode_tag_delete(key: str) -> str:
    return f"D\t{key}\n"


def encode_meta(fields: dict) -> str:
    return f"S\t{json.dumps(fields)}\n"


def try_lock(path: str) -> int | None:
    """Open and lock a journal of a dead writer; None while its writer lives."""
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


def read_header(data: bytes, name: str) -> tuple[str, str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    parts = first.split(" ")
    if len(parts) != 4 or " ".join(parts[:2]) != MAGIC:
        raise CorruptRecordError(f"journal {name}", "missing header")
    return parts[2], parts[3]


def replay(data: bytes, offset: int, name: str) -> Iterator[tuple]:
    """Entries after ``offset``; a torn last line (no newline) is ignored."""
    body = data[offset:]
    end = body.rfind(b"\n")
    if end < 0:
        return
    for raw in body[: end + 1].splitlines():
        line = raw.decode("utf-8", "replace")
        kind, _, rest = line.partition("\t")
        try:
            if kind == "M":
                key, value, step, ts = rest.split("\t")
                yield ("M", key, float(value), int(step), int(ts))
            elif kind in ("P", "T"):
                key, value = rest.split("\t", 1)
                yield (kind, key, json.loads(value))
            elif kind == "D":
                yield ("D", rest)
            elif kind in ("S", "C"):
                yield (kind, json.loads(rest))
            elif line.startswith(MAGIC):
                continue
            else:
                raise ValueError(kind)
        except ValueError:
            raise CorruptRecordError(f"journal {name}", f"unreadable line {line[:80]!r}") from None

"""git's index file (``.git/index``), read without a Python object per entry.

A snapshot of the work tree needs, for each tracked path, the stat data git
recorded and the blob id; dulwich's reader builds an object per entry through
many small reads (about 1 s for 50,000 entries). This reader takes the whole
file in one read, checks its SHA-1 trailer, and fills parallel lists.

It reads versions 2, 3 and 4 (path prefix compression), extended flags
(skip-worktree, intent-to-add), conflict stages, the cache tree (``TREE``: tree
ids of directories whose entries git has not touched since), a split index
(``link``: the entries of ``sharedindex.<id>`` with this file's changes) and a
sparse index (``sdir``: directory entries of mode 040000 standing for a whole
subtree). Extensions git marks optional (an upper-case first letter) are skipped;
any other is refused, as git refuses it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final

from gitml.errors import RepositoryError

ASSUME_VALID = 0x8000  # git's CE_VALID: "assume unchanged"
STAGE_MASK = 0x3000
INTENT_TO_ADD = 0x2000 << 16  # extended flags, kept above the 16 bits of the entry's flags
SKIP_WORKTREE = 0x4000 << 16
TREE_MODE = 0o040000

_ENTRY = struct.Struct(">8xII8xI8xI20sH")  # mtime s, ns, mode, size, sha, flags (62 bytes)
_HEADER = struct.Struct(">4sII")
_NULL_SHA = b"\0" * 20


class IndexFormatError(RepositoryError):
    """The index file is damaged or in a form this reader does not know."""

    def __init__(self, path: str, detail: str):
        self.path, self.detail = path, detail
        super().__init__(f"cannot read git's index {path}: {detail}")


# an entry's fields: mtime seconds, mtime nanoseconds, mode, size, raw sha, flags
MTIME_S: Final = 0
MTIME_NS: Final = 1
MODE: Final = 2
SIZE: Final = 3
SHA: Final = 4
FLAGS: Final = 5
Row = tuple[int, int, int, int, bytes, int]


@dataclass
class GitIndex:
    """The entries of an index, in index order (path, then stage): ``paths`` and, beside
    them, ``rows`` of the fields as :data:`Row` tuples (one ``struct`` unpack each)."""

    version: int
    checksum: bytes
    paths: list[bytes] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    cached_trees: dict[bytes, bytes] = field(default_factory=dict)  # directory (b"" = root) -> raw tree id

    @property
    def modes(self) -> list[int]:
        return [row[MODE] for row in self.rows]

    @property
    def shas(self) -> list[bytes]:
        return [row[SHA] for row in self.rows]

    @property
    def sizes(self) -> list[int]:
        return [row[SIZE] for row in self.rows]

    @property
    def mtimes(self) -> list[int]:
        """Nanoseconds."""
        return [row[MTIME_S] * 1_000_000_000 + row[MTIME_NS] for row in self.rows]

    @property
    def flags(self) -> list[int]:
        return [row[FLAGS] for row in self.rows]

    def __contains__(self, path: bytes) -> bool:
        """Whether git tracks ``path`` (a file, or inside a sparse directory entry)."""
        i = bisect_left(self.paths, path)
        if i < len(self.paths) and self.paths[i] == path:
            return True
        parts = path.split(b"/")
        for n in range(1, len(parts)):
            directory = b"/".join(parts[:n]) + b"/"
            i = bisect_left(self.paths, directory)
            if i < len(self.paths) and self.paths[i] == directory and self.rows[i][MODE] == TREE_MODE:
                return True
        return False


_cache: dict[str, tuple[tuple, GitIndex]] = {}


def read_index(path: str) -> GitIndex | None:
    """The index at ``path`` (None when there is none). Parsed again only when the
    file's identity (inode, size, times) or its checksum changed.

    The file is read through one open file, so a concurrent rewrite (git writes
    ``index.lock`` and renames it over) is seen whole or not at all; a checksum
    that does not match (a writer that does not rename) is read again, and a file
    still damaged after that raises :class:`IndexFormatError`.
    """
    for attempt in range(3):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            identity = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            hit = _cache.get(path)
            if hit is not None and hit[0] == identity and os.pread(fd, 20, st.st_size - 20) == hit[1].checksum:
                return hit[1]
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        if _checksum_ok(data):
            index = parse_index(data, path)
            _cache.clear()
            _cache[path] = (identity, index)
            return index
    raise IndexFormatError(path, "the index file's checksum does not match its content (damaged, or written in place)")


def index_mtime_ns(path: str) -> int:
    """When the index file was written (racily clean entries are judged against it)."""
    hit = _cache.get(path)
    return hit[0][2] if hit else os.stat(path).st_mtime_ns


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _checksum_ok(data: bytes) -> bool:
    if len(data) < _HEADER.size + 20:
        return False
    trailer = data[-20:]
    # index.skipHash writes a null trailer: git then checks nothing, and neither do we
    return trailer == _NULL_SHA or hashlib.sha1(memoryview(data)[:-20]).digest() == trailer


def parse_index(data: bytes, path: str) -> GitIndex:
    """Parse a whole index file read from ``path`` (already checked against its trailer)."""
    signature, version, count = _HEADER.unpack_from(data, 0)
    if signature != b"DIRC" or version not in (2, 3, 4):
        raise IndexFormatError(path, f"not a git index this reader knows (signature {signature!r}, version {version})")
    index = GitIndex(version, data[-20:])
    try:
        pos = _read_entries(data, _HEADER.size, count, version, index)
        link = _read_extensions(data, pos, index)
    except (struct.error, IndexError, ValueError) as e:
        raise IndexFormatError(path, f"malformed ({e})") from None
    if link is not None:
        _merge_shared(index, link, path)
    return index


def _read_entries(data: bytes, pos: int, count: int, version: int, index: GitIndex) -> int:
    unpack = _ENTRY.unpack_from
    find = data.find
    paths, rows = index.paths, index.rows
    add_path, add_row = paths.append, rows.append
    previous = b""
    for _ in range(count):
        row = unpack(data, pos)
        start = pos + 62
        flags = row[FLAGS]
        if flags & 0x4000:  # extended: two more bytes of flags, kept above the first sixteen
            if version < 3:
                raise ValueError("extended flags in a version 2 index")
            row = (*row[:FLAGS], flags | (data[start] << 24) | (data[start + 1] << 16))
            start += 2
        if version == 4:
            strip, start = _varint(data, start)
            end = find(b"\0", start)
            if strip > len(previous):
                raise ValueError("an entry strips more of the previous path than it has")
            path = previous[: len(previous) - strip] + data[start:end]
            previous = path
            pos = end + 1
        else:
            length = flags & 0xFFF
            end = start + length if length < 0xFFF else find(b"\0", start)
            path = data[start:end]
            pos += (end - pos + 8) & ~7  # NUL padding to a multiple of eight
        add_path(path)
        add_row(row)
    return pos


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (index v4's prefix length)."""
    byte = data[pos]
    value = byte & 0x7F
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos + 1


def _read_extensions(data: bytes, pos: int, index: GitIndex) -> bytes | None:
    end = len(data) - 20
    link = None
    while pos + 8 <= end:
        name, size = struct.unpack_from(">4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        if len(body) != size:
            raise ValueError(f"extension {name!r} runs past the end of the file")
        if name == b"TREE":
            index.cached_trees = _cache_tree(body)
        elif name == b"link":
            link = body
        elif name == b"sdir":
            pass  # the directory entries themselves say it all
        elif not (b"A"[0] <= name[0] <= b"Z"[0]):
            raise ValueError(f"it uses the {name.decode('latin-1')!r} extension, which gitml does not understand")
        pos += 8 + size
    if pos != end:
        raise ValueError("trailing bytes after the extensions")
    return link


def _cache_tree(body: bytes) -> dict[bytes, bytes]:
    """Valid directory trees of the ``TREE`` extension, by directory path."""
    out: dict[bytes, bytes] = {}
    stack: list[tuple[bytes, int]] = []  # (directory path, subtrees still to read)
    pos = 0
    while pos < len(body):
        nul = body.index(b"\0", pos)
        name = body[pos:nul]
        newline = body.index(b"\n", nul)
        entry_count, subtrees = (int(x) for x in body[nul + 1 : newline].split(b" "))
        pos = newline + 1
        while stack and stack[-1][1] == 0:
            stack.pop()
        if stack:
            parent, left = stack[-1]
            stack[-1] = (parent, left - 1)
            path = parent + b"/" + name if parent else name
        else:
            path = name
        if entry_count >= 0:
            out[path] = body[pos : pos + 20]
            pos += 20
        stack.append((path, subtrees))
    return out


def _ewah(data: bytes, pos: int) -> tuple[list[int], int]:
    """The positions set in an EWAH-compressed bitmap (git's ewah/ format)."""
    _bits, nwords = struct.unpack_from(">II", data, pos)
    pos += 8
    words = struct.unpack_from(f">{nwords}Q", data, pos)
    pos += 8 * nwords + 4  # the words, then the position of the last marker word
    out: list[int] = []
    bit = 0
    i = 0
    while i < nwords:
        marker = words[i]
        run, literals = (marker >> 1) & 0xFFFFFFFF, marker >> 33
        if marker & 1:
            out.extend(range(bit, bit + run * 64))
        bit += run * 64
        for word in words[i + 1 : i + 1 + literals]:
            out.extend(bit + b for b in range(64) if word >> b & 1)
            bit += 64
        i += 1 + literals
    return out, pos


def _merge_shared(index: GitIndex, link: bytes, path: str) -> None:
    """Apply a split index (this file's entries) onto its shared index."""
    shared_id = link[:20].hex()
    if shared_id == "0" * 40:
        return
    deleted, pos = _ewah(link, 20) if len(link) > 20 else ([], 20)
    replaced, _ = _ewah(link, pos) if len(link) > pos else ([], pos)
    shared_path = os.path.join(os.path.dirname(path), f"sharedindex.{shared_id}")
    try:
        with open(shared_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise IndexFormatError(path, f"its shared index {shared_path} is missing") from None
    if data[-20:] != link[:20] or not _checksum_ok(data):
        raise IndexFormatError(path, f"its shared index {shared_path} does not match it")
    shared = parse_index(data, shared_path)
    own = list(zip(index.paths, index.rows))
    rows = list(zip(shared.paths, shared.rows))
    if len(replaced) > len(own):
        raise IndexFormatError(path, "the split index replaces more entries than it holds")
    for n, i in enumerate(replaced):
        rows[i] = (rows[i][0], own[n][1])
    gone = set(deleted)
    merged = [row for i, row in enumerate(rows) if i not in gone] + own[len(replaced):]
    merged.sort(key=lambda entry: (entry[0], entry[1][FLAGS] & STAGE_MASK))
    index.paths = [p for p, _ in merged]
    index.rows = [r for _, r in merged]

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
import sys
import threading
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from gitml.errors import IndexFormatError

ASSUME_VALID = 0x8000  # git's CE_VALID: "assume unchanged"
STAGE_MASK = 0x3000
INTENT_TO_ADD = 0x2000 << 16  # extended flags, kept above the 16 bits of the entry's flags
SKIP_WORKTREE = 0x4000 << 16
TREE_MODE = 0o040000

_HEADER = struct.Struct(">4sII")
_NULL_SHA = b"\0" * 20


_U32 = next(code for code in "IL" if array(code).itemsize == 4)
_STAT = 60  # an entry's stat data and sha: fifteen 32-bit words, then its flags and path
_WORDS = _STAT // 4


@dataclass
class GitIndex:
    """The entries of an index, in index order (path, then stage), as columns: ``paths``
    and beside them unsigned 32-bit arrays of the fields ``git status`` compares, no
    Python object per entry but the path. Blob ids are read from ``stat_data`` (the
    entries' first 60 bytes end to end) by :meth:`sha`."""

    version: int
    checksum: bytes
    paths: list[bytes] = field(default_factory=list)
    stat_data: bytes = b""
    mtime_s: array = field(default_factory=lambda: array(_U32))
    mtime_ns: array = field(default_factory=lambda: array(_U32))
    modes: array = field(default_factory=lambda: array(_U32))
    sizes: array = field(default_factory=lambda: array(_U32))
    flags: array = field(default_factory=lambda: array(_U32))  # extended flags in the upper 16 bits
    cached_trees: dict[bytes, bytes] = field(default_factory=dict)  # directory (b"" = root) -> raw tree id

    def sha(self, i: int) -> bytes:
        """The raw blob (or tree, gitlink) id of entry ``i``."""
        return self.stat_data[i * _STAT + 40 : i * _STAT + 60]

    @property
    def shas(self) -> list[bytes]:
        return [self.sha(i) for i in range(len(self.paths))]

    @property
    def mtimes(self) -> list[int]:
        """Nanoseconds."""
        return [s * 1_000_000_000 + ns for s, ns in zip(self.mtime_s, self.mtime_ns, strict=False)]

    def __contains__(self, path: bytes) -> bool:
        """Whether git tracks ``path`` (a file, or inside a sparse directory entry)."""
        i = bisect_left(self.paths, path)
        if i < len(self.paths) and self.paths[i] == path:
            return True
        parts = path.split(b"/")
        for n in range(1, len(parts)):
            directory = b"/".join(parts[:n]) + b"/"
            i = bisect_left(self.paths, directory)
            if i < len(self.paths) and self.paths[i] == directory and self.modes[i] == TREE_MODE:
                return True
        return False


@dataclass
class _Entries:
    """Entries as parsed, before they become columns: a split index merges these."""

    paths: list[bytes] = field(default_factory=list)
    stat: list[bytes] = field(default_factory=list)  # each entry's first 60 bytes
    flags: list[int] = field(default_factory=list)

    def columns(self, index: GitIndex) -> None:
        stat_data = b"".join(self.stat)
        words = array(_U32)
        words.frombytes(stat_data)
        if sys.byteorder == "little":
            words.byteswap()
        index.paths, index.stat_data, index.flags = self.paths, stat_data, array(_U32, self.flags)
        index.mtime_s, index.mtime_ns = words[2::_WORDS], words[3::_WORDS]
        index.modes, index.sizes = words[6::_WORDS], words[9::_WORDS]


_cache: dict[str, tuple[tuple, GitIndex]] = {}


def read_index(path: str, *, columns: str | None = None, keep: bool = True) -> GitIndex | None:
    """The index at ``path`` (None when there is none). Parsed again only when the
    file's identity (inode, size, times) or its checksum changed. With ``columns`` (a
    file path of gitml's), the parsed columns are kept there for the next process, and
    taken from there while the index's checksum is the one they were parsed from
    (``keep=False``: taken, not written, for an index about to be replaced).

    The file is read through one open file, so a concurrent rewrite (git writes
    ``index.lock`` and renames it over) is seen whole or not at all; a checksum
    that does not match (a writer that does not rename) is read again, and a file
    still damaged after that raises :class:`IndexFormatError`.
    """
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            identity = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            trailer = os.pread(fd, 20, st.st_size - 20) if st.st_size >= _HEADER.size + 20 else b""
            hit = _cache.get(path)
            if hit is not None and hit[0] == identity and trailer == hit[1].checksum:
                return hit[1]
            index = _load_columns(columns, trailer) if columns and trailer != _NULL_SHA else None
            data = _read_all(fd, st.st_size) if index is None else b""
        finally:
            os.close(fd)
        if index is None and _checksum_ok(data):
            index = parse_index(data, path)
            if columns and keep and trailer != _NULL_SHA:
                _save_in_background(columns, index)
        if index is not None:
            _cache.clear()
            _cache[path] = (identity, index)
            return index
    raise IndexFormatError(path, "the index file's checksum does not match its content (damaged, or written in place)")


# the columns file: this header, the paths (NUL-terminated), the entries' stat data,
# their flags (little-endian), the cache tree (directory, NUL, id), then the SHA-1 of it all
_COLUMNS = struct.Struct("<16s20sIIQQ")  # magic, the index's checksum, version, entries, path bytes, tree bytes
_COLUMNS_MAGIC = b"gitml-columns-1\n"


def _load_columns(columns: str, checksum: bytes) -> GitIndex | None:
    """The index parsed from the file whose trailer is ``checksum``, or None (absent,
    of another index, or damaged: parsed again from the index)."""
    flush_columns()  # this process's own save of it, if one is under way
    try:
        with open(columns, "rb") as f:
            head = f.read(_COLUMNS.size)  # a stale file (git rewrote the index) is refused unread
            if len(head) < _COLUMNS.size or _COLUMNS.unpack(head)[:2] != (_COLUMNS_MAGIC, checksum):
                return None
            data = head + f.read()
    except OSError:
        return None
    if len(data) < _COLUMNS.size + 20 or hashlib.sha1(memoryview(data)[:-20]).digest() != data[-20:]:
        return None
    _magic, _recorded, version, count, path_bytes, tree_bytes = _COLUMNS.unpack_from(data)
    pos = _COLUMNS.size
    stat_at, flags_at = pos + path_bytes, pos + path_bytes + count * _STAT
    trees_at = flags_at + 4 * count
    if trees_at + tree_bytes + 20 != len(data):
        return None
    paths = data[pos:stat_at].split(b"\0")[:-1] if path_bytes else []
    flags = array(_U32)
    flags.frombytes(data[flags_at:trees_at])
    if sys.byteorder == "big":
        flags.byteswap()
    if len(paths) != count:
        return None
    index = GitIndex(version, checksum)
    _Entries(paths, [data[stat_at:flags_at]]).columns(index)
    index.flags = flags
    trees = data[trees_at : trees_at + tree_bytes]
    at = 0
    while at < len(trees):
        nul = trees.index(b"\0", at)
        index.cached_trees[trees[at:nul]] = trees[nul + 1 : nul + 21]
        at = nul + 21
    return index


_saves: list[threading.Thread] = []
_saves_lock = threading.Lock()


def _save_in_background(columns: str, index: GitIndex) -> None:
    """Save ``index``'s columns in a thread, off the caller's path: the snapshot's
    ``lstat`` of every entry runs meanwhile (0.1 s at 200,000 entries, most of it
    hashing and writing, which release the GIL). Not a daemon: the interpreter waits
    for it at exit, so the next process finds the file; saves run one after another,
    the newest renamed last."""
    with _saves_lock:
        before = [thread for thread in _saves if thread.is_alive()]

        def save() -> None:
            for thread in before:
                thread.join()
            _save_columns(columns, index)

        thread = threading.Thread(target=save, name="gitml-index-columns")
        _saves[:] = [*before, thread]
        thread.start()


def flush_columns() -> None:
    """Wait for the columns files this process is writing."""
    with _saves_lock:
        pending = [thread for thread in _saves if thread is not threading.current_thread()]
    for thread in pending:
        thread.join()


def _save_columns(columns: str, index: GitIndex) -> None:
    """Keep ``index`` parsed for the next process (best effort: a cache)."""
    paths = b"\0".join(index.paths) + b"\0" if index.paths else b""
    flags = array(_U32, index.flags)
    if sys.byteorder == "big":
        flags.byteswap()
    trees = b"".join(d + b"\0" + sha for d, sha in index.cached_trees.items())
    head = _COLUMNS.pack(_COLUMNS_MAGIC, index.checksum, index.version, len(index.paths), len(paths), len(trees))
    body = b"".join((head, paths, index.stat_data, flags.tobytes(), trees))
    tmp = f"{columns}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(columns), exist_ok=True)
        _drop_stale_temporaries(columns)
        with open(tmp, "wb") as f:
            f.write(body + hashlib.sha1(body).digest())
        os.replace(tmp, columns)  # whole or not at all, as git replaces its index
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def written_index(
    version: int,
    checksum: bytes,
    paths: list[bytes],
    stat_data: list[bytes],
    flags: array,
    cached_trees: dict[bytes, bytes],
) -> GitIndex:
    """The columns of an index gitml writes (``stat_data``: the entries' 60 bytes, in pieces)."""
    index = GitIndex(version, checksum)
    _Entries(paths, stat_data).columns(index)
    index.flags, index.cached_trees = flags, cached_trees
    return index


def remember(path: str, index: GitIndex, *, columns: str | None = None) -> None:
    """Take ``index`` as what the index file at ``path``, just renamed there by this
    process, holds: for this process (while the file's identity and trailer are these)
    and, with ``columns``, for the next ones."""
    try:
        st = os.stat(path)
    except OSError:
        return
    _cache.clear()
    _cache[path] = ((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), index)
    if columns:
        _save_in_background(columns, index)


_STALE_AFTER = 3600.0  # seconds: a temporary this old is a dead writer's, whatever its pid


def _drop_stale_temporaries(columns: str) -> None:
    """Remove the ``<columns>.<pid>.<thread>.tmp`` files of writers that were killed
    (their process is gone, or the file is an hour old); only this columns file's."""
    folder, base = os.path.split(columns)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(base + ".") and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        parts = name[len(base) + 1 : -len(".tmp")].split(".")
        full = os.path.join(folder, name)
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            continue
        try:
            if _alive(int(parts[0])) and os.lstat(full).st_mtime > time.time() - _STALE_AFTER:
                continue
            os.unlink(full)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


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
    index = GitIndex(*_header(data, path))
    entries, link = _parse(data, path, index)
    if link is not None:
        entries = _merge_shared(entries, link, path)
    entries.columns(index)
    return index


def _header(data: bytes, path: str) -> tuple[int, bytes]:
    signature, version, _count = _HEADER.unpack_from(data, 0)
    if signature != b"DIRC" or version not in (2, 3, 4):
        raise IndexFormatError(path, f"not a git index this reader knows (signature {signature!r}, version {version})")
    return version, data[-20:]


def _parse(data: bytes, path: str, index: GitIndex) -> tuple[_Entries, bytes | None]:
    """The entries of ``data`` and its split index's ``link`` (the extensions go into ``index``)."""
    _signature, version, count = _HEADER.unpack_from(data, 0)
    entries = _Entries()
    try:
        pos = _read_entries(data, _HEADER.size, count, version, entries)
        if pos > len(data) - 20:
            raise ValueError("the entries run past the end of the file")
        link = _read_extensions(data, pos, index)
    except (struct.error, IndexError, ValueError) as e:
        raise IndexFormatError(path, f"malformed ({e})") from None
    return entries, link


def _read_entries(data: bytes, pos: int, count: int, version: int, entries: _Entries) -> int:
    """One pass over the entries: each one's path, stat data and flags, kept as they are."""
    find = data.find
    add_path, add_stat, add_flags = entries.paths.append, entries.stat.append, entries.flags.append
    previous = b""
    for _ in range(count):
        flags = data[pos + 60] << 8 | data[pos + 61]
        start = pos + 62
        if flags & 0x4000:  # extended: two more bytes of flags, kept above the first sixteen
            if version < 3:
                raise ValueError("extended flags in a version 2 index")
            flags |= data[start] << 24 | data[start + 1] << 16
            start += 2
        add_stat(data[pos : pos + _STAT])
        add_flags(flags)
        if version == 4:
            strip, start = _varint(data, start)
            end = find(b"\0", start)
            if strip > len(previous) or end < 0:
                raise ValueError("an entry's path is malformed")
            previous = previous[: len(previous) - strip] + data[start:end]
            add_path(previous)
            pos = end + 1
        else:
            length = flags & 0xFFF
            end = start + length if length < 0xFFF else find(b"\0", start)
            add_path(data[start:end])
            pos += (end - pos + 8) & ~7  # NUL padding to a multiple of eight
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


def _merge_shared(own: _Entries, link: bytes, path: str) -> _Entries:
    """Apply a split index (this file's entries, ``own``) onto its shared index."""
    shared_id = link[:20].hex()
    if shared_id == "0" * 40:
        return own
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
    shared, _ = _parse(data, shared_path, GitIndex(*_header(data, shared_path)))
    rows = list(zip(shared.paths, shared.stat, shared.flags, strict=False))
    if len(replaced) > len(own.paths) or any(i >= len(rows) for i in replaced):
        raise IndexFormatError(path, "the split index replaces entries it does not have")
    for n, i in enumerate(replaced):
        rows[i] = (rows[i][0], own.stat[n], own.flags[n])
    gone = set(deleted)
    merged = [row for i, row in enumerate(rows) if i not in gone]
    merged += zip(own.paths[len(replaced) :], own.stat[len(replaced) :], own.flags[len(replaced) :], strict=False)
    merged.sort(key=lambda entry: (entry[0], entry[2] & STAGE_MASK))
    return _Entries([p for p, _, _ in merged], [s for _, s, _ in merged], [f for _, _, f in merged])

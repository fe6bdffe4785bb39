"""Listing many refs fast, and packing them, beside dulwich's ref container.

Listing tens of thousands of run refs through it costs a name check per ref,
so here:

- loose refs are read only in folders whose modification time changed since
  the last listing, unless the folder changed too close to that listing to
  trust its time ("racily clean", as git treats index entries);
- ``packed-refs`` is parsed once per change of the file, keeping only the
  lines under the prefix asked for, and only well-formed ones;
- :func:`pack_refs` moves loose refs into ``packed-refs`` the way
  ``git pack-refs`` does: packed-refs is rewritten under its lock, then each
  loose ref is deleted under its own lock if it still holds the packed value;
- :func:`update_ref` is a compare-and-swap of one ref under git's lock file,
  which :mod:`gitml.store.locks` records as this process's.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gitml.errors import LockHeld, RepositoryError
from gitml.store.locks import LockFile, holder, release_if_dead

_HEX40 = re.compile(rb"[0-9a-f]{40}")
_SORTED = re.compile(rb"# pack-refs with:[^\n]* sorted[ \n]")  # the header of a sorted file
_SAFE_NAME = re.compile(rb"refs(/[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*)+")  # no '..', '//', '.lock' or oddities
_PACKED_LINE = re.compile(rb"^([0-9a-f]{40}) (refs/[^\n]*)$", re.MULTILINE)  # one pass over the file
RACY_SECONDS = 2.0  # a filesystem keeping whole seconds (FAT keeps two): a change can hide in one
RACY_SECONDS_FINE = 0.05  # one keeping nanoseconds: the kernel's clock for them ticks in milliseconds


def racy_seconds(mtime_ns: int) -> float:
    """How long after a change its file's (folder's) time cannot be trusted to show the next one."""
    return RACY_SECONDS if mtime_ns % 1_000_000_000 == 0 else RACY_SECONDS_FINE


_racy = racy_seconds
PACKED_REFS_TIMEOUT = 10.0  # seconds to wait for another writer's packed-refs.lock


class RefLister:
    def __init__(self, controldir: str):
        self.controldir = controldir
        self._dirs: dict[str, tuple[tuple, float, dict[bytes, bytes], int]] = {}  # ..., serial of the read
        self._serial = 0
        self._data: tuple[tuple | None, bytes] | None = None  # packed-refs: (stat key, content)
        self._parses = 0  # packed-refs read so far: which reading what was parsed came from
        self._packed: tuple[int, dict[bytes, bytes]] | None = None  # (parse, every packed ref)
        self._packed_under: dict[tuple, tuple[int, dict[bytes, bytes]]] = {}  # (prefix, names) -> (parse, refs)
        self._listings: dict[tuple, tuple[tuple, dict[bytes, bytes], set[bytes]]] = {}  # -> (stamp, refs, loose)
        self._digest: tuple[int, bytes] | None = None  # (parse, packed-refs' sha256)
        self._listed_parse = 0  # the packed-refs reading the last listing was made of
        self.loose: set[bytes] = set()  # the loose refs of the last listing

    def under(self, prefix: str) -> dict[bytes, bytes]:
        """``{ref: sha}`` for every ref whose name starts with ``prefix`` (a new dict)."""
        return dict(self.listing(prefix))

    def listing(self, prefix: str, names: re.Pattern[bytes] | None = None) -> dict[bytes, bytes]:
        """:meth:`under`, shared: the same dict as the last call's while no ref under
        ``prefix`` changed (no folder re-read, packed-refs not read again), so that
        callers can keep what they derived from it. Never modify it. ``names``: a pattern
        of whole ref names under ``prefix``, the only refs listed (packed-refs is then
        searched for those lines alone, in one pass, instead of parsing every line)."""
        data = self._packed_data()
        self._listed_parse = self._parses
        root = os.path.join(self.controldir, *prefix.rstrip("/").split("/"))
        parts = []
        stamp: list = [self._parses]
        for dirpath, _dirnames, filenames in os.walk(root):
            found, serial = self._loose_in(dirpath, filenames)
            parts.append(found)
            stamp.append((dirpath, serial))
        key = tuple(stamp)
        which = (prefix, names)
        memo = self._listings.get(which)
        if memo is not None and memo[0] == key:
            self.loose = memo[2]
            return memo[1]
        cached = self._packed_under.get(which)
        if cached is None or cached[0] != self._parses:
            if names is None:
                packed = self._packed_prefix(data, prefix.encode())
            else:
                packed = self._packed_named(data, names)  # ``names`` are under ``prefix``
            cached = self._packed_under[which] = (self._parses, packed)
        result = dict(cached[1])
        loose: set[bytes] = set()
        for found in parts:
            if names is not None:
                found = {name: sha for name, sha in found.items() if names.fullmatch(name)}
            loose.update(found)
            result.update(found)
        self._listings[which] = (key, result, loose)
        self.loose = loose
        return result

    def _packed_prefix(self, data: bytes, bprefix: bytes) -> dict[bytes, bytes]:
        """The well-formed lines of ``packed-refs`` under ``bprefix``: found by bisecting
        the file when it is sorted (the experiments' few lines among 100,000 runs' took a
        parse of every line, 0.25 s, in each process that listed experiments)."""
        if (self._packed is not None and self._packed[0] == self._parses) or not _SORTED.match(data):
            return {name: sha for name, sha in self.packed().items() if name.startswith(bprefix)}
        # the span of those lines (bisected at both ends), checked by one regular expression
        # rather than line by line: 2,000 runs of an experiment cost 2 ms of a first search
        start = _lower_bound(data, bprefix)
        stop = len(data)
        if bprefix and bprefix[-1] < 0xFF:
            stop = _lower_bound(data, bprefix[:-1] + bytes([bprefix[-1] + 1]), start)
        return {
            name: sha
            for sha, name in _PACKED_LINE.findall(data, start, stop)
            if name.startswith(bprefix) and b".." not in name
        }

    def listed_digest(self) -> bytes:
        """The sha256 of the ``packed-refs`` the last :meth:`listing` was made of: with
        :attr:`loose`, what that listing was made of (see :meth:`state`)."""
        if self._listed_parse != self._parses:
            raise RuntimeError("packed-refs was read again since the last listing")
        return self._packed_digest()

    def state(self, prefix: str, names: re.Pattern[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
        """What a listing of ``prefix`` (refs ``names`` matches) would be made of, without
        making it: the sha256 of ``packed-refs`` and the loose refs. Two listings of the
        same state are equal, so a cache of one listing's derivative (the search index's
        snapshot) checks it against this, and bisects packed-refs for the few refs it
        must look at (:meth:`packed_ref`), instead of listing 100,000 refs."""
        _data, digest, loose = self.parts(prefix, names)
        return digest, loose

    def parts(self, prefix: str, names: re.Pattern[bytes] | None = None) -> tuple[bytes, bytes, dict[bytes, bytes]]:
        """:meth:`state` with ``packed-refs`` itself: its bytes, their sha256, and the
        loose refs under ``prefix`` (``names`` matches, when given)."""
        data = self._packed_data()
        root = os.path.join(self.controldir, *prefix.rstrip("/").split("/"))
        loose: dict[bytes, bytes] = {}
        for dirpath, _dirnames, filenames in os.walk(root):
            found, _ = self._loose_in(dirpath, filenames)
            loose.update((name, sha) for name, sha in found.items() if names is None or names.fullmatch(name))
        return data, self._packed_digest(), loose

    def packed_listing(self, prefix: str, names: re.Pattern[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
        """The sha256 of ``packed-refs`` and its refs under ``prefix`` that ``names``
        matches (those lines alone, loose refs aside): what a :meth:`listing` made of
        it, kept, or made now."""
        data = self._packed_data()
        cached = self._packed_under.get((prefix, names))
        if cached is None or cached[0] != self._parses:
            cached = self._packed_under[(prefix, names)] = (self._parses, self._packed_named(data, names))
        return self._packed_digest(), cached[1]

    def _packed_digest(self) -> bytes:
        if self._digest is None or self._digest[0] != self._parses:
            self._digest = (self._parses, hashlib.sha256(self._data[1] if self._data else b"").digest())
        return self._digest[1]

    def _packed_named(self, data: bytes, names: re.Pattern[bytes]) -> dict[bytes, bytes]:
        """The lines of ``packed-refs`` naming a ref ``names`` matches, checked by one
        regular expression: 0.1 s at 100,000 run refs, paid by every process. So the
        file's digest is kept (``gitml/packed-refs.checked``) with the span of those lines
        when they are all of one span: a process that finds the same file only splits
        that span (a third of the time)."""
        digest = self._packed_digest().hex().encode() + b" " + hashlib.sha256(names.pattern).hexdigest().encode()
        mark = os.path.join(self.controldir, "gitml", "packed-refs.checked")
        try:
            with open(mark, "rb") as f:
                known, first, stop = f.read().split(b"\n")
            if known == digest:
                lines = data[int(first) : int(stop)].split(b"\n") if int(stop) > int(first) else []
                return {line[41:]: line[:40] for line in lines}
        except (OSError, ValueError):
            pass
        line = re.compile(rb"^([0-9a-f]{40}) (" + names.pattern + rb")$", re.MULTILINE)
        found = line.findall(data)
        if found:
            start = data.find(b"%s %s\n" % found[0])
            last = data.find(b"%s %s" % found[-1], start)
            end = last + 41 + len(found[-1][1])
            starts_lines = all(i == 0 or data[i - 1 : i] == b"\n" for i in (start, last))
            if start < 0 or last < 0 or not starts_lines or data.count(b"\n", start, end) != len(found) - 1:
                return {name: sha for sha, name in found}  # not one span: checked again next time
        else:
            start = end = 0
        if os.path.isdir(os.path.dirname(mark)):
            try:
                with open(mark + ".tmp", "wb") as f:
                    f.write(b"%s\n%d\n%d" % (digest, start, end))
                os.replace(mark + ".tmp", mark)
            except OSError:
                pass  # a cache: the next process checks the file again
        return {name: sha for sha, name in found}

    def _loose_in(self, dirpath: str, filenames: list[str]) -> tuple[dict[bytes, bytes], int]:
        try:
            st = os.stat(dirpath)
        except FileNotFoundError:
            return {}, -1
        key = (st.st_mtime_ns, st.st_ino, st.st_ctime_ns, len(filenames))
        cached = self._dirs.get(dirpath)
        if cached and cached[0] == key and cached[0][0] / 1e9 < cached[1] - _racy(cached[0][0]):
            return cached[2], cached[3]
        listed_at = time.time()
        rel = os.path.relpath(dirpath, self.controldir).replace(os.sep, "/")
        names = [fn for fn in filenames if not fn.endswith(".lock")]
        values = [_read_ref(os.path.join(dirpath, fn)) for fn in names]
        found = {f"{rel}/{fn}".encode(): value for fn, value in zip(names, values, strict=False) if value is not None}
        self._serial += 1
        self._dirs[dirpath] = (key, listed_at, found, self._serial)
        return found, self._serial

    def _packed_data(self) -> bytes:
        """``packed-refs`` as it is now: read again only when its stat data changed (or
        changed too recently to trust them)."""
        path = os.path.join(self.controldir, "packed-refs")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if self._data is None or self._data[0] is not None:
                self._data = (None, b"")
                self._parses += 1
            return b""
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        if self._data and self._data[0] == key and key[0] / 1e9 < time.time() - _racy(key[0]):
            return self._data[1]
        with open(path, "rb") as f:
            data = f.read()
        self._data = (key, data)
        self._parses += 1
        return data

    def packed_ref(self, name: bytes) -> bytes | None:
        """The id ``packed-refs`` gives ``name`` (None: no line): found by a binary search
        of the file when its header says it is sorted (git and gitml write it so; git
        searches it the same way), else from the dict of every line."""
        return self.packed_refs([name])[0]

    def packed_refs(self, names: list[bytes]) -> list[bytes | None]:
        """:meth:`packed_ref` of each name, from one look at ``packed-refs``."""
        data = self._packed_data()
        if (self._packed is not None and self._packed[0] == self._parses) or not _SORTED.match(data):
            packed = self._parsed(data)
            return [packed.get(name) for name in names]
        return [None if b".." in name else _search_sorted(data, name) for name in names]

    def with_tail(self, prefix: str, start: bytes) -> dict[bytes, bytes]:
        """``{ref: sha}`` of the refs ``prefix<folder>/<name>`` whose ``<name>`` starts with
        ``start`` (a run's id prefix), without listing every ref: each folder of
        ``packed-refs`` is found and searched by bisecting the sorted file, and each loose
        folder is listed; a loose ref wins over its packed line. The names are not checked
        (the caller checks them as it checks a listing's)."""
        bprefix = prefix.encode()
        data = self._packed_data()
        found: dict[bytes, bytes] = {}
        if not _SORTED.match(data):
            found = {
                n: sha
                for n, sha in self.packed().items()
                if n.startswith(bprefix) and _tail(n, bprefix).startswith(start)
            }
        else:
            pos = _lower_bound(data, bprefix)
            while pos < len(data):
                name = _name_at(data, pos)
                if not name.startswith(bprefix):
                    break
                slash = name.find(b"/", len(bprefix))
                if slash < 0:  # a ref, not a folder: on to the next line
                    end = data.find(b"\n", pos)
                    pos = len(data) if end < 0 else end + 1
                    continue
                folder = name[: slash + 1]
                at = _lower_bound(data, folder + start, pos)
                for line in _lines_from(data, at):
                    if not line[41:].startswith(folder + start):
                        break
                    found[line[41:]] = line[:40]
                pos = _lower_bound(data, folder[:-1] + b"0", at)  # past the folder: '0' follows '/'
        root = os.path.join(self.controldir, *prefix.rstrip("/").split("/"))
        try:
            folders = os.listdir(root)
        except (FileNotFoundError, NotADirectoryError):
            folders = []
        text = os.fsdecode(start)
        for sub in folders:
            try:
                names = [
                    n for n in os.listdir(os.path.join(root, sub)) if n.startswith(text) and not n.endswith(".lock")
                ]
            except (NotADirectoryError, FileNotFoundError):
                continue
            for n in names:
                value = _read_ref(os.path.join(root, sub, n))
                if value is not None:
                    found[f"{prefix}{sub}/{n}".encode()] = value
        return {n: sha for n, sha in found.items() if _HEX40.fullmatch(sha) and b".." not in n}

    def packed(self) -> dict[bytes, bytes]:
        """Every ref of ``packed-refs``, parsed in one pass (well-formed lines only)."""
        return self._parsed(self._packed_data())

    def _parsed(self, data: bytes) -> dict[bytes, bytes]:
        """:meth:`packed` of the ``packed-refs`` bytes :meth:`_packed_data` just gave."""
        if self._packed is None or self._packed[0] != self._parses:
            refs = {name: sha for sha, name in _PACKED_LINE.findall(data)}
            if b".." in data:
                refs = {name: sha for name, sha in refs.items() if b".." not in name}
            self._packed = (self._parses, refs)
        return self._packed[1]

    def read(self, name: bytes) -> bytes | None | bool:
        """The id ``name`` holds as git reads it: its loose file, else its ``packed-refs``
        line (parsed once per change of the file), None when neither has it. False when
        the loose file is not an id (a symbolic ref, or junk): the caller asks dulwich."""
        if not _SAFE_NAME.fullmatch(name) or b".lock/" in name + b"/":
            return False  # dulwich checks the name as git does
        try:
            value: bytes | None = _read_loose(os.path.join(self.controldir, *os.fsdecode(name).split("/")))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return self.packed_ref(name)
        return value if value is not None else False


def _search_sorted(data: bytes, name: bytes) -> bytes | None:
    """The id of ``name`` in a sorted packed-refs file, by bisecting its lines."""
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        start = max(data.rfind(b"\n", lo, mid) + 1, lo)
        end = data.find(b"\n", start, hi)
        end = hi if end < 0 else end
        line = data[start:end]
        if line[:1] == b"^" and start > 0:  # a peeled line: its ref is the line before
            before = data.rfind(b"\n", 0, start - 1) + 1
            line = data[before : start - 1]
        if line[:1] == b"#":
            found = b""  # the header: before every ref
        else:
            found = line[41:]
        if found == name:
            return line[:40] if line[40:41] == b" " and _HEX40.fullmatch(line[:40]) else None
        if found < name:
            lo = end + 1
        else:
            hi = start
    return None


def _tail(name: bytes, prefix: bytes) -> bytes:
    rest = name[len(prefix) :]
    return rest[rest.find(b"/") + 1 :] if b"/" in rest else b""


def _name_at(data: bytes, start: int) -> bytes:
    """The ref name of the line at ``start`` (a peeled line's: its ref's, the line before)."""
    end = data.find(b"\n", start)
    line = data[start : end if end >= 0 else len(data)]
    if line[:1] == b"^" and start > 0:
        before = data.rfind(b"\n", 0, start - 1) + 1
        line = data[before : start - 1]
    return b"" if line[:1] == b"#" else line[41:]


def _lower_bound(data: bytes, key: bytes, lo: int = 0) -> int:
    """The offset of the first line of sorted packed-refs ``data`` (from the line at
    ``lo``) whose ref name is ``key`` or after it; ``len(data)`` when none is."""
    hi = len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        start = data.rfind(b"\n", lo, mid) + 1 or lo
        end = data.find(b"\n", start, hi)
        end = hi if end < 0 else end
        if _name_at(data, start) < key:
            lo = end + 1
        else:
            hi = start
    return min(lo, len(data))


def _lines_from(data: bytes, start: int):
    """The lines of ``data`` from the offset ``start``, one at a time (peeled ones skipped)."""
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        line = data[start:end]
        if line[:1] != b"^":
            yield line
        start = end + 1


def _read_ref(path: str) -> bytes | None:
    try:
        return _read_loose(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _read_loose(path: str) -> bytes | None:
    """A loose ref file's id, None when it holds anything else (raises OSError when absent)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        value = os.read(fd, 41)
    finally:
        os.close(fd)
    if len(value) == 41 and value[40] in b" \t\r\n":  # git reads the id up to white space
        value = value[:40]
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


def lock_packed_refs(commondir: str, *, timeout: float | None = None) -> LockFile:
    """``packed-refs`` opened for rewriting under its lock file, waiting with back-off
    while another writer holds it (git waits too: ``core.packedRefsTimeout``)."""
    path = os.path.join(commondir, "packed-refs")
    return wait_for_lock(path, commondir, PACKED_REFS_TIMEOUT if timeout is None else timeout)


def wait_for_lock(path: str, commondir: str, timeout: float) -> LockFile:
    """``path``'s lock, waiting with back-off while another writer holds it. A lock left by
    a gitml process that died is removed (saying so); any other is never broken: after
    ``timeout`` s the error names it and who holds it."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return LockFile(path, commondir)
        except LockHeld as held:
            if delay >= 0.05 and release_if_dead(held.lock, commondir):
                continue
            if time.monotonic() > deadline:
                raise RepositoryError(
                    f"{held.lock} has existed for {timeout:.0f} s: {holder(held.lock, commondir)}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def update_ref(
    commondir: str,
    name: bytes,
    old: bytes | None,
    new: bytes,
    packed: Callable[[bytes], bytes | None],
    packed_many: Callable[[list[bytes]], list[bytes | None]] | None = None,
) -> bool:
    """Set the ref ``name`` to ``new`` if it is ``old`` (None: absent), under the ref's lock
    (raises :class:`LockHeld`). ``packed(name)`` gives a ref's packed id (``packed_many``:
    of several names, from one look at packed-refs). Returns False when the ref holds
    another value."""
    parts = name.split(b"/")
    folders = [b"/".join(parts[:i]) for i in range(2, len(parts))]
    for folder, value in zip(folders, packed_many(folders) if packed_many else map(packed, folders), strict=True):
        if value is not None:
            raise RepositoryError(f"ref {name.decode()} cannot exist: {folder.decode()} is a ref")
    path = os.path.join(commondir, *os.fsdecode(name).split("/"))
    for attempt in range(5):  # `git pack-refs` removes empty ref folders meanwhile: make them again, as git does
        try:
            if attempt:  # (made only when missing: two calls for every ref were a fifth of a ref update)
                os.makedirs(os.path.dirname(path), exist_ok=True)
            lock = LockFile(path, commondir)
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    with lock as f:
        try:
            with open(path, "rb") as ref:
                current: bytes | None = ref.read(4096).rstrip(b"\n")
        except FileNotFoundError:
            current = packed(name)
        except IsADirectoryError:
            current = b"(a folder of refs)"
        if current != old or current == new:
            f.abort()
            return current == old
        f.write(new + b"\n")
    return True


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


def merged_packed_refs(data: bytes, refs: dict[bytes, bytes]) -> bytes | None:
    """A sorted packed-refs file's bytes with the lines of ``refs`` put in place: a ref's
    line (and the peeled line after it) replaced, a new ref's line inserted in order; the
    rest copied as it is, a span at a time. None when ``data`` is not sorted. At 100,000
    refs, parsing the file into a dict and writing it again took 0.17 s of each packing."""
    if data and not _SORTED.match(data):
        return None
    if data and not data.endswith(b"\n"):
        data += b"\n"
    pos = data.find(b"\n") + 1 if data.startswith(b"#") else 0
    out = [b"# pack-refs with: sorted \n"]  # no peeled traits: git peels the refs whose line has none
    for name in sorted(refs):
        at = _lower_bound(data, name, pos)
        out.append(data[pos:at])
        pos = at
        if at < len(data) and _name_at(data, at) == name:
            pos = data.find(b"\n", at) + 1
            if data[pos : pos + 1] == b"^":  # the old value's peeled line goes with it
                pos = data.find(b"\n", pos) + 1
        out.append(refs[name] + b" " + name + b"\n")
    out.append(data[pos:])
    return b"".join(out)


def pack_refs(commondir: str, names: list[bytes]) -> int:
    """Move the loose refs ``names`` into packed-refs, as ``git pack-refs`` does.

    Under ``packed-refs.lock`` alone, the refs are read and packed-refs rewritten
    with them; then each loose ref is deleted under its own lock, taken one at a
    time, if it still holds the packed value (a ref updated meanwhile stays loose,
    and a loose ref wins over its packed line). So a few files are open at any
    time, however many refs move. Returns how many were packed.
    """

    def path(name: bytes) -> str:
        return os.path.join(commondir, *os.fsdecode(name).split("/"))

    with lock_packed_refs(commondir) as f:
        values = parallel_map(lambda name: _read_ref(path(name)), names)
        moved = {name: value for name, value in zip(names, values, strict=False) if value is not None}
        if not moved:
            f.abort()
            return 0
        try:
            with open(os.path.join(commondir, "packed-refs"), "rb") as current:
                merged = merged_packed_refs(current.read(), moved)
        except FileNotFoundError:
            merged = merged_packed_refs(b"", moved)
        if merged is not None:
            f.write(merged)
        else:
            packed = read_packed_refs(commondir)
            packed.update(moved)
            write_packed_refs(f, packed)

    def prune(name: bytes) -> None:
        try:
            lock = LockFile(path(name), commondir)
        except LockHeld:
            return  # a writer is at it: its ref stays loose
        try:
            if _read_ref(path(name)) == moved[name]:
                os.unlink(path(name))
        finally:
            lock.abort()

    parallel_map(prune, moved)
    return len(moved)

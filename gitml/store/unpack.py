"""Storing a pack received from a remote (``gitml fetch`` over the network).

dulwich indexes a received pack in Python object by object, resolving delta
chains through its generic pack classes: for a thousand runs that took three
times as long as the whole ``git fetch``. Here the pack is read once from a
memory map: every entry is inflated, delta entries are resolved against their
base (in the pack, or in the repository for a thin pack's bases) with
dulwich's ``apply_delta`` (its public name: C when dulwich was built with it,
Python otherwise), and every object id is computed from the content,
so a damaged or forged pack is refused, not stored. The result is written as
one self-contained pack of whole objects with its index, through the same
writer as every other gitml pack: plain entries are copied as received,
resolved deltas are stored compressed whole.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from dulwich.pack import apply_delta  # dulwich's C version when built, its Python one otherwise

from gitml.errors import PackError
from gitml.store.entries import MAX_RESOLVED_BYTES, inflate_exactly
from gitml.store.packs import _TYPE_NAMES, _entry_header, _write_entries, object_id

_OFS_DELTA, _REF_DELTA = 6, 7
_CACHE_BYTES = 64 << 20
_PIECE = 1 << 20  # bytes inflated at a time


def _delta_target_size(instructions: bytes) -> int:
    """The size a delta says its result has (its second header number)."""
    pos = 0
    for _ in range(2):
        size, shift = 0, 0
        while pos < len(instructions):
            byte = instructions[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return size


LocalRaw = Callable[[bytes], "tuple[int, bytes] | None"]  # hex id -> (type, content), or None


class _BaseNotYet(PackError):
    def __init__(self, base: bytes):
        self.base = base
        super().__init__(f"a delta of {base.hex()}, which is not known yet")


class _Entry:
    __slots__ = ("start", "data_at", "end", "type_num", "size", "base", "sha")

    def __init__(self, start: int, data_at: int, end: int, type_num: int, size: int, base):
        self.start, self.data_at, self.end = start, data_at, end
        self.type_num, self.size, self.base = type_num, size, base
        self.sha: bytes | None = None  # raw 20 bytes, once known


class Stored(NamedTuple):
    objects: int  # objects stored
    base: str | None  # the new pack's path without its suffix (None when nothing came)


def store_received_pack(pack_dir: str, path: str, local_raw: LocalRaw) -> int:
    """Index the pack file at ``path`` and store its objects as a new pack in
    ``pack_dir``; returns the number of objects. Raises :class:`PackError`."""
    return store_received(pack_dir, path, local_raw).objects


def store_received(pack_dir: str, path: str, local_raw: LocalRaw) -> Stored:
    """:func:`store_received_pack`, telling the new pack's path too."""
    if os.path.getsize(path) == 0:
        return Stored(0, None)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        reader = _Reader(data, local_raw)
        entries = reader.read_entries()
        reader.resolve_all(entries)
        unique = list({entry.sha: entry for entry in reversed(entries)}.values())  # a pack may repeat an object

        def encoded(entry: _Entry) -> tuple[bytes, bytes, int]:
            if entry.type_num in (_OFS_DELTA, _REF_DELTA):
                type_num, content = reader.content(entry)
                chunk = _entry_header(type_num, len(content)) + zlib.compress(content, 1)
            else:
                chunk = data[entry.start : entry.end]
            assert entry.sha is not None  # every entry was resolved
            return entry.sha, chunk, zlib.crc32(chunk)

        base = _write_entries(pack_dir, map(encoded, unique), len(unique))  # streamed: one entry in memory at a time
    return Stored(len(unique), base)


class _Reader:
    def __init__(self, data: mmap.mmap, local_raw: LocalRaw):
        self.data = data
        self.local_raw = local_raw
        self.by_offset: dict[int, _Entry] = {}
        self.by_sha: dict[bytes, _Entry] = {}
        self._cache: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self._cached_bytes = 0

    def read_entries(self) -> list[_Entry]:
        data = self.data
        if len(data) < 32 or data[:4] != b"PACK" or int.from_bytes(data[4:8], "big") not in (2, 3):
            raise PackError("not a git pack")
        digest = hashlib.sha1()
        with memoryview(data) as view:  # in 1 MiB steps: slicing the map would copy the whole pack
            for at in range(0, len(data) - 20, 1 << 20):
                digest.update(view[at : min(at + (1 << 20), len(data) - 20)])
        if digest.digest() != data[-20:]:
            raise PackError("checksum mismatch (damaged in transfer)")
        count = int.from_bytes(data[8:12], "big")
        entries, pos, end = [], 12, len(data) - 20
        for _ in range(count):
            entry = self._read_entry(pos, end)
            entries.append(entry)
            self.by_offset[entry.start] = entry
            pos = entry.end
            if entry.sha is not None:
                self.by_sha[entry.sha] = entry
        if pos != end:
            raise PackError(f"{end - pos} stray bytes after the last object")
        return entries

    def _read_entry(self, pos: int, end: int) -> _Entry:
        """The entry at ``pos``, with its object id unless it is a delta. Its content is
        inflated piece by piece (hashed as it comes, never held whole) and no further than
        the size its header gives: a stream that inflates beyond is refused there."""
        data = self.data
        start = pos
        try:
            byte = data[pos]
            type_num, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
            pos += 1
            while byte & 0x80:
                byte = data[pos]
                pos += 1
                size |= (byte & 0x7F) << shift
                shift += 7
            base: int | bytes | None = None
            if type_num == _OFS_DELTA:
                byte = data[pos]
                pos += 1
                back = byte & 0x7F
                while byte & 0x80:
                    byte = data[pos]
                    pos += 1
                    back = ((back + 1) << 7) | (byte & 0x7F)
                base = start - back
                if base < 12 or base not in self.by_offset:
                    raise PackError(f"object at {start} is a delta of nothing at {base}")
            elif type_num == _REF_DELTA:
                base = bytes(data[pos : pos + 20])
                pos += 20
            elif type_num not in _TYPE_NAMES:
                raise PackError(f"object at {start} has unknown type {type_num}")
        except IndexError:
            raise PackError("truncated") from None
        inflater = zlib.decompressobj()
        digest = hashlib.sha1(_TYPE_NAMES[type_num] + b" %d\0" % size) if type_num in _TYPE_NAMES else None
        fed, got = pos, 0
        step = min(size, _PIECE) + 64
        try:
            while not inflater.eof:
                chunk = inflater.unconsumed_tail
                if not chunk:
                    if fed >= end:
                        raise PackError(f"object at {start} is truncated")
                    chunk = data[fed : min(fed + step, end)]
                    fed += len(chunk)
                    step = max(step, 1 << 16)
                out = inflater.decompress(chunk, min(_PIECE, size + 1 - got))
                got += len(out)
                if got > size:
                    raise PackError(f"object at {start} inflates to more than the {size} bytes its header says")
                if digest is not None:
                    digest.update(out)
        except zlib.error as e:
            raise PackError(f"object at {start} does not inflate: {e}") from None
        if got != size:
            raise PackError(f"object at {start} has {got} bytes, its header says {size}")
        entry = _Entry(start, pos, fed - len(inflater.unused_data), type_num, size, base)
        entry.sha = None if digest is None else digest.digest()
        return entry

    def _inflate(self, entry: _Entry) -> bytes:
        try:
            return inflate_exactly(self.data[entry.data_at : entry.end], entry.size)
        except zlib.error as e:
            raise PackError(f"object at {entry.start}: {e}") from None

    def content(self, entry: _Entry) -> tuple[int, bytes]:
        """``(type, content)`` of an entry, deltas applied (recently used ones cached)."""
        hit = self._cache.get(entry.start)
        if hit is not None:
            self._cache.move_to_end(entry.start)
            return hit
        chain = []
        while entry.type_num in (_OFS_DELTA, _REF_DELTA) and entry.start not in self._cache:
            chain.append(entry)
            base = self._base_entry(entry)
            if base is None:  # a thin pack's base, from the repository
                found = self.local_raw(entry.base.hex().encode())
                if found is None:  # perhaps a delta of this pack not resolved yet
                    raise _BaseNotYet(entry.base)
                result = found
                break
            entry = base
        else:
            result = self._cache[entry.start] if entry.start in self._cache else (entry.type_num, self._inflate(entry))
        for delta in reversed(chain):
            type_num, base_content = result
            instructions = self._inflate(delta)
            if _delta_target_size(instructions) > MAX_RESOLVED_BYTES:  # a few bytes of copies can make gigabytes
                raise PackError(
                    f"object at {delta.start} is a delta to {_delta_target_size(instructions)} bytes, more than "
                    f"gitml resolves ({MAX_RESOLVED_BYTES} bytes; git itself deltifies no object that large)"
                )
            result = (type_num, b"".join(apply_delta(base_content, instructions)))
            self._remember(delta.start, result)
        return result

    def _base_entry(self, entry: _Entry) -> _Entry | None:
        if entry.type_num == _OFS_DELTA:
            return self.by_offset[entry.base]
        return self.by_sha.get(entry.base)

    def _remember(self, offset: int, value: tuple[int, bytes]) -> None:
        self._cache[offset] = value
        self._cached_bytes += len(value[1])
        while self._cached_bytes > _CACHE_BYTES and len(self._cache) > 1:
            _, (_, old) = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)

    def resolve_all(self, entries: list[_Entry]) -> None:
        """Give every delta entry its object id. A REF_DELTA may name a base stored
        later in the pack: such entries wait for a later round."""
        pending = [e for e in entries if e.sha is None]
        while pending:
            waiting = []
            missing = b""
            for entry in pending:
                try:
                    type_num, content = self.content(entry)
                except _BaseNotYet as e:  # its chain ends at a delta resolved later: next round
                    waiting.append(entry)
                    missing = e.base
                    continue
                entry.sha = object_id(type_num, content)
                self.by_sha[entry.sha] = entry
            if len(waiting) == len(pending):
                raise PackError(
                    f"{len(waiting)} delta(s) of objects neither the pack nor the repository holds, "
                    f"e.g. {missing.hex()}"
                )
            pending = waiting

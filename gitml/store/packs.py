"""Writing objects into packs, and keeping the number of small packs bounded.

A flush writes its objects as one pack (two files) instead of one loose file
per object. When one size tier holds ``PACKS_PER_TIER`` packs, they are merged
into one (geometric repacking), under a lock file.

Durability and concurrency, as git does it: a pack is written under a temporary
name (in ``<common>/gitml/tmp/``, out of reach of ``git prune``, which deletes
``objects/pack/tmp_*``), fsynced, its index written and fsynced, both made
read-only (``core.sharedRepository`` applied), renamed pack first, and the folder
fsynced. A pack whose objects no ref reaches yet carries a ``.keep`` file (as
``git receive-pack`` does) until the ref is updated, so a concurrent ``git repack
-a -d`` or ``git gc --prune=now`` cannot drop them. Packs merged away are
*retired*, not deleted: other processes may be about to read them, and dulwich
retries a lookup only a few times while packs vanish; a retired pack is deleted
after ``RETIRED_GRACE_SECONDS``, when every reader has long since seen the merged
pack. A long process settles at its end (:func:`settle`): its small packs are rolled
up geometrically (as ``git repack --geometric=2``) and the packs it retired itself are
deleted then, as ``git repack -d`` deletes them at once.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
import zlib
from collections.abc import Collection, Iterable

from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import ShaFile
from dulwich.pack import Pack

from gitml.store.ids import oid
from gitml.store.perms import shared_file_mode

PACKS_PER_TIER = 16
TIER_FACTOR = 16
TIER_BASE_BYTES = 16 << 10
MAX_MERGED_BYTES = 256 << 20
_LOCK_STALE_SECONDS = 120
RETIRED_GRACE_SECONDS = 60.0  # a merged-away pack stays readable this long
STORE_BELOW_BYTES = 128  # objects smaller than this are written uncompressed (zlib level 0)
KEEP_MARK = b"gitml: objects not yet reachable from a ref\n"  # content of gitml's .keep files
SETTLE_FACTOR = 2  # the geometric progression the packs left by a long process follow (git's --geometric=2)
SETTLE_LOCK_WAIT = 5.0  # seconds a settling process waits for another's merge to end
SETTLE_BUDGET = (16 << 20, 4)  # a process's end rewrites at most max(16 MB, 4 x the bytes it packed)

_WRITTEN = [0]  # bytes of new packs this process wrote (merges apart)

_RETIRED_HERE: set[str] = set()  # packs (absolute base paths) this process retired: deleted when it settles
# a forked child retired none of its parent's packs


def _forget_in_child() -> None:
    _RETIRED_HERE.clear()
    _WRITTEN[0] = 0


os.register_at_fork(after_in_child=_forget_in_child)


_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}


def object_id(type_num: int, content: bytes) -> bytes:
    """The raw (20-byte) id git gives an object of this type and content."""
    h = hashlib.sha1(_TYPE_NAMES[type_num] + b" %d\0" % len(content))
    h.update(content)
    return h.digest()


def _entry_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _index_v2(rows: list[bytes], pack_checksum: bytes) -> bytes:
    """A version-2 pack index for sorted rows of ``raw sha + offset (8 bytes) + CRC-32
    (4 bytes)``, all big-endian: one bytes object per entry, a third of the memory of
    a tuple of three (a pack of millions of objects is indexed within the memory target)."""
    fanout = [0] * 256
    for row in rows:
        fanout[row[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    out = bytearray(b"\377tOc" + struct.pack(">L", 2))
    out += struct.pack(">256L", *fanout)
    out += b"".join(row[:20] for row in rows)
    out += b"".join(row[28:32] for row in rows)
    if all(row[20:24] == b"\0\0\0\0" and row[24] < 0x80 for row in rows):
        out += b"".join(row[24:28] for row in rows)  # every offset below 2 GiB: its low 4 bytes
    else:
        large: list[int] = []
        for row in rows:
            offset = int.from_bytes(row[20:28], "big")
            if offset < 1 << 31:
                out += struct.pack(">L", offset)
            else:
                out += struct.pack(">L", (1 << 31) | len(large))
                large.append(offset)
        out += struct.pack(f">{len(large)}Q", *large)
    out += pack_checksum
    out += hashlib.sha1(out).digest()
    return bytes(out)


_SORT_IN_PYTHON = 50_000  # entries: a larger pack's index is sorted by numpy, as columns
_MERGE_IN_PYTHON = 20_000  # entries: a larger merge copies spans found by numpy (numpy's import is 0.07 CPU s)
_SPAN_BYTES = 16 << 20  # a merge copies at most this much at a time


def _index_of(table: bytes | bytearray, pack_checksum: bytes) -> bytes | bytearray:
    """The version-2 index of the 32-byte rows of ``table`` (raw sha, offset, CRC-32),
    in any order. Millions of rows are sorted as columns: a list of one bytes object
    per row held 150 MB for a 100,000-run push, and joining its slices as much again."""
    count = len(table) // 32
    if count <= _SORT_IN_PYTHON:
        return _index_v2(sorted(bytes(table[i : i + 32]) for i in range(0, len(table), 32)), pack_checksum)
    import numpy as np

    rows = np.frombuffer(
        table,
        dtype=np.dtype(
            {
                "names": ["sha", "a", "b", "c", "offset", "crc"],
                "formats": ["V20", ">u8", ">u8", ">u4", ">u8", ">u4"],
                "offsets": [0, 0, 8, 16, 20, 28],
                "itemsize": 32,
            }
        ),
    )
    rows = rows[np.lexsort((rows["c"], rows["b"], rows["a"]))]
    if int(rows["offset"].max()) >= 1 << 31:  # a pack over 2 GiB: the table of large offsets
        return _index_v2([row.tobytes() for row in rows], pack_checksum)
    fanout = np.cumsum(np.bincount(rows["a"] >> np.uint64(56), minlength=256)).astype(">u4")
    out = bytearray(b"\377tOc" + struct.pack(">L", 2))
    out += fanout.tobytes()
    out += rows["sha"].tobytes()
    out += rows["crc"].tobytes()
    out += rows["offset"].astype(">u4").tobytes()
    del rows
    out += pack_checksum
    out += hashlib.sha1(out).digest()
    return out


def write_pack(
    pack_dir: str, objects: Iterable[tuple[bytes, int, bytes]], *, level: int = 1, keep: bool = False
) -> str | None:
    """Write ``(hex sha, type number, raw content)`` objects as a new pack.

    Returns the pack's base path, or None when there was nothing to write. The
    ``.pack`` file lands before its ``.idx``, so no reader (git or dulwich) sees
    an index whose pack is missing. With ``keep`` the pack gets a ``.keep`` file
    before it is visible (remove it with :func:`release_keep` once a ref reaches
    its objects).
    """
    entries = []
    compress, crc32, fromhex, headers = zlib.compress, zlib.crc32, bytes.fromhex, _HEADERS
    for hexsha, type_num, raw in objects:
        size = len(raw)
        header = headers.get((type_num, size))
        if header is None:
            header = _entry_header(type_num, size)
            if size < 1 << 14:  # the sizes a run's small files have, again and again
                if len(headers) >= 4096:
                    headers.clear()
                headers[type_num, size] = header
        # a small object is stored, not compressed: deflate saves it a few bytes and costs 3-7
        # times storing it (most of a run commit's 19 objects are below 128 bytes: W2, issue 28)
        chunk = header + (compress(raw, level) if size >= STORE_BELOW_BYTES else stored_zlib(raw))
        entries.append((fromhex(hexsha.decode("ascii")), chunk, crc32(chunk)))
        _WRITTEN[0] += len(chunk)
    return _write_entries(pack_dir, entries, keep=keep)


_HEADERS: dict[tuple[int, int], bytes] = {}  # (type, size) -> an entry's header
_STORED = struct.Struct("<BBBHH")


def stored_zlib(raw: bytes) -> bytes:
    """``zlib.compress(raw, 0)`` for ``raw`` of a few KiB at most, the same bytes (one stored block), made
    without calling zlib: zlib lets go of the GIL on every call, and the committer thread, calling it
    for each small object while the logging thread waited for the GIL, waited as often to get it back."""
    size = len(raw)
    return _STORED.pack(0x78, 0x01, 0x01, size, size ^ 0xFFFF) + raw + zlib.adler32(raw).to_bytes(4, "big")


def release_keep(base: str) -> None:
    """Remove the ``.keep`` file :func:`write_pack` gave a pack (its objects are reachable now)."""
    try:
        os.unlink(base + ".keep")
    except FileNotFoundError:
        pass


def _common_dir(pack_dir: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(pack_dir)))  # <common>/objects/pack


def _gitml_dir(pack_dir: str, *parts: str) -> str:
    path = os.path.join(_common_dir(pack_dir), "gitml", *parts)
    os.makedirs(path, exist_ok=True)
    return path


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tier(size: int) -> int:
    tier, limit = 0, TIER_BASE_BYTES
    while size >= limit:
        tier, limit = tier + 1, limit * TIER_FACTOR
    return tier


def _crowded_tier(pack_dir: str, retired: Collection[str] = ()) -> list[str]:
    """Base paths of the packs of the smallest tier holding too many packs."""
    try:
        names = set(os.listdir(pack_dir))  # a set: each pack's .idx and .keep are looked up in it
    except FileNotFoundError:
        return []
    tiers: dict[int, list[str]] = {}
    for name in names:
        base = name[:-5]
        if (
            not (name.startswith("pack-") and name.endswith(".pack"))
            or base + ".idx" not in names
            or base + ".keep" in names
        ):
            continue
        if base in retired:
            continue
        try:
            size = os.path.getsize(os.path.join(pack_dir, name))
        except FileNotFoundError:
            continue
        if size < MAX_MERGED_BYTES:
            tiers.setdefault(_tier(size), []).append(os.path.join(pack_dir, base))
    for tier in sorted(tiers):
        if len(tiers[tier]) >= PACKS_PER_TIER:
            return tiers[tier]
    return []


def maybe_merge_small_packs(pack_dir: str, lock_path: str) -> bool:
    """Merge packs of similar size when one size tier holds too many of them.

    Sizes grow geometrically from tier to tier, so an object is rewritten
    O(log n) times in all, as with ``git repack --geometric``. The merged packs
    are retired (deleted ``RETIRED_GRACE_SECONDS`` later, by a later call), not
    deleted: another process may be reading them. Returns True if packs were merged.
    """
    retired_dir = os.path.join(_common_dir(pack_dir), "gitml", "retired")
    try:
        retired = set(os.listdir(retired_dir))
    except FileNotFoundError:
        retired = set()
    try:
        packs = sum(n.endswith(".pack") for n in os.listdir(pack_dir)) - len(retired)
    except FileNotFoundError:
        return False
    expired = _expired(retired_dir, retired)
    if packs < PACKS_PER_TIER and not expired:
        return False
    if not expired and len(_crowded_tier(pack_dir, retired)) < PACKS_PER_TIER:
        return False
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(lock_path) > _LOCK_STALE_SECONDS:
                os.unlink(lock_path)
        except FileNotFoundError:
            pass
        return False
    try:
        os.close(fd)
        _delete_retired(
            pack_dir, retired_dir, _expired(retired_dir, set(os.listdir(retired_dir)) if expired else set())
        )
        retired = set(os.listdir(retired_dir)) if os.path.isdir(retired_dir) else set()
        crowded = _crowded_tier(pack_dir, retired)
        if len(crowded) < PACKS_PER_TIER:
            return False
        merged = _merge(pack_dir, crowded)  # fsynced and in place before any pack is retired
        _retire(pack_dir, crowded, merged)
        return True
    finally:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass


def _retire(pack_dir: str, bases: list[str], merged: str | None) -> None:
    """Mark merged-away packs retired (the merged pack is in place and fsynced)."""
    retired_dir = _gitml_dir(pack_dir, "retired")
    for base in bases:
        if base != merged:
            name = os.path.basename(base)
            with open(os.path.join(retired_dir, name), "wb"):
                pass
            _RETIRED_HERE.add(os.path.abspath(base))


def _delete_retired(pack_dir: str, retired_dir: str, names: Iterable[str]) -> int:
    deleted = 0
    for name in names:
        for ext in (".idx", ".pack"):  # the index first: no reader sees an index without its pack
            try:
                os.unlink(os.path.join(pack_dir, name + ext))
            except FileNotFoundError:
                pass
        try:  # the mark last: a reader that listed the pack meanwhile still skips it
            os.unlink(os.path.join(retired_dir, name))
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted


def _geometric_rollup(packs: list[tuple[int, str]], budget: int, factor: int = SETTLE_FACTOR) -> list[str]:
    """The smallest packs to merge so that the rest, with the merged one, form a geometric
    progression (each pack ``factor`` times the size of all smaller ones together), as
    ``git repack --geometric`` picks them; ``packs`` are ``(size, base)``. At most
    ``budget`` bytes are picked: what a process's end rewrites stays bounded."""
    packs = sorted(packs)
    sizes = [size for size, _ in packs]
    split = len(sizes) - 1
    while split > 0 and sizes[split] >= factor * sizes[split - 1]:
        split -= 1
    if split:
        split += 1  # the larger of the pair that broke the progression cannot stay in it
    total = sum(sizes[:split])
    while split < len(sizes) and sizes[split] < factor * total:
        total += sizes[split]
        split += 1
    while split > 1 and total > budget:
        split -= 1
        total -= sizes[split]
    return [base for _, base in packs[:split]] if split > 1 else []


def settle(pack_dir: str, lock_path: str, *, wait: float = SETTLE_LOCK_WAIT) -> tuple[int, int]:
    """Leave the packs in the shape a fresh repository has, at the end of a process that
    wrote many (a sweep of 50,000 runs left 82: 34 live in their size tiers and 48 merged
    away, kept for readers). The small packs are rolled up geometrically; then the packs
    this process retired, and any retired longer than ``RETIRED_GRACE_SECONDS``, are
    deleted. A reader in another process that listed a deleted pack and had not opened it
    finds it gone, forgets it and lists the packs again (dulwich's bounded rescan, git's
    ``reprepare_packed_git``), and finds its objects in the pack they were merged into,
    which was in place before the pack was retired. That one deletion is what ``git repack
    -d`` does; the grace stays for merges *while* processes run, where packs vanishing
    again and again outran those rescans. Waits up to ``wait`` s for another process's
    merge. What it rewrites is bounded by what the process wrote (``SETTLE_BUDGET``), and
    by ``MAX_MERGED_BYTES``. Returns ``(packs merged, retired packs deleted)``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.close(os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock_path) > _LOCK_STALE_SECONDS:
                    os.unlink(lock_path)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                return 0, 0  # the other merge goes on; the next write's check deletes what expired
            time.sleep(0.02)
    try:
        retired_dir = _gitml_dir(pack_dir, "retired")
        retired = set(os.listdir(retired_dir))
        names = set(os.listdir(pack_dir))
        live = []
        for name in names:
            base = name[:-5]
            if not name.endswith(".pack") or base + ".idx" not in names or base + ".keep" in names or base in retired:
                continue
            try:
                live.append((os.path.getsize(os.path.join(pack_dir, name)), os.path.join(pack_dir, base)))
            except FileNotFoundError:
                pass
        low, factor = SETTLE_BUDGET
        picked = _geometric_rollup(live, min(MAX_MERGED_BYTES, max(low, factor * _WRITTEN[0])))
        if picked:
            merged = _merge(pack_dir, picked)
            _retire(pack_dir, picked, merged)
        here = os.path.abspath(pack_dir)
        mine = {name for name in os.listdir(retired_dir) if os.path.join(here, name) in _RETIRED_HERE}
        expired = set(_expired(retired_dir, set(os.listdir(retired_dir))))
        deleted = _delete_retired(pack_dir, retired_dir, sorted(mine | expired))
        _RETIRED_HERE.difference_update(os.path.join(here, name) for name in mine)
        return len(picked), deleted
    finally:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass


def _merge(pack_dir: str, bases: list[str]) -> str | None:
    """Merge packs into one; returns its base path. The packs' entries are copied as
    stored, in spans (every run of entries not already taken from an earlier pack, in
    one write), their index rows moved by numpy: entry by entry in Python, merging the
    108 MB of a 50,000-run sweep took 8 CPU s and 700 MB. Packs with deltas, an index
    other than version 2 or offsets past 2 GiB go entry by entry (:func:`_merge_entries`)."""
    import mmap
    import sys

    if "numpy" not in sys.modules and sum(_object_count(base + ".idx") for base in bases) < _MERGE_IN_PYTHON:
        return _merge_entries(pack_dir, bases)  # a small merge: not worth numpy's import (0.07 CPU s)
    import numpy as np

    files = []
    try:
        parts = []
        for base in bases:
            with open(base + ".idx", "rb") as f:
                idx = f.read()
            with open(base + ".pack", "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            files.append(data)
            if idx[:8] != b"\377tOc" + struct.pack(">L", 2):
                return _merge_entries(pack_dir, bases)
            count = struct.unpack_from(">L", idx, 8 + 255 * 4)[0]
            at = 8 + 256 * 4
            shas = np.frombuffer(idx, dtype="V20", count=count, offset=at)
            crcs = np.frombuffer(idx, dtype=">u4", count=count, offset=at + 20 * count)
            offsets = np.frombuffer(idx, dtype=">u4", count=count, offset=at + 24 * count).astype(np.int64)
            if count and int(offsets.max()) >= 1 << 31:
                return _merge_entries(pack_dir, bases)
            order = np.argsort(offsets, kind="stable")
            offsets, shas, crcs = offsets[order], shas[order], crcs[order]
            ends = np.append(offsets[1:], len(data) - 20)
            if count and np.isin((np.frombuffer(data, dtype=np.uint8)[offsets] >> 4) & 7, (6, 7)).any():
                return _merge_entries(pack_dir, bases)  # deltas: a base may be dropped as a duplicate
            _drop_pages(data, 0, len(data))
            parts.append((data, shas, crcs, offsets, ends))
        every = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype="V20")
        keep = np.zeros(len(every), dtype=bool)
        keep[np.unique(every, return_index=True)[1]] = True  # each object once: where it comes first
        del every
        total = int(keep.sum())
        if not total:
            return None

        def spans():
            at = 0
            for data, _shas, _crcs, offsets, ends in parts:
                kept = keep[at : at + len(offsets)]
                at += len(offsets)
                edges = np.flatnonzero(np.diff(np.concatenate(([0], kept.view(np.int8), [0]))))
                for first, stop in zip(edges[0::2], edges[1::2], strict=True):
                    for start in range(int(offsets[first]), int(ends[stop - 1]), _SPAN_BYTES):
                        end = min(start + _SPAN_BYTES, int(ends[stop - 1]))
                        yield data[start:end]
                        _drop_pages(data, start, end)

        rows = np.empty(total, dtype=np.dtype({"names": ["sha", "offset", "crc"], "formats": ["V20", ">u8", ">u4"]}))
        position, at, done = 12, 0, 0  # the header's 12 bytes first
        for _data, shas, crcs, offsets, ends in parts:
            kept = keep[at : at + len(offsets)]
            at += len(offsets)
            lengths = (ends - offsets)[kept]
            n = len(lengths)
            rows["sha"][done : done + n] = shas[kept]
            rows["crc"][done : done + n] = crcs[kept]
            rows["offset"][done : done + n] = position + np.cumsum(lengths) - lengths
            position += int(lengths.sum())
            done += n
        table = rows.tobytes()
        del rows
        return _write_spans(pack_dir, total, spans(), table)
    finally:
        for data in files:
            data.close()


def _drop_pages(data, start: int, end: int) -> None:
    """Let the kernel take back the pages of a mapped pack read so far (they would count in
    the process's memory until it unmaps the pack: a merge reads hundreds of MB)."""
    import mmap

    start -= start % mmap.PAGESIZE
    if end > start and hasattr(mmap, "MADV_DONTNEED"):
        try:
            data.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError):
            pass


def _object_count(idx_path: str) -> int:
    with open(idx_path, "rb") as f:
        head = f.read(8 + 256 * 4)
    return struct.unpack_from(">L", head, 8 + 255 * 4)[0] if len(head) == 8 + 256 * 4 else 0


def _merge_entries(pack_dir: str, bases: list[str]) -> str | None:
    """Merge packs entry by entry (one pack's entries in memory at a time, a set of the ids
    so that each object is written once); packs with deltas are read through dulwich."""
    todo: set[bytes] = set()
    for base in bases:
        todo.update(_index_ids(base + ".idx"))
    count = len(todo)

    def entries():
        for base in bases:
            for entry in _pack_entries(base):
                if entry[0] in todo:
                    todo.discard(entry[0])
                    yield entry

    return _write_entries(pack_dir, entries(), count)


def _index_ids(idx_path: str) -> list[bytes]:
    """The raw ids a pack's index lists."""
    with open(idx_path, "rb") as f:
        idx = f.read()
    if idx[:8] != b"\377tOc" + struct.pack(">L", 2):
        pack = Pack(idx_path[:-4], object_format=DEFAULT_OBJECT_FORMAT)
        try:
            return [sha if len(sha) == 20 else bytes.fromhex(sha.decode()) for sha, _, _ in pack.index.iterentries()]
        finally:
            pack.close()
    count = struct.unpack_from(">L", idx, 8 + 255 * 4)[0]
    at = 8 + 256 * 4
    return [idx[at + 20 * i : at + 20 * i + 20] for i in range(count)]


def _expired(retired_dir: str, names: set[str]) -> list[str]:
    """The retired packs whose grace period is over."""
    limit = time.time() - RETIRED_GRACE_SECONDS
    out = []
    for name in names:
        try:
            if os.stat(os.path.join(retired_dir, name)).st_mtime < limit:
                out.append(name)
        except FileNotFoundError:
            pass
    return out


def _pack_entries(base: str) -> list[tuple[bytes, bytes, int]]:
    """``(raw sha, entry bytes, crc32)`` of every object of a pack with no deltas.

    Entries are copied as stored (header and compressed data), so merging
    packs does not recompress anything. A pack holding deltas (one that git
    wrote) is read object by object through dulwich instead.
    """
    with open(base + ".idx", "rb") as f:
        idx = f.read()
    with open(base + ".pack", "rb") as f:
        data = f.read()
    if idx[:8] != b"\377tOc" + struct.pack(">L", 2):
        return _pack_entries_slow(base)
    count = struct.unpack_from(">L", idx, 8 + 255 * 4)[0]
    shas_at = 8 + 256 * 4
    crcs_at = shas_at + 20 * count
    offsets_at = crcs_at + 4 * count
    rows = []
    for i in range(count):
        offset = struct.unpack_from(">L", idx, offsets_at + 4 * i)[0]
        if offset & 0x80000000:
            return _pack_entries_slow(base)
        rows.append(
            (offset, idx[shas_at + 20 * i : shas_at + 20 * i + 20], struct.unpack_from(">L", idx, crcs_at + 4 * i)[0])
        )
    rows.sort()
    end = len(data) - 20
    out = []
    for i, (offset, sha, crc) in enumerate(rows):
        if (data[offset] >> 4) & 7 in (6, 7):  # ofs-delta / ref-delta
            return _pack_entries_slow(base)
        stop = rows[i + 1][0] if i + 1 < len(rows) else end
        out.append((sha, data[offset:stop], crc))
    return out


def _pack_entries_slow(base: str) -> list[tuple[bytes, bytes, int]]:
    pack = Pack(base, object_format=DEFAULT_OBJECT_FORMAT)
    try:
        out = []
        for sha, _offset, _crc in pack.index.iterentries():
            raw_sha = sha if len(sha) == 20 else bytes.fromhex(sha.decode())
            type_num, raw = pack.get_raw(oid(raw_sha))
            chunk = _entry_header(type_num, len(raw)) + zlib.compress(raw, 1)
            out.append((raw_sha, chunk, zlib.crc32(chunk)))
        return out
    finally:
        pack.close()


_ROW = struct.Struct(">QL")  # an index row's offset and CRC-32, after the object's id


def _write_entries(
    pack_dir: str, entries: Iterable[tuple[bytes, bytes, int]], count: int | None = None, *, keep: bool = False
) -> str | None:
    """Write already-encoded pack entries as a new pack; returns its base path.

    With ``count`` (the number of entries, whose ids the caller knows to be
    distinct) the entries are streamed to disk as they come, so a pack of any
    size takes no more memory than one entry; without it they are gathered
    first and duplicates dropped. Files are fsynced and renamed in git's order,
    then the folder is fsynced: once this returns, a ref may name the objects.
    """
    if count is None:
        unique: dict[bytes, tuple[bytes, bytes, int]] = {}
        for entry in entries:
            unique.setdefault(entry[0], entry)
        entries, count = list(unique.values()), len(unique)
    if not count:
        return None
    index_rows = bytearray()  # 32 bytes per entry (id, offset, CRC): no object per entry
    row = _ROW.pack
    if isinstance(entries, list):  # gathered already: written and hashed as one buffer
        offset, body = 12, []
        for sha, chunk, crc in entries:
            index_rows += sha + row(offset, crc & 0xFFFFFFFF)
            body.append(chunk)
            offset += len(chunk)
        return _write_spans(pack_dir, count, [b"".join(body)], index_rows, keep=keep)

    def chunks():  # streamed: one entry in memory at a time
        offset = 12
        for sha, chunk, crc in entries:
            index_rows.extend(sha + row(offset, crc & 0xFFFFFFFF))
            offset += len(chunk)
            yield chunk

    return _write_spans(pack_dir, count, chunks(), index_rows, keep=keep)


def _write_spans(
    pack_dir: str, count: int, chunks: Iterable, index_rows: bytes | bytearray, *, keep: bool = False
) -> str:
    """Write a pack of ``count`` entries whose bytes ``chunks`` yields (whole entries, or
    runs of them), then its index of ``index_rows`` (32 bytes per entry: raw id, offset,
    CRC-32; complete once ``chunks`` is consumed). Files are fsynced and renamed in git's
    order, then the folder is fsynced: once this returns, a ref may name the objects."""
    os.makedirs(pack_dir, exist_ok=True)
    common = _common_dir(pack_dir)
    # like git's tmp_pack_*, but where `git prune` (which deletes objects/pack/tmp_*) does not look
    tmp = os.path.join(
        _gitml_dir(pack_dir, "tmp"), f"tmp_gitml_{os.getpid()}_{threading.get_ident()}_{os.urandom(6).hex()}"
    )
    mode = shared_file_mode(common, 0o444)
    header = b"PACK" + struct.pack(">II", 2, count)
    digest = hashlib.sha1(header)
    try:
        with open(tmp + "_pack", "wb") as f:
            f.write(header)
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
            if len(index_rows) != 32 * count:
                raise ValueError(f"pack of {count} entries given {len(index_rows) // 32}")
            checksum = digest.digest()
            f.write(checksum)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        base = os.path.join(pack_dir, f"pack-{checksum.hex()}")
        if keep:
            _write_keep(base, common)
        if os.path.exists(base + ".idx"):
            _unretire(pack_dir, base)
            return base
        with open(tmp + "_idx", "wb") as f:
            f.write(_index_of(index_rows, checksum))
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp + "_pack", base + ".pack")
        os.replace(tmp + "_idx", base + ".idx")
        _fsync_dir(pack_dir)
        return base
    finally:
        for suffix in ("_pack", "_idx"):
            if os.path.exists(tmp + suffix):
                os.unlink(tmp + suffix)


def _write_keep(base: str, common: str) -> None:
    with open(base + ".keep", "wb") as f:
        f.write(KEEP_MARK)
        os.fchmod(f.fileno(), shared_file_mode(common, 0o666))


def _unretire(pack_dir: str, base: str) -> None:
    """A pack written again (same objects, same bytes) is wanted again: not deleted later."""
    _RETIRED_HERE.discard(os.path.abspath(base))
    try:
        os.unlink(os.path.join(_common_dir(pack_dir), "gitml", "retired", os.path.basename(base)))
    except FileNotFoundError:
        pass


class RawObject:
    """A git object held as its hex id, type number and content, hashed once.

    A dulwich object serializes itself again for its ``id`` and again for
    ``as_raw_string()``: the blobs and trees of a run commit, made as dulwich objects,
    cost more than writing their pack (W2, issue 28). Written like any object by
    :meth:`gitml.store.git.GitStore.write`."""

    __slots__ = ("id", "type_num", "_raw")

    def __init__(self, type_num: int, raw: bytes):
        self.type_num = type_num
        self._raw = raw
        self.id = object_id(type_num, raw).hex().encode()

    def as_raw_string(self) -> bytes:
        return self._raw


GitObject = ShaFile | RawObject  # what the store writes


def sha_of(obj: GitObject) -> tuple[bytes, int, bytes]:
    """The ``(hex sha, type number, raw content)`` triple of an object."""
    return obj.id, obj.type_num, obj.as_raw_string()

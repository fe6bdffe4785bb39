"""The stored entries of a repository's packs, by object id: read, walked, copied.

Small packs (gitml's own, written per flush and merged geometrically) are held in
a dict from object id to entry; a pack of more than ``BIG_PACK`` objects (what
``git gc`` leaves in a long-lived repository) is searched in its index file
instead, so a repository of millions of objects costs no memory per object.
Entries stored as deltas are read through dulwich.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import mmap
import os
import struct
import zlib
from array import array
from binascii import hexlify, unhexlify
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple, cast

from dulwich.objects import parse_tree
from dulwich.repo import Repo

from gitml.errors import RepositoryError
from gitml.store.ids import oid
from gitml.store.packs import _entry_header, object_id

if TYPE_CHECKING:
    import numpy

_COMMIT, _TREE, _TAG = 1, 2, 4
_TYPE_NUMBERS = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
_DELTA_TYPES = (6, 7)
# the largest commit, tree or tag a fetch walks or a reader takes: a tree of a million
# entries is 40 MB; past this, an object is a zlib bomb (a few megabytes of a teammate's
# push inflating to gigabytes), refused before it is inflated
MAX_WALKED_BYTES = 64 << 20
# a registry tag object (``refs/tags/``): its YAML message and a signature are a few kilobytes;
# a fetch refuses a larger one by name and the registry ignores it, neither inflating it
MAX_TAG_BYTES = 1 << 20
# a delta's result, and each base along its chain, at most (git's core.bigFileThreshold, above
# which git makes no deltas): a few bytes of copies can make gigabytes
MAX_RESOLVED_BYTES = 512 << 20
_IDX_V2 = b"\377tOc\x00\x00\x00\x02"
BIG_PACK = 100_000  # objects: a larger pack is searched in its index, not held in a dict
_TABLES_AFTER = 4096  # lookups in one big pack before its table of id heads is built
_MERGE_AFTER = 4096  # objects located among 3 or more big packs before one table of all their ids is built
DICT_OBJECTS = 400_000  # objects in all packs: beyond, every pack is searched in its index (memory)
_LOW32 = 0xFFFFFFFF
_SORT_IN_PYTHON = 50_000  # objects in a pack: beyond, its offsets are sorted by numpy
_BLOCK = 1 << 20  # bytes read from a pack at a time when entries are copied in the pack's order
_SLICE = 1 << 16  # entries whose positions are made Python ints at a time while they are copied

Where = tuple[int, int, int, int]  # (pack number, start, end, CRC-32) of a stored entry
_NOT_STORED_WHOLE: Where = (-1, 0, 0, 0)  # a hit that is a delta: read through dulwich


class PackEntries:
    """The stored entries of a repository's packs, by object id, ready to copy."""

    def __init__(self, repo: Repo, *, ids_only: bool = False, packs: list[str] | None = None, few: bool = False):
        """With ``ids_only``, only :meth:`has` is answered (cheaper: a set of ids). With
        ``packs`` (base paths, no suffix), only those packs are read: :meth:`has` answers
        for their objects alone (a fetch's received pack, looked at before anything else).
        With ``few`` (a few objects will be looked up: a push of ten runs), every pack is
        searched in its index: reading 200,000 entries into a dict took 0.5 s."""
        self.repo = repo
        self.ids_only = ids_only
        self._ids: set[bytes] = set()  # raw ids of the small packs, when ids_only
        self._maps: list[mmap.mmap] = []
        self._fds: dict[int, int] = {}  # pack number -> its file, from which entries are read
        self._where: dict[bytes, int] = {}  # raw sha -> entry (pack number, CRC, start, end as one int)
        self._big: list[_IndexedPack] = []
        self._deltas: set[bytes] = set()  # raw ids stored as deltas in the small packs
        self._unread = False  # a pack this class cannot read (a v1 index, over 2 GiB): ask dulwich
        self._loose: set[bytes] | None = None  # hex ids of the loose objects, listed once
        self._elsewhere: dict[bytes, bool] = {}  # hex sha -> held, once dulwich was asked
        self._all_indexed = False  # every pack searched in its index (many objects: memory first)
        self._merged: _MergedHeads | None = None  # every big pack's ids in one table, once lookups are many
        self._lookups = 0
        if packs is not None:
            self._loose = set()
            for base in packs:
                self._load(base + ".idx")
            self._unread = False  # only these packs: nothing else is asked
            return
        loaded: set[str] = set()
        for _ in range(3):  # as git's reprepare_packed_git: a pack merged away meanwhile, the packs listed again
            paths = [
                p for p in sorted(glob.glob(os.path.join(repo.object_store.path, "pack", "*.idx"))) if p not in loaded
            ]
            if not loaded:
                self._all_indexed = few or sum(map(_object_count, paths)) > DICT_OBJECTS
            vanished = False
            for idx_path in paths:
                try:
                    self._load(idx_path)
                except FileNotFoundError:  # deleted since the listing (its objects are in the pack merged from it)
                    vanished = True
                loaded.add(idx_path)
            if not vanished:
                break
        self._big.sort(key=lambda pack: -pack.count)  # the largest first: most lookups end there

    def _load(self, idx_path: str) -> None:
        with open(idx_path, "rb") as f:
            head = f.read(8 + 256 * 4)
        if head[:8] != _IDX_V2:
            self._unread = True  # a version-1 index: its objects are read through dulwich
            return
        count = struct.unpack_from(">L", head, 8 + 255 * 4)[0]
        if os.path.getsize(idx_path) != 8 + 256 * 4 + 28 * count + 40:
            self._unread = True  # a table of 64-bit offsets (a pack over 2 GiB): read through dulwich
            return
        with open(idx_path, "rb") as f:
            idx = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        with open(idx_path[:-4] + ".pack", "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        number = len(self._maps)
        self._maps.append(data)
        self._maps.append(idx)
        self._fds[number] = os.open(idx_path[:-4] + ".pack", os.O_RDONLY | os.O_CLOEXEC)
        if count > BIG_PACK or self._all_indexed:
            self._big.append(_IndexedPack(number, idx, data, count, base=idx_path[:-4]))
            return
        offsets = struct.unpack_from(f">{count}L", idx, 8 + 256 * 4 + 24 * count)
        shas_at = 8 + 256 * 4
        if self.ids_only:
            self._ids.update(idx[shas_at + 20 * i : shas_at + 20 * i + 20] for i in range(count))
            return
        crcs = struct.unpack_from(f">{count}L", idx, shas_at + 20 * count)
        order = sorted(range(count), key=offsets.__getitem__)
        end = len(data) - 20
        for pos, i in enumerate(order):
            start = offsets[i]
            if (data[start] >> 4) & 7 in _DELTA_TYPES:
                self._deltas.add(idx[shas_at + 20 * i : shas_at + 20 * i + 20])  # read through dulwich
                continue
            stop = offsets[order[pos + 1]] if pos + 1 < count else end
            # one int per entry, not a tuple of four: a third of the memory
            self._where.setdefault(
                idx[shas_at + 20 * i : shas_at + 20 * i + 20], (((number << 32 | crcs[i]) << 32 | start) << 32) | stop
            )

    def _find(self, raw: bytes) -> Where | None:
        packed = self._where.get(raw)
        if packed is not None:
            return packed >> 96, (packed >> 32) & _LOW32, packed & _LOW32, (packed >> 64) & _LOW32
        for pack in self._big:
            hit = pack.find(raw)
            if hit is not None:
                return hit
        return None

    def locate(self, hexsha: bytes) -> int:
        """Where the object's entry lies in a big pack, as an int for :meth:`raw_at` and
        :class:`Picked` (so a walk looks each object up once); 0 when it is elsewhere (a
        small pack, loose, or absent: the id-taking methods then answer for it). An
        object in several packs is always located in the same one."""
        if not self._big:
            return 0
        raw = unhexlify(hexsha)
        if raw in self._where:
            return 0  # found there first by every other method too
        if self._loose is None:
            self._loose = _loose_ids(os.fspath(self.repo.object_store.path))
        if hexsha in self._loose:
            return 0  # a loose object (the commit runs start from, met by every run's walk): no search
        merged = self._merged
        if merged is None and len(self._big) > 2:
            self._lookups += 1
            if self._lookups > _MERGE_AFTER:
                merged = self._merged = _MergedHeads(self._big)
        if merged is not None:
            found = merged.position(raw)
            return 0 if found is None else (found[0] << 32 | found[1]) + 1
        for slot, pack in enumerate(self._big):
            i = pack._position(raw)
            if i is not None:
                return (slot << 32 | i) + 1
        return 0

    def raw_at(self, at: int, hexsha: bytes, *, limit: int | None = None) -> tuple[int, bytes]:
        """:meth:`raw` of an object :meth:`locate` gave ``at`` for (no lookup when it is not 0)."""
        if not at:
            return self.raw(hexsha, limit=limit)
        at -= 1
        return self.raw(hexsha, self._big[at >> 32].where(at & _LOW32), limit=limit)

    def links_at(self, at: int, hexsha: bytes) -> tuple[int, list[bytes], list[bytes]]:
        """:meth:`links` of an object :meth:`locate` gave ``at`` for."""
        return links_of(*self.raw_at(at, hexsha))

    def get(self, hexsha: bytes, *, limit: int | None = None) -> tuple[int, bytes] | None:
        """:meth:`raw`, or None when :meth:`has` is false (one lookup of a stored entry)."""
        hit = self._find(unhexlify(hexsha))
        if hit is None and not self.has(hexsha):
            return None
        return self.raw(hexsha, hit, limit=limit)

    def raw(self, hexsha: bytes, hit: Where | None = None, *, limit: int | None = None) -> tuple[int, bytes]:
        """``(type number, content)``, inflated from the stored entry when there is one;
        with ``limit``, an object larger than that is refused before it is inflated."""
        hit = hit or self._find(unhexlify(hexsha))
        if limit is not None and (hit is None or hit is _NOT_STORED_WHOLE):  # read by dulwich: its size first
            cost = read_cost(self.repo, hexsha)
            if cost is not None and cost.peak > limit:
                raise RepositoryError(over_the_limit(hexsha, cost, limit))
        if hit is None or hit is _NOT_STORED_WHOLE:
            if self._loose is not None and hexsha in self._loose:
                return self._loose_raw(hexsha)
            try:
                return self.repo.object_store.get_raw(oid(hexsha))
            except KeyError:
                raise RepositoryError(
                    f"object {hexsha.decode()} is not in {self.repo.path}, and the other side needs it "
                    "(a shallow clone? `git fetch --unshallow` brings the history)"
                ) from None
        number, start, stop, _ = hit
        data = self._read(number, start, stop)
        type_num = (data[0] >> 4) & 7
        if type_num in _DELTA_TYPES:  # a delta in a big pack: resolved by dulwich
            return self.raw(hexsha, _NOT_STORED_WHOLE, limit=limit)
        byte = data[0]
        size, shift, pos = byte & 0x0F, 4, 0
        while byte & 0x80:
            pos += 1
            byte = data[pos]
            size |= (byte & 0x7F) << shift
            shift += 7
        if limit is not None and size > limit:
            raise RepositoryError(f"object {hexsha.decode()} holds {size} bytes, over the limit of {limit}")
        try:
            return type_num, inflate_exactly(memoryview(data)[pos + 1 :], size)
        except zlib.error as e:  # zlib checks the content's Adler-32 too
            reason = str(e)
        raise self._damaged(hexsha, reason)

    def _read(self, number: int, start: int, stop: int) -> bytes:
        """A stored entry's bytes, read from the pack file, not through its map: a page
        read through a map stays counted in this process's memory, and the kernel maps
        64 KiB around each one read (a walk touching every tree maps the whole pack)."""
        return os.pread(self._fds[number], stop - start, start)

    def _loose_raw(self, hexsha: bytes) -> tuple[int, bytes]:
        """A loose object, inflated no further than the size its header gives."""
        path = os.path.join(self.repo.object_store.path, hexsha[:2].decode(), hexsha[2:].decode())
        try:
            with open(path, "rb") as f:
                stored = f.read()
            inflater = zlib.decompressobj()
            head = inflater.decompress(stored, 64)
            end = head.find(b"\0")
            kind, _, size_text = head[: max(end, 0)].partition(b" ")
            type_num = _TYPE_NUMBERS.get(kind)
            if end < 0 or type_num is None or not size_text.isdigit():
                raise zlib.error("no object header")
            size = int(size_text)
            content = head[end + 1 :]
            if len(content) <= size and not inflater.eof:
                content += inflater.decompress(inflater.unconsumed_tail, size + 1 - len(content))
            if len(content) != size or not inflater.eof:
                raise zlib.error(f"it does not inflate to the {size} bytes its header gives")
            return type_num, content
        except (OSError, zlib.error) as e:
            raise self._damaged(hexsha, str(e)) from None

    def _loose_entry(self, hexsha: bytes) -> tuple[bytes, bytes, int]:
        """A loose object as a pack entry (:meth:`entry`), streamed: inflated, hashed and
        deflated again a piece at a time, so a loose object of gigabytes (git stores a
        small push loose; a few megabytes of zlib can inflate to gigabytes) costs a piece
        of memory, not its size twice."""
        path = os.path.join(self.repo.object_store.path, hexsha[:2].decode(), hexsha[2:].decode())
        inflater, deflater, digest = zlib.decompressobj(), zlib.compressobj(1), hashlib.sha1()
        out = bytearray()
        head = b""
        type_num = size = seen = -1
        try:
            with open(path, "rb") as f:
                pending = b""
                while True:
                    if not pending:
                        pending = inflater.unconsumed_tail or f.read(1 << 16)
                        if not pending:
                            break
                    piece = inflater.decompress(pending, 1 << 20)
                    pending = inflater.unconsumed_tail
                    digest.update(piece)
                    if type_num < 0:  # the header "<type> <size>\0" first
                        head += piece
                        end = head.find(b"\0")
                        if end < 0:
                            if len(head) > 64:
                                raise zlib.error("no object header")
                            continue
                        kind, _, size_text = head[:end].partition(b" ")
                        if kind not in _TYPE_NUMBERS or not size_text.isdigit():
                            raise zlib.error("no object header")
                        type_num, size, piece, seen = _TYPE_NUMBERS[kind], int(size_text), head[end + 1 :], 0
                    seen += len(piece)
                    if seen > size:
                        break
                    out += deflater.compress(piece)
                    if inflater.eof:
                        break
            if type_num < 0 or seen != size or not inflater.eof:
                raise zlib.error(f"it does not inflate to the {max(size, 0)} bytes its header gives")
        except (OSError, zlib.error) as e:
            raise self._damaged(hexsha, str(e)) from None
        if digest.digest() != unhexlify(hexsha):
            raise self._damaged(hexsha, "its content does not hash to its id")
        chunk = _entry_header(type_num, size) + bytes(out + deflater.flush())
        return unhexlify(hexsha), chunk, zlib.crc32(chunk)

    def unresolvable(self, hexsha: bytes) -> str | None:
        """Why an object stored as a delta is not resolved (it or a base along its chain
        over ``MAX_RESOLVED_BYTES``: a delta bomb), told from the stored headers; None for
        a whole object or one within the limit. Free for the small packs' whole objects."""
        if unhexlify(hexsha) in self._where or (self._loose is not None and hexsha in self._loose):
            return None
        cost = read_cost(self.repo, hexsha)
        if cost is None or not cost.delta or cost.peak <= MAX_RESOLVED_BYTES:
            return None
        return over_the_limit(hexsha, cost, MAX_RESOLVED_BYTES, what="gitml resolves").split(" ", 2)[2]

    def _damaged(self, hexsha: bytes, reason: str) -> RepositoryError:
        return RepositoryError(
            f"object {hexsha.decode()} is damaged in {self.repo.path} ({reason}); `git fsck` shows the extent"
        )

    def links(self, hexsha: bytes) -> tuple[int, list[bytes], list[bytes]]:
        """``(type number, objects to walk, blobs)`` named by an object: a commit's
        tree and parents, a tag's target, a tree's subtrees and blobs (not submodules)."""
        return links_of(*self.raw(hexsha))

    def has(self, hexsha: bytes) -> bool:
        """Whether the repository holds the object, answered from the pack indexes and
        one listing of the loose objects (dulwich's search rescans the pack folder on
        every miss, and a transfer asks mostly about objects the target lacks)."""
        raw = unhexlify(hexsha)
        if raw in self._where or raw in self._ids or raw in self._deltas:
            return True
        if self._big and any(pack.holds(raw) for pack in self._big):
            return True
        if self._loose is None:
            self._loose = _loose_ids(os.fspath(self.repo.object_store.path))
        if hexsha in self._loose:
            return True
        if not self._unread:
            return False
        found = self._elsewhere.get(hexsha)
        if found is None:
            found = self._elsewhere[hexsha] = holds(self.repo, hexsha)
        return found

    def entry(self, hexsha: bytes) -> tuple[bytes, bytes, int]:
        raw = unhexlify(hexsha)
        hit = self._find(raw)
        if hit is not None:
            number, start, stop, crc = hit
            chunk = self._read(number, start, stop)
            if zlib.crc32(chunk) != crc:  # copied as stored: checked against the index's CRC first
                raise self._damaged(hexsha, "its stored bytes fail the pack index's CRC")
            if (chunk[0] >> 4) & 7 not in _DELTA_TYPES:
                return raw, chunk, crc
            # a delta in a big pack: its object is resolved through dulwich and stored whole
        if self._loose is not None and hexsha in self._loose:
            return self._loose_entry(hexsha)
        why = self.unresolvable(hexsha)
        if why:
            raise RepositoryError(f"object {hexsha.decode()} {why}")
        try:
            type_num, content = self.repo.object_store.get_raw(oid(hexsha))
        except KeyError:
            raise self._damaged(hexsha, "missing") from None
        except RepositoryError:
            raise
        except Exception as e:  # noqa: BLE001 - dulwich raises zlib, delta and struct errors
            reason = f"{type(e).__name__}: {e}"
        else:
            if object_id(type_num, content) != raw:
                raise self._damaged(hexsha, "its content does not hash to its id")
            chunk = _entry_header(type_num, len(content)) + zlib.compress(content, 1)
            return raw, chunk, zlib.crc32(chunk)
        raise self._damaged(hexsha, reason)

    def close(self) -> None:
        for data in self._maps:
            data.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> PackEntries:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def links_of(type_num: int, raw: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """``(type number, objects to walk, blobs)`` named by an object's content: a commit's
    tree and parents, a tag's target, a tree's subtrees and blobs (not submodules)."""
    if type_num == _COMMIT:
        named = []
        for line in raw[: raw.find(b"\n\n")].split(b"\n"):
            if not line.startswith((b"tree ", b"parent ")):
                break  # tree and parents come first
            named.append(line.split(b" ", 1)[1])
        return type_num, named, []
    if type_num == _TREE:
        walk, blobs = [], []
        for _name, mode, sha in parse_tree(raw, 20):
            if mode == 0o040000:
                walk.append(sha)
            elif mode != 0o160000:
                blobs.append(sha)
        return type_num, walk, blobs
    if type_num == _TAG:
        return type_num, [raw[7:47]], []  # "object <sha>" is the first line
    return type_num, [], []


PEEL_DEPTH = 16  # tags of tags followed before a chain is given up (git stops within reason too)


def peel(sha: bytes, read: Callable[[bytes], tuple[int, bytes] | None]) -> tuple[bytes, int] | None:
    """``(id, type number)`` of what ``sha`` names once annotated tags are followed (a tag's
    target is its first line, ``object <id>``). ``read(id)`` gives an object's ``(type
    number, content)``, or None when it is not held; None when an object on the way is not
    held or the chain is longer than ``PEEL_DEPTH``. Every peel of gitml's is this one."""
    for _ in range(PEEL_DEPTH):
        found = read(sha)
        if found is None:
            return None
        type_num, raw = found
        if type_num != _TAG:
            return sha, type_num
        sha = raw[7:47]
    return None


def holds(repo: Repo, hexsha: bytes) -> bool:
    """Whether the repository (or an alternate) holds the object, without reading it:
    dulwich's ``in`` parses a loose object whole to say it is there (a loose zlib bomb a
    plain ``git fetch`` left inflated to its gigabytes)."""
    store = repo.object_store
    sha = oid(hexsha)
    if store.contains_packed(sha):
        return True
    if os.path.exists(os.path.join(store.path, hexsha[:2].decode(), hexsha[2:].decode())):
        return True
    return any(sha in alternate for alternate in store.alternates)


def over_the_limit(hexsha: bytes, cost: ReadCost, limit: int, *, what: str = "") -> str:
    """The one line refusing object ``hexsha`` whose reading costs over ``limit``."""
    bound = f"over the limit of {limit}" + (f" {what}" if what else "")
    if cost.peak == cost.size:
        kind = "is a delta to" if cost.delta else "holds"
        return f"object {hexsha.decode()} {kind} {cost.size} bytes, {bound}"
    return (
        f"object {hexsha.decode()} is a delta whose chain inflates {cost.peak} bytes to make its {cost.size}, {bound}"
    )


def object_size(repo: Repo, hexsha: bytes) -> int | None:
    """The size of an object's content as its stored header says (a delta's: the size of
    what it makes), read without inflating the content, in the order dulwich looks (packs,
    then a loose object); None when that cannot be told so (an alternate, no such object).
    A reader bounding what it inflates checks this first: a few megabytes of a pushed pack
    can inflate to gigabytes (a zlib bomb)."""
    store = repo.object_store
    raw = unhexlify(hexsha)

    def in_pack(pack) -> int | None:
        offset = pack.index.object_offset(raw)  # KeyError: not in this pack
        contents = getattr(pack.data, "_contents", None)
        if contents is None:
            return None
        return _entry_size(contents, offset)

    found = _from_packs(store, in_pack)
    return _loose_size(store, hexsha) if found is _NOT_IN_PACKS else found


_NOT_IN_PACKS = object()


def _from_packs(store, in_pack):
    """``in_pack(pack)`` of the pack holding the object; ``_NOT_IN_PACKS`` when none does,
    None when dulwich's internals moved (the reader's own bound applies)."""
    try:
        return store._lookup_in_packs(in_pack)
    except KeyError:
        return _NOT_IN_PACKS
    except Exception:  # noqa: BLE001 - dulwich's internals moved: the reader's own bound applies
        return None


def _loose_size(store, hexsha: bytes) -> int | None:
    """The size a loose object's header gives (its first bytes inflated, no more)."""
    path = os.path.join(store.path, hexsha[:2].decode(), hexsha[2:].decode())
    try:
        with open(path, "rb") as f:
            head = zlib.decompressobj().decompress(f.read(4096), 64)
    except (OSError, zlib.error):
        return None
    kind, _, size = head.partition(b"\0")[0].partition(b" ")
    return int(size) if kind in _TYPE_NUMBERS and size.isdigit() else None


def raw_within(repo: Repo, hexsha: bytes, limit: int) -> tuple[int, bytes] | int | None:
    """An object's ``(type number, content)`` read from the pack holding it, its size
    checked first in the same lookup (:func:`object_size` then a read cost two searches of
    every pack: 10-60 % of a record's load in a repository of many packs); the size (an
    int; a delta's: the most bytes its chain inflates, :func:`read_cost`) when it is over
    ``limit``, not inflated; None when no pack holds it (loose, an
    alternate, a partial clone's missing object) or dulwich's internals moved."""
    raw = unhexlify(hexsha)

    def in_pack(pack):
        offset = pack.index.object_offset(raw)  # KeyError: not in this pack
        contents = getattr(pack.data, "_contents", None)
        cost = _chain_cost(repo, pack, contents, offset, 0) if contents is not None else None
        if cost is not None and cost.peak > limit:
            return cost.peak
        type_num, obj = pack.data.get_object_at(offset)
        type_num, chunks = pack.resolve_object(offset, type_num, obj)
        return type_num, b"".join(chunks)

    try:
        return repo.object_store._lookup_in_packs(in_pack)
    except KeyError:
        return None
    except Exception:  # noqa: BLE001 - a damaged entry, or dulwich's internals moved: the plain read says which
        return None


def _entry_size(contents, offset: int) -> int | None:
    """The content size of the pack entry at ``offset`` of a pack's bytes (a delta's
    target size, from the first bytes of its inflated instructions)."""
    head = _entry_head(contents, offset)
    return None if head is None else head[2]


def _entry_head(contents, offset: int) -> tuple[int, int, int, int | bytes | None] | None:
    """``(type number, stored size, content size, base)`` of the pack entry at ``offset``,
    read without inflating it: the stored size is what its zlib stream inflates to (a
    delta's instructions), the content size a delta's target (from the first bytes of its
    instructions, which give its base's size too: the larger of the two is returned), the
    base an OFS_DELTA's offset or a REF_DELTA's raw id (None for a whole object)."""
    head = bytes(contents[offset : offset + 32])
    if not head:
        return None
    byte = head[0]
    type_num, size, shift, pos = (byte >> 4) & 7, byte & 0x0F, 4, 0
    while byte & 0x80 and pos + 1 < len(head):
        pos += 1
        byte = head[pos]
        size |= (byte & 0x7F) << shift
        shift += 7
    pos += 1
    if type_num not in _DELTA_TYPES:
        return type_num, size, size, None
    base: int | bytes
    if type_num == 7:  # REF_DELTA: the base's id
        base = head[pos : pos + 20]
        pos += 20
    else:  # OFS_DELTA: the base's distance back
        byte = head[pos]
        back = byte & 0x7F
        while byte & 0x80 and pos + 1 < len(head):
            pos += 1
            byte = head[pos]
            back = ((back + 1) << 7) | (byte & 0x7F)
        pos += 1
        base = offset - back
    out = b""
    try:
        for step in (512, 4096, 65536):  # the block's Huffman tables come first: read more until 20 bytes come out
            inflater = zlib.decompressobj()
            out = inflater.decompress(bytes(contents[offset + pos : offset + pos + step]), 20)
            if len(out) >= 20 or inflater.eof:
                break
    except zlib.error:
        return None
    values = []
    at = 0
    for _ in range(2):  # the base's size, then the target's
        value = shift = 0
        while at < len(out):
            byte = out[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            return None
        values.append(value)
    return type_num, max(size, values[0]), values[1], base


_CHAIN = 4096  # deltas followed to a whole base (git's pack.depth is 4095 at most); deeper is refused
ENDLESS = 1 << 62  # what a chain deeper than that, or a cycle, costs: over every limit


class ReadCost(NamedTuple):
    """What reading an object inflates (:func:`read_cost`)."""

    size: int  # its content's size
    peak: int  # the most bytes one step of reading it inflates: its size, or the largest along its delta chain
    delta: bool  # stored as a delta


def read_cost(repo: Repo, hexsha: bytes, _depth: int = 0) -> ReadCost | None:
    """What reading an object inflates, told from stored headers alone (nothing inflated
    past the first bytes of each delta's instructions), in the order dulwich looks (packs,
    then a loose object); None when that cannot be told (an alternate, no such object).
    A delta of a few hundred bytes may be resolved against a base of gigabytes (a delta
    bomb): a reader bounding what it inflates checks ``peak``, not only the object's size."""
    store = repo.object_store
    raw = unhexlify(hexsha)

    def in_pack(pack) -> ReadCost | None:
        offset = pack.index.object_offset(raw)  # KeyError: not in this pack
        contents = getattr(pack.data, "_contents", None)
        return None if contents is None else _chain_cost(repo, pack, contents, offset, _depth)

    found = _from_packs(store, in_pack)
    if found is not _NOT_IN_PACKS:
        return found
    size = _loose_size(store, hexsha)
    return None if size is None else ReadCost(size, size, False)


_COSTS: dict[tuple[str, int], ReadCost] = {}  # (pack file, entry offset) -> its cost: a pack never changes
_COSTS_HELD = 1 << 16  # entries remembered at most (about 10 MB), then forgotten at once


def _chain_cost(repo: Repo, pack, contents, offset: int, depth: int) -> ReadCost | None:
    """:func:`read_cost` of the entry at ``offset`` of ``pack``, its chain followed through
    the pack (OFS_DELTA), the pack's index, then the repository (REF_DELTA). A chain within
    one pack is remembered entry by entry: records share their delta bases, so a walk
    measured once (about 25 us in a repository ``git gc`` packed) is not walked again."""
    name = getattr(pack.data, "filename", None)
    chain: list[tuple[int, int, int, bool]] = []  # (offset, size, most bytes inflated there, delta)
    below = None
    for _ in range(_CHAIN - depth):
        known = _COSTS.get((name, offset)) if name else None
        if known is not None:
            below = known.peak
            break
        head = _entry_head(contents, offset)
        if head is None:
            return None
        type_num, stored, size, base = head
        chain.append((offset, size, max(stored, size), type_num in _DELTA_TYPES))
        if base is None:
            below = 0
            break
        if isinstance(base, int):
            if not 12 <= base < offset:
                return None  # not a delta git could read: dulwich says what is wrong
            offset = base
            continue
        try:
            offset = pack.index.object_offset(base)
        except KeyError:  # a base elsewhere in the repository: not remembered
            outside = read_cost(repo, hexlify(base), depth + 1) if depth + 1 < _CHAIN else None
            if outside is None:
                return ReadCost(chain[0][1], ENDLESS, True) if depth + 1 >= _CHAIN else None
            return ReadCost(chain[0][1], max(max(c[2] for c in chain), outside.peak), True)
    if below is None:  # deeper than git goes, or a cycle
        return ReadCost(chain[0][1] if chain else 0, ENDLESS, True)
    if not chain:  # the first entry was remembered (so the pack has a name)
        return _COSTS[(cast(str, name), offset)]
    if len(_COSTS) > _COSTS_HELD:
        _COSTS.clear()
    peak = below
    cost = None
    for at, size, own, delta in reversed(chain):
        peak = max(peak, own)
        cost = ReadCost(size, peak, delta)
        if name:
            _COSTS[(name, at)] = cost
    assert cost is not None
    return cost


def inflate_exactly(stored: bytes | memoryview, size: int) -> bytes:
    """The ``size`` bytes ``stored`` inflates to; a stream that would give more (a
    "zlib bomb": a few kilobytes inflating to gigabytes) or fewer raises ``zlib.error``
    after at most ``size + 1`` bytes were produced."""
    inflater = zlib.decompressobj()
    content = inflater.decompress(stored, size + 1)
    if len(content) != size or not inflater.eof:
        raise zlib.error(f"it does not inflate to the {size} bytes its header gives")
    return content


def commit_header(raw: bytes) -> tuple[int, list[bytes], bytes]:
    """``(committer time, parent ids, tree id)`` read from a raw commit's header lines."""
    parents, when = [], 0
    for line in raw[: raw.find(b"\n\n")].split(b"\n"):
        if line.startswith(b"parent "):
            parents.append(line[7:47])
        elif line.startswith(b"committer "):
            try:
                when = int(line.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                pass
    return when, parents, raw[5:45]  # "tree <sha>" is the first line


def _object_count(idx_path: str) -> int:
    try:
        with open(idx_path, "rb") as f:
            head = f.read(8 + 256 * 4)
    except FileNotFoundError:  # merged away since the listing
        return 0
    return struct.unpack_from(">L", head, 8 + 255 * 4)[0] if head[:8] == _IDX_V2 else 0


def _loose_ids(objects: str) -> set[bytes]:
    ids: set[bytes] = set()
    for prefix in os.listdir(objects):
        if len(prefix) == 2:
            ids.update(
                (prefix + name).encode() for name in os.listdir(os.path.join(objects, prefix)) if len(name) == 38
            )
    return ids


class _MergedHeads:
    """The ids of many big packs in one table, for a walk of many objects: an object was
    searched for in each pack in turn (4.3 searches per object over the 78 packs a sweep of
    50,000 runs leaves: most of a push of every run). One search here finds the same entry
    the search in turn does, in the first pack (in :attr:`PackEntries._big`'s order) that
    holds the object: equal heads are kept in pack order."""

    def __init__(self, packs: list[_IndexedPack]):
        import numpy as np

        heads = [np.frombuffer(p.heads if p.heads is not None else p._build_heads(), dtype=np.uint32) for p in packs]
        every = np.concatenate(heads)
        order = np.argsort(every, kind="stable")  # pack order kept among equal heads
        slots = np.repeat(np.arange(len(packs), dtype=np.uint32), [len(h) for h in heads])[order]
        positions = np.concatenate([np.arange(len(h), dtype=np.uint32) for h in heads])[order]
        sorted_heads = every[order]
        self._fan16 = array("Q", [0])
        self._fan16.frombytes(
            np.cumsum(np.bincount(sorted_heads >> np.uint32(16), minlength=1 << 16)).astype(np.uint64).tobytes()
        )
        self.heads = array("I", sorted_heads.tobytes())
        self.slots = array("I", slots.tobytes())
        self.positions = array("I", positions.tobytes())
        self.packs = packs

    def position(self, raw: bytes) -> tuple[int, int] | None:
        """``(slot, index position)`` of the object in the first pack that holds it, or None."""
        head = int.from_bytes(raw[:4], "big")
        lo, hi = self._fan16[head >> 16], self._fan16[(head >> 16) + 1]
        heads = self.heads
        i = bisect.bisect_left(heads, head, lo, hi)
        while i < hi and heads[i] == head:
            slot, at = self.slots[i], self.positions[i]
            if self.packs[slot]._id(at) == raw:
                return slot, at
            i += 1
        return None


class _IndexedPack:
    """A large pack: its entries found by binary search in the index file.

    Nothing is read per object when the pack is opened: a push of ten runs to a
    remote of millions of objects asks it about a few hundred ids. The tables that
    make many lookups fast are built when the lookups come (:data:`_TABLES_AFTER`).
    """

    def __init__(self, number: int, idx: mmap.mmap, data: mmap.mmap, count: int, *, base: str = ""):
        self.number, self.idx, self.data, self.count = number, idx, data, count
        self.base = base  # its path without the suffix
        self.fanout = struct.unpack_from(">256L", idx, 8)
        self.shas_at = 8 + 256 * 4
        self.crcs_at = self.shas_at + 20 * count
        self.offsets_at = self.crcs_at + 4 * count
        self._stops: array | None = None
        self.heads: array | None = None
        self._fan16 = array("Q")
        self._lookups = 0

    def _build_heads(self) -> array:
        # The first 4 bytes of every id, in the index's (sorted) order, as integers: 4 bytes
        # per object, searched by C's bisect; the whole id is compared only where they match.
        import numpy as np

        view = np.frombuffer(self.idx, dtype=np.uint8, count=20 * self.count, offset=self.shas_at)
        heads = view.reshape(self.count, 20)[:, :4].copy().view(">u4").astype(np.uint32)  # no copy of every id
        del view  # the map cannot close while a view of it lives
        # where the ids of each 2-byte prefix start: a lookup bisects ~30 ids, not the ~7,000 of a 1-byte fanout
        self._fan16 = array("Q", [0])
        self._fan16.frombytes(
            np.cumsum(np.bincount(heads.ravel() >> np.uint32(16), minlength=1 << 16)).astype(np.uint64).tobytes()
        )
        self.heads = array("I")
        assert self.heads.itemsize == 4
        self.heads.frombytes(heads.tobytes())
        return self.heads

    def _id(self, i: int) -> bytes:
        return self.idx[self.shas_at + 20 * i : self.shas_at + 20 * i + 20]

    def _position(self, raw: bytes) -> int | None:
        heads = self.heads
        if heads is None:
            first = raw[0]
            lo, hi = self.fanout[first - 1] if first else 0, self.fanout[first]
            self._lookups += 1
            if self._lookups <= _TABLES_AFTER:  # a few lookups: bisect the index's ids themselves
                i = bisect.bisect_left(range(self.count), raw, lo, hi, key=self._id)
                return i if i < hi and self._id(i) == raw else None
            heads = self._build_heads()
        head = int.from_bytes(raw[:4], "big")
        lo, hi = self._fan16[head >> 16], self._fan16[(head >> 16) + 1]  # a few dozen ids, not thousands
        i = bisect.bisect_left(heads, head, lo, hi)
        while i < hi and heads[i] == head:
            if self._id(i) == raw:
                return i
            i += 1
        return None

    def holds(self, raw: bytes) -> bool:
        return self._position(raw) is not None

    def find(self, raw: bytes) -> Where | None:
        """Where the entry of an object is (None for an absent one); it may be a delta."""
        i = self._position(raw)
        return None if i is None else self.where(i)

    def where(self, i: int) -> Where:
        """Where the entry at index position ``i`` is (a delta too: the reader tells it by its first byte)."""
        start = struct.unpack_from(">L", self.idx, self.offsets_at + 4 * i)[0]
        crc = struct.unpack_from(">L", self.idx, self.crcs_at + 4 * i)[0]
        stops = self._stops if self._stops is not None else self._build_stops()
        return self.number, start, stops[i], crc

    def starts(self, positions, *, crcs: bool = False) -> numpy.ndarray:
        """Where the entries at these index positions (a numpy array) start (with ``crcs``:
        their CRC-32s instead)."""
        import numpy as np

        view = np.frombuffer(self.idx, dtype=">u4", count=self.count, offset=self.crcs_at if crcs else self.offsets_at)
        try:
            return view[positions].astype(np.int64)
        finally:
            del view  # the map cannot close while a view of it lives

    def _build_stops(self) -> array:
        """Where each entry ends (where the next one in the pack starts), by index position:
        8 bytes per object, built when the first entry is read. A big pack's offsets are
        sorted by numpy: as Python ints they held 80 MB for 1.9 million objects."""
        end = len(self.data) - 20
        stops = array("Q")
        if self.count <= _SORT_IN_PYTHON:
            offsets = struct.unpack_from(f">{self.count}L", self.idx, self.offsets_at)
            order = sorted(range(self.count), key=offsets.__getitem__)
            stops.frombytes(bytes(8 * self.count))
            for a, b in zip(order, order[1:], strict=False):
                stops[a] = offsets[b]
            if order:
                stops[order[-1]] = end
        else:
            import numpy as np

            starts = self.starts(np.arange(self.count))
            by_start = np.argsort(starts, kind="stable")
            table = np.empty(self.count, dtype=np.uint64)
            table[by_start[:-1]] = starts[by_start[1:]]
            table[by_start[-1]] = end
            stops.frombytes(table.tobytes())
            del starts, by_start, table
        self._stops = stops
        return stops


class Marks:
    """A set of the objects of a :class:`PackEntries`, for a walk: a byte per object of
    each big pack (by the position :meth:`PackEntries.locate` gives), ids for the rest.
    1.9 million objects take 2 MB, not the 200 MB of a set of their ids."""

    def __init__(self, entries: PackEntries):
        self._bytes: list[bytearray | None] = [None] * len(entries._big)
        self._counts = [pack.count for pack in entries._big]
        self._ids: set[bytes] = set()

    def add(self, at: int, hexsha: bytes) -> bool:
        """Mark an object (``at`` from :meth:`PackEntries.locate`); False if it was marked already."""
        if not at:
            if hexsha in self._ids:
                return False
            self._ids.add(hexsha)
            return True
        at -= 1
        marks = self._bytes[at >> 32]
        if marks is None:
            marks = self._bytes[at >> 32] = bytearray(self._counts[at >> 32])
        i = at & _LOW32
        if marks[i]:
            return False
        marks[i] = 1
        return True


class Picked:
    """Objects chosen to be copied out of a :class:`PackEntries`, each once: positions in
    its big packs (8 bytes each) and the ids of the others. :meth:`stored` gives their
    stored entries in the order they lie in their packs, read a block at a time, with
    no second lookup of any id."""

    def __init__(self, entries: PackEntries):
        self.entries = entries
        self._marks = Marks(entries)
        self._positions = array("Q")
        self._ids: list[bytes] = []

    def add(self, at: int, hexsha: bytes) -> None:
        """Add an object (``at`` from :meth:`PackEntries.locate`); one added before is passed over."""
        if self._marks.add(at, hexsha):
            if at:
                self._positions.append(at)
            else:
                self._ids.append(hexsha)

    def __len__(self) -> int:
        return len(self._positions) + len(self._ids)

    def whole_packs(self) -> list[str]:
        """The big packs every object of which is picked (their paths without the suffix):
        such a pack may be copied as it is (a push or fetch of everything to an empty side)."""
        return [
            pack.base
            for pack, marks in zip(self.entries._big, self._marks._bytes, strict=False)
            if pack.base and marks is not None and pack.count and marks.count(1) == pack.count
        ]

    def ids(self) -> list[bytes]:
        """The objects' hex ids (the big packs' in position order)."""
        big = self.entries._big
        out = []
        for at in self._positions:
            at -= 1
            out.append(hexlify(big[at >> 32]._id(at & _LOW32)))
        return out + self._ids

    def stored(self, *, leave: frozenset[str] = frozenset()) -> Iterator[tuple[bytes, bytes, int]]:
        """``(raw id, stored entry, CRC-32)`` of every object, each entry checked against
        its pack index's CRC (a damaged pack raises :class:`RepositoryError`, naming the
        object); a delta is resolved and stored whole, as :meth:`PackEntries.entry` does.
        The objects of the big packs named in ``leave`` (copied whole) are left out."""
        entries = self.entries
        if len(self._positions) <= _SORT_IN_PYTHON:  # a few: numpy is not even imported
            by_slot: dict[int, list[tuple[int, int, int]]] = {}
            for at in self._positions:
                at -= 1
                pack = entries._big[at >> 32]
                if pack.base in leave:
                    continue
                i = at & _LOW32
                _number, start, _stop, crc = pack.where(i)
                by_slot.setdefault(at >> 32, []).append((start, i, crc))
            for slot, found in sorted(by_slot.items()):
                found.sort()
                yield from self._read(entries._big[slot], *map(list, zip(*found, strict=False)))
        else:
            yield from self._stored_by_numpy(leave)
        for hexsha in self._ids:
            yield entries.entry(hexsha)

    def _stored_by_numpy(self, leave: frozenset[str]) -> Iterator[tuple[bytes, bytes, int]]:
        import numpy as np

        picked = np.frombuffer(self._positions, dtype=np.uint64) - np.uint64(1)
        for slot, pack in enumerate(self.entries._big):
            if pack.base in leave:
                continue
            positions = (picked[(picked >> np.uint64(32)) == slot] & np.uint64(_LOW32)).astype(np.int64)
            if not len(positions):
                continue
            starts = pack.starts(positions)
            order = np.argsort(starts, kind="stable")
            positions, starts = positions[order], starts[order]
            del order
            yield from self._read(pack, starts, positions, pack.starts(positions, crcs=True))

    def _read(self, pack: _IndexedPack, starts, positions, crcs) -> Iterator[tuple[bytes, bytes, int]]:
        """The entries at ``positions`` of ``pack`` (in the order of their ``starts``), each
        checked against its ``crcs``."""
        entries, fd, idx, shas_at = self.entries, self.entries._fds[pack.number], pack.idx, pack.shas_at
        stops = pack._stops if pack._stops is not None else pack._build_stops()
        block, block_at, block_end = b"", 0, 0
        for first in range(0, len(positions), _SLICE):  # Python ints made a slice at a time
            last = first + _SLICE
            for i, start, crc in zip(
                _ints(positions[first:last]), _ints(starts[first:last]), _ints(crcs[first:last]), strict=False
            ):
                stop = stops[i]
                if start < block_at or stop > block_end:
                    block = os.pread(fd, max(stop - start, _BLOCK), start)
                    block_at, block_end = start, start + len(block)
                chunk = block[start - block_at : stop - block_at]
                raw = idx[shas_at + 20 * i : shas_at + 20 * i + 20]
                if (
                    not len(chunk) or zlib.crc32(chunk) != crc
                ):  # copied as stored: checked against the index's CRC first
                    raise entries._damaged(hexlify(raw), "its stored bytes fail the pack index's CRC")
                if (chunk[0] >> 4) & 7 in _DELTA_TYPES:
                    yield entries.entry(hexlify(raw))  # resolved through dulwich and stored whole
                else:
                    yield raw, chunk, crc


def _ints(values) -> list[int]:
    """A numpy array's values, or a list's, as Python ints."""
    return values if isinstance(values, list) else values.tolist()

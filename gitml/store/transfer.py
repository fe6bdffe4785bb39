"""Fast transfer between two repositories on this machine (a path or file:// remote).

dulwich's local transport re-encodes and re-indexes every object in Python. Between
two local repositories gitml instead walks from the wanted commits, stops at what the
target already has, copies the stored pack entries of the missing objects as they are
(no recompression, no re-hashing: their ids are known), writes one pack with its index
into the target, and creates new refs in one packed-refs write (see
:func:`create_refs` for why that is safe against concurrent writers).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import cast
from urllib.parse import unquote, urlparse

from dulwich.objects import ShaFile
from dulwich.pack import UnpackedObject
from dulwich.refs import DiskRefsContainer
from dulwich.repo import Repo

from gitml.errors import LockHeld, RepositoryError
from gitml.store.entries import (
    _COMMIT,
    MAX_WALKED_BYTES,
    Marks,
    PackEntries,
    Picked,
    _object_count,
    commit_header,
    peel,
)
from gitml.store.packs import _common_dir, _fsync_dir, _gitml_dir, _unretire, _write_entries
from gitml.store.perms import shared_file_mode
from gitml.store.refs import RefLister, lock_packed_refs, pack_refs, read_packed_refs, update_ref, write_packed_refs
from gitml.store.refspans import loose_names


def local_path(url: str) -> str | None:
    """The repository folder of a local remote (a path or file:// URL), else None."""
    if url.startswith("file://"):
        path = unquote(urlparse(url).path)
    elif "://" in url:
        return None
    else:
        path = url
    if os.path.isdir(os.path.join(path, "objects")) and os.path.exists(os.path.join(path, "HEAD")):
        return path  # a bare repository
    if os.path.isdir(os.path.join(path, ".git")):
        return path
    return None


def missing_objects(
    entries: PackEntries, have: Callable[[bytes], bool], wants: Iterable[bytes], *, absent: set[bytes] | None = None
) -> Picked:
    """Objects reachable from ``wants`` for which ``have`` is false; the walk stops at
    what the target has (it has everything below it). With ``absent``, the objects
    the source lacks or cannot read are put there and passed over (a fetch takes
    what there is, and refuses the refs that need the rest); otherwise they raise
    :class:`RepositoryError`. Each object is looked up once: where its entry lies is
    what the walk marks and what the copy reads."""
    out = Picked(entries)
    seen = Marks(entries)
    locate = entries.locate
    todo = list(wants)  # commits, tags and trees still to look at
    while todo:
        sha = todo.pop()
        at = locate(sha)
        if not seen.add(at, sha) or have(sha):
            continue
        try:
            if not at and absent is not None and not entries.has(sha):
                raise RepositoryError(f"object {sha.decode()} is missing")
            _type, walk, blobs = entries.links_at(at, sha)
        except RepositoryError:
            if absent is None:
                raise
            absent.add(sha)
            continue
        out.add(at, sha)
        todo.extend(walk)
        for blob in blobs:
            at = locate(blob)
            if seen.add(at, blob) and not have(blob):
                if not at and absent is not None and not entries.has(blob):
                    absent.add(blob)
                else:
                    out.add(at, blob)
    return out


def copy_objects(
    src: Repo | PackEntries,
    dst: Repo,
    wants: Iterable[bytes],
    *,
    held: PackEntries | None = None,
    absent: set[bytes] | None = None,
) -> int:
    """Copy into ``dst`` what it lacks of ``wants`` as one pack; returns the object count.
    ``src`` may be the source's entries, already read, and ``held`` the ids ``dst``
    holds (neither is closed here). ``absent`` as for :func:`missing_objects`."""
    entries = src if isinstance(src, PackEntries) else PackEntries(src)
    targets = held or PackEntries(dst, ids_only=True)
    try:
        picked = missing_objects(entries, targets.has, wants, absent=absent)
        write_picked(os.path.join(dst.object_store.path, "pack"), picked)
    finally:
        if entries is not src:
            entries.close()
        if targets is not held:
            targets.close()
    return len(picked)


def write_picked(pack_dir: str, picked: Picked) -> None:
    """Store the picked objects in ``pack_dir``: a source pack all of whose objects are
    picked (everything pushed to, or fetched into, an empty repository) is copied as it
    is, its checksums checked; the others are written as one new pack, entry by entry,
    in the source's order (distinct objects: streamed to disk)."""
    whole = [base for base in picked.whole_packs() if os.path.getsize(base + ".pack") >= WHOLE_PACK_BYTES]
    for base in whole:
        _copy_whole_pack(base, pack_dir)
    count = len(picked) - sum(_object_count(base + ".idx") for base in whole)
    if count:
        _write_entries(pack_dir, picked.stored(leave=frozenset(whole)), count)


WHOLE_PACK_BYTES = 1 << 20  # a smaller pack fully picked is rewritten with the rest: no pack per source pack


def _copy_whole_pack(base: str, pack_dir: str) -> None:
    """Copy a pack and its index as they are, in git's order (the pack first, each file
    fsynced, then the folder), after checking what checking each copied entry's CRC
    guarded against: the pack's trailing SHA-1 over every byte read, the index's over
    its own, and the index naming that pack. Its entries are git's to read as they were
    (a git pack holds no delta to an object outside it)."""
    common = _common_dir(pack_dir)
    tmp = os.path.join(
        _gitml_dir(pack_dir, "tmp"), f"tmp_gitml_{os.getpid()}_{threading.get_ident()}_{os.urandom(6).hex()}"
    )
    mode = shared_file_mode(common, 0o444)
    try:
        sums = {}
        for suffix in (".pack", ".idx"):
            digest, tail = hashlib.sha1(), b""
            with open(base + suffix, "rb") as src, open(tmp + suffix, "wb") as out:
                while piece := src.read(1 << 20):
                    out.write(piece)
                    data = tail + piece  # the last 20 bytes are the checksum, not hashed
                    digest.update(data[:-20])
                    tail = data[-20:]
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), mode)
            if len(tail) < 20 or digest.digest() != tail:
                raise RepositoryError(
                    f"pack {base}{suffix} is damaged (its checksum does not match); `git fsck` shows the extent"
                )
            sums[suffix] = tail
        with open(tmp + ".idx", "rb") as f:
            f.seek(-40, os.SEEK_END)
            if f.read(20) != sums[".pack"]:
                raise RepositoryError(f"the index {base}.idx is not the index of its pack; `git fsck` shows the extent")
        target = os.path.join(pack_dir, f"pack-{sums['.pack'].hex()}")
        if os.path.exists(target + ".idx"):
            _unretire(pack_dir, target)
            return
        os.replace(tmp + ".pack", target + ".pack")
        os.replace(tmp + ".idx", target + ".idx")
        _fsync_dir(pack_dir)
    finally:
        for suffix in (".pack", ".idx"):
            if os.path.exists(tmp + suffix):
                os.unlink(tmp + suffix)


def malformed_refs(entries: PackEntries, dst: Repo, refs: dict[bytes, bytes]) -> dict[bytes, str]:
    """``{ref: why}`` for the refs whose objects ``dst`` lacks include one that git's
    fsck would refuse, as checked by dulwich's parsing (``check()``: headers in
    order, identities with an e-mail, valid ids, tree entry names, modes and
    order). What a repository with ``receive.fsckObjects`` refuses a push of."""
    with PackEntries(dst, ids_only=True) as held:
        bad = {
            sha: why
            for sha in missing_objects(entries, held.has, refs.values()).ids()
            if (why := _malformed(entries, sha))
        }
        if not bad:
            return {}
        out = {}
        for ref, new in refs.items():
            hit = next((sha for sha in missing_objects(entries, held.has, [new]).ids() if sha in bad), None)
            if hit is not None:
                out[ref] = f"object {hit.decode()} is malformed ({bad[hit]})"
        return out


def _malformed(entries: PackEntries, sha: bytes) -> str | None:
    type_num, raw = entries.raw(sha)
    try:
        ShaFile.from_raw_string(type_num, raw).check()
    except Exception as e:  # noqa: BLE001 - dulwich's parsing raises format, value and index errors
        return " ".join(str(e).split())[:200] or type(e).__name__
    return None


def pack_to_send(
    entries: PackEntries, wants: Iterable[bytes], haves: Iterable[bytes]
) -> tuple[int, Iterator[UnpackedObject]]:
    """The pack a push sends to a remote holding ``haves``: ``(count, records)``
    for dulwich's ``send_pack`` (``entries`` must stay open until they are sent).

    What the remote holds is taken as git's push does: every commit reachable
    from its refs, and every tree and blob of the commits where the new history
    meets those. The records carry the stored pack entries as they are, grouped
    into large chunks: dulwich writes each chunk with its own system call.
    """
    wants = list(wants)
    had, boundary = _split_history(entries, wants, haves)
    present = set(had) | {sha for sha in haves if entries.has(sha)}  # tags among the haves too
    for commit in boundary:
        _mark_tree(entries, entries.links(commit)[1][0], present)
    picked = missing_objects(entries, present.__contains__, wants)
    return len(picked), _records(picked.stored())


def _split_history(
    entries: PackEntries, wants: Iterable[bytes], haves: Iterable[bytes]
) -> tuple[set[bytes], set[bytes]]:
    """Which commits the remote has, found as git's revision walk finds them: newest
    first from both sides, marking what the remote's tips reach, and stopping once
    only such commits are left, so a long shared history is not walked. Returns the
    commits known to be on the remote that the walk met, and those of them where the
    new history meets the remote's (their trees are there too).

    A commit is only ever marked as the remote's when it is reachable from one of
    the remote's tips; a clock skew can at worst make the push send objects the
    remote already has.
    """
    info: dict[bytes, tuple[int, list[bytes]]] = {}  # commit -> (commit time, parents here)
    remote: set[bytes] = set()
    heap: list[tuple[int, bytes]] = []
    new: set[bytes] = set()

    def queue(sha: bytes, theirs: bool) -> None:
        if theirs:
            if sha in remote:
                return
            remote.add(sha)
        elif sha in info:
            return
        if sha not in info:
            found = _commit_info(entries, sha)
            if found is None:
                return
            info[sha] = found
        heapq.heappush(heap, (-info[sha][0], sha))

    for sha in _commits(entries, haves):
        queue(sha, True)
    for sha in _commits(entries, wants):
        queue(sha, False)
    pops = 0
    while heap:
        pops += 1
        if pops % 64 == 0 and all(sha in remote for _, sha in heap):
            break  # what is left is the remote's: its history need not be walked
        _, sha = heapq.heappop(heap)
        theirs = sha in remote
        if not theirs:
            new.add(sha)
        for parent in info[sha][1]:
            queue(parent, theirs)
    new -= remote
    boundary = {parent for sha in new for parent in info[sha][1] if parent in remote}
    return remote, boundary


def _commits(entries: PackEntries, shas: Iterable[bytes]) -> list[bytes]:
    """The commits that ``shas`` name (annotated tags followed), those held here. A tag
    or commit over ``MAX_WALKED_BYTES`` (a zlib bomb a plain ``git fetch`` took) is not
    followed, and not inflated: the push then sends more, never less."""

    def read(sha: bytes) -> tuple[int, bytes] | None:
        try:
            return entries.raw(sha, limit=MAX_WALKED_BYTES) if entries.has(sha) else None
        except RepositoryError:
            return None

    return [found[0] for found in (peel(sha, read) for sha in shas) if found is not None and found[1] == _COMMIT]


def _commit_info(entries: PackEntries, sha: bytes) -> tuple[int, list[bytes]] | None:
    """``(commit time, parents held here)`` of a commit; None for anything else."""
    if not entries.has(sha):
        return None
    type_num, raw = entries.raw(sha)
    if type_num != _COMMIT:
        return None
    when, parents, _ = commit_header(raw)
    return when, [p for p in parents if entries.has(p)]


def _mark_tree(entries: PackEntries, tree: bytes, present: set[bytes]) -> None:
    todo = [tree]
    while todo:
        sha = todo.pop()
        if sha in present:
            continue
        present.add(sha)
        _type, walk, blobs = entries.links(sha)
        todo.extend(walk)
        present.update(blobs)


def _records(stored: Iterator[tuple[bytes, bytes, int]], chunk_bytes: int = 256 << 10) -> Iterator[UnpackedObject]:
    """One record per stored entry. The entries' bytes are gathered into pieces of
    ``chunk_bytes`` that ride on the first record of their group (the others carry
    none: the stream is the same). Pieces stay small because a smart-HTTP push sends
    each as one HTTP chunk, and servers cap those (dulwich's at 1 MiB)."""
    batch: list[UnpackedObject] = []
    data = bytearray()
    for raw, chunk, _crc in stored:
        record = UnpackedObject(0, sha=raw)  # the type is never looked at: the bytes are given
        record.comp_chunks = []
        batch.append(record)
        data += chunk
        if len(data) >= chunk_bytes:
            batch[0].comp_chunks = _pieces(data, chunk_bytes)
            yield from batch
            batch, data = [], bytearray()
    if batch:
        batch[0].comp_chunks = _pieces(data, chunk_bytes)
        yield from batch


def _pieces(data: bytearray, size: int) -> list[bytes]:
    return [bytes(data[i : i + size]) for i in range(0, len(data), size)]


def create_refs(repo: Repo, refs: dict[bytes, bytes], *, wait: float = 5.0) -> dict[bytes, bool]:
    """Create refs that must not exist yet, in one packed-refs write.

    Creating a thousand lock files costs more than the whole rest of a push on
    a busy disk, so no per-ref lock is taken: the refs are written under the
    packed-refs lock (which every packer holds too), and each is checked
    afterwards. A writer of a loose ref takes that ref's lock and only then
    reads the ref (git and dulwich both do), so any writer racing with this one
    is either seen by its lock or loose file after the write, or sees the
    packed value and does not create the ref. A ref that already existed, that
    clashes with an existing ref's path (``a`` against ``a/b``), or that
    another writer created meanwhile is reported ``False``; the loose ref then
    shadows the packed line, as git reads it. Returns ``{ref: created}``.
    """
    container = repo.refs
    done: dict[bytes, bool] = {}
    if not refs:
        return done
    if len(refs) <= LOOSE_AT_MOST and _packed_size(repo.commondir()) >= LOOSE_WHEN_PACKED:
        return _create_loose(repo.commondir(), refs, wait)
    with lock_packed_refs(repo.commondir()) as f:
        packed = read_packed_refs(repo.commondir())
        existing = _RefPaths(repo, packed)
        for ref, sha in sorted(refs.items()):
            if existing.taken(ref):
                done[ref] = False
            else:
                packed[ref] = sha
                existing.add(ref)
                done[ref] = True
        write_packed_refs(f, packed)
    after = _Folders()  # listed after the write: a writer holding a ref's lock then is seen
    for ref, created in done.items():
        path = cast(DiskRefsContainer, container).refpath(ref)
        if created and (after.has(path) or after.has(path + b".lock")):
            done[ref] = _still_ours(path, refs[ref], wait)
    return done


LOOSE_AT_MOST = 32  # refs created as loose files (as git's receive-pack does) when there are this few ...
LOOSE_WHEN_PACKED = 1 << 20  # ... and packed-refs is this large (about 10,000 refs): its rewrite costs more


PACK_LOOSE_AFTER = 1024  # loose refs a push leaves on a repository of this machine before it packs them


def pack_many_loose(commondir: str, prefix: str) -> int:
    """Pack the loose refs under ``prefix`` once there are ``PACK_LOOSE_AFTER``: the few
    refs each push writes loose would pile up on a remote nothing packs (git's
    receive-pack has ``gc --auto`` pack them; a push to a path runs no receive-pack),
    and each loose ref costs every later push a look."""
    names = [name for name in loose_names(commondir, (prefix,)) if not name.endswith(b".lock")]
    if len(names) < PACK_LOOSE_AFTER:
        return 0
    try:
        return pack_refs(commondir, names)
    except (OSError, RepositoryError):
        return 0  # another packer holds packed-refs: it packs them, or the next push does


def _packed_size(commondir: str) -> int:
    try:
        return os.path.getsize(os.path.join(commondir, "packed-refs"))
    except FileNotFoundError:
        return 0


def _create_loose(commondir: str, refs: dict[bytes, bytes], wait: float) -> dict[bytes, bool]:
    """A few new refs as loose files, each under its own lock as git writes it, so
    that adding ten runs to a remote of 100,000 does not rewrite its packed-refs.
    A ref is not created (False) when it exists (loose or packed), a ref is its
    parent or child path, or a writer held its lock for ``wait`` s."""
    lister = RefLister(commondir)
    try:
        with open(os.path.join(commondir, "packed-refs"), "rb") as f:
            packed = f.read()
    except FileNotFoundError:
        packed = b""
    done: dict[bytes, bool] = {}
    for ref, sha in sorted(refs.items()):
        parts = ref.split(b"/")
        parents = [b"/".join(parts[:i]) for i in range(2, len(parts))]
        if any(os.path.isfile(os.path.join(commondir, *os.fsdecode(p).split("/"))) for p in parents) or (
            b" " + ref + b"/" in packed
        ):
            done[ref] = False  # a parent is a loose ref, or a packed ref lies below this name
            continue
        deadline = time.monotonic() + wait
        while True:
            try:
                done[ref] = update_ref(commondir, ref, None, sha, lister.packed_ref)
                break
            except LockHeld:
                if time.monotonic() > deadline:
                    done[ref] = False
                    break
                time.sleep(0.005)
            except (RepositoryError, NotADirectoryError, FileExistsError):
                done[ref] = False  # a packed parent (update_ref names it), or a file in the way
                break
    return done


class _Folders:
    """Which names ref folders hold, each folder listed once when first asked: a
    ``lexists`` per ref cost two system calls for each of 100,000 new refs."""

    def __init__(self) -> None:
        self._names: dict[bytes, set[bytes]] = {}

    def has(self, path: bytes) -> bool:
        """Whether something (a file, a folder, a link) is at ``path``, as its folder was listed."""
        folder, name = os.path.split(path)
        names = self._names.get(folder)
        if names is None:
            try:
                names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            self._names[folder] = names
        return name in names


def _parents(name: bytes) -> Iterator[bytes]:
    """``a``, ``a/b`` for ``a/b/c``."""
    i = name.find(b"/")
    while i >= 0:
        yield name[:i]
        i = name.find(b"/", i + 1)


class _RefPaths:
    """Whether a new ref name is free: not a ref, and no ref is its parent or child."""

    def __init__(self, repo: Repo, packed: dict[bytes, bytes]):
        self.repo = repo
        self.names = set(packed)
        folders = {name[: name.rfind(b"/")] for name in packed if b"/" in name}  # a few dozen: their parents after
        self.parents = {parent for folder in folders for parent in _parents(folder + b"/")}
        self._files: dict[bytes, bool] = {}
        self._folders = _Folders()

    def taken(self, ref: bytes) -> bool:
        if ref in self.names or ref in self.parents:
            return True
        path = cast(DiskRefsContainer, self.repo.refs).refpath(ref)
        if self._folders.has(path) or self._folders.has(path + b".lock"):
            return True  # a loose ref, a folder of refs, or a writer at work
        parts = ref.split(b"/")
        for i in range(2, len(parts)):
            parent = b"/".join(parts[:i])
            if parent in self.names or self._is_file(parent):
                return True
        return False

    def add(self, ref: bytes) -> None:
        self.names.add(ref)
        self.parents.update(_parents(ref))

    def _is_file(self, name: bytes) -> bool:
        if name not in self._files:
            self._files[name] = os.path.isfile(cast(DiskRefsContainer, self.repo.refs).refpath(name))
        return self._files[name]


def _still_ours(path: bytes, sha: bytes, wait: float) -> bool:
    """After the packed write: False if a loose ref of another value shadows ours
    (waiting up to ``wait`` s for a writer holding the ref's lock to finish)."""
    lock = path + b".lock"
    deadline = time.monotonic() + wait
    while os.path.exists(lock) and time.monotonic() < deadline:
        time.sleep(0.005)
    if os.path.exists(lock):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(41).rstrip(b"\n") == sha
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        return False

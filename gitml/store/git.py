"""GitStore: one repository's objects and refs, through dulwich.

Writes go into packs (:mod:`gitml.store.packs`); ref updates are
compare-and-swap; reads are cached by object id (objects never change).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import threading
import time
from binascii import unhexlify
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, cast

from dulwich.config import ConfigFile
from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo, UnsupportedExtension, UnsupportedVersion, read_gitfile

from gitml.errors import CorruptRecordError, LockHeld, RemoteError, RepositoryError, UnsupportedRepositoryError
from gitml.store.ids import oid, refname
from gitml.store.locks import holder, release_if_dead
from gitml.store.packs import (
    KEEP_MARK,
    GitObject,
    RawObject,
    maybe_merge_small_packs,
    release_keep,
    settle,
    sha_of,
    write_pack,
)
from gitml.store.refs import RefLister, pack_refs, parallel_map, racy_seconds, update_ref

log = logging.getLogger("gitml")

FALLBACK_STORE = "gitml-runs"
TREE_MODE = 0o040000
FILE_MODE = 0o100644


class Identity(NamedTuple):
    name: str
    email: str

    def as_bytes(self) -> bytes:
        return f"{self.name} <{self.email}>".encode()


@dataclass
class Head:
    commit: bytes | None
    branch: str | None


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class GitStore:
    """A git repository as gitml uses it. Create with :func:`open_store`."""

    def __init__(self, repo: Repo, *, fallback: bool = False):
        self.repo = repo
        self.fallback = fallback
        # a linked work tree (git worktree) has its own HEAD and index in its
        # control folder; objects, refs and gitml's files are in the common one
        self.controldir = os.path.normpath(repo.controldir())
        self.commondir = os.path.normpath(repo.commondir())
        self.workdir = None if repo.bare else repo.path
        self.gitml_dir = os.path.join(self.commondir, "gitml")
        self.pack_dir = os.path.join(self.commondir, "objects", "pack")
        self._trees = _LRU(4096)
        self._blobs = _LRU(4096)
        self._written = _LRU(8192)
        self._commits = _LRU(1024)
        self._present: set[bytes] = set()  # objects seen stored (young objects are never pruned)
        self._writes = 0
        self._lock = threading.RLock()
        self._identity: Identity | None = None
        self._refs = RefLister(self.commondir)
        self._kept: list[tuple[str, int, float]] = []  # packs written with a .keep: (base, thread, time)
        self._head_memo: tuple[tuple | None, Head, bytes | None] | None = None  # (stamp, HEAD, its ref): head()

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        self.release_kept(every=True)
        self.repo.close()

    def __enter__(self) -> GitStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def private_path(self, *parts: str) -> str:
        """A path under ``.git/gitml/`` (created on demand)."""
        path = os.path.join(self.gitml_dir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    # -- objects ---------------------------------------------------------
    def write(self, objects: list[GitObject]) -> str | None:
        """Store objects as one pack; merge small packs when there are too many. Returns the
        pack's base path (None when nothing was written), for :meth:`release_kept`."""
        if not objects:
            return None
        triples = [sha_of(o) for o in objects]
        try:  # unique temporary names: safe across threads
            base = write_pack(self.pack_dir, triples, keep=True)  # kept from `git gc` until a ref reaches it
        except OSError as e:
            raise RepositoryError(f"could not write a pack in {self.pack_dir}: {e.strerror or e}") from e
        if base is not None:
            with self._lock:
                self._kept.append((base, threading.get_ident(), time.monotonic()))
        written = self._written
        for sha, type_num, raw in triples:
            if len(raw) < 1 << 20:
                written[sha] = (type_num, raw)
            else:
                self._present.add(sha)
        while len(written) > written.size:  # (an LRU's put per object was a tenth of a run's write)
            written.popitem(last=False)
        self._writes += 1
        if self._writes % 8 == 1:  # the first write of every process too: most processes make one run
            try:
                maybe_merge_small_packs(self.pack_dir, self.private_path("repack.lock"))
            except OSError as e:  # housekeeping must never fail a write
                log.warning("gitml: could not merge small packs: %s", e)
        return base

    def settle_packs(self) -> tuple[int, int]:
        """At the end of a process that wrote many packs, once every ref it moved is in
        place: roll its small packs up and delete the packs it merged away
        (:func:`gitml.store.packs.settle`). Returns ``(packs merged, packs deleted)``."""
        self.release_kept(every=True)
        return settle(self.pack_dir, self.private_path("repack.lock"))

    def release_kept(self, bases: list[str | None] | None = None, *, every: bool = False) -> None:
        """Remove the ``.keep`` files of the packs this thread wrote (``bases``: of those
        packs, as :meth:`write` returned them; call once a ref reaches their objects), and
        of any written over a minute ago. The committer names its packs: it writes the next
        batch's pack while the refs of the last one still move."""
        me, old = threading.get_ident(), time.monotonic() - 60
        named = None if bases is None else {b for b in bases if b}
        with self._lock:
            done = [k for k in self._kept if every or (k[1] == me if named is None else k[0] in named) or k[2] < old]
            self._kept = [k for k in self._kept if k not in done]
        for base, _, _ in done:
            release_keep(base)

    def drop_stale_temporaries(self, older_than: float) -> int:
        """Delete the half-written packs a killed process left (``tmp_gitml_*``) and the
        ``.keep`` files it did not release, from before ``older_than`` (a time);
        returns how many files."""
        dropped = 0
        tmp_dir = os.path.join(self.gitml_dir, "tmp")
        for folder in (self.pack_dir, tmp_dir):
            for name in os.listdir(folder) if os.path.isdir(folder) else []:
                path = os.path.join(folder, name)
                try:
                    if os.stat(path).st_mtime >= older_than:
                        continue
                    if name.endswith(".keep"):
                        with open(path, "rb") as f:
                            if f.read(len(KEEP_MARK) + 1) != KEEP_MARK:
                                continue  # git's or the user's
                    elif not name.startswith("tmp_gitml_"):
                        continue
                    os.unlink(path)
                    dropped += 1
                except FileNotFoundError:
                    pass
        return dropped

    def contains(self, sha: bytes) -> bool:
        """Whether the repository holds this object (no lookup for what this process wrote)."""
        if sha in self._written or sha in self._present:
            return True
        from gitml.store.entries import holds

        with self._lock:
            found = holds(self.repo, sha)
        if found:
            if len(self._present) > 1 << 20:
                self._present.clear()
            self._present.add(sha)
        return found

    def remember(self, tree: Tree) -> None:
        """Make an unwritten tree readable (to build on it without storing it)."""
        self._trees.put(tree.id, _tree_dict(tree))

    def raw(self, sha: bytes) -> tuple[int, bytes]:
        hit = self._written.get(sha)
        if hit is not None:
            return hit
        try:
            with self._lock:  # dulwich's object store is not thread-safe
                try:
                    return self.repo.object_store.get_raw(oid(sha))
                except KeyError:
                    # as git's reprepare_packed_git: packs came and went (another process merged
                    # them, `git gc` ran) faster than dulwich's bounded rescans: forget every pack
                    # and look again once
                    try:
                        self.repo.object_store.close()
                    except BufferError:  # a view of a pack's memory map is still alive: rescan only
                        pass
                    return self.repo.object_store.get_raw(oid(sha))
        except KeyError:
            reason = "object is missing from the repository"
            try:
                if self._from_promisor(sha):  # a partial clone: the remote it came from holds it
                    return self.raw(sha)
            except RemoteError as e:  # it would not give it, named
                reason = f"object is missing from the repository (a partial clone); {e}"
        except Exception as e:  # noqa: BLE001 - a damaged pack: zlib, delta or struct errors from dulwich
            reason = f"object is damaged in its pack ({type(e).__name__}: {e}); `git fsck` shows the extent"
        # raised here, outside the handler: the traceback of dulwich's error holds views of its
        # memory-mapped pack, and closing the repository while they live fails (BufferError)
        raise CorruptRecordError(sha.decode(), reason)

    def peel(self, sha: bytes, *, missing_ok: bool = False) -> tuple[bytes, int] | None:
        """``(id, type number)`` of what ``sha`` names, annotated tags followed
        (:func:`gitml.store.entries.peel`); None for a chain of tags too long to follow,
        and with ``missing_ok`` for an object on the way that is not here. An object that is
        missing (without ``missing_ok``) or damaged raises as :meth:`raw` does; one over
        ``MAX_WALKED_BYTES`` (a zlib bomb a plain ``git fetch`` took) raises
        CorruptRecordError before it is inflated."""
        from gitml.store.entries import MAX_WALKED_BYTES, peel

        def read(sha: bytes) -> tuple[int, bytes] | None:
            if missing_ok and not self.contains(sha):
                return None
            return self._raw_within(sha, MAX_WALKED_BYTES, f"object {sha.decode()}")

        return peel(sha, read)

    def _from_promisor(self, sha: bytes) -> bool:
        """Fetch a missing object from a partial clone's promisor remote (``git clone
        --filter=blob:none``), as git does on demand; whether it is here now."""
        from gitml.store.promisor import fetch_missing

        with self._lock:
            if not fetch_missing(self.repo, [sha]):
                return False
            try:
                self.repo.object_store.close()  # look at the new pack
            except BufferError:
                pass
            return oid(sha) in self.repo.object_store

    def is_shallow(self) -> bool:
        """Whether this is a shallow clone (``git clone --depth N``): history is cut there."""
        return os.path.exists(os.path.join(self.commondir, "shallow"))

    def first_parent(self, commit: Commit) -> bytes | None:
        """A commit's first parent; None for a root commit, and for a parent a shallow clone
        does not hold (its history is cut there, as git reads it: a run fetched into a
        ``--depth 1`` clone may name a source commit the clone never had)."""
        if not commit.parents:
            return None
        parent = commit.parents[0]
        if self.is_shallow() and not self.contains(parent):
            return None
        return parent

    def raw_many(self, shas: list[bytes], limit: int | None = None) -> dict[bytes, tuple[int, bytes]]:
        """Many objects at once, read through one index of every pack: gitml writes many
        small packs and dulwich searches them one by one for each object (2,000 registry
        tags in 360 packs: 30 s one by one, 0.1 s this way). Objects it cannot read this
        way are read one by one."""
        from gitml.store.entries import PackEntries

        out: dict[bytes, tuple[int, bytes]] = {}
        todo = []
        for sha in shas:
            hit = self._written.get(sha)
            if hit is not None:
                out[sha] = hit
            else:
                todo.append(sha)
        if len(todo) > 16:
            with self._lock, PackEntries(self.repo) as entries:
                for sha in todo:
                    try:
                        out[sha] = entries.raw(sha, limit=limit)
                    except (RepositoryError, KeyError):
                        pass
        for sha in todo:
            if sha not in out:
                if limit is not None:
                    self.bounded(sha, limit, sha.decode())
                out[sha] = self.raw(sha)
        return out

    def size(self, sha: bytes) -> int | None:
        """The size of an object's content as stored, without inflating it (None: unknown;
        see :func:`gitml.store.entries.object_size`)."""
        hit = self._written.get(sha)
        if hit is not None:
            return len(hit[1])
        from gitml.store.entries import object_size

        with self._lock:
            return object_size(self.repo, sha)

    def _raw_within(self, sha: bytes, limit: int, what: str) -> tuple[int, bytes]:
        """:meth:`raw`, refused (CorruptRecordError naming ``what``) over ``limit`` bytes
        before it is inflated: one search of the packs for both (:func:`entries.raw_within`)."""
        from gitml.store.entries import raw_within

        hit = self._written.get(sha)
        if hit is None:
            with self._lock:
                found = raw_within(self.repo, sha, limit)
            if isinstance(found, int):
                raise CorruptRecordError(what, f"{found} bytes, over the limit of {limit} (not read)")
            if found is not None:
                return found
        self.bounded(sha, limit, what)  # loose, a partial clone's, or unreadable: measured on its own
        return self.raw(sha)

    def _cost(self, sha: bytes) -> int | None:
        """The most bytes reading an object inflates at once (a delta's: along its chain,
        :func:`gitml.store.entries.read_cost`); None when unknown."""
        hit = self._written.get(sha)
        if hit is not None:
            return len(hit[1])
        from gitml.store.entries import read_cost

        with self._lock:
            cost = read_cost(self.repo, sha)
        return None if cost is None else cost.peak

    def bounded(self, sha: bytes, limit: int, what: str) -> None:
        """Raise CorruptRecordError naming ``what`` when object ``sha`` is over ``limit``
        bytes, before it is inflated: what a teammate pushes may be a zlib bomb (a few
        megabytes of pack making gigabytes of one record file), or a delta of a huge base."""
        size = self._cost(sha)
        if size is None and not self.contains(sha):  # a partial clone's: fetched (bounded) to be measured first
            try:
                if self._from_promisor(sha):
                    size = self._cost(sha)
            except RemoteError:
                pass  # the read that follows says why it cannot be had
        if size is not None and size > limit:
            raise CorruptRecordError(what, f"{size} bytes, over the limit of {limit} (not read)")

    def blob(self, sha: bytes, limit: int | None = None, what: str | None = None) -> bytes:
        """A blob's content; with ``limit``, refused (CorruptRecordError naming ``what``)
        when larger, before it is inflated."""
        data = self._blobs.get(sha)
        if data is None:
            type_num, data = self.raw(sha) if limit is None else self._raw_within(sha, limit, what or sha.decode())
            if type_num != Blob.type_num:
                raise CorruptRecordError(sha.decode(), "expected a blob")
            if len(data) < 1 << 20:
                self._blobs.put(sha, data)
        return data

    def tree(self, sha: bytes) -> dict[bytes, tuple[int, bytes]]:
        """A tree as ``{name: (mode, sha)}``."""
        entries = self._trees.get(sha)
        if entries is None:
            type_num, raw = self.raw(sha)
            if type_num != Tree.type_num:
                raise CorruptRecordError(sha.decode(), "expected a tree")
            entries = _tree_dict(cast(Tree, Tree.from_raw_string(Tree.type_num, raw, oid(sha))))
            self._trees.put(sha, entries)
        return entries

    def commit(self, sha: bytes) -> Commit:
        commit = self._commits.get(sha)
        if commit is None:
            from gitml.store.entries import MAX_WALKED_BYTES

            type_num, raw = self._raw_within(sha, MAX_WALKED_BYTES, f"commit {sha.decode()}")  # a plain git fetch's too
            if type_num != Commit.type_num:
                raise CorruptRecordError(sha.decode(), "expected a commit")
            commit = cast(Commit, Commit.from_raw_string(Commit.type_num, raw, oid(sha)))
            self._commits.put(sha, commit)
        return commit

    def lookup(self, tree_sha: bytes, path: str) -> tuple[int, bytes] | None:
        """``(mode, sha)`` of ``path`` inside a tree, or None."""
        mode, sha = TREE_MODE, tree_sha
        for part in path.split("/"):
            if mode != TREE_MODE:
                return None
            entry = self.tree(sha).get(part.encode())
            if entry is None:
                return None
            mode, sha = entry
        return mode, sha

    def files(self, tree_sha: bytes, prefix: str = "") -> dict[str, tuple[int, bytes]]:
        """Every file below a tree, as ``{path: (mode, sha)}``."""
        out = {}
        for name, (mode, sha) in self.tree(tree_sha).items():
            path = prefix + name.decode("utf-8", "surrogateescape")
            if mode == TREE_MODE:
                out.update(self.files(sha, path + "/"))
            else:
                out[path] = (mode, sha)
        return out

    # -- refs ------------------------------------------------------------
    def ref(self, name: bytes) -> bytes | None:
        """The id the ref ``name`` holds, None when there is no such ref. A ref under
        ``refs/`` is read as git reads it (its loose file, else packed-refs, parsed once
        per change of the file, not once per process with a name check per line as
        dulwich does: 2 s at 100,000 runs); symbolic refs and ``HEAD`` through dulwich."""
        if name.startswith(b"refs/"):
            with self._lock:
                found = self._refs.read(name)
            if found is not False:
                return found if isinstance(found, bytes) else None
        try:
            return self.repo.refs[refname(name)]
        except KeyError:
            return None

    def cas(self, name: bytes, old: bytes | None, new: bytes, *, timeout: float = 30.0) -> bool:
        """Set ``name`` to ``new`` if it still points at ``old`` (None: absent).

        Returns False when another writer moved the ref first. Waits, with
        back-off, while another writer holds the ref's lock; a lock left by a
        gitml process that died is removed; any other, after ``timeout`` s,
        raises :class:`RepositoryError` naming it.
        """
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                return update_ref(self.commondir, name, old, new, self._packed_ref, self._packed_refs)
            except LockHeld as held:
                if delay >= 0.05 and release_if_dead(held.lock, self.commondir):
                    continue
                if time.monotonic() > deadline:
                    raise RepositoryError(
                        f"ref {name.decode()} stayed locked for {timeout:.0f} s: {held.lock} exists; "
                        f"{holder(held.lock, self.commondir)}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def cas_many(self, updates: list[tuple[bytes, bytes | None, bytes]]) -> list[bool | Exception]:
        """:meth:`cas` of many refs ``(name, old, new)``, on threads: each ref is still
        written under its lock and fsynced before its rename, but the fsyncs overlap (one
        at a time, they were half of the committer's time in W2). For each ref, whether
        it moved, or the error its update raised."""

        def one(update: tuple[bytes, bytes | None, bytes]) -> bool | Exception:
            try:
                return self.cas(*update)
            except Exception as e:  # noqa: BLE001 - the caller gives it to the run it belongs to
                return e

        return [one(u) for u in updates] if len(updates) < 2 else parallel_map(one, updates)

    def _packed_ref(self, name: bytes) -> bytes | None:
        with self._lock:
            return self._refs.packed_ref(name)

    def _packed_refs(self, names: list[bytes]) -> list[bytes | None]:
        with self._lock:
            return self._refs.packed_refs(names)

    def delete_ref(self, name: bytes, old: bytes) -> bool:
        return self.repo.refs.remove_if_equals(refname(name), oid(old))

    def refs_under(
        self, prefix: str, *, shared: bool = False, names: re.Pattern[bytes] | None = None
    ) -> dict[bytes, bytes]:
        """Every ref below ``prefix`` (e.g. ``refs/gitml/runs/``) → commit id. ``shared``:
        the same dict as the last call's while no ref under ``prefix`` changed (do not
        modify it), so a caller can reuse what it derived from it. ``names``: only refs
        whose whole name this pattern matches (shared)."""
        with self._lock:
            return self._refs.listing(prefix, names) if shared or names else self._refs.under(prefix)

    def listing_and_state(self, prefix: str, names: re.Pattern[bytes]) -> tuple[dict[bytes, bytes], bytes, set[bytes]]:
        """:meth:`refs_under` (shared, ``names``), with what it was made of: the sha256 of
        ``packed-refs`` and the names of the loose refs (see :meth:`refs_state`)."""
        with self._lock:
            listing = self._refs.listing(prefix, names)
            return listing, self._refs.listed_digest(), self._refs.loose

    def refs_state(self, prefix: str, names: re.Pattern[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
        """What a listing of ``prefix`` would be made of, without making it: the sha256 of
        ``packed-refs`` and the loose refs ``names`` matches (:meth:`RefLister.state`)."""
        with self._lock:
            return self._refs.state(prefix, names)

    def refs_parts(
        self, prefix: str, names: re.Pattern[bytes] | None = None
    ) -> tuple[bytes, bytes, dict[bytes, bytes]]:
        """``packed-refs`` as read now, its sha256, and the loose refs under ``prefix``
        (``names`` matches): the parts a listing is made of (:meth:`RefLister.parts`)."""
        with self._lock:
            return self._refs.parts(prefix, names)

    def packed_refs_listing(self, prefix: str, names: re.Pattern[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
        """The sha256 of ``packed-refs`` and its refs under ``prefix`` that ``names`` matches."""
        with self._lock:
            return self._refs.packed_listing(prefix, names)

    def packed_ref(self, name: bytes) -> bytes | None:
        """The id ``packed-refs`` gives ``name`` (found by bisecting it), None if no line does."""
        return self._packed_ref(name)

    def refs_with_tail(self, prefix: str, start: bytes) -> dict[bytes, bytes]:
        """The refs ``prefix<folder>/<name>`` whose ``<name>`` starts with ``start``, found
        without listing every ref (see :meth:`RefLister.with_tail`); names unchecked."""
        with self._lock:
            return self._refs.with_tail(prefix, start)

    def refresh_refs(self) -> None:
        """Forget cached ref listings (after refs were written by another Repo object)."""
        self._refs = RefLister(self.commondir)

    def pack_refs(self, names: list[bytes]) -> int:
        """Move these loose refs into packed-refs (as ``git pack-refs``)."""
        with self._lock:
            return pack_refs(self.commondir, names)

    # -- work tree and identity -----------------------------------------
    def config(self):
        """git's configuration as git reads it: the repository's, the user's, the system's."""
        return self.repo.get_config_stack()

    def symbolic_target(self, name: bytes) -> bytes | None:
        """The ref a symbolic ref (``refs/remotes/origin/HEAD``) names, None when ``name``
        is no symbolic ref."""
        try:
            chain, _ = self.repo.refs.follow(refname(name))
        except (KeyError, OSError, ValueError):
            return None
        return chain[-1] if len(chain) > 1 else None

    def remote_names(self) -> list[str]:
        """The remotes of the repository's own config (``[remote "<name>"]``), sorted."""
        config = self.repo.get_config()
        return sorted(s[1].decode(errors="replace") for s in config.sections() if len(s) == 2 and s[0] == b"remote")

    def head(self) -> Head:
        """HEAD's commit and branch: read again only when ``HEAD``, the branch's loose ref or
        ``packed-refs`` changed (git replaces each by a rename), or changed too recently to
        trust their stat data; reading them through dulwich was a tenth of ``start_run`` (W2)."""
        memo = self._head_memo
        target = memo[2] if memo is not None else None
        stamp = self._head_stamp(target)  # taken before reading: a change after it shows next time
        if memo is not None and stamp is not None and memo[0] == stamp:
            return memo[1]
        try:
            chain, sha = self.repo.refs.follow(refname(b"HEAD"))
        except (KeyError, OSError):
            return Head(None, None)
        branch = None
        if len(chain) > 1 and chain[-1].startswith(b"refs/heads/"):
            branch = chain[-1][len(b"refs/heads/") :].decode()
        if sha is not None:
            try:
                self.commit(sha)
            except CorruptRecordError:
                sha = None
        head = Head(sha, branch)
        read_target = chain[-1] if len(chain) == 2 else None
        if len(chain) <= 2 and read_target == target and stamp is not None:
            self._head_memo = (stamp, head, target)
        else:  # stamped for another branch (or a longer chain): the next call stamps this one
            self._head_memo = (None, head, read_target)
        return head

    def _head_stamp(self, target: bytes | None) -> tuple | None:
        """The stat data of what HEAD is read from (``target``: the ref it names), or None
        when one changed within the racy window of now."""
        paths = [os.path.join(self.controldir, "HEAD"), os.path.join(self.commondir, "packed-refs")]
        if target is not None:
            paths.append(os.path.join(self.commondir, *os.fsdecode(target).split("/")))
        now = time.time()
        stamp: list = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                stamp.append(None)
                continue
            if st.st_mtime_ns / 1e9 >= now - racy_seconds(st.st_mtime_ns):
                return None
            stamp.append((st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size))
        return tuple(stamp)

    def identity(self) -> Identity:
        if self._identity is None:
            name = os.environ.get("GIT_COMMITTER_NAME")
            email = os.environ.get("GIT_COMMITTER_EMAIL")
            if not (name and email):
                config = self.repo.get_config_stack()
                try:
                    name = name or config.get((b"user",), b"name").decode()
                except KeyError:
                    pass
                try:
                    email = email or config.get((b"user",), b"email").decode()
                except KeyError:
                    pass
            user = user_name()
            self._identity = Identity(name or user, email or f"{user}@localhost")
        return self._identity


_ACCOUNT_NAMES: dict[int, str] = {}  # uid -> its name in the password database


def user_name() -> str:
    """The operating-system user running gitml (what MLflow records as ``mlflow.user``):
    ``getpass.getuser``'s answer, the password database read once per process (without
    ``LOGNAME``/``USER`` set it read ``/etc/passwd`` for every run: 0.1-0.5 ms of W2's)."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getuser's order
        name = os.environ.get(variable)
        if name:
            return name
    uid = os.getuid() if hasattr(os, "getuid") else -1
    found = _ACCOUNT_NAMES.get(uid)
    if found is None:
        try:
            found = getpass.getuser()
        except Exception:
            found = "unknown"
        _ACCOUNT_NAMES[uid] = found
    return found


def _tree_dict(tree: Tree) -> dict[bytes, tuple[int, bytes]]:
    return {entry.path: (entry.mode, entry.sha) for entry in tree.iteritems()}


def make_tree(entries: dict[bytes, tuple[int, bytes]]) -> Tree:
    tree = Tree()
    for name, (mode, sha) in entries.items():
        tree.add(name, mode, oid(sha))
    return tree


def _tree_order(entry: tuple[bytes, tuple[int, bytes]]) -> bytes:
    return entry[0] + b"/" if entry[1][0] == TREE_MODE else entry[0]  # git's order: a folder as "name/"


def raw_tree(entries: dict[bytes, tuple[int, bytes]]) -> RawObject:
    """The tree of ``{name: (mode, hex sha)}`` as :func:`make_tree` makes it, hashed once."""
    return RawObject(
        Tree.type_num,
        b"".join(
            b"%o %s\0" % (mode, name) + unhexlify(sha) for name, (mode, sha) in sorted(entries.items(), key=_tree_order)
        ),
    )


def tree_from_files(files: dict[str, tuple[int, bytes]], out: list) -> bytes:
    """Build nested trees from ``{path: (mode, sha)}``; new trees go to ``out``."""
    root: dict = {}
    for path, entry in files.items():
        node = root
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = entry

    def build(node: dict) -> bytes:
        entries = {}
        for name, value in node.items():
            if isinstance(value, dict):
                entries[name.encode()] = (TREE_MODE, build(value))
            else:
                entries[name.encode()] = value
        tree = raw_tree(entries)
        out.append(tree)
        return tree.id

    return build(root)


FORMATS = {b"objectformat": b"sha1", b"refstorage": b"files"}  # the only values gitml writes
SAFE_EXTENSIONS = {b"worktreeconfig", b"relativeworktrees"}  # change neither objects nor refs


class _CheckedRepo(Repo):
    """dulwich's Repo, refusing a repository whose format gitml cannot write, before
    dulwich opens it (dulwich sets up a reftable repository as it opens it)."""

    def __init__(self, root, *args, **kwargs):
        where = os.fspath(root)
        config = _config_of(where)
        if config is not None:
            check_format(config, where)
        try:
            super().__init__(root, *args, **kwargs)
        except UnsupportedVersion as e:
            raise UnsupportedRepositoryError(where, f"core.repositoryformatversion = {e}") from None
        except UnsupportedExtension as e:
            raise UnsupportedRepositoryError(where, f"extensions.{e}") from None
        _search_live_packs_first(self.object_store, os.path.join(self.commondir(), "gitml", "retired"))


class _Skipped:
    def close(self) -> None:
        pass


_SKIPPED = _Skipped()


def _search_live_packs_first(store, retired_dir: str) -> None:
    """Make dulwich look for an object in the newest packs first, and not in packs
    merged away (retired: :mod:`gitml.store.packs`).

    dulwich searches its packs in the order it found them, each by a lookup in its
    index: 16 writers committing to one run left ~50 live and ~200 retired packs
    (kept 60 s for readers that have not seen the merged pack), and each object read
    cost ~260 index lookups (a third of the writers' time). A retired pack's objects
    are all in the merged pack, which is in place before the pack is retired."""
    original = getattr(store, "_update_pack_cache", None)
    if original is None or not isinstance(getattr(store, "_pack_cache", None), dict):
        return  # another dulwich: its own order
    seen: set[str] = set()

    def update():
        try:
            retired = set(os.listdir(retired_dir))  # read first: a pack retired later is still merged
        except OSError:
            retired = set()
        cache = store._pack_cache
        for name in retired.difference(cache):
            cache[name] = _SKIPPED  # not opened: dulwich takes it for one it has
        try:
            added = original()
        finally:
            cache = store._pack_cache
            for name in [n for n, pack in cache.items() if pack is _SKIPPED]:
                del cache[name]
        for name in retired.intersection(cache):
            try:
                cache.pop(name).close()
            except (BufferError, OSError):  # a view of its memory map is alive: it closes when collected
                pass
        order = getattr(store, "_pack_access_order", None)
        if isinstance(order, list) and len(order) > len(cache):
            order[:] = [name for name in order if name in cache]
        new = [name for name in cache if name not in seen]
        seen.clear()
        seen.update(cache)
        if new:
            store._pack_cache = {
                **{n: cache[n] for n in reversed(new)},
                **{n: p for n, p in cache.items() if n not in new},
            }
        return added

    store._update_pack_cache = update


def _config_of(root: str) -> ConfigFile | None:
    """The config of the repository at ``root`` (work tree or bare), found as dulwich finds it."""
    controldir = os.path.join(root, ".git")
    if os.path.isfile(controldir):
        with open(controldir, "rb") as f:
            controldir = os.path.join(root, os.fsdecode(read_gitfile(f)))
    elif not os.path.isdir(controldir):
        controldir = root
    commondir = controldir
    if os.path.isfile(os.path.join(controldir, "commondir")):
        with open(os.path.join(controldir, "commondir"), "rb") as f:
            commondir = os.path.join(controldir, os.fsdecode(f.read().rstrip(b"\r\n")))
    try:
        return ConfigFile.from_path(os.path.join(commondir, "config"))
    except (FileNotFoundError, NotADirectoryError):
        return None


def check_format(config: ConfigFile, where: str) -> None:
    """Raise :class:`UnsupportedRepositoryError` unless gitml's writes keep this
    repository's format: ``core.repositoryformatversion`` 0 or 1, SHA-1 objects, files
    refs, and no other extension than ones that change neither (git refuses an
    extension it does not know in version 1, and a version-1 one in version 0)."""
    try:
        version = config.get((b"core",), b"repositoryformatversion").decode()
    except KeyError:
        version = "0"
    if version.strip() not in ("0", "1"):
        raise UnsupportedRepositoryError(where, f"core.repositoryformatversion = {version}")
    for key, value in config.items((b"extensions",)):
        name = key.lower()
        wanted = FORMATS.get(name)
        if (wanted is None and name not in SAFE_EXTENSIONS) or (wanted is not None and value.lower() != wanted):
            raise UnsupportedRepositoryError(where, f"extensions.{key.decode()} = {value.decode()}")


def open_repo(path: str | os.PathLike) -> Repo:
    """The git repository at ``path``, through dulwich, if gitml can write to it.

    Raises NotGitRepository, or :class:`UnsupportedRepositoryError` for a format
    gitml would damage (``git init --object-format=sha256``, ``--ref-format=reftable``).
    """
    return _CheckedRepo(path)


def discover_repo(start: str | os.PathLike) -> Repo:
    """The repository enclosing ``start`` (as git finds it), checked as :func:`open_repo`."""
    return _CheckedRepo.discover(start)


def open_store(path: str | os.PathLike | None = None, *, create: bool = False) -> GitStore:
    """Open the repository holding ``path`` (default: ``$GITML_REPO`` or the cwd).

    Outside any git repository, gitml keeps runs in a bare repository
    ``./gitml-runs`` (created only when ``create`` is true), and says so.
    """
    explicit = path is not None or "GITML_REPO" in os.environ
    # absolute: a later chdir must not move the repository under the client
    start = os.path.abspath(os.fspath(path if path is not None else os.environ.get("GITML_REPO", os.getcwd())))
    try:
        return GitStore(discover_repo(start))  # a folder inside a work tree means that work tree, as in git
    except NotGitRepository:
        pass
    fallback = os.path.join(start, FALLBACK_STORE)
    if os.path.isdir(fallback):
        return GitStore(open_repo(fallback), fallback=True)
    if not create:
        raise RepositoryError(
            f"{start} is not in a git repository (and holds no {FALLBACK_STORE}/): run `gitml init` or `git init` first"
        )
    if explicit:
        os.makedirs(start, exist_ok=True)
        return GitStore(Repo.init(start))
    log.warning(
        "gitml: %s is not in a git repository; keeping runs in %s (a bare git "
        "repository; code is not recorded). Run `git init` to record code with runs.",
        start,
        fallback,
    )
    return GitStore(Repo.init_bare(fallback, mkdir=True), fallback=True)

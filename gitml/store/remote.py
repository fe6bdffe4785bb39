"""Moving gitml refs between repositories, through dulwich's git clients.

Runs and experiments are refs, so sharing them is a ref transfer (``gitml push``,
``fetch``, ``pull``), over every transport dulwich speaks: a local or
``file://`` path, ``git://``, ``ssh://`` / ``user@host:path`` and smart HTTP(S).

The policy is git's, applied per ref: a push or fetch only fast-forwards. A run
written in two clones has two histories; neither side is overwritten, the ref
is reported (``rejected: non-fast-forward`` on push, ``diverged`` on fetch) so
that the caller can say which run and what to do. dulwich has no wildcard
refspecs, so ``refs/gitml/*`` is expanded here from the remote's ref list.

Every transport failure (refused connection, missing repository, protocol or
HTTP error) becomes one :class:`RemoteError` naming the remote; local refs are
touched only after the transfer succeeded, each with compare-and-swap.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dulwich.client import GitClient, HTTPProxyUnauthorized, HTTPUnauthorized, get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.graph import can_fast_forward
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import Commit, ObjectID
from dulwich.protocol import PEELED_TAG_SUFFIX, ZERO_SHA
from dulwich.repo import Repo

from gitml.errors import RemoteError, RepositoryError
from gitml.names import parse_run_ref
from gitml.store.entries import PackEntries, Picked
from gitml.store.git import open_repo
from gitml.store.ids import oid, oids
from gitml.store.refs import _SORTED, RefLister, _read_ref, _search_sorted
from gitml.store.refspans import controldir_of, loose_names, packed_refs_of, same_lines
from gitml.store.transfer import (
    copy_objects,
    create_refs,
    local_path,
    malformed_refs,
    pack_many_loose,
    pack_to_send,
    write_picked,
)
from gitml.store.unpack import store_received
from gitml.store.verify import FetchedObjects, check_fetched, claimed_ids, refused_names, same_run

if TYPE_CHECKING:
    from gitml.store.git import GitStore

DEFAULT_REMOTE = "origin"
NON_FAST_FORWARD = "rejected: non-fast-forward"
REJECTED_BEHIND = "rejected: the remote has commits of this run that this clone lacks (`gitml fetch`, then push)"
REMOTE_CHANGED = "rejected: the remote's run changed since this clone saw it (`gitml fetch`, then purge again)"
GITML_PREFIXES = ("refs/gitml/",)
_TAGS_PREFIX = b"refs/tags/"
FEW_REFS = 64  # refs pushed: up to this many, the packs are searched in their indexes, not read whole
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]{2,}:")  # user@host:path; 2+ chars skips C:\
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")

Progress = Callable[[bytes], None]


@dataclass
class FetchResult:
    """What a fetch did to each local ref (names as bytes).

    ``diverged`` refs have local commits the remote lacks and the other way
    round (a run written in two places): they are left alone. ``ahead`` refs
    are local descendants of the remote's (to be pushed). ``remote`` holds the
    remote's value of every ref considered. ``refused`` refs (name -> why) were
    not taken: a name in no gitml format, a value that is no commit or reaches
    objects nobody sent (:mod:`gitml.store.verify`).
    """

    created: list[bytes] = field(default_factory=list)
    updated: list[bytes] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    ahead: list[bytes] = field(default_factory=list)
    diverged: list[bytes] = field(default_factory=list)
    remote: dict[bytes, bytes] = field(default_factory=dict)
    refused: dict[bytes, str] = field(default_factory=dict)


def resolve_remote(store: GitStore, remote: str | None = None, *, push: bool = False) -> str:
    """The URL or path of ``remote``: a configured remote's name (default
    ``origin``), or a URL or repository path given as such.

    >>> resolve_remote(store, "origin")        # remote.origin.url in .git/config
    'https://example.com/team/project.git'

    A configured name wins over a same-named directory, as in git; with
    ``push``, ``remote.<name>.pushurl`` wins over ``url``, as in git.
    """
    name = remote or DEFAULT_REMOTE
    config = store.repo.get_config()
    for key in (b"pushurl", b"url") if push else (b"url",):
        try:
            url = config.get((b"remote", name.encode()), key).decode()
        except KeyError:
            continue
        if "://" in url or _SCP_LIKE.match(url) or os.path.isabs(url):
            return url
        return os.path.normpath(os.path.join(store.workdir or store.commondir, url))  # as git: from the top
    if remote:
        if "://" in remote or (_SCP_LIKE.match(remote) and not os.path.exists(remote)):
            return remote
        if os.sep in remote or "/" in remote or remote.startswith(".") or os.path.exists(remote):
            return os.path.abspath(remote)
    raise RemoteError(name, "no such remote (not in .git/config, and not a URL or a path)")


def configured_remotes(store: GitStore) -> dict[str, str]:
    """``{name: url}`` of the remotes in the repository's config (``remote.<name>.url``)."""
    config = store.repo.get_config()
    found = {}
    for section in config.sections():
        if len(section) == 2 and section[0] == b"remote":
            name = section[1].decode()
            try:
                found[name] = resolve_remote(store, name)
            except RemoteError:
                continue  # a remote with a pushurl or fetch spec only
    return found


def list_remote_refs(store: GitStore, url: str, prefixes: tuple[str, ...] = GITML_PREFIXES) -> dict[bytes, bytes]:
    """The remote's refs under ``prefixes`` (as ``git ls-remote``): ``{ref: sha}``."""
    folder = local_path(url)
    if folder is not None:
        return _local_refs(folder, prefixes)
    with _connection(store, url) as (client, path):
        result = client.get_refs(path.encode() if isinstance(path, str) else path, ref_prefix=_prefixes(prefixes))
    return _select(result.refs, _prefixes(prefixes))


def unchanged_refs(
    store: GitStore, url: str, refs: Mapping[bytes, bytes], prefixes: tuple[str, ...] = GITML_PREFIXES
) -> set[bytes]:
    """The refs of ``refs`` (all under ``prefixes``) that the remote holds at exactly these
    values: what a push need not send. A repository on this machine is not listed: each
    ref's line is looked for among the lines of its packed-refs (a loose ref of the same
    name wins, as git reads it), 0.05 s for 100,000 refs where a listing took 0.2 s."""
    folder = local_path(url)
    if folder is None:
        theirs = list_remote_refs(store, url, prefixes)
        return {ref for ref, sha in refs.items() if theirs.get(ref) == sha}
    controldir = controldir_of(folder)
    loose: dict[bytes, bytes | None] = {}
    for prefix in prefixes:
        for dirpath, _dirnames, filenames in os.walk(os.path.join(controldir, *prefix.rstrip("/").split("/"))):
            rel = os.path.relpath(dirpath, controldir).replace(os.sep, "/")
            for name in filenames:
                loose[f"{rel}/{name}".encode()] = _read_ref(os.path.join(dirpath, name))  # a lock file: no ref's name
    data = packed_refs_of(controldir)
    out = {ref for ref, sha in refs.items() if ref in loose and loose[ref] == sha}
    rest = {ref: sha for ref, sha in refs.items() if ref not in loose}
    if prefixes == GITML_PREFIXES and _SORTED.match(data):
        # a folder (refs/gitml/runs/, refs/gitml/experiments/) whose packed lines here are the
        # remote's, byte for byte: its refs loose on neither side hold there what they hold
        # here (``refs`` is this clone's listing); the others are looked up one by one
        mine = packed_refs_of(store.commondir)
        start = len(b"refs/gitml/")
        folder_of = {ref: ref[: ref.find(b"/", start) + 1] for ref in rest}
        same = {f for f in set(folder_of.values()) if len(f) > start and same_lines(mine, data, f)}
        here = loose_names(store.commondir, prefixes) if same else set()
        looked_up = [ref for ref, folder in folder_of.items() if ref in here or folder not in same]
        if len(looked_up) <= 4096:
            out.update(ref for ref, folder in folder_of.items() if folder in same and ref not in here)
            out.update(ref for ref in looked_up if _search_sorted(data, ref) == rest[ref])
            return out
    lines = set(data.split(b"\n"))
    out.update(ref for ref, sha in rest.items() if b"%s %s" % (sha, ref) in lines)
    return out


def push_refs(
    store: GitStore,
    url: str,
    refs: Mapping[bytes, bytes | None],
    *,
    force: bool = False,
    progress: Progress | None = None,
    expected: Mapping[bytes, bytes] | None = None,
    batch: int | None = None,
    refusals: list[str] | None = None,
) -> dict[bytes, str]:
    """Set these remote refs to these local values (None deletes the ref); returns
    ``{ref: "ok" | reason}`` for every ref asked. ``expected``: a
    deletion of a ref named there happens only while the remote holds that value or one
    of its ancestors (a compare-and-delete: a run a teammate restored or continued there,
    with commits this clone lacks, is never deleted).

    The fast-forward check runs on the remote's refs as the connection reads
    them, so a ref moved by someone else in between is never clobbered: it is
    ``rejected: non-fast-forward`` unless ``force``. An existing tag is never
    moved without ``force`` (tags name releases). Deleting an absent ref is ok.

    Through a server, the refs go ``batch`` at a time (None: all at once), each batch a push
    of its own (hosts cap the refs one push updates). A batch the server refuses whole (its
    hook declines every ref for one reason, or the connection fails) is halved and sent
    again, down to one ref; a host that refuses single refs twice running refuses the push:
    the refs not sent are ``not pushed: ...``, and the host's reason, in one line, is
    appended to ``refusals``. The batches sent before stay pushed: a later push resumes.
    """
    status: dict[bytes, str] = {}
    folder = local_path(url)
    _unmap_packs(store)
    few = len(refs) <= FEW_REFS
    with Repo(store.repo.path) as local, PackEntries(local, few=few) as entries:  # ours: dulwich's is not thread-safe

        def updater(names: list[bytes]):
            def update_refs(remote_refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
                send = {}
                present = entries.has  # the pack indexes, not dulwich's search of every pack per ref
                for ref in names:
                    new = refs[ref]
                    old = remote_refs.get(ref)
                    if new == old:
                        status[ref] = "ok"
                    elif (
                        new is None
                        and expected is not None
                        and ref in expected
                        and old is not None
                        and old != expected[ref]
                        and not (present(old) and is_ancestor(local, old, expected[ref]))
                    ):
                        status[ref] = REMOTE_CHANGED
                    elif new is not None and not present(new):
                        status[ref] = f"rejected: object {new.decode()} is missing locally"
                    elif old is not None and new is not None and not force and ref.startswith(_TAGS_PREFIX):
                        status[ref] = "rejected: tag already exists"
                    elif old is not None and new is not None and not force and not is_ancestor(local, old, new):
                        if not present(old):
                            status[ref] = REJECTED_BEHIND
                        elif is_ancestor(local, new, old):
                            status[ref] = "ok"  # the remote is ahead (a fetch brings it): nothing to send
                        else:
                            status[ref] = NON_FAST_FORWARD
                    else:
                        send[ref] = ZERO_SHA if new is None else new
                return send

            return update_refs

        if folder is not None:
            _push_local(local, entries, folder, list(refs), updater(list(refs)), status, progress)
            for ref in refs:
                status.setdefault(ref, "ok")
            return status

        def generate_pack_data(have, want, *, ofs_delta=False, progress=None):
            count, records = pack_to_send(entries, want, have)
            if progress:
                progress(f"sending {count} objects\n".encode())
            return count, records

        _send_batches(store, url, list(refs), updater, generate_pack_data, status, progress, batch, refusals)
    for ref in refs:
        status.setdefault(ref, "ok")  # a server without report-status said nothing
    return status


def _send_batches(
    store: GitStore,
    url: str,
    names: list[bytes],
    updater,
    generate_pack_data,
    status: dict[bytes, str],
    progress: Progress | None,
    batch: int | None,
    refusals: list[str] | None,
) -> None:
    """Push ``names`` through a server in batches (:func:`push_refs`), setting ``status``."""
    size = max(1, batch or len(names))
    start = 0
    refused_alone: str | None = None  # why the last batch of one ref was refused
    while start < len(names):
        chunk = names[start : start + size]
        said: list[bytes] = []

        def heard(data: bytes, said: list[bytes] = said) -> None:
            said.append(data)
            if progress:
                progress(data)

        try:
            with _connection(store, url) as (client, path):
                result = client.send_pack(path.encode(), updater(chunk), generate_pack_data, progress=heard)
        except RemoteError:
            if len(chunk) > 1:  # a host that fails a large push (an HTTP 413 or 500, a dropped connection)
                size = len(chunk) // 2
                continue
            raise
        server = {ref: error for ref, error in (result.ref_status or {}).items() if ref in chunk}
        failed = {ref: error for ref, error in server.items() if error is not None}
        if server and len(failed) == len(server) and len(set(failed.values())) == 1:
            why = _one_line(next(iter(failed.values())))
            message = _said(said)
            line = f"{why}{f' ({message})' if message else ''}"
            if len(server) > 1:  # the whole batch, for one reason: a cap on refs per push, maybe
                for ref in server:
                    status.pop(ref, None)
                size = max(1, len(server) // 2)
                continue
            if refused_alone == why:  # refused alone twice running: the host refuses this push at any size
                (ref,) = server
                status[ref] = f"rejected: {line}"
                for rest in names[start + len(chunk) :]:
                    status.setdefault(rest, f"not pushed: the remote refused the push ({why})")
                if refusals is not None:
                    refusals.append(f"the remote refused the push: {line}")
                return
            refused_alone = why
        else:
            refused_alone = None
        for ref, error in server.items():
            status[ref] = "ok" if error is None else f"rejected: {_one_line(error)}"
        start += len(chunk)


def _said(chunks: list[bytes]) -> str:
    """The last line the remote wrote on its side channel (a hook's message), not git's counters."""
    lines = [line.strip() for line in b"".join(chunks).decode("utf-8", "replace").replace("\r", "\n").split("\n")]
    lines = [
        line
        for line in lines
        if line
        and not line.startswith(("sending ", "Resolving deltas", "Unpacking objects", "Total ", "remote: Resolving"))
    ]
    return _one_line(lines[-1], 200) if lines else ""


def _unmap_packs(store: GitStore) -> None:
    """Let go of the packs dulwich mapped for the steps before a push (the first push
    to an artifact remote reads every run's record): the pages read stay counted in
    this process's memory while mapped (250 MB of a 100,000-run pack), beside what the
    push itself holds. dulwich maps them again when next asked."""
    with store._lock:  # the store's readers hold it around dulwich's object store
        try:
            store.repo.object_store.close()
        except BufferError:  # a view of a map is still alive somewhere: keep them
            pass


def _local_refs(folder: str, prefixes: tuple[str, ...]) -> dict[bytes, bytes]:
    """The refs under ``prefixes`` of a repository on this machine, read directly."""
    controldir = controldir_of(folder)
    lister = RefLister(controldir)
    found: dict[bytes, bytes] = {}
    for prefix in prefixes:
        found.update(lister.under(prefix))
    return found


_READ_ONE_BY_ONE = 1024  # refs pushed: up to this many, the remote's are read by name, not listed


def _remote_values(folder: str, names: list[bytes]) -> dict[bytes, bytes]:
    """The values the remote on this machine gives ``names`` (absent ones left out):
    a few read by name (the loose file, else a binary search of packed-refs), so ten
    new runs do not parse the 100,000 lines of a big remote; many read in one listing."""
    controldir = controldir_of(folder)
    if len(names) <= _READ_ONE_BY_ONE:
        lister = RefLister(controldir)
        values = {name: lister.read(name) for name in names}
        if not any(value is False for value in values.values()):
            return {name: value for name, value in values.items() if isinstance(value, bytes)}
    return _local_refs(folder, ("refs/",))  # a symbolic or unreadable ref among them: as git lists it


def _push_local(
    local: Repo,
    entries: PackEntries,
    folder: str,
    names: list[bytes],
    update_refs,
    status: dict[bytes, str],
    progress: Progress | None,
) -> None:
    """Push the refs ``names`` to a repository on this machine: objects as one copied
    pack, new refs in one write."""
    try:
        target = open_repo(folder)  # refuses a format gitml would damage (sha256, reftable)
    except NotGitRepository as e:
        raise RemoteError(folder, "no git repository there") from e
    with target:
        _check_receive_policy(target, folder)
        checked = _remote_values(folder, names)  # the values the fast-forward check saw
        send = update_refs(checked)
        config = target.get_config()
        for ref, new in list(send.items()):  # receive-pack's settings, applied as it would
            old = checked.get(ref)
            if new == ZERO_SHA and config.get_boolean((b"receive",), b"denyDeletes", False):
                status[ref] = "rejected: the remote denies deleting refs (receive.denyDeletes)"
            elif (
                old is not None
                and new != ZERO_SHA
                and config.get_boolean((b"receive",), b"denyNonFastForwards", False)
                and not is_ancestor(local, old, new)
            ):
                status[ref] = "rejected: the remote denies non-fast-forward updates (receive.denyNonFastForwards)"
            else:
                continue
            del send[ref]
        if config.get_boolean((b"receive",), b"fsckObjects", config.get_boolean((b"transfer",), b"fsckObjects", False)):
            creating = {ref: new for ref, new in send.items() if new != ZERO_SHA}
            for ref, why in malformed_refs(entries, target, creating).items():
                status[ref] = f"rejected: the remote checks what it receives (receive.fsckObjects): {why}"
                del send[ref]
        copied = copy_objects(entries, target, [new for new in send.values() if new != ZERO_SHA])
        if progress:
            progress(f"copied {copied} objects\n".encode())
        new_refs = {ref: new for ref, new in send.items() if new != ZERO_SHA and ref not in checked}
        for ref, created in create_refs(target, new_refs).items():
            if not created:
                status[ref] = "rejected: the remote ref appeared meanwhile"
        for ref, new in send.items():
            if ref in new_refs:
                continue
            old = checked.get(ref)  # compare-and-swap against what was checked: a move since is refused
            if new == ZERO_SHA:
                ok = old is None or target.refs.remove_if_equals(ref, oid(old))
            else:
                ok = target.refs.set_if_equals(ref, None if old is None else oid(old), new)
            if not ok:
                status[ref] = "rejected: the remote ref moved meanwhile"
        pack_many_loose(target.commondir(), GITML_PREFIXES[0])


_MAX_TIPS = 1024  # commits offered as "have" at most, beside the branches

_RECEIVE_HOOKS = ("pre-receive", "update", "proc-receive", "reference-transaction", "post-receive", "post-update")


def _check_receive_policy(target: Repo, folder: str) -> None:
    """A repository on this machine is written directly, so git's receive-pack (its
    hooks) does not run: refuse one that has such hooks rather than bypass them."""
    config = target.get_config()
    try:
        hooks = os.path.join(folder, config.get((b"core",), b"hooksPath").decode())
    except KeyError:
        hooks = os.path.join(target.commondir(), "hooks")
    for name in _RECEIVE_HOOKS:
        path = os.path.join(hooks, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            raise RemoteError(
                folder,
                f"it has a {name} hook ({path}), which gitml does not run when it writes a repository on this "
                "machine; push through a server that runs it (ssh://, git://, https://)",
            )


def fetch_refs(
    store: GitStore,
    url: str,
    prefixes: tuple[str, ...] = GITML_PREFIXES,
    *,
    progress: Progress | None = None,
    force: bool = False,
    accept: Callable[[bytes], object] | None = None,
    vet: Callable[[bytes, bytes], str | None] | None = None,
    check: Callable[[bytes, bytes], str | None] | None = None,
) -> FetchResult:
    """Fetch the remote's refs under ``prefixes`` and their objects; create the
    missing local refs and fast-forward the others (each by compare-and-swap).
    ``vet(ours, theirs)`` says why a run ref must not move from this clone's commit to
    the fetched one (it rewrites what never changes in a run), or None.
    ``check(ref, theirs)`` says why a ref's new value, its objects here, must not be
    taken at all (a record whose content is hostile), or None.

    Refs are only added or moved forward, never deleted or rewound: a local run
    the remote lacks stays, and a diverged run is reported, not chosen (with
    ``force``, the remote's history of a diverged run replaces this clone's).
    A ref in no gitml format, or whose objects did not all arrive, is refused
    (``FetchResult.refused``) and the others are taken.
    """
    wanted = _prefixes(prefixes)
    remote: dict[bytes, bytes] = {}
    refused: dict[bytes, str] = {}
    folder = local_path(url)
    if folder is not None:
        return _fetch_local(store, folder, wanted, force, accept, vet, check)
    with Repo(store.repo.path) as local, PackEntries(local, ids_only=True) as before:
        # What this clone has is told by tips only, not by walking history (dulwich's
        # walker offers every ancestor of every branch: 300,000 lines for a long history).
        # The tips: the branches, and this clone's commit of each ref being fetched, so
        # that an updated run comes as its new commits, not whole again.
        present = store.contains
        branches = [sha for sha in store.refs_under("refs/heads/").values() if present(sha)]
        walker = ObjectStoreGraphWalker(oids(branches), lambda sha: [], shallow=local.get_shallow())
        ours = {ref: sha for prefix in wanted for ref, sha in store.refs_under(prefix.decode()).items()}

        def determine_wants(refs, depth=None) -> list[ObjectID]:
            remote.update({r: s for r, s in _select(refs, wanted).items() if accept is None or accept(r)})
            refused.update(refused_names(remote))
            refused.update(claimed_ids([r for r in remote if r not in refused], ours))
            for ref in refused:
                del remote[ref]
            moved = [ours[r] for r, sha in remote.items() if r in ours and ours[r] != sha and present(ours[r])]
            walker.heads.update(oids(moved[:_MAX_TIPS]))
            return oids(sorted({sha for sha in remote.values() if not present(sha)}))

        pack_dir = os.path.join(local.object_store.path, "pack")
        fd, received = tempfile.mkstemp(prefix="tmp_gitml_received_", dir=pack_dir)
        try:
            with os.fdopen(fd, "wb") as f, _connection(store, url) as (client, path):
                client.fetch_pack(path, determine_wants, walker, f.write, progress=progress, ref_prefix=wanted)
            stored = store_received(pack_dir, received, lambda sha: _raw_or_none(local, sha))
        finally:
            os.unlink(received)
        ours = _ours(store, wanted)
        with PackEntries(local, packs=[stored.base] if stored.base else []) as arrived:
            _check_new(store, FetchedObjects(arrived, local, before.has), remote, ours, refused)
        return _take_refs(store, local, remote, ours, force, refused, vet, check)


def _raw_or_none(repo: Repo, sha: bytes) -> tuple[int, bytes] | None:
    try:
        return repo.object_store.get_raw(oid(sha))
    except KeyError:
        return None


def _fetch_local(
    store: GitStore,
    folder: str,
    wanted: list[bytes],
    force: bool,
    accept: Callable[[bytes], object] | None = None,
    vet: Callable[[bytes, bytes], str | None] | None = None,
    check: Callable[[bytes, bytes], str | None] | None = None,
) -> FetchResult:
    """Fetch from a repository on this machine: one copied pack; new refs in one write."""
    try:
        source = open_repo(folder)
    except NotGitRepository as e:
        raise RemoteError(folder, "no git repository there") from e
    with source, Repo(store.repo.path) as local:
        remote = _local_refs(folder, tuple(p.decode() for p in wanted))
        remote = {r: s for r, s in remote.items() if accept is None or accept(r)}
        refused = refused_names(remote)
        ours = _ours(store, wanted)
        refused.update(claimed_ids([r for r in remote if r not in refused], ours))
        remote = {ref: sha for ref, sha in remote.items() if ref not in refused}
        if any(ours.get(ref) != sha for ref, sha in remote.items()):
            # One walk of the source's entries checks the new refs and finds what to copy:
            # what the source lacks is passed over, and the refs needing it are refused.
            with PackEntries(source) as arrived, PackEntries(local, ids_only=True) as before:
                picked = _check_new(store, FetchedObjects(arrived, local, before.has), remote, ours, refused)
                write_picked(
                    os.path.join(local.object_store.path, "pack"), picked
                )  # each read where the check found it
        return _take_refs(store, local, remote, ours, force, refused, vet, check)


def _ours(store: GitStore, wanted: list[bytes]) -> dict[bytes, bytes]:
    ours: dict[bytes, bytes] = {}
    for prefix in wanted:
        ours.update(store.refs_under(prefix.decode()))
    return ours


def _check_new(
    store: GitStore,
    objects: FetchedObjects,
    remote: dict[bytes, bytes],
    ours: dict[bytes, bytes],
    refused: dict[bytes, str],
) -> Picked:
    """Check the refs whose value is new here (:func:`check_fetched`), adding the bad
    ones to ``refused``; returns the objects the clone lacks that the checked refs reach."""
    new = {ref: sha for ref, sha in remote.items() if ours.get(ref) != sha}
    if not new:
        return Picked(objects.arrived)
    everything = store.refs_under("refs/")
    heads = [sha for ref, sha in everything.items() if not ref.startswith(GITML_PREFIXES[0].encode())]
    heads += [ours[ref] for ref in new if ref in ours]
    bad, arriving = check_fetched(objects, new, heads=heads, known=set(everything.values()))
    refused.update(bad)
    return arriving


def _take_refs(
    store: GitStore,
    local: Repo,
    remote: dict[bytes, bytes],
    ours: dict[bytes, bytes],
    force: bool,
    refused: dict[bytes, str],
    vet: Callable[[bytes, bytes], str | None] | None = None,
    check: Callable[[bytes, bytes], str | None] | None = None,
) -> FetchResult:
    """After the objects arrived and the new values were checked: create the refs
    missing here in one write, and classify or fast-forward the others one by one."""
    if check is not None:
        for ref, sha in remote.items():
            if ref not in refused and ours.get(ref) != sha and (why := check(ref, sha)):
                refused[ref] = f"{why}; this clone's is kept" if ref in ours else why
    remote = {ref: sha for ref, sha in remote.items() if ref not in refused}
    result = FetchResult(remote=dict(sorted(remote.items())), refused=dict(sorted(refused.items())))
    created = create_refs(local, {ref: sha for ref, sha in remote.items() if ref not in ours})
    store.refresh_refs()
    for ref, theirs in list(result.remote.items()):
        if created.get(ref):
            result.created.append(ref)
        elif ours.get(ref) == theirs:
            result.unchanged.append(ref)
        else:
            _update_ref(store, local, ref, theirs, result, force, vet)
    return result


def _update_ref(
    store: GitStore,
    local: Repo,
    ref: bytes,
    theirs: bytes,
    result: FetchResult,
    force: bool,
    vet: Callable[[bytes, bytes], str | None] | None = None,
) -> None:
    """Classify one fetched ref and move it forward if it should move."""
    for _ in range(100):  # a lost compare-and-swap means a local writer moved the ref: look again
        ours = store.ref(ref)
        if ours == theirs:
            bucket = result.unchanged
        elif ours is not None and is_ancestor(local, theirs, ours):
            bucket = result.ahead
        elif ours is not None and not is_ancestor(local, ours, theirs) and _another_run(local, ref, ours, theirs):
            result.refused[ref] = (  # not "diverged": --force must not take it either
                "its history shares no commit with this clone's run of that id (another run claiming it); "
                "this clone's is kept"
            )
            del result.remote[ref]
            return
        elif ours is not None and not is_ancestor(local, ours, theirs) and not force:
            bucket = result.diverged
        elif ours is not None and vet is not None and parse_run_ref(ref) and (why := vet(ours, theirs)):
            result.refused[ref] = f"{why}; this clone's is kept"
            del result.remote[ref]
            return
        elif store.cas(ref, ours, theirs):
            bucket = result.created if ours is None else result.updated
        else:
            continue
        bucket.append(ref)
        return
    raise RepositoryError(f"ref {ref.decode()} kept moving while fetching it")


def _another_run(local: Repo, ref: bytes, ours: bytes, theirs: bytes) -> bool:
    """Whether a run ref's fetched value, which does not descend from this clone's, is
    another run claiming its id rather than the same run written on in two places."""
    parsed = parse_run_ref(ref)
    return parsed is not None and not same_run(local, ours, theirs, parsed[1])


def is_ancestor(repo: Repo, ancestor: bytes, descendant: bytes) -> bool:
    """Whether commit ``ancestor`` is ``descendant`` or one of its ancestors
    (False when either is missing locally or is not a commit)."""
    try:
        if not all(isinstance(repo.object_store[oid(sha)], Commit) for sha in (ancestor, descendant)):
            return False
        return can_fast_forward(repo, oid(ancestor), oid(descendant))
    except KeyError:
        return False


@contextmanager
def _connection(store: GitStore, url: str) -> Iterator[tuple[GitClient, str]]:
    """A dulwich client for ``url``; transport errors become :class:`RemoteError`."""
    client = None
    try:
        client, path = get_transport_and_path(url, config=store.repo.get_config_stack())
        yield client, path
    except NotGitRepository as e:
        raise RemoteError(url, "no git repository there") from e
    except (HTTPUnauthorized, HTTPProxyUnauthorized) as e:
        raise RemoteError(url, "authentication failed or required") from e
    except (GitProtocolError, OSError, ValueError) as e:
        raise RemoteError(url, _cause(e)) from e
    finally:
        if client is not None:
            client.close()


def _cause(exc: BaseException) -> str:
    """A short, one-line reason: the OS error deep inside urllib3's wrapping if any."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, HangupException) or "does not match length prefix" in text:
        return f"the connection was lost during the transfer ({text}); run the command again"
    found = _ERRNO.search(text)
    return found.group(1).strip() if found else text


def _one_line(text: str | bytes, limit: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prefixes(prefixes: tuple[str | bytes, ...]) -> list[bytes]:
    return [p if isinstance(p, bytes) else p.encode() for p in prefixes]


def _select(refs, prefixes: list[bytes]) -> dict[bytes, bytes]:
    return {
        ref: sha
        for ref, sha in refs.items()
        if sha is not None and not ref.endswith(PEELED_TAG_SUFFIX) and ref.startswith(tuple(prefixes))
    }

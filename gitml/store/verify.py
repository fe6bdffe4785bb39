"""What a fetch takes from a remote: refs in gitml's formats, naming complete commits.

A remote may advertise anything under ``refs/gitml/``: names in no gitml format,
a run ref at a blob, a run commit whose parent nobody has (written into the
remote's repository directly). Taking such a ref would leave this clone broken
for ``git fsck`` and ``gitml gc``, so each ref is checked after its objects
arrived and before it is created or moved, and a bad one is refused alone, with
its reason; the others still arrive.

Connectivity is checked as git's fetch checks it (``git rev-list --objects NEW
--not --all``): every commit reachable from a new tip that no ref of this clone
reaches must be here, with its parents and its tree. The walk goes newest commit
first from both the new tips and this clone's branches, so it stops where the
new history meets the clone's and does not walk a long shared history. Trees and
blobs already here before the fetch are taken as complete (git keeps what it
stores whole); those that arrived are walked.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import cast

from dulwich.objects import Commit, parse_tree
from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from gitml.errors import RepositoryError
from gitml.names import (
    EXPERIMENTS_PREFIX,
    REGISTRY_PREFIX,
    RUNS_PREFIX,
    parse_experiment_ref,
    parse_registry_ref,
    parse_run_ref,
)
from gitml.store.entries import (
    _COMMIT,
    _TAG,
    _TREE,
    MAX_TAG_BYTES,
    MAX_WALKED_BYTES,
    Marks,
    PackEntries,
    Picked,
    commit_header,
    links_of,
    over_the_limit,
    peel,
    read_cost,
)
from gitml.store.ids import oid, refname

GITML_REFS = "refs/gitml/"
EXPERIMENT_FILE = b"experiment.yaml"
_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}


def refused_names(refs: Iterable[bytes]) -> dict[bytes, str]:
    """``{ref: why}`` for the names that are in none of gitml's formats (under
    ``refs/gitml/``) or are no valid git ref name (elsewhere)."""
    refused = {}
    for ref in refs:
        if ref.startswith(GITML_REFS.encode()):
            if parse_run_ref(ref) is None and parse_experiment_ref(ref) is None and parse_registry_ref(ref) is None:
                refused[ref] = (
                    f"not a gitml ref name ({RUNS_PREFIX}<experiment id>/<32 hex digits>, "
                    f"{EXPERIMENTS_PREFIX}<experiment id> or {REGISTRY_PREFIX}<model>)"
                )
        elif not check_ref_format(refname(ref)):
            refused[ref] = "not a valid git ref name"
    return refused


RUN_TRAILER = b"Gitml-Run"  # the trailer naming its run in every run commit's message (gitml.runlog.writer)


def claimed_ids(remote: Iterable[bytes], ours: Iterable[bytes]) -> dict[bytes, str]:
    """``{ref: why}`` for the fetched run refs that claim the id of another run: a run
    this clone holds under another name (another experiment), or an id several fetched
    refs this clone does not hold claim at once (neither is taken: which is the run
    cannot be told). ``runs:/<id>`` and every reader resolve a run by its id alone, so
    a second ref with a known id would be a second answer to the same question.
    The names are valid already (:func:`refused_names`); a run ref ends in ``/<32 hex>``."""
    prefix = RUNS_PREFIX.encode()
    here = ours if isinstance(ours, (dict, set, frozenset)) else set(ours)
    new = [ref for ref in remote if ref.startswith(prefix) and ref not in here]
    if not new:
        return {}  # the usual fetch of runs seen before: nothing read of 100,000 refs
    held: dict[bytes, bytes] = {}
    for ref in here:
        if ref.startswith(prefix):
            held.setdefault(ref[-32:], ref)
    arriving: dict[bytes, list[bytes]] = {}
    refused: dict[bytes, str] = {}
    for ref in new:
        run_id = ref[-32:]
        if run_id in held:
            refused[ref] = (
                f"claims run id {run_id.decode()}, which this clone holds as {held[run_id].decode()}: "
                "another run under that id (a run's id never changes experiment)"
            )
        else:
            arriving.setdefault(run_id, []).append(ref)
    for run_id, refs in arriving.items():
        if len(refs) > 1:
            names = ", ".join(r.decode() for r in sorted(refs))
            for ref in refs:
                refused[ref] = f"run id {run_id.decode()} arrives under {len(refs)} refs ({names}): none is taken"
    return refused


def same_run(repo: Repo, ours: bytes, theirs: bytes, run_id: str) -> bool:
    """Whether two histories of run ``run_id`` share one of its commits (a run written on
    in two clones), rather than only its source commit or nothing (another run that
    claims its id, with a first commit of its own)."""
    from dulwich.graph import find_merge_base

    trailer = b"\n" + RUN_TRAILER + b": " + run_id.encode()
    try:
        bases = find_merge_base(repo, [oid(ours), oid(theirs)])
        return any(trailer in cast(Commit, repo.object_store[base]).message for base in bases)
    except (KeyError, AttributeError):
        return False


class FetchedObjects:
    """The objects a fetch looks at: those that arrive, read from ``arrived`` (the
    source's pack entries on a local fetch, the received pack's otherwise), and the
    clone's own, of which only the ids (``before``) and a few commits (read through
    dulwich) are needed. Nothing reads the clone's packs whole."""

    def __init__(self, arrived: PackEntries, local: Repo, before: Callable[[bytes], bool]):
        from gitml.store.promisor import promisor_url

        self.arrived, self.local, self.before = arrived, local, before
        # a partial clone (``--filter=blob:none``) holds no blobs of older commits, by design:
        # a blob neither side has is its promisor remote's to give when read (GitStore.raw),
        # as git has it; trees and commits must still be whole
        self.promised_blobs = promisor_url(local) is not None

    def has(self, sha: bytes) -> bool:
        return self.arrived.has(sha) or self.before(sha)

    def raw(self, sha: bytes, at: int = 0, *, limit: int = MAX_WALKED_BYTES) -> tuple[int, bytes]:
        """An object's ``(type number, content)``; ``at`` is where :meth:`PackEntries.locate`
        found it among the arrived objects (0: looked up here). One over ``limit`` bytes
        raises :class:`RepositoryError` before it is inflated, the clone's own too (a
        tag a plain ``git fetch`` took, met among the heads)."""
        if at:
            return self.arrived.raw_at(at, sha, limit=limit)
        found = self.arrived.get(sha, limit=limit)
        if found is not None:
            return found
        cost = read_cost(self.local, sha)
        if cost is not None and cost.peak > limit:
            raise RepositoryError(over_the_limit(sha, cost, limit))
        try:
            return self.local.object_store.get_raw(oid(sha))
        except KeyError:
            raise _Problem("is missing") from None

    def find(self, sha: bytes, *, limit: int = MAX_WALKED_BYTES) -> tuple[int, tuple[int, bytes] | None]:
        """``(where it arrived, (type number, content))`` of an object, the latter None
        when neither side holds it: one lookup where :meth:`has` then :meth:`raw` took two."""
        at = self.arrived.locate(sha)
        if at:
            return at, self.arrived.raw_at(at, sha, limit=limit)
        return 0, self.raw(sha, limit=limit) if self.has(sha) else None

    def links(self, sha: bytes, at: int = 0) -> tuple[int, list[bytes], list[bytes]]:
        return links_of(*self.raw(sha, at))


def check_fetched(
    objects: FetchedObjects,
    refs: dict[bytes, bytes],
    *,
    heads: Iterable[bytes],
    known: set[bytes],
) -> tuple[dict[bytes, str], Picked]:
    """``({ref: why}, new objects)``: the fetched refs that must not be taken (their
    value is missing, not a commit, an experiment commit without ``experiment.yaml``,
    or reaches an object that is missing or of the wrong type), and the objects the
    clone lacks that the others reach, each once (what a local fetch copies).

    ``objects.before`` tells the objects the clone held before the fetch; ``heads``
    are its commits to meet (branches, tags, the fetched refs' local values) and
    ``known`` every value of its refs (reachable, so complete).
    """
    refused: dict[bytes, str] = {}
    tips = {}
    picked = Picked(objects.arrived)
    headers: dict[bytes, tuple[int, list[bytes], bytes, int]] = {}  # the tips' commits, read once
    for ref, sha in refs.items():
        why = _tip_problem(objects, ref, sha, headers)
        if why:
            refused[ref] = why
        elif ref.startswith(b"refs/tags/"):  # a registry tag: its commit is the tip to walk
            if not objects.before(sha):
                picked.add(objects.arrived.locate(sha), sha)
            target = objects.raw(sha, limit=MAX_TAG_BYTES)[1][7:47]
            if target not in known:
                tips[ref] = target
        elif sha not in known:
            tips[ref] = sha
    if not tips:
        return refused, picked
    heads = _commits(objects, heads)
    walk = _Walk(objects, picked, headers=headers)
    walk.run(set(tips.values()), heads, known)
    if walk.problems:  # walked again, noting which object names which, to blame exactly the tips that reach one
        blame = _Walk(objects, Picked(objects.arrived), record=True)
        blame.run(set(tips.values()), heads, known)
        for ref, sha in tips.items():
            bad = blame.reaches_problem(sha)
            if bad is not None:
                refused[ref] = f"incomplete: object {bad.decode()}, which it reaches, {blame.problems[bad]}"
    return refused, picked


def refused_tips(
    entries: PackEntries,
    refs: dict[bytes, bytes],
    *,
    before: Callable[[bytes], bool],
    heads: Iterable[bytes],
    known: set[bytes],
) -> dict[bytes, str]:
    """:func:`check_fetched`'s refusals, with ``entries`` reading the whole clone
    after the objects arrived."""
    return check_fetched(FetchedObjects(entries, entries.repo, before), refs, heads=heads, known=known)[0]


def _tip_problem(
    entries: FetchedObjects, ref: bytes, sha: bytes, headers: dict[bytes, tuple[int, list[bytes], bytes, int]]
) -> str | None:
    """Why the ref's value is no tip to take, or None (a commit's header then put in ``headers``)."""
    tag = ref.startswith(b"refs/tags/")
    try:
        # a registry tag is a few kilobytes: a bigger one (a zlib bomb) is refused before it is inflated
        at, found = entries.find(sha, limit=MAX_TAG_BYTES if tag else MAX_WALKED_BYTES)
        if found is None:
            return f"its object {sha.decode()} did not arrive"
        type_num, raw = found
        if tag:  # registry tags are annotated tags of commits
            if type_num != _TAG or not raw.startswith(b"object ") or raw[47:60] != b"\ntype commit\n":
                return "not an annotated tag of a commit"
            if not entries.has(raw[7:47]):
                return f"its commit {raw[7:47].decode()} did not arrive"
            return None
        if type_num != _COMMIT:
            return f"points at a {_TYPES.get(type_num, type_num)}, not a commit"
        headers[sha] = (*commit_header(raw), at)
        run = parse_run_ref(ref)
        named = _trailer_run(raw) if run is not None else None
        if run is not None and named is not None and named != run[1]:  # a run's commit replayed under a new id
            return f"its commit {sha.decode()} is run {named}'s ({RUN_TRAILER.decode()} trailer), not run {run[1]}'s"
        if parse_experiment_ref(ref) is not None:
            tree = raw[5:45]  # "tree <sha>" is the first line
            if not entries.has(tree):
                return None  # the walk names the missing tree
            if not any(name == EXPERIMENT_FILE for name in _tree_names(entries, tree)):
                return f"its commit {sha.decode()} holds no {EXPERIMENT_FILE.decode()} (not an experiment record)"
    except RepositoryError as e:
        return f"its object {sha.decode()} cannot be read ({e})"
    return None


def _trailer_run(raw: bytes) -> str | None:
    """The run a raw commit's message names in its last ``Gitml-Run`` trailer, or None."""
    found = None
    for line in raw.partition(b"\n\n")[2].split(b"\n"):
        if line.startswith(RUN_TRAILER + b": "):
            found = line[len(RUN_TRAILER) + 2 :].strip().decode("ascii", "replace")
    return found


def _tree_names(entries: FetchedObjects, tree: bytes) -> list[bytes]:
    type_num, raw = entries.raw(tree)
    if type_num != _TREE:
        return []
    return [name for name, mode, _sha in parse_tree(raw, 20) if mode & 0o170000 == 0o100000]


def _commits(entries: FetchedObjects, shas: Iterable[bytes]) -> list[bytes]:
    """The commits ``shas`` name (annotated tags followed), those held here."""

    def read(sha: bytes) -> tuple[int, bytes] | None:
        try:
            return entries.raw(sha) if entries.has(sha) else None
        except RepositoryError:
            return None

    return [found[0] for found in (peel(sha, read) for sha in shas) if found is not None and found[1] == _COMMIT]


class _Walk:
    """One walk over the new history, putting the new objects it meets in ``picked``.
    With ``record``, it notes which new object names which (``named_by``), so that a
    problem found is blamed on exactly the tips that reach it; that is only asked when
    a first walk found a problem (the notes held 60 MB for 100,000 runs)."""

    def __init__(
        self,
        entries: FetchedObjects,
        picked: Picked,
        *,
        record: bool = False,
        headers: dict[bytes, tuple[int, list[bytes], bytes, int]] | None = None,
    ):
        """``headers``: commits already read (the tips), as :meth:`_commit` gives them."""
        self.entries = entries
        self._headers = headers or {}
        self.before = entries.before
        self.picked = picked  # objects walked that the clone lacked and that are here now
        self.problems: dict[bytes, str] = {}  # object -> why it breaks what names it
        self.named_by: dict[bytes, list[bytes]] = {}
        self.record = record
        self._info: dict[bytes, tuple[int, list[bytes], bytes, int]] = {}  # commit -> (time, parents, tree, where)
        self._seen = Marks(entries.arrived)  # trees and blobs looked at
        self._tainted: set[bytes] | None = None

    def _note(self, sha: bytes, namer: bytes) -> None:
        if self.record:
            self.named_by.setdefault(sha, []).append(namer)

    def run(self, tips: set[bytes], heads: list[bytes], known: set[bytes]) -> None:
        local: set[bytes] = set()  # commits this clone's refs reach
        walked: set[bytes] = set()
        heap: list[tuple[int, bytes]] = []

        def queue(sha: bytes, mine: bool) -> None:
            if mine or sha in known:
                if sha in local:
                    return
                local.add(sha)
            elif sha in self._info or sha in self.problems:
                return
            if sha not in self._info:
                found = self._headers.get(sha) or self._commit(sha, required=not mine and sha not in known)
                if found is None:
                    return
                self._info[sha] = found
            heapq.heappush(heap, (-self._info[sha][0], sha))

        for sha in heads:
            queue(sha, True)
        for sha in tips:
            queue(sha, False)
        pops = 0
        while heap:
            pops += 1
            if pops % 64 == 0 and all(sha in local for _, sha in heap):
                break  # only the clone's own history is left
            _, sha = heapq.heappop(heap)
            mine = sha in local
            _when, parents, tree, at = self._info[sha]
            if not mine:
                if sha in walked:
                    continue
                walked.add(sha)
                if not self.before(sha):
                    self.picked.add(at, sha)
                self._tree(tree, sha)
            for parent in parents:
                if not mine:
                    self._note(parent, sha)
                queue(parent, mine)

    def _commit(self, sha: bytes, *, required: bool) -> tuple[int, list[bytes], bytes, int] | None:
        """``(commit time, parents, tree, where it arrived)``; a missing or mistyped one is a
        problem if ``required``."""
        try:
            at, found = self.entries.find(sha)
            if found is None:
                raise _Problem("is missing")
            type_num, raw = found
            if type_num != _COMMIT:
                raise _Problem(f"is a {_TYPES.get(type_num, type_num)}, not a commit")
        except (RepositoryError, _Problem) as e:
            if required:
                self.problems[sha] = str(e)
            return None
        return (*commit_header(raw), at)

    def _tree(self, tree: bytes, commit: bytes) -> None:
        self._note(tree, commit)
        arrived = self.entries.arrived
        locate, seen, before, picked = arrived.locate, self._seen, self.before, self.picked
        todo = [tree]
        while todo:
            sha = todo.pop()
            at = locate(sha)
            if not seen.add(at, sha):
                continue
            if before(sha):
                continue  # here before the fetch: complete
            try:
                type_num, walk, blobs = self.entries.links(sha, at)  # a missing one raises
                if type_num != _TREE:
                    raise _Problem(f"is a {_TYPES.get(type_num, type_num)}, not a tree")
            except (RepositoryError, _Problem) as e:
                self.problems[sha] = str(e)
                continue
            picked.add(at, sha)
            for sub in walk:
                self._note(sub, sha)
                todo.append(sub)
            for blob in blobs:
                at = locate(blob)
                if seen.add(at, blob) and not before(blob):
                    if at or arrived.has(blob):
                        # a delta bomb in a small pack refuses the refs reaching it; one in a big
                        # pack (not read here: a read per blob) stops the copy, named (entry())
                        why = None if at else arrived.unresolvable(blob)
                        if why:
                            self.problems[blob] = why
                        else:
                            picked.add(at, blob)
                    elif not self.entries.promised_blobs:
                        self.problems[blob] = "is missing"
                if blob in self.problems:
                    self._note(blob, sha)

    def reaches_problem(self, tip: bytes) -> bytes | None:
        """A problem object ``tip`` reaches through the new history, or None."""
        if not self.problems:
            return None
        if self._tainted is None:  # every new object that reaches a problem: one walk back from them
            self._tainted = set()
            self._blame: dict[bytes, bytes] = {}
            todo = [(sha, sha) for sha in self.problems]
            while todo:
                sha, problem = todo.pop()
                if sha in self._tainted:
                    continue
                self._tainted.add(sha)
                self._blame[sha] = problem
                todo.extend((namer, problem) for namer in self.named_by.get(sha, ()))
        return self._blame.get(tip) if tip in self._tainted else None


class _Problem(RepositoryError):
    """Why an object breaks what names it (the message says it of the object)."""

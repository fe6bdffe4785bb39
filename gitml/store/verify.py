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

from dulwich.objects import parse_tree
from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from gitml.errors import RepositoryError
from gitml.names import EXPERIMENTS_PREFIX, RUNS_PREFIX, parse_experiment_ref, parse_run_ref
from gitml.store.entries import _COMMIT, _TAG, _TREE, PackEntries, commit_header, links_of

GITML_REFS = "refs/gitml/"
EXPERIMENT_FILE = b"experiment.yaml"
_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}


def refused_names(refs: Iterable[bytes]) -> dict[bytes, str]:
    """``{ref: why}`` for the names that are in none of gitml's formats (under
    ``refs/gitml/``) or are no valid git ref name (elsewhere)."""
    refused = {}
    for ref in refs:
        if ref.startswith(GITML_REFS.encode()):
            if parse_run_ref(ref) is None and parse_experiment_ref(ref) is None:
                refused[ref] = (
                    f"not a gitml ref name ({RUNS_PREFIX}<experiment id>/<32 hex digits> "
                    f"or {EXPERIMENTS_PREFIX}<experiment id>)"
                )
        elif not check_ref_format(ref):
            refused[ref] = "not a valid git ref name"
    return refused


class FetchedObjects:
    """The objects a fetch looks at: those that arrive, read from ``arrived`` (the
    source's pack entries on a local fetch, the received pack's otherwise), and the
    clone's own, of which only the ids (``before``) and a few commits (read through
    dulwich) are needed. Nothing reads the clone's packs whole."""

    def __init__(self, arrived: PackEntries, local: Repo, before: Callable[[bytes], bool]):
        self.arrived, self.local, self.before = arrived, local, before

    def has(self, sha: bytes) -> bool:
        return self.arrived.has(sha) or self.before(sha)

    def raw(self, sha: bytes) -> tuple[int, bytes]:
        found = self.arrived.get(sha)
        if found is not None:
            return found
        try:
            return self.local.object_store.get_raw(sha)
        except KeyError:
            raise _Problem("is missing") from None

    def links(self, sha: bytes) -> tuple[int, list[bytes], list[bytes]]:
        return links_of(*self.raw(sha))


def check_fetched(
    objects: FetchedObjects,
    refs: dict[bytes, bytes],
    *,
    heads: Iterable[bytes],
    known: set[bytes],
) -> tuple[dict[bytes, str], list[bytes]]:
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
    tags = set()
    for ref, sha in refs.items():
        why = _tip_problem(objects, ref, sha)
        if why:
            refused[ref] = why
        elif ref.startswith(b"refs/tags/"):  # a registry tag: its commit is the tip to walk
            if not objects.before(sha):
                tags.add(sha)
            target = objects.raw(sha)[1][7:47]
            if target not in known:
                tips[ref] = target
        elif sha not in known:
            tips[ref] = sha
    if not tips:
        return refused, sorted(tags)
    walk = _Walk(objects)
    walk.run(set(tips.values()), _peel(objects, heads), known)
    for ref, sha in tips.items():
        bad = walk.reaches_problem(sha)
        if bad is not None:
            refused[ref] = f"incomplete: object {bad.decode()}, which it reaches, {walk.problems[bad]}"
    return refused, sorted(tags) + walk.new


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


def _tip_problem(entries: FetchedObjects, ref: bytes, sha: bytes) -> str | None:
    try:
        if not entries.has(sha):
            return f"its object {sha.decode()} did not arrive"
        type_num, raw = entries.raw(sha)
        if ref.startswith(b"refs/tags/"):  # registry tags are annotated tags of commits
            if type_num != _TAG or not raw.startswith(b"object ") or raw[47:60] != b"\ntype commit\n":
                return "not an annotated tag of a commit"
            if not entries.has(raw[7:47]):
                return f"its commit {raw[7:47].decode()} did not arrive"
            return None
        if type_num != _COMMIT:
            return f"points at a {_TYPES.get(type_num, type_num)}, not a commit"
        if parse_experiment_ref(ref) is not None:
            tree = raw[5:45]  # "tree <sha>" is the first line
            if not entries.has(tree):
                return None  # the walk names the missing tree
            if not any(name == EXPERIMENT_FILE for name in _tree_names(entries, tree)):
                return f"its commit {sha.decode()} holds no {EXPERIMENT_FILE.decode()} (not an experiment record)"
    except RepositoryError as e:
        return f"its object {sha.decode()} cannot be read ({e})"
    return None


def _tree_names(entries: FetchedObjects, tree: bytes) -> list[bytes]:
    type_num, raw = entries.raw(tree)
    if type_num != _TREE:
        return []
    return [name for name, mode, _sha in parse_tree(raw, 20) if mode & 0o170000 == 0o100000]


def _peel(entries: FetchedObjects, shas: Iterable[bytes]) -> list[bytes]:
    """The commits ``shas`` name (annotated tags followed), those held here."""
    out = []
    for sha in shas:
        for _ in range(16):
            try:
                if not entries.has(sha):
                    break
                type_num, walk, _ = entries.links(sha)
            except RepositoryError:
                break
            if type_num == _COMMIT:
                out.append(sha)
            if type_num != _TAG:
                break
            sha = walk[0]
    return out


class _Walk:
    """One walk over the new history, recording which new object names which
    (``named_by``), so that a problem found is blamed on exactly the tips that reach it."""

    def __init__(self, entries: FetchedObjects):
        self.entries = entries
        self.before = entries.before
        self.new: list[bytes] = []  # objects walked that the clone lacked and that are here now
        self.problems: dict[bytes, str] = {}  # object -> why it breaks what names it
        self.named_by: dict[bytes, list[bytes]] = {}
        self._info: dict[bytes, tuple[int, list[bytes], bytes]] = {}  # commit -> (time, parents, tree)
        self._seen: set[bytes] = set()  # trees and blobs looked at
        self._tainted: set[bytes] | None = None

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
                found = self._commit(sha, required=not mine and sha not in known)
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
            if not mine:
                if sha in walked:
                    continue
                walked.add(sha)
                if not self.before(sha):
                    self.new.append(sha)
                self._tree(self._info[sha][2], sha)
            for parent in self._info[sha][1]:
                if not mine:
                    self.named_by.setdefault(parent, []).append(sha)
                queue(parent, mine)

    def _commit(self, sha: bytes, *, required: bool) -> tuple[int, list[bytes], bytes] | None:
        """``(commit time, parents, tree)``; a missing or mistyped one is a problem if ``required``."""
        try:
            if not self.entries.has(sha):
                raise _Problem("is missing")
            type_num, raw = self.entries.raw(sha)
            if type_num != _COMMIT:
                raise _Problem(f"is a {_TYPES.get(type_num, type_num)}, not a commit")
        except (RepositoryError, _Problem) as e:
            if required:
                self.problems[sha] = str(e)
            return None
        return commit_header(raw)

    def _tree(self, tree: bytes, commit: bytes) -> None:
        self.named_by.setdefault(tree, []).append(commit)
        todo = [tree]
        while todo:
            sha = todo.pop()
            if sha in self._seen:
                continue
            self._seen.add(sha)
            if self.before(sha):
                continue  # here before the fetch: complete
            try:
                type_num, walk, blobs = self.entries.links(sha)  # a missing one raises
                if type_num != _TREE:
                    raise _Problem(f"is a {_TYPES.get(type_num, type_num)}, not a tree")
            except (RepositoryError, _Problem) as e:
                self.problems[sha] = str(e)
                continue
            self.new.append(sha)
            for sub in walk:
                self.named_by.setdefault(sub, []).append(sha)
                todo.append(sub)
            for blob in blobs:
                if blob not in self._seen:
                    self._seen.add(blob)
                    if self.before(blob):
                        pass
                    elif self.entries.arrived.has(blob):
                        self.new.append(blob)
                    else:
                        self.problems[blob] = "is missing"
                if blob in self.problems:
                    self.named_by.setdefault(blob, []).append(sha)

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

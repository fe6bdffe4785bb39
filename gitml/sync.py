"""Sharing runs: ``push`` uploads the artifact objects the remote lacks, then the refs;
``fetch`` brings ``refs/gitml/*`` (artifacts on first access, or at once).

A ref is never pushed before every object its runs reference is in the
artifact remote: the upload comes first and a failure stops the push. An
interrupted push resumes without re-sending what arrived (the objects known to
be on the remote are remembered locally, and checked on the remote otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gitml.client import Client
from gitml.content.cas import GcMark
from gitml.errors import (
    CorruptRecordError,
    GitmlError,
    IntegrityError,
    InvalidInputError,
    LocalArtifactsError,
    ObjectMissingError,
)
from gitml.names import (
    EXPERIMENTS_PREFIX,
    REGISTRY_PREFIX,
    RUN_REF_NAMES,
    RUNS_PREFIX,
    experiment_ref,
    parse_registry_ref,
    parse_run_ref,
)
from gitml.ops import Operations
from gitml.registry.tags import TAGS_PREFIX
from gitml.store.refspans import Comparison, compare
from gitml.store.remote import (
    NON_FAST_FORWARD,
    REJECTED_BEHIND,
    FetchResult,
    fetch_refs,
    list_remote_refs,
    local_path,
    push_refs,
    resolve_remote,
    unchanged_refs,
)

Progress = Callable[[int, int, int, int], None]  # files done, files total, bytes done, bytes total


@dataclass
class PushResult:
    url: str
    refs: dict[str, str] = field(default_factory=dict)  # ref -> "ok" | reason, for every ref looked at
    held: int = 0  # refs selected that the remote held as they are here, counted, not in refs
    pushed: list[str] = field(default_factory=list)  # the refs the remote did not have at these values
    notes: dict[str, str] = field(default_factory=dict)  # ref -> something to know, not an error
    remote_messages: list[str] = field(default_factory=list)  # what the server said (its hooks' output)
    uploaded: int = 0
    uploaded_bytes: int = 0
    artifacts_referenced: int = 0
    local_artifact_remote: str | None = None  # set when the artifact remote is a folder here
    refusal: str | None = None  # the host's refusal of the push, in one line (a hook, a cap on refs per push)
    batch_refs: int = 0  # refs sent per push (push.batch_refs)

    @property
    def rejected(self) -> dict[str, str]:
        return {r: s for r, s in self.refs.items() if s != "ok"}

    @property
    def unchanged(self) -> int:
        """The refs selected that the remote held already (with those it holds its own
        record of: an experiment made in two clones)."""
        return self.held + len(self.refs) - len(self.pushed) - len(self.rejected)


@dataclass
class FetchOutcome:
    url: str
    result: FetchResult
    downloaded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # object or run ref -> why it could not be had


def select_refs(
    client: Client, *, experiments: list[str] | None = None, runs: list[str] | None = None
) -> dict[bytes, bytes]:
    """The run refs to share (all by default) and the refs of their experiments."""
    client = Operations.of(client)  # a plain gitml.Client too
    all_runs = client.run_refs()
    chosen: dict[bytes, bytes] = {}
    if not experiments and not runs:
        chosen = dict(all_runs)
    for spec in experiments or []:
        experiment = client.get_experiment_by_name(spec)
        if experiment is None:
            if not spec.isdigit():
                raise InvalidInputError(f"no experiment named {spec!r}")
            experiment = client.get_experiment(spec)
        prefix = f"refs/gitml/runs/{experiment.experiment_id}/".encode()
        chosen.update({r: s for r, s in all_runs.items() if r.startswith(prefix)})
    for spec in runs or []:
        ref = client.run_ref(client.resolve_run(spec))
        chosen[ref] = all_runs[ref]
    experiment_refs = client.experiment_refs()
    if not experiments and not runs:  # everything: experiments without runs too
        chosen.update(experiment_refs)
    experiment_ids = {parts[0] for parts in map(parse_run_ref, chosen) if parts} if experiments or runs else set()
    for experiment_id in experiment_ids:
        ref = experiment_ref(experiment_id)
        if ref in experiment_refs:
            chosen[ref] = experiment_refs[ref]
    return chosen


def push(
    client: Client,
    remote: str | None = None,
    *,
    experiments: list[str] | None = None,
    runs: list[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    allow_local_artifacts: bool = False,
) -> PushResult:
    """Upload the selected runs' missing artifact objects, then push their refs.

    Runs whose large artifacts (over ``artifacts.inline_max_bytes``, so not in git) are only
    in this user's default store are refused before anything moves when the git remote is
    one other people reach (ssh, git, http): teammates who pull could not load them
    (:class:`LocalArtifactsError`); ``allow_local_artifacts`` pushes them all the same.

    The objects looked at are those of every run commit not yet confirmed on the
    artifact remote (a ref pushed by plain ``git push``, or a new artifact remote,
    is looked at again). A run whose object is lost here (its cached copy missing
    or damaged, and not on the remote) is not pushed; the others are.
    """
    client = Operations.of(client)  # a plain gitml.Client too
    store = client.store
    url = resolve_remote(store, remote, push=True)
    content = client.artifacts.content
    everything = not experiments and not runs
    compared = _compared(client, url) if everything else None
    if compared is not None:  # the refs of folders the remote holds as they are here: counted
        refs, held = compared.changed, compared.held
    else:
        refs, held = select_refs(client, experiments=experiments, runs=runs), 0
    if not refs and not held:
        raise InvalidInputError("no runs to push")
    there = compared.there if compared is not None else unchanged_refs(store, url, refs)
    todo = {r: s for r, s in refs.items() if r not in there}
    if not allow_local_artifacts:
        _refuse_local_artifacts(client, url, todo)
    confirmed = content.confirmed_commits()
    unconfirmed = {r: s for r, s in refs.items() if parse_run_ref(r) and s not in confirmed}
    broken: dict[bytes, str] = {}
    by_run = client.artifacts.objects_by_run(unconfirmed, stop=confirmed, broken=broken)
    objects: dict[str, tuple[str, str]] = {}
    for found in by_run.values():
        for sha, where in found.items():
            objects.setdefault(sha, where)
    result = PushResult(url, held=held, artifacts_referenced=len(objects))
    lost: set[str] = set()
    if objects:
        if "://" not in content.remote_url or content.remote_url.startswith("file://"):
            result.local_artifact_remote = content.remote_url
        # asked again, not taken from what earlier pushes saw: objects uploaded by a push
        # whose refs never arrived are garbage to a teammate's `gc --remote` meanwhile
        missing = content.missing_on_remote(set(objects), ask=True)
        # objects a gc marked for deletion that these runs use again are written again, so that
        # the gc's second phase sees them newer than its mark and keeps them (two-phase gc)
        marked = set().union(*(m.shas for m in content.gc_marks())) if not _is_default_store(content) else set()
        missing |= set(objects) & marked
        _materialize(client, missing, by_run)
        total_bytes = sum(_size(content, s) for s in missing)
        done = [0, 0]

        def step(files: int, size: int) -> None:
            done[0] += files
            done[1] += size
            if progress:
                progress(done[0], len(missing), done[1], total_bytes)

        if progress and missing:
            progress(0, len(missing), 0, total_bytes)
        result.uploaded = content.upload(
            missing,
            what=lambda s: f"run {objects[s][0]} artifact {objects[s][1]!r}",
            progress=step,
            lost=lost,
            checked=True,
        )
        result.uploaded_bytes = done[1]
    blocked = {ref: f"rejected: {why}" for ref, why in broken.items()}
    for ref, found in by_run.items():
        gone = sorted((where[1], sha) for sha, where in found.items() if sha in lost)
        if gone:
            path, sha = gone[0]
            blocked[ref] = (
                f"rejected: artifact {path!r} ({sha[:12]}) is lost here (its cached copy is missing or changed) "
                "and is not on the artifact remote" + (f", with {len(gone) - 1} more" if len(gone) > 1 else "")
            )
    send = {r: s for r, s in todo.items() if r not in blocked}
    said: list[bytes] = []
    refusals: list[str] = []
    result.batch_refs = _batch_refs(client)
    statuses = (
        push_refs(store, url, send, force=force, progress=said.append, batch=result.batch_refs, refusals=refusals)
        if send
        else {}
    )
    result.refusal = refusals[0] if refusals else None
    result.remote_messages = _remote_lines(b"".join(said))
    for ref, status in statuses.items():
        if status in (NON_FAST_FORWARD, REJECTED_BEHIND) and ref.startswith(EXPERIMENTS_PREFIX.encode()):
            # made in two clones: not an error; the runs went, and a fetch joins the two records
            statuses[ref] = "ok"
            result.notes[ref.decode()] = "the remote has its own record of this experiment; `gitml fetch` joins them"
    statuses.update(blocked)
    result.refs = dict.fromkeys([r.decode() for r in refs], "ok")
    result.refs.update({r.decode(): status for r, status in statuses.items() if r in refs})
    # only a run the remote now names is safe from a teammate's remote gc: confirmed after its ref
    newly = [s for r, s in unconfirmed.items() if result.refs[r.decode()] == "ok"]
    content.confirm_commits(newly)
    if everything and compared is None:
        _confirm_packed_refs(client, confirmed, newly)
    result.pushed = [r.decode() for r in send if statuses.get(r) == "ok" and r.decode() not in result.notes]

    def on_remote() -> dict[bytes, bytes]:
        listed = {**compared.held_refs(), **refs} if compared is not None else refs
        return {r: s for r, s in listed.items() if result.refs.get(r.decode(), "ok") == "ok" and parse_run_ref(r)}

    _push_registry_tags(client, url, on_remote, result)
    _push_registry_metadata(client, url, result)
    return result


def _push_registry_metadata(client: Operations, url: str, result: PushResult) -> None:
    """Push the registered models' metadata refs (descriptions, MLflow tags) the remote
    lacks, by fast-forward only: one the remote changed meanwhile is refused, and
    ``gitml fetch`` joins the two (:meth:`RegistryMetadata.merge`)."""
    refs = client.store.refs_under(REGISTRY_PREFIX)
    if not refs:
        return
    there = unchanged_refs(client.store, url, refs, (REGISTRY_PREFIX,))
    send = {r: s for r, s in refs.items() if r not in there}
    if not send:
        return
    for ref, status in push_refs(client.store, url, send).items():
        if status in (NON_FAST_FORWARD, REJECTED_BEHIND):
            status = (
                "rejected: the remote's metadata of this registered model changed meanwhile: "
                "`gitml fetch` joins the two, then push again"
            )
        result.refs[ref.decode()] = status
        if status == "ok":
            result.pushed.append(ref.decode())


def _refuse_local_artifacts(client: Operations, url: str, todo: dict[bytes, bytes]) -> None:
    """Raise LocalArtifactsError when runs about to go to a remote others reach have large
    artifacts only in this user's default store (see :func:`push`)."""
    import os

    from gitml.content.config import default_remote

    content = client.artifacts.content
    store_url = content.remote_url
    if "://" in store_url or os.path.abspath(store_url) != os.path.abspath(default_remote()):
        return  # a shared or configured store
    if not _reached_by_others(url):
        return  # a path or file:// URL on this machine
    runs = {r: s for r, s in todo.items() if parse_run_ref(r)}
    if not runs:
        return
    limit = client.artifacts.inline_max_bytes
    large = sorted(
        where
        for found in client.artifacts.objects_by_run(runs, broken={}).values()
        for sha, where in found.items()
        if _stored_size(content, sha) > limit
    )
    if large:
        run_id, path = large[0]
        more = f" (and {len(large) - 1} more)" if len(large) > 1 else ""
        raise LocalArtifactsError(
            f"run {run_id}'s artifact {path!r}{more} would stay in {store_url}, this user's default store, "
            f"where teammates pulling from {url} cannot read it: share an artifact remote "
            "(gitml config --committed artifacts.remote s3://bucket/path) or push with --allow-local-artifacts"
        )


def _reached_by_others(url: str) -> bool:
    """Whether a git remote's URL is served to other people (a network URL), not a path here."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme not in ("", "file")


def _stored_size(content, sha: str) -> int:
    """An object's size in the cache, else in the (local) artifact store."""
    import os

    for path in (content.cache_path(sha), os.path.join(content.remote_url, sha[:2], sha[2:])):
        try:
            return os.path.getsize(path)
        except OSError:
            continue
    return 0


def _compared(client: Operations, url: str) -> Comparison | None:
    """This clone's runs and experiments against a remote on this machine whose packed-refs
    holds most of them as they are here, when every run commit of this clone's
    packed-refs is known to have its artifacts on the artifact remote: the refs of
    folders alike on both sides are counted, and only the others looked at. None
    otherwise (a remote over the network: its listing is the comparison)."""
    folder = local_path(url)
    if folder is None:
        return None
    client.settle_runs()
    compared = compare(client.store, folder, [(RUNS_PREFIX, RUN_REF_NAMES), (EXPERIMENTS_PREFIX, None)])
    if compared is None or not client.artifacts.content.all_confirmed(compared.digest):
        return None
    return compared


def _confirm_packed_refs(client: Operations, confirmed: AbstractSet[bytes], newly: list[bytes]) -> None:
    """After a push of every run: mark this clone's packed-refs confirmed when each run
    commit it names is (the next push then looks at the loose refs alone)."""
    digest, packed = client.store.packed_refs_listing(RUNS_PREFIX, RUN_REF_NAMES)
    done = set(newly)
    if all(sha in done or sha in confirmed for sha in packed.values()):
        client.artifacts.content.confirm_packed_refs(digest)


def _batch_refs(client: Operations) -> int:
    """``push.batch_refs``: the refs one push to a server sends (docs/design.md, Scaling out)."""
    from gitml.content.config import PUSH_BATCH_REFS, load

    return load(client.store)[PUSH_BATCH_REFS]


def _push_registry_tags(
    client: Operations, url: str, on_remote: Callable[[], dict[bytes, bytes]], result: PushResult
) -> None:
    """Push the registry tags of the runs the remote now holds, after those runs: a tag
    whose run did not arrive is never sent alone. A tag the remote holds with another
    value (the same counter taken by a promotion made elsewhere) is refused, never moved."""
    if not client.store.refs_under(TAGS_PREFIX):
        return  # no tag at all: the registry's modules are not even imported
    registry = client.registry
    held = registry.tag_refs()
    if not held:
        return  # the usual case: the remote's tags are not even asked for
    there = unchanged_refs(client.store, url, {tag.ref: sha for tag, sha in held.items()}, (TAGS_PREFIX,))
    unsent = {tag: sha for tag, sha in held.items() if tag.ref not in there}
    if not unsent:
        return  # nothing below reads 100,000 run refs for no tag
    by_run = {parse_run_ref(r)[1]: s for r, s in on_remote().items()}  # type: ignore[index]
    tags: dict[bytes, bytes] = {}
    for tag, sha in unsent.items():
        event = registry.event(tag, sha)
        run_id = str(event.info.get("run_id", "")) if event is not None else ""
        head = by_run.get(run_id)
        if event is not None and head is not None and registry.descends(head, event.target.encode()):
            tags[tag.ref] = sha
    if not tags:
        return
    refusals: list[str] = []
    statuses = push_refs(client.store, url, tags, batch=_batch_refs(client), refusals=refusals)
    result.refusal = result.refusal or (refusals[0] if refusals else None)
    for ref, status in statuses.items():
        if status == "rejected: tag already exists":
            status = (
                "rejected: the remote has another tag of this name (a registry event made in another "
                "clone took this counter): `gitml fetch`, then repeat the promotion"
            )
        result.refs[ref.decode()] = status
        if status == "ok":
            result.pushed.append(ref.decode())


def _materialize(client: Operations, shas: set[str], by_run: dict[bytes, dict[str, tuple[str, str]]]) -> None:
    """Put in the cache the objects that live only inline in git, each from any run
    whose inline copy matches its hash: a run whose manifest claims another's hash
    without holding its bytes (hostile, or damaged) stands in no other run's way."""
    content = client.artifacts.content
    wanted = {sha for sha in shas if not content.has_local(sha)}
    for found in by_run.values():
        for sha, (run_id, path) in found.items():
            if sha not in wanted:
                continue
            try:
                data = client.artifacts.inline_copy(run_id, path, sha)
            except GitmlError:  # that run's record is unreadable: another run may hold the bytes
                continue
            if data is not None:
                content.add_bytes(data)
                wanted.discard(sha)


@dataclass
class Garbage:
    """What a gc of the artifact remote finds: ``due``, objects an earlier gc marked at least
    ``keep_recent`` ago, still unreferenced and not written since (deleted by ``--delete``), by
    their mark; ``fresh``, unreferenced objects not marked yet (marked by ``--delete``)."""

    due: dict[str, GcMark] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)
    marks: list[GcMark] = field(default_factory=list)


def remote_garbage(client: Client, *, git_remote: str | None = None, keep_recent: float = 3600) -> Garbage:
    """The artifact remote's objects no run references, in the two phases of its gc.

    An object no run references is first marked (a file under ``gitml-gc/`` on the remote);
    a later gc deletes it once its mark is ``keep_recent`` old, if no run references it then
    and nobody wrote it since. A push whose runs use a marked object writes it again (see
    :func:`push`), so a teammate pushing while a gc runs never loses an object: either the
    push saw the mark and refreshed the object, or it finished its refs before the grace ran
    out, and the gc sees them (it refuses while a git remote has run commits this clone lacks).

    Refused for the default store (every repository of the user shares it, and gitml cannot
    know what the others reference), and when a git remote (the one given, else every
    configured one) has runs this clone lacks. Objects written in the last ``keep_recent``
    seconds are not even marked (a teammate's push uploads them before its refs arrive), nor
    are objects whose time the backend does not tell.
    """
    client = Operations.of(client)  # a plain gitml.Client too
    import time

    from gitml.store.remote import configured_remotes, is_ancestor

    content = client.artifacts.content
    if _is_default_store(content):
        raise InvalidInputError(
            f"the default artifact store {content.remote_url} is shared by every repository of this user, "
            "so gitml cannot tell what the others reference; it is never garbage-collected"
        )
    store = client.store
    urls = [resolve_remote(store, git_remote)] if git_remote else list(configured_remotes(store).values())
    ours = client.run_refs()
    for url in urls:  # none configured: this clone is the only record of runs
        lacking = [
            ref
            for ref, sha in list_remote_refs(store, url).items()
            if parse_run_ref(ref)
            and ours.get(ref) != sha
            and not (ref in ours and is_ancestor(store.repo, sha, ours[ref]))
        ]
        if lacking:
            raise InvalidInputError(
                f"{url} has {len(lacking)} run commit(s) this clone lacks, whose artifacts would look unreferenced: "
                "`gitml fetch` first"
            )
    keep = set(client.artifacts.referenced_objects())
    cutoff = time.time() - keep_recent
    found = Garbage(marks=content.gc_marks())
    marked: set[str] = set()
    for mark in found.marks:
        marked |= mark.shas
        if mark.written > cutoff:
            continue
        for sha in sorted(mark.shas - keep):
            written = content.remote_modified(sha)
            if written is not None and written <= mark.written:  # not written again since it was marked
                found.due.setdefault(sha, mark)
    found.fresh = sorted(
        sha
        for sha in content.remote_objects() - keep - marked
        if (content.remote_modified(sha) or float("inf")) < cutoff
    )
    return found


def _is_default_store(content) -> bool:
    from gitml.content.config import default_remote

    return _same_folder(content.remote_url, default_remote())


def _same_folder(url: str, folder: str) -> bool:
    """Whether an artifact remote URL names this folder (a path, ``file://``, ``~``, ``..``)."""
    import os

    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        return False
    return os.path.realpath(os.path.expanduser(url)) == os.path.realpath(folder)


def _remote_lines(text: bytes) -> list[str]:
    """The server's messages as lines (progress lines, rewritten with \\r, dropped), each once:
    a batch sent again (push.batch_refs) hears its hook say the same again."""
    lines: dict[str, None] = {}
    for line in text.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        line = line.rsplit("\r", 1)[-1].rstrip()
        if line and not line.startswith(("copied ", "sending ")):
            lines[line] = None
    return list(lines)


def _size(content, sha: str) -> int:
    import os

    try:
        return os.path.getsize(content.cache_path(sha))
    except FileNotFoundError:
        return 0


def _check_record(client: Operations) -> Callable[[bytes, bytes], str | None]:
    """The fetch's check of a ref's new content: a registered model's metadata must parse
    and name its own model (its modules imported only when such a ref arrives)."""
    prefix = REGISTRY_PREFIX.encode()

    def check(ref: bytes, sha: bytes) -> str | None:
        return client.registry_metadata.fetched_problem(ref, sha) if ref.startswith(prefix) else None

    return check


def _fetch_registry_tags(store, url: str, result: FetchResult) -> None:
    """Registry tags come with the runs (other tags are git's business); a tag that
    differs from this clone's (a counter taken in two clones) is reported as diverged and
    this clone's is kept: tags never move."""
    from gitml.registry.tags import parse_tag

    tags = fetch_refs(store, url, (TAGS_PREFIX,), accept=parse_tag)
    for name in ("created", "updated", "unchanged", "ahead", "diverged"):
        getattr(result, name).extend(getattr(tags, name))
    result.refused.update(tags.refused)
    result.remote.update(tags.remote)


def fetch(
    client: Client,
    remote: str | None = None,
    *,
    artifacts: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> FetchOutcome:
    """Bring the remote's runs and experiments; with ``artifacts``, download their objects
    too; with ``force``, the remote's history of a run written in two places wins."""
    client = Operations.of(client)  # a plain gitml.Client too
    store = client.store
    url = resolve_remote(store, remote)
    from gitml.runlog.identity import rewritten

    result = fetch_refs(
        store, url, force=force, vet=lambda ours, theirs: rewritten(store, ours, theirs), check=_check_record(client)
    )
    _fetch_registry_tags(store, url, result)
    prefix = EXPERIMENTS_PREFIX.encode()
    for ref in [r for r in result.diverged if r.startswith(prefix)]:  # created in two clones: join them
        if client.merge_experiment(ref[len(prefix) :].decode(), result.remote[ref]):
            result.diverged.remove(ref)
            result.updated.append(ref)
    registry = REGISTRY_PREFIX.encode()
    for ref in [r for r in result.diverged if r.startswith(registry)]:  # edited in two clones: join them
        slug = parse_registry_ref(ref)
        try:
            joined = slug is not None and client.registry_metadata.merge(slug, result.remote[ref])
        except CorruptRecordError as e:  # kept diverged, this clone's kept, the reason told
            result.diverged.remove(ref)
            result.refused[ref] = f"{e}; this clone's is kept"
            continue
        if joined:
            result.diverged.remove(ref)
            result.updated.append(ref)
    outcome = FetchOutcome(url, result)
    if artifacts:
        changed = set(result.created) | set(result.updated) | set(result.unchanged)
        refs = {r: s for r, s in client.run_refs().items() if r in changed}
        broken: dict[bytes, str] = {}
        sizes: dict[str, int] = {}
        objects = client.artifacts.referenced_objects(refs, broken=broken, sizes=sizes)
        outcome.failed.update({ref.decode(): f"{ref.decode()}: {why}" for ref, why in broken.items()})
        content = client.artifacts.content
        inline = {
            s for s, (run_id, path) in objects.items() if client.artifacts.inline_copy(run_id, path, s) is not None
        }
        todo = sorted(s for s in objects if not content.has_local(s) and s not in inline)
        done = [0]
        broken_remote: list[str] = []

        def get(sha: str) -> None:
            if broken_remote:
                return  # the remote itself fails: one message, not one per object
            run_id, path = objects[sha]
            try:
                content.download(sha, what=f"run {run_id} artifact {path!r}", size=sizes.get(sha))
            except (ObjectMissingError, IntegrityError) as e:  # one object missing or damaged: the others still come
                outcome.failed[sha] = str(e)
                return
            except GitmlError as e:
                broken_remote.append(str(e))
                outcome.failed[sha] = str(e)
                return
            done[0] += 1
            if progress:
                progress(done[0], len(todo), 0, 0)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(get, todo))
        outcome.downloaded = done[0]
    return outcome

"""The registry's state, read from tags, and the events that change it.

Which version a stage holds (identical in the CLI, the API and ``models:/`` URIs): of a
model's assign/unassign tags for the stage, the newest for each version says whether
that version is in the stage; the stage holds, of the versions in it, the one assigned
last. Newest is GTO's rule: by tag time, the counter ``N`` breaking a same-second tie
(:func:`order`); gitml writes a model's tags at strictly increasing times, so GTO reads
its bursts in the order written. A deregistered version holds no stage; a
stage tag on a commit that is no registered version of the model is reported by
``verify`` and ignored. When the policy requires signatures for a stage, its tags are
checked newest first until the holder is known, and a tag that is not signed by a
trusted key is ignored (``on_untrusted: ignore``) or stops the resolution
(``refuse``), with a message naming the tag and why. The same holds for every event that
changes what a reference resolves to (:meth:`Policy.guards`: deregistrations and
deprecations while any stage requires signatures, registrations too under
``require_signature: true``), and a tag counts only under the name its object carries
(a ref re-pointed at another tag's object is ignored and reported, signed or not). The
policy is the trusted ref's, as this clone accepted it (:mod:`gitml.registry.trust`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from dulwich.objects import Commit, Tag

from gitml.errors import (
    ConflictError,
    CorruptRecordError,
    GateError,
    GitmlError,
    InvalidInputError,
    ModelChangedError,
    NoModelError,
    NotFoundError,
    RegisteredModelNotFound,
    RunNotFoundError,
    UntrustedTagError,
)
from gitml.names import check_artifact_path
from gitml.registry.events import ModelState, ModelVersion, TagEvent
from gitml.registry.gates import GateReport, judge, unjudged
from gitml.registry.policy import POLICY_PATH, Policy, described, load_policy
from gitml.registry.signing import SigningConfig, Verification, sign, split_signed, verify
from gitml.registry.tags import (
    TAGS_PREFIX,
    Action,
    RegistryTag,
    bump,
    check_stage,
    check_version,
    may_be_slug,
    model_slug,
    parse_tag,
    version_key,
)
from gitml.runlog.record import ARTIFACTS, RECORD_DIR, RunRecord, check_manifest
from gitml.runlog.tracker import Tracker
from gitml.store import yamlout
from gitml.store.entries import MAX_TAG_BYTES
from gitml.store.git import GitStore
from gitml.yamlread import MAX_YAML_BYTES, load_yaml

log = logging.getLogger("gitml")
Evaluator = Callable[[ModelVersion, str], dict[str, float]]  # (version, dataset name) -> metrics


def _now() -> tuple[int, int]:
    """``(seconds, tz offset seconds)``; ``GIT_COMMITTER_DATE`` (``<unix> <+hhmm>``) pins it, as in git."""
    pinned = os.environ.get("GIT_COMMITTER_DATE", "").strip().lstrip("@")
    if pinned:
        seconds, _, zone = pinned.partition(" ")
        if seconds.isdigit():
            offset = 0
            if len(zone) == 5 and zone[0] in "+-" and zone[1:].isdigit():
                offset = (int(zone[1:3]) * 3600 + int(zone[3:]) * 60) * (-1 if zone[0] == "-" else 1)
            return int(seconds), offset
    now = time.time()
    return int(now), time.localtime(now).tm_gmtoff


_TIE_RANK = {Action.DEPRECATE: 0, Action.REGISTER: 1, Action.ASSIGN: 1, Action.DEREGISTER: 2, Action.UNASSIGN: 2}


def order(event: TagEvent) -> tuple[int, int, int]:
    """Which of two events is newer: GTO's rule, the tag time; in a same-second tie the
    counter ``N`` (none: 0), then GTO's own tie rules (a deregistration beats a
    registration, an unassignment an assignment, any event a deprecation)."""
    return event.time, event.tag.counter or 0, _TIE_RANK[event.tag.action]


def _is_version(text: str) -> bool:
    """Whether a ``models:/<name>/<x>`` reference is a version (else it is a stage)."""
    if text == "latest":
        return True
    try:
        check_version(text)
    except InvalidInputError:
        return False
    return True


def _slug_or_none(name: str) -> str | None:
    try:
        return model_slug(name)
    except InvalidInputError:
        return None


def _named_number(event: TagEvent) -> int:
    """The MLflow number a gitml registration tag names (``number:`` in its message: an import
    keeps MLflow's numbers across the versions it could not bring), else 0. The message is
    parsed only when it has that key."""
    if b"\n  number: " not in event.raw:
        return 0
    number = event.info.get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 1 << 31 else 0


def _number(numbered: dict[str, int], event: TagEvent) -> None:
    """Give a registration's version its MLflow number if it has none: the next one, or the one
    a gitml tag names (an import's, above every number before it: a gap kept)."""
    version = event.tag.version
    if version is not None and version not in numbered:
        numbered[version] = max(_named_number(event), max(numbered.values(), default=0) + 1)


def _numbered(registrations: list[TagEvent]) -> dict[str, int]:
    """``{version: number}`` of a model's registrations, in the registry's order (not judged:
    what registering needs to name the next number without reading the policy)."""
    numbered: dict[str, int] = {}
    for event in sorted(registrations, key=lambda e: (*order(e), e.tag.name)):
        _number(numbered, event)
    return numbered


def describe_versions(state: ModelState, limit: int = 20) -> str:
    """``1 (v1.0.0), 2 (v1.1.0, deregistered)``: a model's versions by number, for messages."""
    shown = [
        f"{n} ({v}{', deregistered' if state.versions[v].deregistered else ''})"
        for n, v in sorted(state.numbers.items())
    ]
    if not shown:
        return "no version"
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def check_stage_case(state: ModelState, stage: str) -> None:
    """Refuse a stage (or alias) whose name differs from one the model already has only by
    case (``Production`` beside ``production``): two stages a reader cannot tell apart, and
    two refs that collide on a case-insensitive file system (macOS, Windows)."""
    known = {e.tag.stage for e in state.events if e.tag.stage is not None} | set(state.stages)
    twins = sorted(s for s in known if s != stage and s.lower() == stage.lower())
    if twins:
        raise InvalidInputError(
            f"stage {stage!r} of registered model {state.name!r} differs only by case from its stage {twins[0]!r}: "
            f"use {twins[0]!r} (stage and alias names are compared without case)"
        )


class Registry:
    """The model registry of one repository: tags under ``refs/tags/`` in GTO's format.

    >>> reg = client.registry
    >>> reg.register("churn", run_id, "model")           # churn@v1.0.0
    >>> reg.assign("churn", "v1.0.0", "production")      # churn#production#1
    >>> reg.resolve("churn", stage="production").run_id
    """

    def __init__(
        self,
        store: GitStore,
        tracker: Tracker,
        *,
        policy_commit: bytes | None = None,
        policy_label: str = "",
        model_files: Callable[[str, str], dict] | None = None,
    ):
        self.store = store
        self.tracker = tracker
        self._policy_commit = policy_commit  # given: the policy of that commit decides (``check --base``)
        self._policy_label = policy_label
        self._policy: Policy | None = None
        self._policy_key: tuple = ()  # what the deciding policy was read from (trust.marker)
        self._verified: dict[bytes, Verification] = {}
        self._events: dict[bytes, TagEvent] = {}
        self._prefetched: dict[bytes, tuple[int, bytes]] = {}

    def _prefetch(self, shas) -> None:
        """Read the tag objects not read yet in one pass over the packs."""
        todo = [s for s in shas if s not in self._events]
        if len(todo) > 64:
            try:
                self._prefetched.update(self.store.raw_many(todo, MAX_TAG_BYTES))
            except CorruptRecordError:
                pass  # read one by one, each failure named

    # -- configuration ---------------------------------------------------
    def signing_config(self) -> SigningConfig:
        return SigningConfig.from_git_config(self.store.config(), self.store.identity().as_bytes().decode())

    @property
    def policy(self) -> Policy:
        """The policy that decides (its ``source`` says which): the trusted ref's as this
        clone accepted it (:func:`gitml.registry.trust.deciding_policy`), or the given
        commit's. Raises PolicyError when it cannot be read (nothing then resolves)."""
        if self._policy is None:
            from gitml.registry import trust

            cfg = self.signing_config()
            programs = {"gpg_program": cfg.gpg_program, "ssh_program": cfg.ssh_program}
            if self._policy_commit is not None:
                at = f"{self._policy_label or 'commit'} at {self._policy_commit.decode()[:12]}"
                found = load_policy(self.store, self._policy_commit, source=at, **programs)
                self._policy = described(
                    found, f"the policy of {at}" if found.text is not None else f"no policy on {at}"
                )
            else:
                self._policy_key = trust.marker(self.store)
                self._policy = trust.deciding_policy(self.store, **programs)
        return self._policy

    def under_policy(self, commit: bytes, label: str) -> Registry:
        """This registry read under the policy committed at ``commit`` (``label`` names it:
        ``check --base main`` reads the base branch's)."""
        return Registry(self.store, self.tracker, policy_commit=commit, policy_label=label)

    def accept_policy(self, ref: str | None = None) -> Policy:
        """Accept, for this clone, the policy now on the trusted ref (``ref``, given, becomes
        the trusted ref: ``origin/release``); returns it as it now decides."""
        from gitml.registry import trust

        cfg = self.signing_config()
        trust.accept(self.store, ref, gpg_program=cfg.gpg_program, ssh_program=cfg.ssh_program)
        self._policy, self._verified = None, {}
        return self.policy

    def policy_notes(self) -> list[str]:
        """What a reader should know about the deciding policy: a newer one waiting to be
        accepted, a checked-out branch whose own policy decides nothing."""
        from gitml.registry import trust

        policy = self.policy
        notes = [policy.pending] if policy.pending else []
        if self._policy_commit is None:
            note = trust.head_note(self.store, policy)
            if note:
                notes.append(note)
        return notes

    def refresh_policy(self) -> bool:
        """Read the policy again if the trusted ref moved or this clone accepted another
        (a long-lived reader, the UI server); the signature checks made under the old
        policy are dropped. True if it did."""
        if self._policy is None or self._policy_commit is not None:
            return False
        from gitml.registry import trust

        if trust.marker(self.store) == self._policy_key:
            return False
        self._policy, self._verified = None, {}
        return True

    def resolve_commit(self, rev: str) -> bytes:
        """The commit a branch, remote branch, tag, full ref or full commit id names, with
        git's ``~N`` and ``^`` (first parents) after it."""
        import re

        m = re.fullmatch(r"(.+?)((?:~[0-9]*|\^)*)", rev)
        if m and m[2]:
            sha = self.resolve_commit(m[1])
            for step in re.findall(r"~[0-9]*|\^", m[2]):
                for _ in range(int(step[1:] or 1) if step.startswith("~") else 1):
                    parents = self.store.commit(sha).parents
                    if not parents:
                        raise NotFoundError(f"{rev!r}: {m[1]} has fewer ancestors than that")
                    sha = parents[0]
            return sha
        for ref in (f"refs/heads/{rev}", f"refs/remotes/{rev}", f"refs/tags/{rev}", rev):
            found = self.store.ref(ref.encode())
            if found is not None:
                peeled = self.store.peel(found)
                return peeled[0] if peeled is not None else found
        if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) and self.store.contains(rev.encode()):
            return rev.encode()
        raise NotFoundError(f"no branch, tag or commit {rev!r}")

    # -- reading ---------------------------------------------------------
    def tag_refs(self, model: str | None = None) -> dict[RegistryTag, bytes]:
        """Every registry tag (of ``model`` only, when given) → its object id (other tags are
        not the registry's). Only the names that start with the model's are parsed."""
        out = {}
        start = f"{TAGS_PREFIX}{model}".encode() if model is not None else b""
        for ref, sha in self.store.refs_under(TAGS_PREFIX).items():
            if start and not (ref.startswith(start) and ref[len(start) : len(start) + 1] in (b"@", b"#")):
                continue
            parsed = parse_tag(ref)
            if parsed is not None and (model is None or parsed.model == model):
                out[parsed] = sha
        return out

    def event(self, tag: RegistryTag, sha: bytes) -> TagEvent | None:
        event = self._events.get(sha)
        if event is not None:
            # one object under several refs (a hostile re-pointing): each ref is its own event
            return event if event.tag == tag else replace(event, tag=tag, _info=None)
        try:
            found = self._prefetched.pop(sha, None)
            if found is None:
                self.store.bounded(sha, MAX_TAG_BYTES, f"registry tag {tag.name}")  # a tag object may be a zlib bomb
            type_num, raw = found if found is not None else self.store.raw(sha)
        except CorruptRecordError as e:
            log.warning("gitml: registry tag %s cannot be read: %s", tag.name, e)
            return None
        if type_num != Tag.type_num:
            log.warning("gitml: registry tag %s is not an annotated tag; ignored", tag.name)
            return None
        event = TagEvent(tag, sha, raw=raw)
        head, _, _ = raw.partition(b"\n\n")
        for line in head.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"object":
                event.target = value.decode("ascii", "replace")
            elif key == b"type":
                event.kind = value.decode("ascii", "replace")
            elif key == b"tag":
                event.name = value.decode("utf-8", "replace")
            elif key == b"tagger":
                who, _, when = value.rpartition(b"> ")
                event.tagger = (who + b">").decode("utf-8", "replace")
                try:
                    event.time = int(when.split()[0])
                except (ValueError, IndexError):
                    event.time = 0
        self._events[sha] = event
        return event

    def verification(self, event: TagEvent) -> Verification:
        """The signature status of a tag under the policy (cached per tag object)."""
        found = self._verified.get(event.sha)
        if found is None:
            payload, signature = split_signed(event.raw)
            found = verify(payload, signature, self.policy.roots)
            self._verified[event.sha] = found
        return found

    def vouched(self, event: TagEvent) -> bool:
        """Whether a key the policy trusts signed ``event`` for this repository (its message
        names the policy's ``repository``, when the policy sets one)."""
        repository = self.policy.repository
        return self.verification(event).trusted and (repository is None or event.info.get("repository") == repository)

    def rejection(self, event: TagEvent, *, deep: bool = False) -> str | None:
        """Why ``event`` does not count under the policy, None when it does: its ref's name
        is not the tag object's own name; it tags no commit; (guarded or ``deep``) its
        message names another model, version or stage than its name; (guarded) it is not
        signed by a trusted key. A guarded tag's signature is checked (cached per object)."""
        tag = event.tag
        if event.name != tag.name:
            return (
                f"ref refs/tags/{tag.name} holds the tag object named {event.name!r}: "
                "a tag counts only under its own name"
            )
        if event.kind != "commit":
            return f"tags a {event.kind or 'missing'} object, not a commit"
        policy = self.policy
        guarded = policy.guards(tag)
        if guarded or deep:
            info = event.info
            claims = {
                "model": tag.model,
                "stage": tag.stage,
                "version": tag.version if tag.action in (Action.REGISTER, Action.DEREGISTER) else None,
            }
            for key, want in claims.items():
                said = str(info[key]) if key in info else None
                if key == "model" and said is not None:
                    said = _slug_or_none(said)  # a name MLflow allows is carried encoded (model_slug)
                if want is not None and key in info and said != want:
                    return f"its message names {key} {info[key]!r}, its name {want!r}"
        if guarded and policy.repository is not None and event.info.get("repository") != policy.repository:
            named = event.info.get("repository")
            return (
                (f"its message names repository {named!r}" if named is not None else "its message names no repository")
                + f", and {POLICY_PATH} binds signed tags to {policy.repository!r} (a tag signed for another "
                "repository, replayed here, or made without gitml)"
            )
        if guarded:
            status = self.verification(event)
            if not status.trusted:
                return f"{status}; {policy.requirement(tag)}"
        return None

    def _reject(self, state: ModelState, event: TagEvent, why: str, report: bool) -> None:
        """Record that ``event`` does not count; under ``on_untrusted: refuse``, a guarded
        event stops the resolution instead (unless the state is read to ``report`` it)."""
        policy = self.policy
        if policy.on_untrusted == "refuse" and policy.guards(event.tag) and not report:
            raise UntrustedTagError(f"tag {event.tag.name}: {why} (under {policy.source}; on_untrusted: refuse)")
        state.ignored[event.tag.name] = why
        log.warning("gitml: ignoring tag %s: %s", event.tag.name, why)

    def models(self, *, report: bool = False) -> dict[str, ModelState]:
        """Every registered model's state (the policy applied; ``report``: a tag that
        ``on_untrusted: refuse`` refuses is listed in ``ignored`` instead of raising)."""
        by_model: dict[str, list[tuple[RegistryTag, bytes]]] = {}
        tags = self.tag_refs()
        self._prefetch(tags.values())
        for tag, sha in tags.items():
            by_model.setdefault(tag.model, []).append((tag, sha))
        named = {self._name_of(slug, tags): tags for slug, tags in by_model.items()}
        return {name: self._state(name, tags, report) for name, tags in sorted(named.items())}

    def _name_of(self, slug: str, tags: list[tuple[RegistryTag, bytes]]) -> str:
        """The registered model's name for the model its tags carry: the name itself, or for
        :func:`model_slug`'s form the name a registration's message gives that encodes to it."""
        if not may_be_slug(slug):
            return slug
        for tag, sha in sorted(tags, key=lambda t: t[0].name):
            if tag.action is Action.REGISTER:
                event = self.event(tag, sha)
                said = event.info.get("model") if event is not None else None
                if isinstance(said, str) and said != slug and _slug_or_none(said) == slug:
                    return said
        return slug

    def model(self, name: str, *, report: bool = False) -> ModelState:
        slug = model_slug(name)
        tags = list(self.tag_refs(slug).items())
        self._prefetch(s for _, s in tags)
        if not tags:
            raise RegisteredModelNotFound(f"no registered model {name!r} (no tag {TAGS_PREFIX}{slug}@v...)")
        return self._state(name, tags, report)

    def _state(self, name: str, tags: list[tuple[RegistryTag, bytes]], report: bool = False) -> ModelState:
        """A model's state, by GTO's rules with each tag's time ordering the events (``N``
        breaking same-second ties, :func:`order`): a version is live when its newest
        registration or deregistration is a registration; the model is deprecated when its
        newest event is a deprecation; a stage as :meth:`_holder` says. Only tags that count
        take part: a lightweight tag never does (GTO ignores them all), and an event that
        undoes a guarded one (a re-registration after a deregistration, any event after a
        deprecation) must meet the same guard."""
        state = ModelState(name)
        stage_events: list[TagEvent] = []
        model_events: list[TagEvent] = []  # registrations, deregistrations, deprecations that count
        for tag, sha in tags:
            event = self.event(tag, sha)
            if event is None:
                state.ignored[tag.name] = "a lightweight tag (or unreadable): GTO ignores it too"
                continue
            state.events.append(event)
            if tag.stage is not None:
                stage_events.append(event)  # checked in _holder, newest first, as far as needed
                continue
            why = self.rejection(event)
            if why is not None:
                self._reject(state, event, why, report)
            else:
                model_events.append(event)
        policy = self.policy
        undone: dict[str, TagEvent] = {}  # version -> its latest guarded deregistration
        numbered: dict[str, int] = {}  # version -> MLflow's number: its first registration's place
        for event in sorted(model_events, key=lambda e: (*order(e), e.tag.name)):
            tag = event.tag
            if tag.action is Action.DEPRECATE:
                continue
            assert tag.version is not None
            if tag.action is Action.DEREGISTER:
                if tag.version in state.versions:
                    state.versions[tag.version].deregistered = True
                    if policy.guards(tag):
                        undone[tag.version] = event
                continue
            if tag.version in undone and not self.vouched(event):
                self._reject(
                    state,
                    event,
                    f"it re-registers {tag.version} after the signed {undone[tag.version].tag.name}; "
                    f"{policy.requirement(undone[tag.version].tag)}",
                    report,
                )
                continue
            undone.pop(tag.version, None)
            _number(numbered, event)
            state.versions[tag.version] = ModelVersion(
                name,
                tag.version,
                event.target,
                event,
                event.tagger,
                event.time,
                tag=tag.name,
            )
        for version, number in numbered.items():
            state.versions[version].number = number
            state.numbers[number] = version
        counted = [e for e in model_events if e.tag.name not in state.ignored]
        state.counter = max((e.tag.counter or 0 for e in counted), default=0)
        for v in state.versions.values():
            state.commits.setdefault(v.commit, []).append(v.version)
        by_commit: dict[str, list[ModelVersion]] = {}
        for v in sorted(state.versions.values(), key=lambda v: version_key(v.version)):
            if not v.deregistered:
                by_commit.setdefault(v.commit, []).append(v)
        per_stage: dict[str, list[TagEvent]] = {}
        for event in stage_events:
            assert event.tag.stage is not None
            per_stage.setdefault(event.tag.stage, []).append(event)
        for stage, events in sorted(per_stage.items()):
            holder = self._holder(state, stage, events, by_commit, report)
            if holder is not None:
                state.stages[stage] = holder.version
                holder.stages.append(stage)
        state.deprecated = self._deprecated(state, counted, stage_events, report)
        state.counter = max(
            [state.counter] + [e.tag.counter or 0 for e in stage_events if e.tag.name not in state.ignored]
        )
        state.events.sort(key=lambda e: (*order(e), e.tag.name))
        return state

    def _deprecated(
        self, state: ModelState, counted: list[TagEvent], stage_events: list[TagEvent], report: bool
    ) -> bool:
        """Whether the model's newest event that counts is a deprecation (GTO's rule; a
        tie as :func:`order` says). After a guarded
        deprecation, only an event signed by a trusted key revives the model."""
        deprecations = [e for e in counted if e.tag.action is Action.DEPRECATE]
        if not deprecations:
            return False
        last = max(deprecations, key=order)
        policy = self.policy
        for event in sorted(counted + stage_events, key=order, reverse=True):
            if order(event) < order(last):
                break
            if event.tag.action is Action.DEPRECATE:
                continue
            if event.tag.stage is not None:
                if event.tag.name in state.ignored:
                    continue
                why = self.rejection(event, deep=True)
                if why is not None:
                    self._reject(state, event, why, report)
                    continue
            if policy.guards(last.tag) and not self.vouched(event):
                self._reject(
                    state, event, f"it follows the signed {last.tag.name}; {policy.requirement(last.tag)}", report
                )
                continue
            return False
        if not policy.guards(last.tag) and self._newest_commit(state, stage_events) >= last.time:
            return False  # GTO counts each version's commit (its time) as an event of the model
        return True

    def _newest_commit(self, state: ModelState, stage_events: list[TagEvent]) -> int:
        """The newest commit time among the commits the model's versions and counted stage
        tags point at (GTO indexes each as an event at its commit's time)."""
        commits = {v.commit for v in state.versions.values()}
        commits |= {e.target for e in stage_events if e.tag.name not in state.ignored}
        newest = 0
        for commit in commits:
            try:
                newest = max(newest, self.store.commit(commit.encode()).commit_time)
            except (CorruptRecordError, KeyError, ValueError):
                continue
        return newest

    def _holder(
        self, state: ModelState, stage: str, events: list[TagEvent], by_commit: dict, report: bool = False
    ) -> ModelVersion | None:
        """The version the stage holds: newest event first, the first version whose last
        event is an assignment (tags that do not count under the policy skipped or refused)."""
        decided: set[str] = set()
        for event in sorted(events, key=order, reverse=True):
            found = by_commit.get(event.target)
            if not found:
                continue
            version, why = found[0], None
            if len(found) > 1:  # one commit, several versions (a hostile registration): the message says which,
                named = [v for v in found if v.version == event.info.get("version")]  # else the one signed by a
                trusted = [v for v in found if self.vouched(v.event)]  # trusted key, else none
                picked = named or (trusted if len(trusted) == 1 else [])
                if picked:
                    version = picked[0]
                else:
                    why = (
                        f"its commit {event.target[:12]} is registered as {', '.join(v.version for v in found)}, "
                        "and the tag says which of them by neither its message nor a trusted registration"
                    )
            if version.version in decided:
                continue
            why = why or self.rejection(event, deep=True)
            if why is None and event.info.get("version") not in (None, version.version):
                why = f"its message names version {event.info.get('version')!r}, its commit is {version.version}"
            if why is not None:
                self._reject(state, event, why, report)
                continue
            decided.add(version.version)
            if event.tag.action is Action.ASSIGN:
                state.deciding[stage] = event
                return version
        return None

    # -- resolving -------------------------------------------------------
    def resolve(self, name: str, version: str | None = None, *, stage: str | None = None) -> ModelVersion:
        """The version a reference names: ``version`` as ``v2.1.0``, ``2.1.0``, MLflow's number
        ``2`` (the model's second registration, whatever its semantic version) or ``latest``,
        or ``stage`` (an alias, or a stage given as the version).
        Raises RegisteredModelNotFound, UntrustedTagError."""
        return self.resolve_in(self.model(name), version, stage=stage)

    def resolve_in(self, state: ModelState, version: str | None = None, *, stage: str | None = None) -> ModelVersion:
        """:meth:`resolve` on a model's state already read."""
        name = state.name
        if state.deprecated:
            raise RegisteredModelNotFound(f"registered model {name!r} is deprecated")
        if stage is None and version is not None and not _is_version(version):
            stage, version = version, None
        if stage is not None:
            check_stage(stage)
            held = state.stages.get(stage)
            if held is None:
                extra = f" ({len(state.ignored)} tag(s) ignored under {self.policy.source})" if state.ignored else ""
                raise RegisteredModelNotFound(f"stage {stage!r} of registered model {name!r} holds no version{extra}")
            return state.versions[held]
        if version is None or version == "latest":
            latest = state.latest
            if latest is None:
                raise RegisteredModelNotFound(f"registered model {name!r} has no live version")
            return latest
        found = self.find_version(state, version)
        if found.deregistered:
            raise RegisteredModelNotFound(
                f"version {found.number} ({found.version}) of registered model {name!r} is deregistered"
            )
        return found

    @staticmethod
    def find_version(state: ModelState, version: str | int) -> ModelVersion:
        """The version ``version`` names in ``state``, deregistered or not: a whole number is
        MLflow's (the N-th registration: ``3``), anything else a semantic version (``v1.1.0``,
        ``1.1.0``). RegisteredModelNotFound lists the versions there are."""
        text = str(version)
        if text.isdigit() and not text.startswith("0"):
            found = state.versions.get(state.numbers.get(int(text), ""))
            wanted = f"{text} (MLflow's number)"
        else:
            wanted = check_version(text)
            found = state.versions.get(wanted)
        if found is None:
            raise RegisteredModelNotFound(
                f"registered model {state.name!r} has no version {wanted}; it has {describe_versions(state)}"
            )
        return found

    def locate(self, name: str, version: str | None = None, *, stage: str | None = None) -> tuple[str, str]:
        """``(run_id, path)`` of a registered model, after checking its chain: the stage tag
        (under the policy) names the version the registration names; the tagged commit is
        the run's (its current commit or an ancestor of it); and the run's model files now
        are the ones it had when tagged (their manifest hashes), so the files a loader then
        checks against the run's manifest are the registered ones. Raises
        RegisteredModelNotFound, UntrustedTagError, ModelChangedError."""
        if stage is None and version is not None and not _is_version(version):
            stage, version = version, None
        state = self.model(name)
        mv = self.resolve_in(state, version, stage=stage)
        if stage is not None:
            event = state.deciding.get(stage)
            if (
                event is not None
                and event.info
                and (event.info.get("version"), event.info.get("path")) != (mv.version, mv.path)
            ):
                raise ModelChangedError(
                    f"tag {event.tag.name} names {event.info.get('version')} at {event.info.get('path')!r}, "
                    f"but {mv.tag} registers {mv.path!r}: refusing to load"
                )
            if event is not None and event.info.get("run_id") not in (None, mv.run_id):  # the signed tag names the run
                raise ModelChangedError(
                    f"tag {event.tag.name} names run {event.info.get('run_id')}, "
                    f"but {mv.tag} registers run {mv.run_id}: "
                    "refusing to load"
                )
        record, head = self.tracker.record(mv.run_id)  # the run as committed now (this process's writes included)
        if not self.descends(head, mv.commit.encode()):
            raise ModelChangedError(
                f"{mv.tag} points at commit {mv.commit[:12]}, which is not in the history of run {mv.run_id}"
            )
        tagged = self.model_files(mv)
        if "MLmodel" not in tagged:
            raise ModelChangedError(f"{mv.tag}: run {mv.run_id} had no {mv.path}/MLmodel at {mv.commit[:12]}")
        if head != mv.commit.encode():
            prefix = f"{mv.path}/" if mv.path else ""
            now = {k[len(prefix) :]: v for k, v in record.artifacts.items() if k.startswith(prefix)}
            if now != tagged:
                raise ModelChangedError(
                    f"run {mv.run_id} changed the files of {mv.path!r} after {mv.tag} was tagged: refusing to load"
                )
        return mv.run_id, mv.path

    def descends(self, head: bytes, ancestor: bytes, limit: int = 100_000) -> bool:
        seen: set[bytes] = set()
        todo = [head]
        while todo and len(seen) < limit:
            sha = todo.pop()
            if sha == ancestor:
                return True
            if sha in seen:
                continue
            seen.add(sha)
            try:
                todo.extend(self.store.commit(sha).parents)
            except CorruptRecordError:
                continue
        return False

    def model_files(self, mv: ModelVersion) -> dict[str, dict]:
        """The manifest entries of a version's model folder at its tagged commit."""
        return self.model_files_at(mv.run_id, mv.commit, mv.path)

    def model_files_at(self, run_id: str, commit: str, path: str) -> dict[str, dict]:
        ref = self.tracker.ref_of(run_id)
        record = RunRecord.load(self.store, commit.encode(), f"run {run_id} at {commit[:12]}", ref=ref)
        prefix = f"{path}/" if path else ""
        return {k[len(prefix) :]: v for k, v in record.artifacts.items() if k.startswith(prefix)}

    # -- writing ---------------------------------------------------------
    def register(
        self,
        name: str,
        run: str,
        path: str | None = None,
        *,
        version: str | None = None,
        bump_part: str = "major",
        description: str = "",
        sign_tag: bool | None = None,
        number: int | None = None,
    ) -> ModelVersion:
        """Register the model folder ``path`` of run ``run`` (id, prefix or name) as a new
        version (``number``: its MLflow number, above every number the model has, where
        numbers are to keep a gap: an import from MLflow). Raises NotFoundError (unknown run;
        no MLmodel there), ConflictError (the version exists, this run commit already is a version
        of the model, or the model is deprecated). Reads only what that needs: the run's manifest and the model's
        registration tags (not the stages, nor the policy)."""
        run_id = self.tracker.resolve(run)
        commit, artifacts = self._run_head(run_id)
        path = self._model_path(run_id, artifacts, path)
        return self.register_commit(
            name,
            commit,
            run_id,
            path,
            version=version,
            bump_part=bump_part,
            description=description,
            sign_tag=sign_tag,
            number=number,
        )

    def register_commit(
        self,
        name: str,
        commit: bytes,
        run_id: str,
        path: str,
        *,
        version: str | None = None,
        bump_part: str = "major",
        description: str = "",
        sign_tag: bool | None = None,
        number: int | None = None,
    ) -> ModelVersion:
        """Register the model folder ``path`` of run ``run_id`` at ``commit`` (a version of
        another model being copied or renamed: its commit, not the run's head) as a new
        version of ``name``; as :meth:`register` otherwise."""
        slug = model_slug(name)
        tags = list(self.tag_refs(slug).items())
        if any(t.action is Action.DEPRECATE for t, _ in tags) and self.model(name).deprecated:
            raise ConflictError(f"registered model {name!r} is deprecated")
        versions = self._registered(tags)
        highest = max(_numbered(self._registrations(tags)).values(), default=0)
        if version is None:
            version = bump(list(versions), bump_part)
        version = check_version(version)
        if version in versions:
            raise ConflictError(f"registered model {name!r} already has version {version} (tag {slug}@{version})")
        for other, (target, deregistered) in versions.items():
            if target == commit.decode() and not deregistered:
                raise ConflictError(
                    f"run {run_id} at commit {target[:12]} already is version {other} of {name!r} "
                    "(GTO tells versions apart by their commit)"
                )
        info: dict = {
            "model": name,
            "version": version,
            "run_id": run_id,
            "path": path,
            "description": str(description or ""),
        }
        if number is not None:
            if not isinstance(number, int) or isinstance(number, bool) or not highest < number < 1 << 31:
                raise InvalidInputError(
                    f"version number {number!r} of registered model {name!r} must be a whole "
                    f"number above {highest}, its highest"
                )
            info["number"] = number
        tag = RegistryTag(Action.REGISTER, slug, version=version)
        event = self._write_tag(tag, commit, info, sign_tag=sign_tag)
        assert event is not None
        return ModelVersion(
            name, version, event.target, event, event.tagger, event.time, tag=tag.name, number=number or highest + 1
        )

    def _registered(self, tags: list[tuple[RegistryTag, bytes]]) -> dict[str, tuple[str, bool]]:
        """``{version: (commit, deregistered)}`` from a model's register and deregister tags."""
        deregistered = {t.version for t, _ in tags if t.action is Action.DEREGISTER}
        return {
            e.tag.version: (e.target, e.tag.version in deregistered)
            for e in self._registrations(tags)
            if e.tag.version is not None
        }

    def _registrations(self, tags: list[tuple[RegistryTag, bytes]]) -> list[TagEvent]:
        """The registration events among a model's tags (read, not judged by the policy)."""
        registered = [(t, s) for t, s in tags if t.action is Action.REGISTER]
        self._prefetch(s for _, s in registered)
        return [e for t, s in registered if (e := self.event(t, s)) is not None]

    def _run_head(self, run_id: str) -> tuple[bytes, dict[str, dict]]:
        """A run's commit now (what this process buffered for it committed first) and its
        artifact manifest, checked as a record's is: all registering needs of the record."""
        ref = self.tracker.ref_of(run_id)
        commit = self.tracker.run_refs().get(ref)
        if commit is None:
            raise RunNotFoundError(run_id)
        try:
            entry = self.store.lookup(self.store.commit(commit).tree, f"{RECORD_DIR}/{ARTIFACTS}")
            what = f"run {run_id} ({ARTIFACTS})"
            data = self.store.blob(entry[1], MAX_YAML_BYTES, what) if entry is not None else None
        except CorruptRecordError as e:  # the object and what is wrong with it
            raise CorruptRecordError(f"run {run_id}", f"{e.what}: {e.detail}") from None
        manifest = load_yaml(data, f"run {run_id} ({ARTIFACTS})") if data is not None else None
        if manifest is not None and not isinstance(manifest, dict):
            raise CorruptRecordError(f"run {run_id}", f"{ARTIFACTS} is not a mapping")
        try:
            return commit, check_manifest(manifest or {})
        except InvalidInputError as e:
            raise CorruptRecordError(f"run {run_id}", f"{ARTIFACTS}: {e}") from None

    def _model_path(self, run_id: str, artifacts: dict[str, dict], path: str | None) -> str:
        if path is None:
            found = sorted(
                p[: -len("/MLmodel")] if p != "MLmodel" else ""
                for p in artifacts
                if p == "MLmodel" or p.endswith("/MLmodel")
            )
            if len(found) == 1:
                return found[0]
            if not found:
                raise NoModelError(f"run {run_id} has no model: no MLmodel among its artifacts")
            raise InvalidInputError(f"run {run_id} has several models ({', '.join(found)}): name one (RUN:PATH)")
        path = path.strip("/")
        if path:
            check_artifact_path(path, "model path")
        mlmodel = f"{path}/MLmodel" if path else "MLmodel"
        if mlmodel not in artifacts:
            raise NoModelError(f"run {run_id} has no model at {path or '(its artifact root)'!r}: no {mlmodel} artifact")
        return path

    def assign(
        self,
        name: str,
        version: str,
        stage: str,
        *,
        sign_tag: bool | None = None,
        force: bool = False,
        evaluate: Evaluator | None = None,
    ) -> tuple[str, bool]:
        """Put ``version`` in ``stage``; ``(tag name, created)`` (created False when the
        stage already holds it). The stage's gates (:mod:`gitml.registry.gates`) must pass:
        else GateError, unless ``force`` and the tag is signed by a key the policy trusts
        (the overridden gates are then written in its message). ``evaluate`` gives the
        metrics of a dataset gate (:meth:`gate_report`)."""
        self.policy.check_stage(stage)
        state = self.model(name)
        if state.deprecated:
            raise ConflictError(f"registered model {name!r} is deprecated")
        check_stage_case(state, stage)
        mv = self.resolve(name, version)
        if state.stages.get(stage) == mv.version:
            return "", False
        info: dict = {"model": name, "version": mv.version, "stage": stage, "run_id": mv.run_id, "path": mv.path}
        report = self.gate_report(mv, stage, state=state, evaluate=evaluate)
        if report is not None and not report.ok:
            if not force:
                raise GateError(report.refusal())
            info["gates_overridden"] = [str(r) for r in report.failed]
        tag = self._counted(Action.ASSIGN, name, stage=stage)
        return self._write_counted(tag, mv.commit.encode(), info, sign_tag=sign_tag), True

    def gate_report(
        self, mv: ModelVersion, stage: str, *, state: ModelState | None = None, evaluate: Evaluator | None = None
    ) -> GateReport | None:
        """The results of ``stage``'s gates for ``mv`` against the version the stage holds
        now (None: the policy gates nothing there). The metrics are the runs' as committed at
        their registered commits (what the registration vouched for, not what the run logged
        since); a gate with a ``dataset`` takes them from ``evaluate(version, dataset)``
        instead (the caller loads the models), and fails closed without it."""
        policy = self.policy
        gates = policy.gates.get(stage)
        if gates is None:
            return None
        state = state or self.model(mv.model)
        held = state.stages.get(stage)
        current = state.versions.get(held) if held and held != mv.version else None
        report = GateReport(
            mv.model, stage, mv.version, current.version if current else None, policy.source, dataset=gates.dataset
        )
        if gates.dataset is not None:
            if evaluate is None:
                raise GateError(
                    f"stage {stage!r}'s gates evaluate on dataset {gates.dataset!r} ({policy.source}): "
                    "promote with gitml registry promote or apply, which evaluate the model"
                )
            try:
                cand, cur = evaluate(mv, gates.dataset), evaluate(current, gates.dataset) if current else None
            except GitmlError as e:  # a model that cannot be evaluated fails every gate (--force may override)
                report.results = unjudged(gates, f"not evaluated on dataset {gates.dataset!r}: {e}")
                return report
        else:
            cand, cur = self.run_metrics(mv), self.run_metrics(current) if current else None
        report.results = judge(gates, cand, cur, current.version if current else None)
        return report

    def run_metrics(self, mv: ModelVersion) -> dict[str, float]:
        """The latest value of each metric of a version's run at its registered commit."""
        what = f"run {mv.run_id} at {mv.commit[:12]} ({mv.model} {mv.version})"
        record = RunRecord.load(self.store, mv.commit.encode(), what)
        if record.run_id != mv.run_id:
            raise ModelChangedError(f"{mv.tag} names run {mv.run_id}, but its commit holds run {record.run_id}")
        return {key: value for key, (_, _, value) in record.latest.items()}

    def unassign(self, name: str, stage: str, *, sign_tag: bool | None = None) -> list[str]:
        """Empty ``stage``: an unassign tag for every version still in it (GTO's rule lets an
        older assignment hold a stage again once the newer one is undone)."""
        check_stage(stage)
        made: list[str] = []
        while True:
            state = self.model(name)
            held = state.stages.get(stage)
            if held is None:
                if not made:
                    check_stage_case(state, stage)
                    raise RegisteredModelNotFound(f"stage {stage!r} of registered model {name!r} holds no version")
                return made
            mv = state.versions[held]
            info = {"model": name, "version": mv.version, "stage": stage, "run_id": mv.run_id, "path": mv.path}
            tag = self._counted(Action.UNASSIGN, name, stage=stage)
            made.append(self._write_counted(tag, mv.commit.encode(), info, sign_tag=sign_tag))

    def deregister(self, name: str, version: str, *, sign_tag: bool | None = None) -> str:
        """Withdraw a version (``<model>@<version>!#N``; ``version`` as :meth:`resolve` takes
        it): it no longer resolves nor holds stages."""
        mv = self.resolve(name, version)
        info = {"model": name, "version": mv.version, "run_id": mv.run_id, "path": mv.path}
        tag = self._counted(Action.DEREGISTER, name, version=mv.version)
        return self._write_counted(tag, mv.commit.encode(), info, sign_tag=sign_tag)

    def deprecate(self, name: str, *, sign_tag: bool | None = None) -> str:
        """Withdraw the whole model (``<model>@deprecated#N``)."""
        state = self.model(name)
        if state.deprecated:
            raise ConflictError(f"registered model {name!r} is already deprecated")
        target = state.latest or max(state.versions.values(), key=lambda v: version_key(v.version))
        tag = self._counted(Action.DEPRECATE, name)
        after = self._newest_commit(state, [e for e in state.events if e.tag.stage is not None])
        return self._write_counted(tag, target.commit.encode(), {"model": name}, sign_tag=sign_tag, after=after)

    def _counted(self, action: Action, name: str, **kw) -> RegistryTag:
        """The next event's tag: one more than the greatest counter among the model's tags
        that count (a hostile tag the policy ignores cannot push the counter out of range)."""
        state = self.model(name, report=True)
        counter = 0
        for event in sorted(state.events, key=lambda e: e.tag.counter or 0, reverse=True):
            if event.tag.name in state.ignored or (event.tag.counter or 0) <= counter:
                continue
            if event.tag.stage is None or self.rejection(event, deep=True) is None:  # a stage tag older than its
                counter = event.tag.counter or 0  # holder is not checked by the read: checked here
                break
        return RegistryTag(action, model_slug(name), counter=counter + 1, **kw)

    def _write_counted(
        self, tag: RegistryTag, commit: bytes, info: dict, *, sign_tag: bool | None, after: int = 0
    ) -> str:
        """Write a counted tag; when another writer took its ``N`` first, take the next one."""
        for _ in range(50):
            if parse_tag(tag.name) != tag:  # a hostile tag took the counter past what a tag name holds
                raise ConflictError(
                    f"registered model {tag.model!r}: the next counter {tag.counter} makes no registry tag name; "
                    "a tag with an outsized counter is among its tags (gitml registry history)"
                )
            if self._write_tag(tag, commit, info, sign_tag=sign_tag, exist_ok=True, after=after):
                return tag.name
            tag = RegistryTag(tag.action, tag.model, tag.version, tag.stage, (tag.counter or 0) + 1)
        raise ConflictError(f"could not write a {tag.action.value} tag for {tag.model!r}: 50 counters taken meanwhile")

    def _last_time(self, model: str) -> int:
        """The newest time among the model's annotated tags. A tag is written one second
        past it (or at the clock, when later), so a model's tags have strictly increasing
        times: GTO, which orders by tag time, reads several events written within one
        second (or by a clock behind another writer's) in the order gitml wrote them."""
        tags = self.tag_refs(model)
        self._prefetch(tags.values())
        found = (self.event(tag, sha) for tag, sha in tags.items())
        return max((e.time for e in found if e is not None), default=0)

    def _write_tag(
        self,
        tag: RegistryTag,
        commit: bytes,
        info: dict,
        *,
        sign_tag: bool | None,
        exist_ok: bool = False,
        after: int = 0,
    ) -> TagEvent | None:
        """Write a tag; the event as read back, None when ``exist_ok`` and the tag exists.
        An unsigned tag the policy would not count is refused before it is written."""
        cfg = self.signing_config()
        do_sign = cfg.sign_tags if sign_tag is None else sign_tag
        if not do_sign:
            try:
                policy: Policy | None = self.policy
            except CorruptRecordError:
                if tag.action is not Action.REGISTER:
                    raise
                policy = None  # a version registers while the policy does not parse: reading it fails closed
            if policy is not None and policy.guards(tag):
                what = (
                    f"stage {tag.stage!r}"
                    if tag.stage is not None and policy.require_signature is not True
                    else (f"a {tag.action.value} tag")
                )
                raise InvalidInputError(
                    f"{what} requires signed tags ({policy.source}): set git's tag.gpgSign "
                    "and user.signingkey, or pass --sign"
                )
        seconds, offset = _now()
        seconds = max(seconds, self._last_time(tag.model) + 1, after + 1)
        who = self.store.identity()
        try:
            repository = self.policy.repository  # the tag names the repository it is signed for
        except CorruptRecordError:
            repository = None  # a registration while the policy does not parse (see above)
        info = {
            **info,
            **({"repository": repository} if repository is not None else {}),
            "by": f"{who.name} <{who.email}>",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)),
        }
        obj = Tag()
        obj.object = (Commit, commit)
        obj.name = tag.name.encode()
        obj.tagger = who.as_bytes()
        obj.tag_time = seconds
        obj.tag_timezone = offset
        obj.message = yamlout.dump({"gitml-registry": info})
        payload = obj.as_raw_string()
        if do_sign:
            obj.signature = sign(payload, cfg)
        if "gates_overridden" in info:  # only a signer the policy trusts overrides a gate
            status = verify(payload, obj.signature, self.policy.roots) if do_sign else Verification("unsigned")
            if not status.trusted:
                raise GateError(
                    f"{tag.model}: overriding stage {tag.stage!r}'s gates needs a tag signed by a key "
                    f"{self.policy.source} trusts; this one would be {status} (pass --sign with such a key)"
                )
        self.store.write([obj])
        if not self.store.cas(tag.ref, None, obj.id):
            if exist_ok:
                return None
            raise ConflictError(f"tag {tag.name} already exists")
        self.store.release_kept()
        event = TagEvent(
            tag,
            obj.id,
            tag.name,
            "commit",
            commit.decode(),
            who.as_bytes().decode("utf-8", "replace"),
            seconds,
            obj.as_raw_string(),
        )
        self._events[obj.id] = event
        return event

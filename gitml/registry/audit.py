"""``gitml registry verify``: every registry tag checked against its run and the policy."""

from __future__ import annotations

from gitml.errors import GitmlError, InvalidInputError
from gitml.registry.state import Registry
from gitml.registry.tags import Action, model_slug


def verify_registry(reg: Registry) -> tuple[list[tuple[str, str]], int]:
    """``(problems, tags checked)``; a problem is ``(tag, why)``. Checked: the tag is
    annotated and points at a commit; the tag object carries the ref's name and its message
    the same model, version and stage; a signature, when present, is good; every event the
    policy guards (:meth:`Policy.guards`) is signed by a trusted key; a registration's
    run exists, holds the tagged commit in its history and a model at its path; a stage
    tag points at a registered version and its message names that version; no two versions
    of a model share a commit."""
    problems: list[tuple[str, str]] = []
    tags = reg.tag_refs()
    by_model: dict[str, dict[str, str]] = {}  # model -> commit -> version
    events = []
    for tag, sha in sorted(tags.items(), key=lambda t: t[0].name):
        event = reg.event(tag, sha)
        if event is None:
            problems.append((tag.name, "not an annotated tag, or unreadable"))
            continue
        try:
            commit = reg.store.commit(event.target.encode())
        except GitmlError as e:
            problems.append((tag.name, f"points at {event.target[:12]}, which is not a commit here ({e})"))
            continue
        del commit
        try:
            why = reg.rejection(event, deep=True)
        except GitmlError as e:  # a signature program that fails: named, the others still checked
            why = str(e)
        if why is not None:
            problems.append((tag.name, why))
            continue  # it does not count: nothing it says is checked further
        events.append(event)
        status = reg.verification(event)
        if status.status == "bad":
            problems.append((tag.name, str(status)))
        if tag.action is Action.REGISTER:
            seen = by_model.setdefault(tag.model, {})
            if seen.get(event.target, tag.version) != tag.version:  # a re-registration (GTO's @vX#N) is no duplicate
                problems.append((tag.name, f"commit {event.target[:12]} already is {tag.model} {seen[event.target]}"))
            seen[event.target] = tag.version or ""
            _check_registration(reg, event, problems)
    for event in events:
        tag = event.tag
        if tag.action in (Action.ASSIGN, Action.UNASSIGN):
            version = by_model.get(tag.model, {}).get(event.target)
            if version is None:
                problems.append(
                    (tag.name, f"points at {event.target[:12]}, which is no registered version of {tag.model}")
                )
            elif event.info and event.info.get("version") not in (None, version):
                problems.append((tag.name, f"its message names {event.info.get('version')}, its commit is {version}"))
    return problems, len(tags)


def _check_registration(reg: Registry, event, problems: list[tuple[str, str]]) -> None:
    tag = event.tag
    info = event.info
    named = info.get("model")
    if named is not None:  # a name MLflow allows is carried encoded in the tag's name (model_slug)
        try:
            named = model_slug(str(named))
        except InvalidInputError:
            pass
    if info.get("version") not in (None, tag.version) or named not in (None, tag.model):
        problems.append(
            (tag.name, f"its message names {info.get('model')} {info.get('version')}, not {tag.model} {tag.version}")
        )
        return
    run_id = str(info.get("run_id") or "")
    if not run_id:
        return  # a tag made by GTO or git: no run to check
    try:
        ref = reg.tracker.ref_of(run_id)
        head = reg.store.ref(ref)
        if head is None or not reg.descends(head, event.target.encode()):
            problems.append((tag.name, f"commit {event.target[:12]} is not in the history of run {run_id}"))
            return
        files = reg.model_files_at(run_id, event.target, str(info.get("path") or ""))
        if "MLmodel" not in files:
            problems.append(
                (tag.name, f"run {run_id} has no model at {info.get('path')!r} in commit {event.target[:12]}")
            )
    except GitmlError as e:
        problems.append((tag.name, str(e)))

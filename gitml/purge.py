"""Deleted runs removed for good (``gitml gc --purge``), as MLflow's ``mlflow gc``.

A deleted run is only marked so (``lifecycle: deleted`` in its record): its ref, code and
artifacts stay until purged. A purge, for the deleted runs chosen (``older_than``: by the
time of the run's last commit, which is its deletion; ``experiment_ids``):

1. keeps every run a registry tag points into (a registered version, a stage: resolving
   ``models:/`` must keep working), and says why;
2. with ``remote``, deletes the runs' refs on that git remote first, each only while the
   remote holds what this clone holds (compare-and-delete: a run a teammate restored or
   continued there is left, and kept here too);
3. deletes the refs here, each only while it holds the commit looked at (compare-and-swap:
   a run restored meanwhile by another process stays).

The artifact objects no remaining run references are then dropped by the ordinary
``gitml gc`` steps (the cache here; with ``--remote``, the artifact store, under its own
guards). The git objects of a purged run stay in this repository's packs until git's own
``git gc --prune=now`` (gitml does not rewrite packs), but no ref reaches them and no push
sends them.

>>> plan = purge_plan(client, older_than=30 * 86400)
>>> result = purge(client, plan, remote="origin")
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gitml.errors import CorruptRecordError, InvalidInputError
from gitml.ops import Operations
from gitml.runlog.entities import ViewType
from gitml.store.remote import push_refs, resolve_remote

log = logging.getLogger("gitml")


@dataclass(frozen=True)
class PurgeCandidate:
    run_id: str
    run_name: str
    experiment_id: str
    ref: bytes
    commit: bytes
    deleted_at: int  # seconds since the epoch: the run's last commit


@dataclass
class PurgePlan:
    """What a purge would remove (``runs``) and the deleted runs it keeps, with why."""

    runs: list[PurgeCandidate] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why


@dataclass
class PurgeResult:
    purged: list[PurgeCandidate] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why (the plan's, the remote's, a race's)
    remote_url: str | None = None


def parse_age(text: str) -> int:
    """Seconds of an age such as ``30d``, ``12h``, ``90m``, ``45s`` or ``2w``; raises
    InvalidInputError naming the text."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit():
        raise InvalidInputError(f"age {text!r} is not a whole number followed by s, m, h, d or w (e.g. 30d)")
    return int(number) * units[unit]


def purge_plan(
    client: Operations, *, older_than: int = 0, experiment_ids: list[str] | None = None, now: float | None = None
) -> PurgePlan:
    """The deleted runs (of ``experiment_ids``; all by default) deleted at least
    ``older_than`` seconds ago, less those a registry tag points into."""
    now = time.time() if now is None else now
    rows = client.search_rows(experiment_ids, view=ViewType.DELETED_ONLY)
    protected = _registered_commits(client)
    plan = PurgePlan()
    for row in rows:
        run_id = row["run_id"]
        ref = client.run_ref(run_id)
        entries = [e for e in client.run_lineage(run_id, limit=1) if e.is_run_commit]
        if not entries:
            continue
        deleted_at = entries[0].time
        if older_than and now - deleted_at < older_than:  # (a commit time is whole seconds: no age is "all")
            continue
        registered = [protected[e.commit] for e in entries if e.commit in protected]
        if registered:
            plan.kept[run_id] = f"registered as {registered[0]}: a registry tag points into it"
            continue
        plan.runs.append(
            PurgeCandidate(
                run_id, row.get("run_name") or "", row["experiment_id"], ref, entries[0].commit.encode(), deleted_at
            )
        )
    return plan


def purge(client: Operations, plan: PurgePlan, *, remote: str | None = None, all_remotes: bool = False) -> PurgeResult:
    """Remove the plan's runs (on ``remote`` first, when given), as the module says."""
    result = PurgeResult(kept=dict(plan.kept))
    runs = list(plan.runs)
    if not runs:
        return result
    store = client.store
    if remote is not None or all_remotes:
        url = resolve_remote(store, remote, push=True)
        result.remote_url = url
        statuses = push_refs(store, url, {c.ref: None for c in runs}, expected={c.ref: c.commit for c in runs})
        refused = {ref: why for ref, why in statuses.items() if why != "ok"}
        for candidate in runs:
            if candidate.ref in refused:
                result.kept[candidate.run_id] = f"{url}: {refused[candidate.ref]}"
        runs = [c for c in runs if c.ref not in refused]
    for candidate in runs:
        if store.delete_ref(candidate.ref, candidate.commit):
            result.purged.append(candidate)
        else:
            result.kept[candidate.run_id] = "its ref changed meanwhile (restored or written by another process)"
    return result


def _registered_commits(client: Operations) -> dict[str, str]:
    """``{commit id: tag name}`` of every commit a registry tag points at (peeled)."""
    store = client.store
    out: dict[str, str] = {}
    for tag, sha in client.registry.tag_refs().items():
        try:
            peeled = store.peel(sha, missing_ok=True)  # a tag of a tag: peeled as git does, within reason
        except CorruptRecordError as e:  # a zlib bomb: the registry ignores it too, so it holds no run
            log.warning("gitml: registry tag %s cannot be read: %s", tag.name, e)
            continue
        if peeled is not None:
            out.setdefault(peeled[0].decode(), tag.name)
    return out


__all__ = ["PurgeCandidate", "PurgePlan", "PurgeResult", "parse_age", "purge", "purge_plan"]

"""The registry's pages: models, a model's versions with the stages they hold, who
registered and promoted each and whether the tag's signature holds under the policy,
and the promotion history, each event with the decision (counts, or ignored and why)
and the policy that decided it. Read through ``Client.registry`` (read-only).

>>> models(client)["models"][0]["stages"]      # {"production": "v2.0.0"}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitml.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from gitml.ops import Operations
    from gitml.registry import ModelState, Registry
    from gitml.registry.state import TagEvent

HISTORY_SHOWN = 200  # newest events of a model's history, each with its signature checked


def models(client: Operations) -> dict:
    """Every registered model: latest version, versions, what each stage holds."""
    client.registry.refresh_policy()  # a server runs for days: a newly committed policy shows at once
    out = []
    for name, state in client.registry.models(report=True).items():
        latest = state.latest
        out.append(
            {
                "name": name,
                "deprecated": state.deprecated,
                "latest": latest.version if latest else None,
                "versions": len(state.versions),
                "stages": sorted(state.stages.items()),
                "ignored": len(state.ignored),
            }
        )
    return {
        "models": out,
        "policy_source": client.registry.policy.source,
        "policy_notes": client.registry.policy_notes(),
    }


def model(client: Operations, name: str) -> dict:
    """One model: its versions (newest first) with their run and stages, each stage's
    deciding tag and signer, the tags the policy ignored and why, and its history."""
    from gitml.registry.tags import version_key

    reg = client.registry
    reg.refresh_policy()
    state = reg.model(name, report=True)
    runs = _known_runs(client, {v.run_id for v in state.versions.values() if v.run_id})
    versions = []
    for v in sorted(state.versions.values(), key=lambda v: version_key(v.version), reverse=True):
        versions.append(
            {
                "version": v.version,
                "tag": v.tag,
                "run_id": v.run_id,
                "run_known": v.run_id in runs,
                "path": v.path,
                "commit": v.commit,
                "stages": sorted(v.stages),
                "deregistered": v.deregistered,
                "by": v.registered_by,
                "at": v.registered_at,
                "description": v.description,
                "signature": _signature(reg, v.event),
            }
        )
    stages = []
    for stage, version in sorted(state.stages.items()):
        event = state.deciding.get(stage)
        stages.append(
            {
                "stage": stage,
                "version": version,
                "tag": event.tag.name if event else "",
                "by": event.tagger if event else "",
                "at": event.time if event else 0,
                "signature": _signature(reg, event) if event else None,
            }
        )
    events = state.events[-HISTORY_SHOWN:][::-1]
    history = [
        {
            "tag": e.tag.name,
            "event": e.tag.action.value,
            "version": str(e.info.get("version") or e.tag.version or ""),
            "stage": e.tag.stage or "",
            "by": e.tagger,
            "at": e.time,
            "signature": _signature(reg, e),
            "ignored": state.ignored.get(e.tag.name) or reg.rejection(e, deep=True) or "",
        }
        for e in events
    ]
    return {
        "model": name,
        "deprecated": state.deprecated,
        "versions": versions,
        "stages": stages,
        "ignored": sorted(state.ignored.items()),
        "history": history,
        "hidden_events": len(state.events) - len(events),
        "policy": _policy(reg, state),
        "policy_source": reg.policy.source,
        "policy_notes": reg.policy_notes(),
    }


def _signature(reg: Registry, event: TagEvent) -> dict:
    found = reg.verification(event)
    return {"status": found.status, "signer": found.signer, "text": str(found)}


def _policy(reg: Registry, state: ModelState) -> list[str]:
    """The stages of this model whose tags must be signed by a trusted key."""
    stages = {*state.stages, *(e.tag.stage for e in state.events if e.tag.stage)}
    return sorted(s for s in stages if reg.policy.requires_signature(s))


def _known_runs(client: Operations, run_ids: set[str]) -> set[str]:
    """The run ids this repository holds (a registration may name a run not fetched here)."""
    known = set()
    for run_id in run_ids:
        try:
            known.add(client.resolve_run(run_id))
        except (NotFoundError, InvalidInputError):  # not here, or a name that is no run id
            pass
    return known

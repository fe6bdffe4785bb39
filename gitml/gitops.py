"""Promotion by pull request: propose, check, apply.

The desired state is a committed file, ``.gitml/stages.yaml`` (for each model, the
version each stage should hold). ``propose`` commits a change of it on a new branch
(nothing in the work tree changes; push the branch and open a pull request); ``check``
(in CI, on the pull request) validates every stage the branch changes against ``--base``
and writes a Markdown report; ``apply`` (in CI, on the merged branch) creates the tags
the file asks for, signed as git's configuration says, and does nothing when the tags
already say it. Stages the file does not list are left as they are; a stage set to
``null`` (or ``""``) is emptied.

This module takes the facade (:class:`gitml.ops.Operations`) and downloads and loads
models, so it sits above the client, beside ``gitml.models`` (it was ``gitml.registry.gitops``,
which lifted the registry folder above the client); what it reads and commits in git is
:mod:`gitml.registry.stagesfile`'s.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitml.errors import GateError, GitmlError, NotFoundError
from gitml.registry.gates import GateReport
from gitml.registry.policy import STAGES_PATH
from gitml.registry.stagesfile import commit_stages, desired_at, head_of
from gitml.registry.state import ModelVersion, Registry
from gitml.registry.tags import check_model_name, check_version
from gitml.report import markdown_table, md_code, md_text

if TYPE_CHECKING:
    from gitml.ops import Operations


@dataclass
class Change:
    model: str
    stage: str
    version: str  # "" = empty the stage
    current: str | None  # what the stage holds now (None: nothing)
    problems: list[str] = field(default_factory=list)
    gates: GateReport | None = None  # the stage's gates judged for the candidate (None: none apply)


@dataclass
class CheckResult:
    changes: list[Change]
    report: str  # Markdown

    @property
    def ok(self) -> bool:
        return all(not c.problems for c in self.changes)


def propose(client: Operations, model: str, version: str, stage: str, *, branch: str | None = None) -> tuple[str, str]:
    """Commit ``.gitml/stages.yaml`` with ``model``'s ``stage`` set to ``version`` on a new
    branch from HEAD; returns ``(branch, commit id)``. Raises NotFoundError (no such
    version), InvalidInputError (stage not allowed), ConflictError (the branch exists)."""
    reg = client.registry
    check_model_name(model)
    reg.policy.check_stage(stage)
    mv = reg.resolve(model, version)
    head, _ = head_of(reg)
    desired = desired_at(reg, head)
    desired.setdefault(model, {})[stage] = mv.version
    branch = branch or f"gitml/promote/{model}/{stage}/{mv.version}"
    message = f"Promote {model} {mv.version} to {stage}\n\nGitml-Registry: {model} {stage} {mv.version}\n"
    return branch, commit_stages(reg, desired, head, branch, message)


def _changes(client: Operations, reg: Registry, base: str | None, base_commit: bytes | None) -> list[Change]:
    head, _ = head_of(reg)
    new, old = desired_at(reg, head), desired_at(reg, base_commit)
    models = reg.models(report=True)
    changes = []
    for model, stages in sorted(new.items()):
        for stage, version in sorted(stages.items()):
            if base is not None and old.get(model, {}).get(stage) == version:
                continue
            state = models.get(model)
            changes.append(Change(model, stage, version, state.stages.get(stage) if state else None))
    return changes


def check(client: Operations, *, base: str | None = "main", load: bool = True) -> CheckResult:
    """Validate every stage the desired-state file changes against ``base`` (None: every
    stage it lists): the version exists and is live, its run's artifacts are reachable and
    match their hashes, the model loads, the policy allows the stage. The report shows
    the candidate beside the version the stage holds now.

    Everything is read under the policy committed on ``base`` (the branch the pull
    request merges into), never the pull request's own: a candidate is loaded only when
    its registration counts under that policy and, when the stage (or the policy) asks
    for signatures, is signed by a trusted key; otherwise it is downloaded and its hashes
    checked, never unpickled, and the change fails."""
    reg = client.registry
    base_commit = reg.resolve_commit(base) if base else None
    if base_commit is not None:
        reg = reg.under_policy(base_commit, str(base))
    changes = _changes(client, reg, base, base_commit)
    sections = []
    for change in changes:
        candidate = None
        try:
            reg.policy.check_stage(change.stage)
        except GitmlError as e:
            change.problems.append(str(e))
        if change.version:
            try:
                candidate = reg.resolve(change.model, change.version)
                reg.locate(change.model, candidate.version)
                refusal = _unverified(reg, candidate, change.stage)
                if refusal is not None:
                    change.problems.append(refusal)
                _check_artifacts(client, reg, candidate, load and refusal is None, change.problems)
            except GitmlError as e:
                change.problems.append(str(e))
            if candidate is not None:
                try:
                    change.gates = reg.gate_report(
                        candidate, change.stage, evaluate=evaluator(client, reg, change.stage, load)
                    )
                except GitmlError as e:
                    change.problems.append(f"gates of stage {change.stage!r}: {e}")
                if change.gates is not None and change.gates.failed:
                    change.problems.append(change.gates.failure())
        current = reg.resolve(change.model, change.current) if change.current else None
        sections.append(_section(client, reg, change, candidate, current))
    head = f"## gitml registry check\n\nChecked under {md_text(reg.policy.source)}.\n\n"
    if not changes:
        head += (
            f"No stage changes in `{STAGES_PATH}`" + (f" against {md_code(base, table=False)}" if base else "") + ".\n"
        )
    else:
        verdict = "all checks pass" if all(not c.problems for c in changes) else "**problems found**"
        head += f"{len(changes)} stage change(s) in `{STAGES_PATH}`: {verdict}.\n"
    return CheckResult(changes, head + "".join(sections))


def _unverified(reg: Registry, mv: ModelVersion, stage: str) -> str | None:
    """Why the candidate's chain does not verify under the policy for ``stage`` (so it
    is not loaded), None when it does."""
    policy = reg.policy
    if not (policy.requires_signature(stage) or policy.guards(mv.event.tag)):
        return None
    why = reg.rejection(mv.event, deep=True)
    status = reg.verification(mv.event)
    if why is None and status.trusted:
        if reg.vouched(mv.event):
            return None
        why = f"signed for repository {mv.event.info.get('repository')!r}, not {policy.repository!r}"
    return (
        f"{mv.model} {mv.version}: not loaded: its registration tag {mv.tag} is {why or status}, and stage "
        f"{stage!r} requires tags signed by a trusted key under {policy.source} "
        "(sign the registration: gitml registry register --sign)"
    )


def _check_artifacts(client: Operations, reg: Registry, mv: ModelVersion, load: bool, problems: list[str]) -> None:
    from gitml.modelformat.uri import local_model

    folder = None
    try:
        folder, _ = local_model(f"runs:/{mv.run_id}/{mv.path}" if mv.path else f"runs:/{mv.run_id}", client=client)
        if load:
            from gitml.pyfunc import load_folder

            load_folder(folder, None)
    except GitmlError as e:
        problems.append(f"{mv.model} {mv.version}: {e}")
    except Exception as e:  # noqa: BLE001 - a model that fails to load, whatever its flavor raises
        problems.append(f"{mv.model} {mv.version}: the model does not load ({type(e).__name__}: {e})")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _section(
    client: Operations, reg: Registry, change: Change, new: ModelVersion | None, old: ModelVersion | None
) -> str:
    def md(value: object) -> str:  # a name, version, tagger or message from a tag or a run: inert Markdown
        return md_text(value, limit=None, table=False)

    lines = [
        f"\n### {md(change.model)}: {md(change.stage)} → {md(change.version) if change.version else '(empty)'}\n\n"
    ]
    candidate = new.version if new else change.version
    lines.append(
        f"Now: {md(old.version) if old else 'nothing'}; candidate: {md(candidate) if candidate else 'none'}.\n\n"
    )
    for problem in change.problems:
        lines.append(f"- ❌ {md(problem)}\n")
    if change.problems:
        lines.append("\n")
    if change.gates is not None:
        rows = [["✅ passes" if r.ok else "❌ fails", md_text(r.gate), md_text(r.detail)] for r in change.gates.results]
        on = ""
        if change.gates.dataset is not None:
            spec = reg.policy.datasets[change.gates.dataset]
            on = (
                f", evaluated on dataset {md(spec.name)} ({md_code(spec.path, table=False)}, sha256 "
                f"{md_code(spec.sha256[:12], table=False)})"
            )
        lines.append(f"Gates of stage {md(change.stage)}{on} ({md(change.gates.source)}):\n\n")
        lines.append(markdown_table(["result", "gate", "values"], rows) + "\n")
    runs = {}
    for label, mv in (("current", old), ("candidate", new)):
        if mv is not None:
            try:
                runs[label] = client.get_run(mv.run_id)
            except GitmlError:
                pass
    if new is not None:
        event = next((e for e in reg.model(change.model).events if e.tag.name == new.tag), None)
        signer = str(reg.verification(event)) if event else "?"
        source = runs["candidate"].data.tags.get("mlflow.source.git.commit", "") if "candidate" in runs else ""
        lines.append(
            f"Lineage: run {md_code(new.run_id)} at commit {md_code(new.commit[:12])}, "
            f"source commit {md_code(source[:12] or '?')}, model {md_code(new.path or '.', table=False)}; "
            f"registered by {md(new.registered_by)} ({md(new.tag)}: {md(signer)}).\n\n"
        )
    for kind in ("metrics", "params"):
        keys = sorted({k for r in runs.values() for k in getattr(r.data, kind)})
        if not keys:
            continue
        rows = []
        for key in keys:
            a = getattr(runs["current"].data, kind).get(key) if "current" in runs else None
            b = getattr(runs["candidate"].data, kind).get(key) if "candidate" in runs else None
            delta = ""
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                delta = f"{b - a:+.6g}"
            elif a != b and a is not None and b is not None:
                delta = "changed"
            rows.append([md_text(key), md_text(a), md_text(b), delta])
        lines.append(markdown_table([kind[:-1], "current", "candidate", "delta"], rows) + "\n")
    return "".join(lines)


def evaluator(
    client: Operations, reg: Registry, stage: str, load: bool = True
) -> Callable[[ModelVersion, str], dict[str, float]]:
    """What a gate on a dataset judges: ``gitml.evaluate``'s metrics of a version's model on
    the policy's dataset, computed, not logged. The model is loaded only when its chain
    verifies (its files are the ones registered; under a stage or policy that asks for
    signatures, its registration is signed by a trusted key), as ``check`` loads a candidate;
    otherwise GateError, and the gates fail. Each version is evaluated once per call."""
    done: dict[tuple[str, str, str], dict[str, float]] = {}

    def evaluate(mv: ModelVersion, name: str) -> dict[str, float]:
        key = (mv.model, mv.version, name)
        if key not in done:
            if not load:
                raise GateError("the models are not loaded (--no-load)")
            refusal = _unverified(reg, mv, stage)
            if refusal is not None:
                raise GateError(refusal)
            done[key] = _evaluate_on(client, reg, mv, name)
        return done[key]

    return evaluate


def _evaluate_on(client: Operations, reg: Registry, mv: ModelVersion, name: str) -> dict[str, float]:
    from gitml.modelformat.uri import local_model
    from gitml.pyfunc import load_folder
    from gitml.pyfunc.evaluation import compute

    spec = reg.policy.datasets[name]
    reg.locate(mv.model, mv.version)  # the run's model files are still the ones registered
    folder, _ = local_model(f"runs:/{mv.run_id}/{mv.path}" if mv.path else f"runs:/{mv.run_id}", client=client)
    try:
        try:
            model = load_folder(folder, None)
            return compute(model, spec.frame(), model_type=spec.model_type, targets=spec.targets)
        except GitmlError:
            raise
        except Exception as e:  # noqa: BLE001 - a model or table that fails, whatever it raises
            raise GateError(f"{mv.model} {mv.version}: {type(e).__name__}: {e}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def promote(
    client: Operations, model: str, version: str, stage: str, *, sign_tag: bool | None = None, force: bool = False
) -> tuple[str, bool]:
    """``Registry.assign`` with the gates of the stage judged, those on a dataset too (the
    model is evaluated on it): ``gitml registry promote``. Raises GateError."""
    reg = client.registry
    return reg.assign(model, version, stage, sign_tag=sign_tag, force=force, evaluate=evaluator(client, reg, stage))


@dataclass
class Applied:
    model: str
    stage: str
    version: str
    tags: list[str]


def apply(client: Operations, *, sign_tag: bool | None = None, force: bool = False) -> list[Applied]:
    """Create the tags ``.gitml/stages.yaml`` at HEAD asks for; nothing when they exist.
    Raises NotFoundError (a version that does not exist) or GateError (a promotion that fails
    a gate of the policy, unless ``force``: then each tag that overrides a gate must be
    signed by a trusted key, and names the gates it overrides) before any tag is written."""
    reg = client.registry
    head, _ = head_of(reg)
    desired = desired_at(reg, head)
    models = reg.models()
    todo = []
    for model, stages in sorted(desired.items()):
        for stage, version in sorted(stages.items()):
            state = models.get(model)
            if state is None:
                raise NotFoundError(f"{STAGES_PATH} names {model!r}, which has no registered version")
            reg.policy.check_stage(stage)
            held = state.stages.get(stage)
            if version:
                version = reg.resolve(model, check_version(version)).version
            if (held or "") != version:
                todo.append((model, stage, version))
    refused = []
    for model, stage, version in todo:
        if version:
            report = reg.gate_report(reg.resolve(model, version), stage, evaluate=evaluator(client, reg, stage))
            if report is not None and not report.ok:
                refused.append(report.refusal())
    if refused and not force:
        raise GateError(" | ".join(refused))
    done = []
    for model, stage, version in todo:
        if version:
            tag, _ = reg.assign(
                model, version, stage, sign_tag=sign_tag, force=force, evaluate=evaluator(client, reg, stage)
            )
            done.append(Applied(model, stage, version, [tag]))
        else:
            done.append(Applied(model, stage, "", reg.unassign(model, stage, sign_tag=sign_tag)))
    return done


__all__ = ["Applied", "Change", "CheckResult", "apply", "check", "desired_at", "evaluator", "promote", "propose"]

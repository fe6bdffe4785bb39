"""``gitml export mlflow DEST``: the way back. A repository's runs and registry into an MLflow
tracking URI (a file store folder, a database, a server), written through ``MlflowClient``.

MLflow gives every new run its own id (no API takes one), so each exported run carries
gitml's id in the tag ``gitml.runId``: a second export skips the runs that tag names (it is
idempotent and resumes), and parents are re-pointed at their exported ids. Everything else
goes as MLflow takes it: experiments (names, tags, lifecycle), run names, users, statuses,
start/end times, params, tags, every metric point with its step and time (``log_batch`` in
MLflow's batch limits), dataset inputs, artifacts, and the registry (versions in order,
their descriptions, stages and aliases).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field

from gitml.errors import GitmlError
from gitml.mlflow_plugin.importer import Progress, mlflow_client

RUN_ID_TAG = "gitml.runId"
_DERIVED = ("mlflow.runName", "mlflow.parentRunId")
# MLflow's log_batch limits: 1000 entities per call, of which at most 100 params and 100 tags
_BATCH, _PARAMS, _TAGS = 1000, 100, 100


@dataclass
class ExportSummary:
    experiments: int = 0
    runs: int = 0
    runs_present: int = 0
    metric_points: int = 0
    artifacts: int = 0
    model_versions: int = 0
    stages: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "skipped"}
        out["skipped"] = [{"what": w, "why": y} for w, y in self.skipped]
        return out


def export_mlflow(
    client,
    dest: str,
    *,
    experiments=(),
    artifacts: bool = True,
    registry: bool = True,
    progress: Progress | None = None,
) -> ExportSummary:
    """Export ``client``'s repository into the MLflow tracking URI (or file store folder,
    created when missing) ``dest``. ``experiments``: names to export (default: all)."""
    from mlflow.exceptions import MlflowException

    from gitml.entities import ViewType

    mc = mlflow_client(dest, create=True)
    summary = ExportSummary()
    chosen = [e for e in client.search_experiments(view_type=ViewType.ALL) if not experiments or e.name in experiments]
    exported = _exported(mc)
    work = []  # (run, destination experiment)
    for experiment in sorted(chosen, key=lambda e: (e.experiment_id != "0", e.name)):
        target = _experiment(mc, experiment, summary)
        runs = client.search_runs([experiment.experiment_id], "", ViewType.ALL, max_results=1_000_000)
        work += [(run, target) for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))]
    depth = _depth([run for run, _ in work])
    work.sort(key=lambda item: depth(item[0]))  # parents before their children (in any experiment)
    for i, (run, target) in enumerate(work):
        if run.info.run_id in exported:
            summary.runs_present += 1
        else:
            try:
                exported[run.info.run_id] = _export_run(client, mc, target, run, exported, summary, artifacts=artifacts)
            except (GitmlError, MlflowException) as e:
                summary.skipped.append((f"run {run.info.run_id}", str(e).splitlines()[0]))
        if progress:
            progress("runs", i + 1, len(work))
    for experiment in chosen:
        found = mc.get_experiment_by_name(experiment.name) if experiment.experiment_id != "0" else None
        if experiment.lifecycle_stage == "deleted" and found is not None and found.lifecycle_stage != "deleted":
            mc.delete_experiment(found.experiment_id)
    if registry:
        _export_registry(client, mc, exported, summary)
    return summary


def _depth(runs):
    parents = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in runs}

    def depth(run) -> int:
        n, seen, at = 0, set(), parents.get(run.info.run_id)
        while at and at in parents and at not in seen:
            seen.add(at)
            n, at = n + 1, parents[at]
        return n

    return depth


def _exported(mc) -> dict[str, str]:
    """gitml run id -> MLflow run id of the runs an earlier export wrote to ``mc``'s store."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in _all(lambda t: mc.search_experiments(view_type=ViewType.ALL, page_token=t))]
    out: dict[str, str] = {}
    for start in range(0, len(ids), 100):
        for run in _all(
            lambda t, start=start: mc.search_runs(
                ids[start : start + 100],
                f"tags.`{RUN_ID_TAG}` != ''",
                run_view_type=ViewType.ALL,
                max_results=1000,
                page_token=t,
            )
        ):
            out[run.data.tags[RUN_ID_TAG]] = run.info.run_id
    return out


def _all(page_of) -> list:
    found, token = [], None
    while True:
        page = page_of(token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _experiment(mc, experiment, summary: ExportSummary) -> str:
    if experiment.experiment_id == "0":
        target = "0"
    else:
        found = mc.get_experiment_by_name(experiment.name)
        if found is None:
            summary.experiments += 1
            return mc.create_experiment(experiment.name, tags=dict(experiment.tags or {}))
        target = found.experiment_id
        if found.lifecycle_stage == "deleted":  # MLflow takes no run there: restored, deleted again at the end
            mc.restore_experiment(target)
    current = mc.get_experiment(target).tags
    for key, value in (experiment.tags or {}).items():
        if current.get(key) != value:
            mc.set_experiment_tag(target, key, value)
    return target


def _export_run(
    client, mc, experiment_id: str, run, exported: dict[str, str], summary: ExportSummary, *, artifacts: bool
) -> str:
    info, data = run.info, run.data
    tags = {k: v for k, v in data.tags.items() if k not in _DERIVED}
    tags.setdefault("mlflow.user", info.user_id or "")
    parent = data.tags.get("mlflow.parentRunId")
    if parent:
        if parent in exported:
            tags["mlflow.parentRunId"] = exported[parent]
        else:
            summary.skipped.append((f"parent of run {info.run_id}", f"its parent {parent} was not exported"))
    created = mc.create_run(experiment_id, start_time=info.start_time, tags=tags, run_name=info.run_name)
    new_id = created.info.run_id
    try:
        _fill(client, mc, run, new_id, summary, artifacts=artifacts)
    except BaseException:
        mc.delete_run(new_id)  # a run half written is not left for a run of the store
        raise
    summary.runs += 1
    return new_id


def _fill(client, mc, run, new_id: str, summary: ExportSummary, *, artifacts: bool) -> None:
    """Everything of ``run`` into the MLflow run ``new_id``; the tag naming gitml's id last,
    so that a run it names is whole (an export killed midway leaves an untagged run, which the
    next export does not count as exported)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    info, data = run.info, run.data
    points = []
    for key in data.metrics:
        points += [Metric(key, m.value, m.timestamp, m.step) for m in client.get_metric_history(info.run_id, key)]
    params = [Param(k, v) for k, v in data.params.items()]
    for start in range(0, len(params), _PARAMS):
        mc.log_batch(new_id, params=params[start : start + _PARAMS])
    for start in range(0, len(points), _BATCH):
        mc.log_batch(new_id, metrics=points[start : start + _BATCH])
    summary.metric_points += len(points)
    datasets = [
        DatasetInput(
            Dataset(
                d.dataset.name,
                d.dataset.digest,
                d.dataset.source_type,
                d.dataset.source,
                d.dataset.schema,
                d.dataset.profile,
            ),
            [InputTag(t.key, t.value) for t in d.tags],
        )
        for d in run.inputs.dataset_inputs
    ]
    if datasets:
        mc.log_inputs(new_id, datasets=datasets)
    if artifacts and client.artifact_manifest(info.run_id):
        tmp = tempfile.mkdtemp(prefix="gitml-export-")
        try:
            folder = client.download_artifacts(info.run_id, "", tmp)  # verified against the manifest's hashes
            mc.log_artifacts(new_id, folder)
            summary.artifacts += len(client.artifact_manifest(info.run_id))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if info.status != "RUNNING":
        mc.set_terminated(new_id, info.status, end_time=info.end_time)
    mc.set_tag(new_id, RUN_ID_TAG, info.run_id)
    if info.lifecycle_stage == "deleted":
        mc.delete_run(new_id)


def _export_registry(client, mc, exported: dict[str, str], summary: ExportSummary) -> None:
    """The registered model with its description and tags, its versions in order with their
    descriptions and tags (MLflow numbers them itself), then stages (Staging/Production) and
    aliases (any other stage)."""
    for model in client.search_registered_models(max_results=100_000):
        name = model.name
        try:
            have = mc.get_registered_model(name)
        except Exception:  # noqa: BLE001  (MLflow's RESOURCE_DOES_NOT_EXIST)
            have = mc.create_registered_model(name)
        if model.description and have.description != model.description:
            mc.update_registered_model(name, description=model.description)
        for key, value in sorted(model.tags.items()):
            if have.tags.get(key) != value:
                mc.set_registered_model_tag(name, key, value)
        escaped = name.replace("'", "\\'")
        there: dict[tuple, list[str]] = {}  # (run, source) -> the destination's versions of it, in order
        for v in sorted(mc.search_model_versions(f"name = '{escaped}'"), key=lambda v: int(v.version)):
            there.setdefault((v.run_id, v.source), []).append(str(v.version))
        numbers: dict[str, str] = {}  # gitml's MLflow number -> the destination's (MLflow numbers them itself)
        versions = sorted(client.search_model_versions(f"name = '{escaped}'"), key=lambda v: float(v.version))
        for mv in versions:
            run_id = exported.get(mv.run_id)
            if run_id is None:
                summary.skipped.append((f"version {mv.version} of {name}", f"its run {mv.run_id} was not exported"))
                continue
            path = mv.source.split("/", 2)[2] if mv.source.count("/") >= 2 else ""
            source = f"runs:/{run_id}/{path}"
            if there.get((run_id, source)):  # an earlier export's (two versions of one run: one each)
                numbers[mv.version] = there[(run_id, source)].pop(0)
                continue
            made = mc.create_model_version(
                name, source, run_id=run_id, description=mv.description or None, tags=dict(mv.tags) or None
            )
            numbers[mv.version] = str(made.version)
            summary.model_versions += 1
            if mv.current_stage == "Archived":
                mc.transition_model_version_stage(name, made.version, "Archived")
        state = client.registry.model(
            name
        )  # stages and aliases (a registered model's aliases leave MLflow's stages out)
        for stage, held in sorted(state.stages.items()):
            target = numbers.get(str(state.versions[held].number))
            if target is None:
                continue
            if stage in ("staging", "production"):
                current = {str(v.version): v.current_stage for v in mc.search_model_versions(f"name = '{escaped}'")}
                if current.get(target) != stage.capitalize():
                    mc.transition_model_version_stage(name, target, stage.capitalize())
                    summary.stages += 1
            elif mc.get_registered_model(name).aliases.get(stage) != target:
                mc.set_registered_model_alias(name, stage, target)
                summary.stages += 1

"""``gitml import mlflow SOURCE``: an MLflow tracking store brought into a gitml repository.

SOURCE is read through MLflow's own client (``MlflowClient``), never by parsing MLflow's
files: a file store folder (``./mlruns``), a database URI (``sqlite:///mlflow.db``,
``postgresql://...``) or a tracking server (``http://host:5000``). Everything comes:
experiments (names, tags, lifecycle), runs with their MLflow ids (so ``runs:/<id>/...``
keeps working), params, tags, status, times, names, parents, dataset inputs, every
metric's full history, artifacts (by hash, verified against MLflow's listing), MLflow 3's
logged models (as the MLflow plugin keeps them: files in the run under the model's name,
the record in the run's ``mlflow.log-model.history`` tag) and the model registry
(:mod:`gitml.mlflow_plugin.registry_import`).

Each run is written as one commit (``Client.import_run``), so an import killed midway
leaves whole runs or none, and a second import adds only the runs that are new: the
import is idempotent and resumes where it stopped. The library never prints: progress
goes to a callback, the result is an :class:`ImportSummary`.

>>> with gitml.Client(".") as c:
...     summary = import_mlflow(c, "sqlite:///mlflow.db")
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from gitml.errors import GitmlError, InvalidInputError
from gitml.mlflow_plugin.logged_models import HISTORY_TAG, model_entries

PAGE = 500  # runs read per search page (and histories fetched per bulk query)
CONTEXT_TAG = "mlflow.data.context"
# MLflow's system tags gitml keeps in the run's meta (and presents again when read)
_META_TAGS = ("mlflow.runName", "mlflow.parentRunId")
INSTALL_HINT = 'gitml import mlflow needs MLflow in this Python: pip install "gitml[mlflow]"'

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class ImportSummary:
    """What an import brought (or, with ``dry_run``, would bring), and what it skipped."""

    dry_run: bool = False
    experiments: int = 0
    runs: int = 0
    runs_present: int = 0  # already in the repository (an earlier import): left as they are
    params: int = 0
    tags: int = 0
    metric_points: int = 0
    datasets: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    logged_models: int = 0
    code_joined: int = 0  # runs whose recorded commit is in the repository (the run commit's parent)
    registered_models: int = 0
    model_versions: int = 0
    stages: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "skipped"}
        out["skipped"] = [{"what": w, "why": y} for w, y in self.skipped]
        return out


def tracking_uri(source: str, *, create: bool = False) -> str:
    """MLflow's tracking URI for SOURCE: a URI as it is; a folder (an MLflow file store)
    as its absolute path. Raises InvalidInputError for a path that is not a folder (unless
    ``create``: MLflow makes the store there)."""
    if "://" in source or source.startswith(("file:", "databricks")):
        return source
    if not create and not os.path.isdir(source):
        raise InvalidInputError(
            f"{source!r} is neither an MLflow file store folder nor a tracking URI "
            "(sqlite:///mlflow.db, postgresql://..., http://host:5000)"
        )
    return os.path.abspath(source)


def mlflow_client(source: str, *, create: bool = False):
    """MLflow's client on SOURCE (tracking and registry). A folder is MLflow's file store,
    which MLflow 3 opens only when asked to (``MLFLOW_ALLOW_FILE_STORE``): reading one to
    leave it is what that store's deprecation asks users to do."""
    uri = tracking_uri(source, create=create)
    if "://" not in uri or uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InvalidInputError(INSTALL_HINT) from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def parse_since(text: str | None) -> int | None:
    """``--since``: a date or ISO time (UTC unless it says), or milliseconds since 1970."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"--since {text!r} is not a date (2024-05-01), an ISO time or milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


def parse_experiment_map(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``SOURCE=TARGET`` pairs (experiment names) as a dict."""
    out = {}
    for pair in pairs:
        name, sep, target = pair.partition("=")
        if not sep or not name or not target:
            raise InvalidInputError(f"--map-experiment {pair!r}: write SOURCE_NAME=TARGET_NAME")
        out[name] = target
    return out


def import_mlflow(
    client,
    source: str,
    *,
    experiments: list[str] | tuple[str, ...] = (),
    since: int | None = None,
    artifacts: bool = True,
    registry: bool = True,
    dry_run: bool = False,
    experiment_map: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the MLflow store at ``source`` into ``client``'s repository.

    ``experiments``: names or ids to import (default: all); ``since``: only runs started at
    or after (ms); ``artifacts=False``: no artifacts nor logged models' files;
    ``registry=False``: no registered models; ``dry_run``: count, write nothing;
    ``experiment_map``: source name → name in gitml; ``progress(what, done, total)``.

    Raises InvalidInputError when MLflow is missing or SOURCE names nothing MLflow opens,
    ExperimentNotFoundError for an ``experiments`` entry the source lacks."""
    from mlflow.entities import ViewType

    mc = mlflow_client(source)
    summary = ImportSummary(dry_run=dry_run)
    chosen = _experiments(mc, experiments)
    present = {ref.decode().rsplit("/", 1)[1] for ref in client.run_refs()}
    store = mc._tracking_client.store
    bulk = getattr(store, "get_metric_history_bulk", None)
    mapping = experiment_map or {}
    imported: dict[str, str] = {}  # MLflow run id -> gitml experiment id
    for experiment in chosen:
        target = mapping.get(experiment.name, experiment.name)
        runs = _all_runs(mc, experiment.experiment_id, since, ViewType.ALL)
        new = [r for r in runs if r.info.run_id not in present]
        summary.runs_present += len(runs) - len(new)
        experiment_id = _experiment(client, experiment, target, summary, dry_run)
        models = _logged_models(mc, experiment.experiment_id) if artifacts and new else {}
        orphans = len(models.pop("", []))
        if orphans:
            summary.skip(
                f"{orphans} logged model(s) of experiment {experiment.name}",
                "no run logged them: gitml keeps models in runs",
            )
        if progress:
            progress(f"experiment {experiment.name}", 0, len(new))
        for start in range(0, len(new), PAGE):
            page = new[start : start + PAGE]
            histories = None if dry_run else _histories(mc, bulk, page)
            for i, run in enumerate(page):
                what = f"run {run.info.run_id}"
                try:
                    _import_run(
                        mc,
                        client,
                        experiment_id,
                        run,
                        histories,
                        models.get(run.info.run_id, []),
                        summary,
                        artifacts=artifacts,
                        dry_run=dry_run,
                    )
                    imported[run.info.run_id] = experiment_id or ""
                except GitmlError as e:
                    summary.skip(what, str(e))
                if progress:
                    progress(f"experiment {experiment.name}", start + i + 1, len(new))
        if experiment.lifecycle_stage == "deleted" and experiment_id and not dry_run:
            if client.get_experiment(experiment_id).lifecycle_stage != "deleted":
                client.delete_experiment(experiment_id)
    if registry:
        from gitml.mlflow_plugin.registry_import import import_registry

        import_registry(mc, client, summary, runs=present | set(imported), dry_run=dry_run)
    return summary


def _experiments(mc, wanted) -> list:
    from mlflow.entities import ViewType

    found, token = [], None
    while True:
        page = mc.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            break
    if not wanted:
        return sorted(found, key=lambda e: (e.experiment_id != "0", e.name))
    out = []
    for spec in wanted:
        match = [e for e in found if e.name == spec] or [e for e in found if e.experiment_id == spec]
        if not match:
            from gitml.errors import ExperimentNotFoundError

            raise ExperimentNotFoundError(f"{spec} (in the MLflow store)")
        out += [e for e in match if e not in out]
    return out


def _all_runs(mc, experiment_id: str, since: int | None, view) -> list:
    runs, token = [], None
    filter_string = f"attributes.start_time >= {int(since)}" if since is not None else ""
    while True:
        page = mc.search_runs(
            [experiment_id],
            filter_string,
            run_view_type=view,
            max_results=PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _experiment(client, experiment, target: str, summary: ImportSummary, dry_run: bool) -> str | None:
    """The gitml experiment the source's runs go to: found by name, else created (with
    the source's tags). None in a dry run that would create it."""
    found = client.get_experiment_by_name(target)
    if found is None and experiment.experiment_id == "0" and target == experiment.name:
        found = client.get_experiment("0")  # Default is Default, whatever its name
    tags = dict(experiment.tags or {})
    if found is None:
        summary.experiments += 1
        if dry_run:
            return None
        return client.create_experiment(target, tags=tags)
    if not dry_run:
        for key, value in tags.items():
            if found.tags.get(key) != value:
                client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def _histories(mc, bulk, runs) -> dict[tuple[str, str], list]:
    """``{(run id, key): [(step, timestamp, value), ...]}`` of these runs: with one query
    per metric key when the store offers MLflow's bulk read (the SQL stores), else one
    ``get_metric_history`` per run and key."""
    out: dict[tuple[str, str], list] = {}
    keys: dict[str, list[str]] = {}
    for run in runs:
        for key in run.data.metrics:
            keys.setdefault(key, []).append(run.info.run_id)
    for key, run_ids in keys.items():
        if bulk is not None:
            for m in bulk(run_ids, key, max_results=2**62):  # MetricWithRunId: a Metric with its run_id
                out.setdefault((m.run_id, key), []).append((m.step, m.timestamp, m.value))
            continue
        for run_id in run_ids:
            out[(run_id, key)] = [(m.step, m.timestamp, m.value) for m in mc.get_metric_history(run_id, key)]
    return out


def _import_run(
    mc, client, experiment_id, run, histories, models: list, summary: ImportSummary, *, artifacts: bool, dry_run: bool
) -> None:
    info, data = run.info, run.data
    tags = dict(data.tags)
    run_name = info.run_name or tags.get("mlflow.runName") or info.run_id
    user = info.user_id or tags.get("mlflow.user") or ""
    if tags.get("mlflow.user") == user:
        tags.pop("mlflow.user")
    for key in _META_TAGS:
        tags.pop(key, None)
    parent = data.tags.get("mlflow.parentRunId")
    inputs = [_input_record(d) for d in run.inputs.dataset_inputs] if run.inputs else []
    files, entries = [], model_entries(tags)
    tmp = None
    try:
        if artifacts:
            tmp = tempfile.mkdtemp(prefix="gitml-import-")
            files, entries = _artifacts(mc, run, models, entries, tmp, summary, dry_run=dry_run)
        if entries:
            tags[HISTORY_TAG] = _history_value(entries)
        if dry_run:
            summary.runs += 1
            summary.params += len(data.params)
            summary.tags += len(tags)
            summary.datasets += len(inputs)
            return
        metrics = {key: histories.get((info.run_id, key), []) for key in data.metrics}
        size = sum(os.path.getsize(f) for f, _ in files)
        joined = client.import_run(
            experiment_id,
            info.run_id,
            run_name=run_name,
            code=tags.get("mlflow.source.git.commit"),
            artifact_files=files,
            user_id=user,
            status=info.status,
            start_time=info.start_time,
            end_time=info.end_time,
            lifecycle_stage=info.lifecycle_stage,
            parent_run_id=parent,
            params=dict(data.params),
            tags=tags,
            metrics=metrics,
            inputs=inputs,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    summary.runs += 1
    summary.code_joined += joined
    summary.params += len(data.params)
    summary.tags += len(tags)
    summary.datasets += len(inputs)
    summary.metric_points += sum(len(p) for p in metrics.values())
    summary.artifacts += len(files)
    summary.artifact_bytes += size


def _input_record(d) -> dict:
    tags = {t.key: t.value for t in d.tags or ()}
    ds = d.dataset
    return {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
        "schema": ds.schema,
        "profile": ds.profile,
        "context": tags.pop(CONTEXT_TAG, None),
        "tags": tags,
    }


def _history_value(entries: list[dict]) -> str:
    from gitml.mlflow_plugin.logged_models import history_value

    return history_value(entries)


def _artifacts(mc, run, models: list, entries: list[dict], tmp: str, summary: ImportSummary, *, dry_run: bool):
    """The run's artifact files downloaded under ``tmp`` as ``(local, artifact path)``, each
    checked against the size MLflow lists; then each logged model's files under its name
    (MLflow 3 keeps them apart from the run's), its record added to ``entries``."""
    run_id = run.info.run_id
    listed = _listing(mc, run_id, "")
    files = []
    if listed:
        if dry_run:
            summary.artifacts += len(listed)
            summary.artifact_bytes += sum(size or 0 for size in listed.values())
        else:
            os.makedirs(os.path.join(tmp, "run"))
            root = mc.download_artifacts(run_id, "", os.path.join(tmp, "run"))
            files = _checked_files(root, listed, f"run {run_id}")
    for model in models:
        name = model.name or "model"
        if name in listed or any(p.startswith(name + "/") for p in listed):
            summary.skip(
                f"logged model {model.model_id} of run {run_id}", f"the run has artifacts under {name!r} already"
            )
            continue
        known = [e for e in entries if e.get("model_uuid") == model.model_id]
        entry = {
            **(known[0] if known else {}),
            "model_uuid": model.model_id,
            "name": name,
            "artifact_path": name,
            "run_id": run_id,
            "creation_timestamp": model.creation_timestamp,
            "status": str(model.status),
            "model_type": model.model_type,
            "tags": dict(model.tags or {}),
            "params": dict(model.params or {}),
        }
        entries = [e for e in entries if e.get("model_uuid") != model.model_id] + [entry]
        summary.logged_models += 1
        if dry_run:
            continue
        import mlflow.artifacts

        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location,
            dst_path=os.path.join(tmp, model.model_id),
            tracking_uri=mc._tracking_client.tracking_uri,
        )
        files += [(local, f"{name}/{path}") for local, path in _walk(folder)]
    return files, [{k: v for k, v in e.items() if v is not None} for e in entries]


def _listing(mc, run_id: str, path: str) -> dict[str, int | None]:
    """``{artifact path: size}`` of every file of a run's artifacts below ``path``."""
    out: dict[str, int | None] = {}
    for info in mc.list_artifacts(run_id, path or None):
        if info.is_dir:
            out.update(_listing(mc, run_id, info.path))
        else:
            out[info.path] = info.file_size
    return out


def _checked_files(root: str, listed: dict[str, int | None], what: str) -> list[tuple[str, str]]:
    files = dict((path, local) for local, path in _walk(root))
    missing = sorted(set(listed) - set(files))
    if missing:
        raise InvalidInputError(f"{what}: MLflow lists artifacts it did not give: {', '.join(missing[:5])}")
    for path, size in listed.items():
        if size is not None and os.path.getsize(files[path]) != size:
            raise InvalidInputError(
                f"{what}: artifact {path!r} came with {os.path.getsize(files[path])} bytes, MLflow lists {size}"
            )
    return [(files[path], path) for path in sorted(files)]


def _walk(root: str) -> list[tuple[str, str]]:
    out = []
    for folder, _, names in os.walk(root):
        for name in names:
            local = os.path.join(folder, name)
            out.append((local, os.path.relpath(local, root).replace(os.sep, "/")))
    return sorted(out, key=lambda p: p[1])


def _logged_models(mc, experiment_id: str) -> dict[str, list]:
    """MLflow 3's logged models of an experiment by the run that logged them (a model
    without a run has no home in gitml: see :mod:`gitml.mlflow_plugin.logged_models`)."""
    search = getattr(mc, "search_logged_models", None)
    out: dict[str, list] = {}
    if search is None:  # an MLflow before 3
        return out
    token = None
    while True:
        page = search(experiment_ids=[experiment_id], max_results=100, page_token=token)
        for model in page:
            out.setdefault(model.source_run_id or "", []).append(model)
        token = page.token
        if not token:
            return out

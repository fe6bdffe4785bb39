"""MLflow's tracking store over a gitml repository (entry point ``mlflow.tracking_store``: ``gitml``).

Every ``mlflow.*`` tracking call reaches one method here, which calls :class:`gitml.Client`.
A run MLflow starts in this process stays open in the Client, as ``gitml.start_run``'s
(its calls are journaled and committed on gitml's flush interval, and at ``end_run``);
under ``mlflow server`` (whose workers share runs) each call is committed before it returns.
"""

from __future__ import annotations

import os
import time
import uuid

from mlflow.entities import LoggedModel, LoggedModelStatus, Metric, Run, RunInfo, RunStatus, ViewType
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.abstract_store import AbstractStore

import gitml.entities as ge
from gitml.errors import ConflictError, DeletedRunError, InvalidInputError, NotFoundError, ParamConflictError
from gitml.mlflow_plugin import (
    as_mlflow_exception,
    check_mlflow_version,
    client_for,
    convert,
    mlflow_errors,
    repository_path,
    view_uri,
)
from gitml.mlflow_plugin.logged_models import (
    HISTORY_TAG,
    HOLDER_TAGS,
    MODEL_RUN_TAG,
    compact_model_dict,
    history_value,
    model_entries,
)

# MLflow's client sets these on each new run; gitml records them itself (the user, the
# script, the commit that ran and its branch, the parent run), so it keeps its own
_DERIVED_TAGS = (
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
)


_BUILT_RUNS = 100_000  # at most this many built Runs kept (about 5 KB each)


def _server() -> bool:
    """Inside ``mlflow server`` / ``mlflow ui`` (it passes the store URI to its workers so)."""
    return bool(os.environ.get("_MLFLOW_SERVER_FILE_STORE"))


class GitmlTrackingStore(AbstractStore):
    """MLflow's ``AbstractStore`` on the repository a ``gitml:`` URI names."""

    def __init__(self, store_uri: str | None = None, artifact_uri: str | None = None):
        check_mlflow_version()
        super().__init__()
        self.client, self._lock = client_for(repository_path(store_uri))
        self.repo_path = self.client.repo_path
        self.gitml_dir = self.client.gitml_dir
        self._model_runs: dict[str, str] = {}  # logged model id -> its run (found once)
        self._locations: dict[str, str | None] = {}  # experiment id -> artifact location chosen for it
        self._started: dict[str, RunInfo] = {}  # runs this store started and has not ended: their info at the start
        # the MLflow Runs search built, by (run ref, commit): a commit fixes a run's content (and
        # its experiment's artifact location is set at creation), so a repeated search copies them
        self._built: dict[tuple[bytes, bytes], Run] = {}

    def flush_async_logging(self):
        """``mlflow.flush_async_logging()``: MLflow's queue, then gitml's buffered runs and the
        background commits of ended ones (so every call is in git when it returns)."""
        super().flush_async_logging()
        with self._lock:
            self.client.flush()

    # -- experiments -------------------------------------------------------
    @mlflow_errors
    def search_experiments(
        self, view_type=ViewType.ACTIVE_ONLY, max_results=1000, filter_string=None, order_by=None, page_token=None
    ):
        found = self.client.search_experiments(view_type=view_type, filter_string=filter_string, order_by=order_by)
        return self._page([convert.experiment(e, self.gitml_dir) for e in found], max_results, page_token)

    @staticmethod
    def _page(items: list, max_results, page_token) -> PagedList:
        offset = convert.page_offset(page_token)
        end = offset + max_results if max_results is not None else len(items)
        return PagedList(items[offset:end], convert.page_token(end) if end < len(items) else None)

    @mlflow_errors
    def create_experiment(self, name, artifact_location=None, tags=None):
        _validate_experiment_name(name)
        if self.client.get_experiment_by_name(name) is not None:
            raise as_mlflow_exception(
                ConflictError(f"Experiment(name={name}) already exists"), "RESOURCE_ALREADY_EXISTS"
            )
        if artifact_location:  # a relative local path is the caller's working directory's, as on MLflow's stores
            from mlflow.utils.uri import resolve_uri_if_local

            artifact_location = resolve_uri_if_local(artifact_location)
        return self.client.create_experiment(name, artifact_location, {t.key: t.value for t in tags or ()})

    @mlflow_errors
    def get_experiment(self, experiment_id):
        return convert.experiment(self.client.get_experiment(_experiment_id(experiment_id)), self.gitml_dir)

    @mlflow_errors
    def get_experiment_by_name(self, experiment_name):
        _validate_experiment_name(experiment_name)
        found = self.client.get_experiment_by_name(experiment_name)
        return convert.experiment(found, self.gitml_dir) if found is not None else None

    @mlflow_errors
    def delete_experiment(self, experiment_id):
        self.client.delete_experiment(_experiment_id(experiment_id))

    @mlflow_errors
    def restore_experiment(self, experiment_id):
        self.client.restore_experiment(_experiment_id(experiment_id))

    @mlflow_errors
    def rename_experiment(self, experiment_id, new_name):
        _validate_experiment_name(new_name)
        self.client.rename_experiment(_experiment_id(experiment_id), new_name)

    @mlflow_errors
    def set_experiment_tag(self, experiment_id, tag):
        self.client.set_experiment_tag(_experiment_id(experiment_id), tag.key, tag.value)

    @mlflow_errors
    def delete_experiment_tag(self, experiment_id, key):
        self.client.delete_experiment_tag(_experiment_id(experiment_id), key)

    # -- runs ----------------------------------------------------------------
    def _run(self, r):
        return convert.run(r, self.gitml_dir, self._location(str(r.info.experiment_id)))

    def _location(self, experiment_id: str) -> str | None:
        """The artifact location the experiment's creator chose (None: gitml's default).
        MLflow keeps the artifacts of its runs there, as its own stores do; gitml's
        default keeps them in the run (see gitml.mlflow_plugin.artifacts)."""
        if experiment_id not in self._locations:  # set at creation, never changed
            try:
                location = self.client.get_experiment(experiment_id).artifact_location
            except NotFoundError:
                return None
            self._locations[experiment_id] = None if convert.default_location(location, experiment_id) else location
        return self._locations[experiment_id]

    @mlflow_errors
    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        tag_dict = {t.key: t.value for t in tags or ()}
        hidden = [k for k in convert.GITML_TAGS if k not in tag_dict]  # shown to MLflow only when it set them
        for key in _DERIVED_TAGS:
            tag_dict.pop(key, None)
        if hidden:
            tag_dict[convert.HIDDEN_TAGS] = ",".join(hidden)
        parent = tag_dict.pop("mlflow.parentRunId", None)
        experiment_id = _experiment_id(experiment_id)
        start_time = start_time or None  # MLflow's REST API sends 0 for "not given"
        if _server():
            r = self.client.create_run(
                experiment_id,
                start_time=start_time,
                tags=tag_dict,
                run_name=run_name or None,
                parent_run_id=parent,
                user_id=user_id or None,
            )
        else:
            r = self.client.start_run(
                experiment_id,
                start_time=start_time,
                tags=tag_dict,
                run_name=run_name or None,
                parent_run_id=parent,
                user_id=user_id or None,
            )
        run = self._run(r)
        if not _server():
            self._started[run.info.run_id] = run.info
        return run

    @mlflow_errors
    def get_run(self, run_id):
        try:
            return self._run(self.client.get_run(_run_id(run_id)))
        except NotFoundError as e:  # MLflow's words, which MLflow's callers and tests look for
            raise as_mlflow_exception(NotFoundError(f"Run with id={run_id} not found ({e})")) from e

    @mlflow_errors
    def update_run_info(self, run_id, run_status, end_time, run_name):
        run_id = _run_id(run_id, full=True)
        status = RunStatus.to_string(run_status) if isinstance(run_status, int) else run_status
        if run_name:
            self.client.update_run(run_id, name=run_name)
        if status in ge.RunStatus.TERMINAL:
            end_time = end_time or int(time.time() * 1000)
            self.client.set_terminated(run_id, status, end_time)
        elif status is not None:
            self.client.update_run(run_id, status=status)
        started = self._started.pop(run_id, None) if status in ge.RunStatus.TERMINAL else self._started.get(run_id)
        if started is not None and not run_name:  # what was just set: no wait for the background commit of an ended run
            return RunInfo(
                run_id=run_id,
                experiment_id=started.experiment_id,
                user_id=started.user_id,
                status=status or started.status,
                start_time=started.start_time,
                end_time=end_time if status in ge.RunStatus.TERMINAL else None,
                lifecycle_stage=started.lifecycle_stage,
                artifact_uri=started.artifact_uri,
                run_name=started.run_name,
            )
        return self._run(self.client.get_run(run_id)).info

    @mlflow_errors
    def delete_run(self, run_id):
        run_id = _run_id(run_id, full=True)
        self.client.delete_run(run_id)

    @mlflow_errors
    def restore_run(self, run_id):
        run_id = _run_id(run_id, full=True)
        self.client.restore_run(run_id)

    @mlflow_errors
    def log_batch(self, run_id, metrics, params, tags):
        run_id = _run_id(run_id, full=True)
        from mlflow.utils.validation import (
            _validate_batch_log_data,
            _validate_batch_log_limits,
            _validate_param_keys_unique,
        )

        # as MLflow's stores check a batch, with their words (a metric value that is not a
        # double, a long key, one param named twice): nothing of a refused batch is logged
        metrics, params, tags = _validate_batch_log_data(metrics, params, tags)
        _validate_batch_log_limits(metrics, params, tags)
        _validate_param_keys_unique(params)
        self._log(run_id, metrics, params, tags)

    def _log(self, run_id: str, metrics, params, tags) -> None:
        linked = [m for m in metrics if getattr(m, "model_id", None)]  # MLflow's link of a point to a logged model
        if linked:
            metrics = [ge.Metric(m.key, m.value, m.timestamp, m.step) for m in metrics]
            self._link_metrics(run_id, linked)
        try:
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        except ParamConflictError as e:  # MLflow's words, which its callers and tests look for
            raise as_mlflow_exception(
                InvalidInputError(
                    f"Changing param values is not allowed. Param with key='{e.key}' was already logged with "
                    f"value='{e.old}' for run ID='{e.run_id}'. Attempted logging new value '{e.new}'."
                )
            ) from e

    @mlflow_errors
    def log_metric(self, run_id, metric):
        """One point, checked as MLflow's stores check it (their words: parameter 'value')."""
        from mlflow.utils.validation import _validate_metric

        run_id = _run_id(run_id, full=True)
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        self._log(run_id, [metric], [], [])

    @mlflow_errors
    def log_param(self, run_id, param):
        from mlflow.utils.validation import _validate_param

        run_id = _run_id(run_id, full=True)
        self._log(run_id, [], [_validate_param(param.key, param.value)], [])

    @mlflow_errors
    def delete_tag(self, run_id, key):
        run_id = _run_id(run_id, full=True)
        run = self.client.get_run(run_id)
        if run.info.lifecycle_stage == "deleted":  # as MLflow's stores: the run's state is checked first
            raise DeletedRunError(run_id)
        if key not in run.data.tags:
            raise as_mlflow_exception(
                NotFoundError(f"No tag with name: {key} in run with id {run_id}"), "RESOURCE_DOES_NOT_EXIST"
            )
        self.client.delete_tag(run_id, key)

    @mlflow_errors
    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        from mlflow.entities import Metric

        points = [
            Metric(m.key, m.value, m.timestamp, m.step) for m in self.client.get_metric_history(run_id, metric_key)
        ]
        if max_results is None and page_token is None:
            return PagedList(points, None)
        return self._page(points, max_results, page_token)

    @mlflow_errors
    def _search_runs(self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token):
        hide = " AND ".join(f"tags.`{t}` IS NULL" for t in HOLDER_TAGS)  # runs made to hold a model or a version
        filter_string = f"({filter_string}) AND {hide}" if filter_string and filter_string.strip() else hide
        found = self.client.search_run_commits(
            experiment_ids or None, filter_string, run_view_type, max_results, order_by, page_token
        )
        built = self._built
        missing = [pair for pair in found if pair not in built]
        if missing:
            if len(built) + len(missing) > _BUILT_RUNS:
                built.clear()
            built.update(zip(missing, map(self._run, self.client.runs_at(missing)), strict=True))
        return [convert.fresh(built[pair]) for pair in found], found.token

    @mlflow_errors
    def log_inputs(self, run_id, datasets=None, models=None):
        run_id = _run_id(run_id, full=True)
        if models:  # the run's tag MODEL_INPUTS_TAG, MLflow's run.inputs.model_inputs
            known = convert.model_inputs(self.client.get_run(run_id).data.tags)
            ids = list(dict.fromkeys(known + [m.model_id for m in models]))
            if len(ids) > len(known):
                self.client.set_tag(run_id, convert.MODEL_INPUTS_TAG, ",".join(ids))
        records = [
            ge.DatasetInput(
                ge.Dataset(
                    d.dataset.name,
                    d.dataset.digest,
                    d.dataset.source_type,
                    d.dataset.source,
                    d.dataset.schema,
                    d.dataset.profile,
                ),
                [ge.InputTag(t.key, t.value) for t in d.tags or ()],
            )
            for d in datasets or ()
        ]
        if records:
            self.client.log_inputs(run_id, records)

    def set_model_versions_tags(self, name, version, model_id):
        """The logged model's tag naming its versions (``mlflow server`` sets it at
        create_model_version), with the version a number, as MLflow's SQL store writes it."""
        version = int(version) if str(version).isdigit() else version
        super().set_model_versions_tags(name, version, model_id)

    @mlflow_errors
    def _search_datasets(self, experiment_ids):
        """The datasets the experiments' runs took as inputs, for MLflow's UI (its server's
        ``search-datasets``): one summary per experiment, dataset and context, at most 1,000,
        as MLflow's SQL store gives them."""
        from mlflow.entities.dataset_summary import _DatasetSummary
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        ids = [_experiment_id(e) for e in experiment_ids or ()]
        found: dict[tuple, _DatasetSummary] = {}
        token = None
        while ids and len(found) < 1000:
            page = self.client.search_runs(ids, "", ViewType.ALL, max_results=1000, page_token=token)
            for r in page:
                for d in r.inputs.dataset_inputs:
                    context = next((t.value for t in d.tags if t.key == MLFLOW_DATASET_CONTEXT), None)
                    key = (str(r.info.experiment_id), d.dataset.name, d.dataset.digest, context)
                    found.setdefault(key, _DatasetSummary(*key))
            token = page.token
            if token is None:
                break
        return list(found.values())[:1000]

    # -- MLflow 3's logged models (see gitml.mlflow_plugin.logged_models) -------
    @mlflow_errors
    def create_logged_model(
        self, experiment_id, name=None, source_run_id=None, tags=None, params=None, model_type=None
    ):
        from mlflow.utils.name_utils import _generate_random_name
        from mlflow.utils.validation import _validate_logged_model_name

        _validate_logged_model_name(name)
        experiment_id = _experiment_id(experiment_id)
        name = name or _generate_random_name()  # as MLflow's stores name a model created without one
        model_id = "m-" + uuid.uuid4().hex
        now = int(time.time() * 1000)
        entry = {
            "model_uuid": model_id,
            "name": name,
            "artifact_path": name,
            "creation_timestamp": now,
            "status": str(LoggedModelStatus.PENDING),
            "model_type": model_type,
            "tags": {t.key: t.value for t in tags or ()},
            "params": {p.key: p.value for p in params or ()},
        }
        if source_run_id and not self._is_run(source_run_id):  # MLflow accepts any id: kept, as MLflow's stores keep it
            entry["source_run_id"] = str(source_run_id)
        if source_run_id and "source_run_id" not in entry:
            run_id = _run_id(source_run_id, full=True)
            self._update_entries(run_id, lambda entries: entries + [dict(entry, run_id=run_id)])
        else:  # a run of its own to live in, which MLflow is not shown (see logged_models)
            entry["runless"] = True
            run_id = self.client.create_run(
                experiment_id, run_name=name, tags={MODEL_RUN_TAG: model_id, HISTORY_TAG: history_value([entry])}
            ).info.run_id
            self.client.set_terminated(run_id)
        self._model_runs[model_id] = run_id
        return self._logged_model(experiment_id, dict(entry, run_id=run_id))

    def _is_run(self, run_id) -> bool:
        """Whether ``run_id`` is the id of a run of this repository."""
        import re

        if not isinstance(run_id, str) or not re.fullmatch(r"[0-9a-f]{32}", run_id):
            return False
        try:
            self.client.get_run(run_id)
        except NotFoundError:
            return False
        return True

    def _logged_model(self, experiment_id: str, entry: dict) -> LoggedModel:
        status = entry.get("status") or "READY"
        name = entry.get("name") or entry.get("artifact_path") or "model"
        metrics = [
            Metric(
                k,
                v,
                t,
                s,
                model_id=entry["model_uuid"],
                run_id=r,
                dataset_name=dataset[0] if dataset else None,
                dataset_digest=dataset[1] if len(dataset) > 1 else None,
            )
            for k, (v, t, s, r, *dataset) in sorted((entry.get("metrics") or {}).items())
        ]
        return LoggedModel(
            experiment_id=experiment_id,
            model_id=entry["model_uuid"],
            name=name,
            artifact_location=view_uri(
                self.gitml_dir, experiment_id, entry["run_id"], entry.get("artifact_path") or name
            ),
            creation_timestamp=int(entry.get("creation_timestamp") or 0),
            last_updated_timestamp=int(entry.get("last_updated_timestamp") or entry.get("creation_timestamp") or 0),
            model_type=entry.get("model_type"),
            source_run_id=entry.get("source_run_id") or (None if entry.get("runless") else entry["run_id"]),
            status=LoggedModelStatus(status) if status in LoggedModelStatus.__members__ else LoggedModelStatus.READY,
            tags=dict(entry.get("tags") or {}),
            params=dict(entry.get("params") or {}),
            metrics=metrics,  # [] when none, as MLflow's SQL store (its dataset filter iterates it)
        )

    def _entries(self, run_id: str) -> list[dict]:
        return [dict(e, run_id=run_id) for e in model_entries(self.client.get_run(run_id).data.tags)]

    def _update_entries(self, run_id: str, change) -> None:
        entries = [{k: v for k, v in e.items() if k != "run_id"} for e in change(self._entries(run_id))]
        self.client.set_tag(run_id, HISTORY_TAG, history_value(entries))

    def _find_model(self, model_id, allow_deleted: bool = False) -> tuple[str, dict]:
        if not isinstance(model_id, str) or not model_id.startswith("m-") or not model_id[2:].isalnum():
            raise NotFoundError(f"Logged model with ID '{model_id}' not found")
        run_id = self._model_runs.get(model_id)
        if run_id is None:
            found = self.client.search_runs(
                None, f"tags.`{HISTORY_TAG}` LIKE '%{model_id}%'", ViewType.ALL, max_results=2
            )
            if not found:
                raise NotFoundError(f"Logged model with ID '{model_id}' not found")
            run_id = self._model_runs[model_id] = found[0].info.run_id
        for entry in self._entries(run_id):
            if entry["model_uuid"] == model_id and (allow_deleted or not entry.get("deleted")):
                return run_id, entry
        raise NotFoundError(f"Logged model with ID '{model_id}' not found")

    @mlflow_errors
    def get_logged_model(self, model_id, allow_deleted=False):
        run_id, entry = self._find_model(model_id, allow_deleted)
        return self._logged_model(str(self.client.get_run(run_id).info.experiment_id), entry)

    def _change_model(self, model_id: str, change) -> LoggedModel:
        run_id, _ = self._find_model(model_id)
        changed: list[dict] = []

        def apply(entries):
            now = int(time.time() * 1000)
            out = [change(dict(e, last_updated_timestamp=now)) if e["model_uuid"] == model_id else e for e in entries]
            changed.extend(e for e in out if e["model_uuid"] == model_id)
            return out

        self._update_entries(run_id, apply)
        return self._logged_model(str(self.client.get_run(run_id).info.experiment_id), changed[0])

    @mlflow_errors
    def finalize_logged_model(self, model_id, status):
        status = LoggedModelStatus(status) if isinstance(status, str) else status
        return self._change_model(model_id, lambda e: dict(e, status=str(status)))

    @mlflow_errors
    def set_logged_model_tags(self, model_id, tags):
        self._change_model(
            model_id, lambda e: dict(e, tags={**(e.get("tags") or {}), **{t.key: t.value for t in tags}})
        )

    @mlflow_errors
    def delete_logged_model_tag(self, model_id, key):
        _, entry = self._find_model(model_id)
        if key not in (entry.get("tags") or {}):
            raise NotFoundError(f"No tag with key {key!r} found for model with ID {model_id!r}")
        self._change_model(
            model_id, lambda e: dict(e, tags={k: v for k, v in (e.get("tags") or {}).items() if k != key})
        )

    @mlflow_errors
    def log_logged_model_params(self, model_id, params):
        self._change_model(
            model_id, lambda e: dict(e, params={**(e.get("params") or {}), **{p.key: p.value for p in params}})
        )

    @mlflow_errors
    def delete_logged_model(self, model_id):
        """Marked deleted in its record (its files stay in the run's history in git)."""
        self._change_model(model_id, lambda e: dict(e, deleted=True))

    def _link_metrics(self, run_id: str, metrics) -> None:
        """Points logged with a ``model_id``: each model keeps its metrics' latest points."""
        by_model: dict[str, dict] = {}
        for m in metrics:
            point = [m.value, m.timestamp, m.step, run_id]
            if m.dataset_name or m.dataset_digest:  # the dataset it was measured on, as MLflow links it
                point += [m.dataset_name, m.dataset_digest]
            by_model.setdefault(m.model_id, {})[m.key] = point
        for model_id, points in by_model.items():
            self._change_model(
                model_id, lambda e, points=points: dict(e, metrics={**(e.get("metrics") or {}), **points})
            )

    @mlflow_errors
    def log_outputs(self, run_id, models):
        run_id = _run_id(run_id, full=True)
        steps = {m.model_id: int(m.step or 0) for m in models}
        tags = self.client.get_run(run_id).data.tags
        held = {e["model_uuid"] for e in model_entries(tags)}
        if held & steps.keys():  # a model the run holds: its record's step
            self._update_entries(
                run_id,
                lambda entries: [
                    dict(e, step=steps[e["model_uuid"]]) if e["model_uuid"] in steps else e for e in entries
                ],
            )
        others = {k: v for k, v in steps.items() if k not in held}
        if others:  # another run's (or a model without a run): named in the run's tag
            for model_id in others:
                self._find_model(model_id)  # a model id that is not one is refused (never written into the tag)
            outputs = {**convert.model_outputs(tags), **others}
            self.client.set_tag(run_id, convert.MODEL_OUTPUTS_TAG, ",".join(f"{k}:{v}" for k, v in outputs.items()))

    @mlflow_errors
    def record_logged_model(self, run_id, mlflow_model):
        model_dict = compact_model_dict(mlflow_model.get_tags_dict())
        model_id = getattr(mlflow_model, "model_id", None) or mlflow_model.model_uuid

        def apply(entries):
            if any(e["model_uuid"] == model_id for e in entries):
                return [dict(e, **model_dict) if e["model_uuid"] == model_id else e for e in entries]
            return entries + [
                dict(model_dict, model_uuid=model_id, run_id=run_id, artifact_path=mlflow_model.artifact_path)
            ]

        self._update_entries(run_id, apply)

    @mlflow_errors
    def search_logged_models(
        self, experiment_ids, filter_string=None, datasets=None, max_results=None, order_by=None, page_token=None
    ):
        """MLflow's own filter, order and paging (``SearchLoggedModelsUtils``, as its file
        store) over the models recorded in the experiments' runs."""
        from mlflow.utils.search_utils import SearchLoggedModelsUtils

        if datasets and not all(d.get("dataset_name") for d in datasets):
            raise as_mlflow_exception(InvalidInputError("`dataset_name` in the `datasets` clause must be specified."))
        runs = self.client.search_runs(
            [_experiment_id(e) for e in experiment_ids] or None,
            f"tags.`{HISTORY_TAG}` LIKE '%model_uuid%'",
            ViewType.ALL,
            max_results=100_000,
        )
        models = [
            self._logged_model(str(r.info.experiment_id), dict(entry, run_id=r.info.run_id))
            for r in runs
            for entry in model_entries(r.data.tags)
            if not entry.get("deleted")
        ]
        found = SearchLoggedModelsUtils.filter_logged_models(models, filter_string, datasets)
        found = SearchLoggedModelsUtils.sort(found, order_by)
        page, token = SearchLoggedModelsUtils.paginate(found, page_token, max_results or 100)
        return PagedList(page, token)


def _validate_experiment_name(name) -> None:
    """MLflow's check of an experiment name (``None`` or a number is refused, as MLflow does)."""
    from mlflow.utils.validation import _validate_experiment_name as validate

    validate(name)


def _experiment_id(experiment_id) -> str:
    """An experiment id gitml can hold (digits); another (``'-1337'``) names no experiment,
    as in MLflow's stores (RESOURCE_DOES_NOT_EXIST, not a malformed parameter)."""
    text = str(experiment_id) if isinstance(experiment_id, (str, int)) and not isinstance(experiment_id, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise as_mlflow_exception(
            NotFoundError(f"No Experiment with id={experiment_id} exists"), "RESOURCE_DOES_NOT_EXIST"
        )
    return text


def _run_id(run_id, *, full: bool = False):
    """A run id MLflow accepts but no gitml run can have names no run: RESOURCE_DOES_NOT_EXIST,
    as in MLflow's stores (not gitml's malformed-id INVALID_PARAMETER_VALUE). A read takes a
    run's id, id prefix or name; a write (``full``) its 32 hex digits."""
    import re

    if not isinstance(run_id, str) or not run_id.strip() or (full and not re.fullmatch(r"[0-9a-f]{32}", run_id)):
        raise as_mlflow_exception(NotFoundError(f"Run with id={run_id} not found"), "RESOURCE_DOES_NOT_EXIST")
    return run_id


# What a gitml: repository stores: the calls of MLflow's AbstractStore this store implements,
# and those whose default implementation reaches only these (log_metric -> log_batch, ...).
# Every other call (traces and spans, evaluation datasets, assessments, scorers, issues, label
# schemas, review queues, the AI gateway, MCP servers, budget policies, ...) fails at once with
# an MlflowException naming it: never AbstractStore's NotImplementedError, which MLflow's
# server answers with a 500 that MLflow's client retries for minutes.
_STORED_DEFAULTS = frozenset(
    {
        "set_tag",
        "log_metric_async",
        "log_param_async",
        "set_tag_async",
        "log_batch_async",
        "end_async_logging",
        "shut_down_async_logging",
        "search_runs",
        "filter_active_experiment_ids",
        "get_metric_history_bulk_interval_from_steps",
        "get_metric_history_bulk_interval",
        "_evenly_spaced_indices",
    }
)
_KINDS = (
    (("trace", "span", "session"), "traces"),
    (("dataset",), "evaluation datasets"),
    (("assessment",), "assessments"),
    (("scorer", "scoring"), "scorers"),
)


def _refusal(name: str):
    kind = next((what for words, what in _KINDS if any(w in name for w in words)), None)

    def refuse(self, *args, **kwargs):
        what = f"MLflow's {kind} ({name})" if kind else f"MLflow's {name}"
        raise as_mlflow_exception(
            InvalidInputError(
                f"gitml does not store {what}: a gitml: repository keeps experiments, runs, "
                "logged models and the model registry"
            )
        )

    refuse.__name__ = name
    return refuse


def _refuse_the_rest() -> None:
    import inspect

    for name, _member in inspect.getmembers(AbstractStore, inspect.isfunction):
        if name.startswith("__") or name in _STORED_DEFAULTS or name in GitmlTrackingStore.__dict__:
            continue
        setattr(GitmlTrackingStore, name, _refusal(name))


_refuse_the_rest()

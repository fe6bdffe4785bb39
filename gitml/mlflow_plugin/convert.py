"""gitml's entities as MLflow's, and paging tokens.

gitml's ``Run``, ``Experiment`` and ``Metric`` have MLflow's fields; MLflow's code wants its
own classes (``RunData`` holds ``Metric`` entities with their step and time, tags are
``ExperimentTag`` / ``RunTag`` lists, ``RunInfo`` names the artifact repository).
"""

from __future__ import annotations

import base64
import json
import os

from mlflow.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunOutputs,
    RunTag,
)
from mlflow.entities._mlflow_object import _MlflowObject

from gitml.errors import InvalidInputError
from gitml.mlflow_plugin import view_uri
from gitml.mlflow_plugin.logged_models import MODEL_RUN_TAG, SOURCE_RUN_TAG, SOURCE_TAG, model_entries

# The tags gitml derives for every run from what it records (user, source, commit, branch,
# a dirty work tree). A run made through MLflow shows MLflow only those MLflow's caller set
# (fluent start_run sets the user and source, MlflowClient.create_run none): the others are
# named in this tag, a system tag (MLflow's UI hides mlflow.*) that MLflow is never shown.
GITML_TAGS = (
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
    "gitml.source.dirty",
)
HIDDEN_TAGS = "mlflow.gitml.hiddenTags"
MODEL_INPUTS_TAG = "mlflow.gitml.modelInputs"  # MLflow's run.inputs.model_inputs: logged model ids, comma-separated
# MLflow's run.outputs.model_outputs of models another run holds (a model logged in the run
# is an output through its record in the run): ``<model id>:<step>``, comma-separated
MODEL_OUTPUTS_TAG = "mlflow.gitml.modelOutputs"
_NEVER_SHOWN = frozenset({HIDDEN_TAGS, MODEL_INPUTS_TAG, MODEL_OUTPUTS_TAG, MODEL_RUN_TAG, SOURCE_TAG, SOURCE_RUN_TAG})


def model_inputs(tags: dict) -> list[str]:
    return [m for m in tags.get(MODEL_INPUTS_TAG, "").split(",") if m]


def model_outputs(tags: dict) -> dict[str, int]:
    """:data:`MODEL_OUTPUTS_TAG`'s models and steps (a malformed item is left out)."""
    found = {}
    for item in tags.get(MODEL_OUTPUTS_TAG, "").split(","):
        model_id, _, step = item.partition(":")
        if model_id and step.lstrip("-").isdigit():
            found[model_id] = int(step)
    return found


def visible_tags(tags: dict) -> dict:
    """A run's tags as MLflow sees them (see :data:`HIDDEN_TAGS`)."""
    if not _NEVER_SHOWN.intersection(tags):
        return tags
    hidden = set(tags.get(HIDDEN_TAGS, "").split(",")) | _NEVER_SHOWN
    return {k: v for k, v in tags.items() if k not in hidden}


def experiment(e, gitml_dir: str) -> Experiment:
    location = e.artifact_location or ""
    if not location or location.startswith("runs:"):
        location = os.path.join(gitml_dir, "artifacts", str(e.experiment_id))
    return Experiment(
        experiment_id=str(e.experiment_id),
        name=e.name,
        artifact_location=location,
        lifecycle_stage=e.lifecycle_stage,
        tags=[ExperimentTag(k, v) for k, v in (e.tags or {}).items()],
        creation_time=e.creation_time,
        last_update_time=e.last_update_time,
    )


def default_location(location: str | None, experiment_id: str) -> bool:
    """Whether an experiment's artifact location is gitml's default (any clone's
    ``<gitml dir>/artifacts/<id>``), not one its creator chose."""
    if not location or location.startswith(("runs:", "gitml:")):
        return True
    return location.replace(os.sep, "/").rstrip("/").endswith(f"/gitml/artifacts/{experiment_id}")


def run(r, gitml_dir: str, location: str | None = None) -> Run:
    """MLflow's Run of a gitml run; ``location``: the artifact location its experiment's
    creator chose, under which MLflow keeps its artifacts (``<location>/<run_id>/artifacts``)."""
    if location:
        from mlflow.utils.uri import append_to_uri_path

        uri = append_to_uri_path(location, r.info.run_id, "artifacts")
    else:
        uri = view_uri(gitml_dir, str(r.info.experiment_id), r.info.run_id)
    info = RunInfo(
        run_id=r.info.run_id,
        experiment_id=str(r.info.experiment_id),
        user_id=r.info.user_id or "",
        status=r.info.status,
        start_time=r.info.start_time,
        end_time=r.info.end_time,
        lifecycle_stage=r.info.lifecycle_stage,
        artifact_uri=uri,
        run_name=r.info.run_name,
    )
    latest = getattr(r.data, "latest_metrics", None) or {}
    metrics = (
        [Metric(m.key, m.value, m.timestamp, m.step) for m in latest.values()]
        if latest
        else [Metric(k, v, 0, 0) for k, v in r.data.metrics.items()]
    )
    data = RunData(
        metrics=metrics,
        params=[Param(k, v) for k, v in r.data.params.items()],
        tags=[RunTag(k, v) for k, v in visible_tags(r.data.tags).items()],
    )
    inputs = RunInputs(
        [
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
            for d in r.inputs.dataset_inputs
        ],
        [LoggedModelInput(m) for m in model_inputs(r.data.tags)],
    )
    held = {m["model_uuid"]: int(m.get("step") or 0) for m in model_entries(r.data.tags)}
    others = {k: v for k, v in model_outputs(r.data.tags).items() if k not in held}
    outputs = RunOutputs([LoggedModelOutput(m, step) for m, step in {**held, **others}.items()])
    return Run(info, data, inputs, outputs)


# shared by a copy: values, and MLflow's entities whose public API changes nothing
_SHARED = frozenset(
    {str, int, float, bool, type(None), Metric, Param, RunTag, InputTag, Dataset, LoggedModelInput, LoggedModelOutput}
)


def fresh(entity: _MlflowObject):
    """A copy of an MLflow entity this store built before (``run``'s Run, kept by the
    store's search): new entities, dicts and lists all the way down, sharing only values and
    the entities whose public API changes nothing (:data:`_SHARED`). So a caller changing
    what it was given (``run.data.tags[k] = v``, ``run.info._set_run_name``) changes its own
    copy, as with a Run built for it, at a fraction of building one."""
    copy = object.__new__(type(entity))
    copy.__dict__.update({k: v if type(v) in _SHARED else _fresh_value(v) for k, v in entity.__dict__.items()})
    return copy


def _fresh_value(value):
    kind = type(value)
    if kind in _SHARED:
        return value
    if kind is dict:
        if _SHARED.issuperset(map(type, value.values())):
            return dict(value)
        return {k: _fresh_value(v) for k, v in value.items()}
    if kind is list:
        return list(value) if _SHARED.issuperset(map(type, value)) else [_fresh_value(v) for v in value]
    return fresh(value) if isinstance(value, _MlflowObject) else value


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (ValueError, TypeError, KeyError):
        raise InvalidInputError(f"page_token {token!r} is not a token this store returned") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"page_token {token!r} is not a token this store returned")
    return offset

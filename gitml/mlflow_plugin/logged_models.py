"""MLflow 3's logged models, kept in the run that logged them.

MLflow 3's ``log_model`` first creates a *logged model* (``m-<32 hex>``), then stores the
model's files at the model's artifact location. gitml keeps models in runs: a logged
model's files are the run's artifacts under the model's ``name`` (what
``gitml.sklearn.log_model`` does too, so ``runs:/<run>/<name>`` is one folder for MLflow,
``gitml.pyfunc.load_model`` and the registry), and its record is an entry of the run's tag
``mlflow.log-model.history`` (MLflow's own tag for a run's models, a JSON list; the entry
keeps MLflow's ``model_uuid``, ``artifact_path``, ``run_id``, ``utc_time_created``,
``flavors``, plus the logged model's ``name``, ``status``, ``model_type``, ``step``,
``creation_timestamp``, ``tags``, ``params``, the latest point of each metric logged
with its id, and ``deleted`` once MLflow deletes it: its files stay in the run's history).

A logged model without a run (``mlflow.initialize_logged_model()``, ``create_external_model``,
``set_active_model(name=...)``, ``log_model`` outside a run) gets a run of its own to live in,
made for it in its experiment and named after it, tagged ``mlflow.gitml.loggedModel``
(:data:`MODEL_RUN_TAG`) with the model's id: gitml shows it as a run (its files, its record),
MLflow does not (its searches skip such runs; the model's ``source_run_id`` is None). A separate
model namespace would have needed its own refs, push, fetch, gc and search; a run has them all.
"""

from __future__ import annotations

import json

HISTORY_TAG = "mlflow.log-model.history"
MODEL_RUN_TAG = "mlflow.gitml.loggedModel"  # on a run made to hold a logged model that has none
# on a run made to hold a registered version whose source is no run of this repository
# (see gitml.mlflow_plugin.registry): the source MLflow was given, and the run id it named
SOURCE_TAG = "mlflow.gitml.modelSource"
SOURCE_RUN_TAG = "mlflow.gitml.modelSourceRun"
HOLDER_TAGS = (MODEL_RUN_TAG, SOURCE_TAG)  # runs MLflow's searches do not show
MAX_TAG_VALUE = 8000  # MLflow's (and gitml's) limit for a run tag value


def model_entries(tags: dict) -> list[dict]:
    """The logged-model entries of a run's tags (entries MLflow 2 wrote too, without a name)."""
    text = tags.get(HISTORY_TAG)
    if not text:
        return []
    try:
        entries = json.loads(text)
    except ValueError:
        return []
    return (
        [e for e in entries if isinstance(e, dict) and isinstance(e.get("model_uuid"), str)]
        if isinstance(entries, list)
        else []
    )


def history_value(entries: list[dict]) -> str:
    """The tag value for ``entries``; refused when past MLflow's tag limit (no cut JSON)."""
    from gitml.errors import InvalidInputError

    text = json.dumps(entries, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidInputError(
            f"the run's models no longer fit its {HISTORY_TAG!r} tag ({len(text)} > {MAX_TAG_VALUE} characters): "
            "log further models in another run"
        )
    return text


def compact_model_dict(model_dict: dict) -> dict:
    """What ``record_logged_model`` keeps of an MLmodel's fields: the flavors' names and
    loader, not every flavor option (the MLmodel file has those)."""
    flavors = {}
    for name, conf in (model_dict.get("flavors") or {}).items():
        keep = {
            k: v
            for k, v in (conf or {}).items()
            if k in ("loader_module", "python_version", "sklearn_version", "pytorch_version")
        }
        flavors[name] = keep
    out = {k: model_dict[k] for k in ("utc_time_created",) if k in model_dict}
    out["flavors"] = flavors
    return out

"""Saving a model folder and logging it to a run: what every flavor shares.

A flavor module writes its model file(s) and names its flavor; this module writes the rest
(input example, signature, environment files, MLmodel) and, for ``log_model``, logs the
folder as the run's artifacts under ``name`` through the artifacts API (content hashes in
the run's manifest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gitml.errors import ConflictError, InvalidInputError
from gitml.modelformat import environment
from gitml.modelformat.mlmodel import MLMODEL, PYFUNC, Model, save_example
from gitml.modelformat.signature import ModelSignature


@dataclass
class ModelInfo:
    """What ``log_model`` returns, as MLflow's ``ModelInfo``."""

    artifact_path: str
    flavors: dict
    model_uri: str
    model_uuid: str
    run_id: str
    signature: ModelSignature | None
    utc_time_created: str
    saved_input_example_info: dict | None = None
    metadata: dict | None = None
    registered_model_version: Any = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.artifact_path


def prepare_folder(path: str | os.PathLike) -> str:
    """``path`` made absolute, created, and refused if it exists and is not empty (as MLflow)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ConflictError(f"{path!r} already exists and is not empty: a model is saved into a new folder")
    os.makedirs(path, exist_ok=True)
    return path


def copy_code_paths(folder: str, code_paths: list[str] | None) -> str | None:
    """Copy ``code_paths`` (files or folders) into ``<folder>/code``; returns ``"code"`` or None."""
    if not code_paths:
        return None
    target = os.path.join(folder, "code")
    os.makedirs(target, exist_ok=True)
    for item in code_paths:
        src = os.path.abspath(item)
        dst = os.path.join(target, os.path.basename(src.rstrip(os.sep)))
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        elif os.path.isfile(src):
            shutil.copy2(src, dst)
        else:
            raise InvalidInputError(f"code path {item!r} is neither a file nor a folder")
    return "code"


def finish_folder(
    folder: str,
    model: Model,
    *,
    flavor: str | None,
    flavor_conf: dict | None,
    pyfunc_conf: dict | None,
    packages: list[str],
    signature: ModelSignature | None | bool,
    input_example,
    predict: Callable | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
) -> Model:
    """Write the example, signature, flavors, MLmodel and environment files of a folder
    whose model file(s) the flavor has written."""
    import platform

    model.saved_input_example_info, example = save_example(folder, input_example)
    if signature is None and example is not None and predict is not None:
        signature = signature_from_example(example, predict)
    model.signature = signature if isinstance(signature, ModelSignature) else None
    if metadata is not None:
        model.metadata = metadata
    if pyfunc_conf is not None:  # as MLflow's pyfunc.add_to_model: code, data and config (model_config) only when set
        pyfunc_conf = {k: v for k, v in pyfunc_conf.items() if v or k not in ("code", "data", "config")}
        model.add_flavor(PYFUNC, **pyfunc_conf, env=environment.pyfunc_env(), python_version=platform.python_version())
    if flavor is not None:
        model.add_flavor(flavor, **(flavor_conf or {}))
    model.model_size_bytes = sum(
        os.path.getsize(os.path.join(top, n)) for top, _, names in os.walk(folder) for n in names
    )
    model.save(os.path.join(folder, MLMODEL))
    environment.write_environment(folder, packages, pip_requirements, extra_pip_requirements)
    return model


def signature_from_example(example, predict: Callable) -> ModelSignature | None:
    """The signature MLflow infers from an input example and the model's prediction on it
    (``mlflow.models.signature._infer_signature_from_input_example``): the example checked
    against its own inferred schema, then predicted; for column input a 1-D array of
    predictions is one unnamed column (``{"type": "long"}``, not a tensor); an output that
    cannot be typed is ``any``; a prediction that fails leaves the model without a signature."""
    import numpy as np
    import pandas as pd

    from gitml.modelformat.enforce import enforce_schema
    from gitml.modelformat.signature import ColSpec, Schema, infer_schema

    try:
        inputs = infer_schema(example)
        prediction = predict(enforce_schema(example.copy() if hasattr(example, "copy") else example, inputs))
        if not inputs.is_tensor_spec() and isinstance(prediction, np.ndarray) and prediction.ndim == 1:
            prediction = pd.Series(prediction)
        try:
            outputs = infer_schema(prediction)
        except Exception:
            outputs = Schema([ColSpec({"type": "any"})])
        return ModelSignature(inputs, outputs)
    except Exception:  # as MLflow: a signature that cannot be inferred is left out
        return None


def current_run_id(run_id: str | None = None) -> str:
    """The run a ``log_model`` writes to: ``run_id``, else the active run (started if none)."""
    from gitml import fluent

    if run_id is not None:
        return fluent.client().get_run(run_id).info.run_id
    active = fluent.active_run()
    return (active or fluent.start_run()).info.run_id


def log_model_folder(
    save: Callable[..., Any],
    name: str | None,
    artifact_path: str | None,
    registered_model_name: str | None,
    run_id: str | None = None,
    **save_kwargs,
) -> ModelInfo:
    """Save a model with ``save(path=..., mlflow_model=..., **save_kwargs)`` and log the folder
    as the run's artifacts under ``name``; ``registered_model_name`` registers it as that
    model's next version (the name is checked before anything is written)."""
    from gitml import fluent
    from gitml.names import check_artifact_path

    if registered_model_name is not None:
        from gitml.registry.tags import model_slug

        model_slug(registered_model_name)  # the name checked before anything is written
    if name is not None and artifact_path is not None and name != artifact_path:
        raise InvalidInputError("give name or artifact_path (the same thing), not both")
    path = check_artifact_path((name or artifact_path or "model").strip("/"), "model name")
    run = current_run_id(run_id)
    model = Model(artifact_path=path, run_id=run)
    with tempfile.TemporaryDirectory(prefix="gitml-model-") as tmp:
        folder = os.path.join(tmp, "model")
        save(path=folder, mlflow_model=model, **save_kwargs)
        fluent.client().log_artifacts(run, folder, path)
    registered = None
    if registered_model_name is not None:
        registered = fluent.client().create_model_version(registered_model_name, f"runs:/{run}/{path}")
    return ModelInfo(
        artifact_path=path,
        flavors=model.flavors,
        model_uri=f"runs:/{run}/{path}",
        model_uuid=model.model_uuid,
        run_id=run,
        signature=model.signature,
        utc_time_created=model.utc_time_created,
        saved_input_example_info=model.saved_input_example_info,
        metadata=model.metadata,
        registered_model_version=registered.version if registered is not None else None,
    )

"""CatBoost models in MLflow's ``catboost`` flavor, as ``mlflow.catboost`` writes and reads it.

    gitml.catboost.log_model(clf, name="model", input_example=X[:5])
    clf = gitml.catboost.load_model("runs:/<run>/model")     # a CatBoostClassifier again

The folder is MLflow's: ``model.cb`` written by CatBoost's ``save_model`` (``save_format``, cbm
by default), flavor keys ``catboost_version``, ``model_type`` (the class name, one of CatBoost's
four model classes), ``save_format``, ``data``; ``loader_module: mlflow.catboost``. catboost is
optional (``pip install 'gitml[catboost]'``) and imported only here.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "catboost"
LOADER = "mlflow.catboost"
MODEL_FILE = "model.cb"
_TYPES = ("CatBoost", "CatBoostClassifier", "CatBoostRegressor", "CatBoostRanker")


def _cb():
    from gitml.modelformat.flavor import require

    return require("catboost", "catboost")


def save_model(
    cb_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    **kwargs,
) -> None:
    """Save a CatBoost model as an MLflow model folder at ``path`` (``kwargs`` go to its
    ``save_model``, e.g. ``format="json"``). ``signature`` None is inferred from ``input_example``."""
    from gitml.modelformat.flavor import NativeModel
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    cb = _cb()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not isinstance(cb_model, cb.CatBoost):
        raise InvalidInputError(f"cb_model must be a CatBoost model, not {type(cb_model).__name__}")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    cb_model.save_model(os.path.join(folder, MODEL_FILE), **kwargs)
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={
            "catboost_version": cb.__version__,
            "code": code,
            "model_type": type(cb_model).__name__,
            "save_format": kwargs.get("format", "cbm"),
            "data": MODEL_FILE,
        },
        pyfunc_conf={"loader_module": LOADER, "code": code, "data": MODEL_FILE},
        packages=[f"catboost=={cb.__version__}"],
        signature=signature,
        input_example=input_example,
        predict=NativeModel(cb_model).predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    cb_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
    **kwargs,
):
    """Save a CatBoost model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        cb_model=cb_model,
        conda_env=conda_env,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **kwargs,
    )


def _load(folder: str, conf: dict):
    from gitml.modelformat.flavor import flavor_file

    cb = _cb()
    kind = conf.get("model_type")
    if kind not in _TYPES:
        raise InvalidInputError(f"catboost model_type {kind!r} is not one of {', '.join(_TYPES)}")
    model = getattr(cb, kind)()
    model.load_model(os.path.abspath(flavor_file(folder, conf, "data", MODEL_FILE)), conf.get("save_format") or "cbm")
    return model


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The CatBoost model itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(model_uri, dst_path, FLAVOR, _load)


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.catboost``."""
    from gitml.modelformat.flavor import NativeModel, flavor_conf, model_folder

    folder = model_folder(path)
    return NativeModel(_load(folder, flavor_conf(folder, FLAVOR)))


__all__ = ["load_model", "log_model", "save_model"]

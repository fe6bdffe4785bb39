"""LightGBM models in MLflow's ``lightgbm`` flavor, as ``mlflow.lightgbm`` writes and reads it.

    gitml.lightgbm.log_model(booster, name="model", input_example=X[:5])
    booster = gitml.lightgbm.load_model("runs:/<run>/model")

The folder is MLflow's: a ``lightgbm.Booster`` as ``model.lgb`` (LightGBM's text format); a
scikit-learn-API model (``LGBMClassifier``...) as ``model.pkl`` (cloudpickle, the default here,
or pickle) or ``model.skops``; flavor keys ``lgb_version``, ``data``, ``model_class``,
``serialization_format``, ``skops_trusted_types``; ``loader_module: mlflow.lightgbm``. lightgbm is
optional (``pip install 'gitml[lightgbm]'``) and imported only here.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "lightgbm"
LOADER = "mlflow.lightgbm"
_BOOSTER = "lightgbm.basic.Booster"
# the types MLflow trusts in a skops file of a LightGBM scikit-learn model
SKOPS_TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
]


def _lgb():
    from gitml.modelformat.flavor import require

    return require("lightgbm", "lightgbm")


def save_model(
    lgb_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    serialization_format: str = "cloudpickle",
    skops_trusted_types: list[str] | None = None,
) -> None:
    """Save a ``lightgbm.Booster`` or scikit-learn-API LightGBM model as an MLflow model folder at
    ``path``. ``signature`` None is inferred from ``input_example`` as MLflow does."""
    from gitml import sklearn as gitml_sklearn
    from gitml.modelformat.flavor import NativeModel, qualified_name
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    lgb = _lgb()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not isinstance(lgb_model, (lgb.Booster, lgb.LGBMModel)):
        raise InvalidInputError(f"lgb_model must be a lightgbm Booster or LGBMModel, not {type(lgb_model).__name__}")
    if serialization_format not in gitml_sklearn.FORMATS:
        raise InvalidInputError(
            f"serialization_format {serialization_format!r} is not one of {', '.join(gitml_sklearn.FORMATS)}"
        )
    booster = isinstance(lgb_model, lgb.Booster)
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    data = "model.lgb" if booster else "model.skops" if serialization_format == "skops" else "model.pkl"
    trusted = (
        sorted(set(SKOPS_TRUSTED_TYPES) | set(skops_trusted_types or []))
        if serialization_format == "skops"
        else skops_trusted_types
    )
    if booster:
        lgb_model.save_model(os.path.join(folder, data))
    else:
        gitml_sklearn.dump_estimator(lgb_model, os.path.join(folder, data), serialization_format)
    packages = [f"lightgbm=={lgb.__version__}"]
    if not booster:
        packages += (
            ["cloudpickle"]
            if serialization_format == "cloudpickle"
            else ["skops"]
            if serialization_format == "skops"
            else []
        )
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={
            "lgb_version": lgb.__version__,
            "data": data,
            "model_class": qualified_name(lgb_model),
            "code": code,
            "serialization_format": serialization_format,
            "skops_trusted_types": trusted,
        },
        pyfunc_conf={"loader_module": LOADER, "data": data, "code": code},
        packages=packages,
        signature=signature,
        input_example=input_example,
        predict=NativeModel(lgb_model).predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    lgb_model: Any,
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
    serialization_format: str = "cloudpickle",
    skops_trusted_types: list[str] | None = None,
):
    """Save a LightGBM model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        lgb_model=lgb_model,
        conda_env=conda_env,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        serialization_format=serialization_format,
        skops_trusted_types=skops_trusted_types,
    )


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    registered_model_name: str | None = None,
    extra_tags: dict | None = None,
) -> None:
    """Autologging for LightGBM, as ``mlflow.lightgbm.autolog`` (what it logs: :mod:`gitml.autologging.lightgbm`)."""
    from gitml.autologging import configure

    configure(
        FLAVOR,
        log_model,
        disable=disable,
        extra_tags=extra_tags,
        log_input_examples=log_input_examples,
        log_model_signatures=log_model_signatures,
        log_models=log_models,
        log_datasets=log_datasets,
        exclusive=exclusive,
        silent=silent,
    )


def _load(folder: str, conf: dict):
    from gitml import sklearn as gitml_sklearn
    from gitml.modelformat.flavor import flavor_file, library_class

    lgb = _lgb()
    cls = library_class(conf.get("model_class"), "lightgbm.", _BOOSTER)
    file = flavor_file(folder, conf, "data", "model.lgb")
    if issubclass(cls, lgb.Booster):
        return lgb.Booster(model_file=file)
    model = gitml_sklearn.load_estimator(
        file, conf.get("serialization_format") or "cloudpickle", conf.get("skops_trusted_types")
    )
    if not isinstance(model, cls):
        raise InvalidInputError(
            f"the model file holds a {type(model).__name__}, not the {cls.__name__} its MLmodel names"
        )
    return model


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The LightGBM model itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(model_uri, dst_path, FLAVOR, _load)


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.lightgbm``."""
    from gitml.modelformat.flavor import NativeModel, flavor_conf, model_folder

    folder = model_folder(path)
    return NativeModel(_load(folder, flavor_conf(folder, FLAVOR)))


__all__ = ["autolog", "load_model", "log_model", "save_model"]

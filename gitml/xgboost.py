"""XGBoost models in MLflow's ``xgboost`` flavor, as ``mlflow.xgboost`` writes and reads it.

    gitml.xgboost.log_model(clf, name="model", input_example=X[:5])
    clf = gitml.xgboost.load_model("runs:/<run>/model")     # an XGBClassifier again

The folder is MLflow's: ``model.ubj`` (``model_format``: ubj, json or deprecated formats as the
booster writes them), flavor keys ``xgb_version``, ``data``, ``model_class``, ``model_format``,
``loader_module: mlflow.xgboost`` with ``data`` naming the file. xgboost is optional
(``pip install 'gitml[xgboost]'``) and imported only here. ``model_class`` is only ever a
class of xgboost itself.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "xgboost"
LOADER = "mlflow.xgboost"
_BOOSTER = "xgboost.core.Booster"


def _xgb():
    from gitml.modelformat.flavor import require

    return require("xgboost", "xgboost")


def save_model(
    xgb_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    model_format: str = "ubj",
    metadata: dict | None = None,
    **kwargs,
) -> None:
    """Save an ``xgboost.Booster`` or scikit-learn-API model (``XGBClassifier``...) as an MLflow
    model folder at ``path``. ``signature`` None is inferred from ``input_example`` as MLflow does."""
    from gitml.modelformat.flavor import qualified_name
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    xgb = _xgb()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not isinstance(xgb_model, (xgb.Booster, xgb.XGBModel)):
        raise InvalidInputError(f"xgb_model must be an xgboost Booster or XGBModel, not {type(xgb_model).__name__}")
    if not isinstance(model_format, str) or not model_format.isalnum():
        raise InvalidInputError(f"model_format {model_format!r} is not a file extension such as ubj or json")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    data = f"model.{model_format}"
    xgb_model.save_model(os.path.join(folder, data), **kwargs)
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={
            "xgb_version": xgb.__version__,
            "data": data,
            "model_class": qualified_name(xgb_model),
            "model_format": model_format,
            "code": code,
        },
        pyfunc_conf={"loader_module": LOADER, "data": data, "code": code},
        packages=[f"xgboost=={xgb.__version__}"],
        signature=signature,
        input_example=input_example,
        predict=_XGBModelWrapper(xgb_model).predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    xgb_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    model_format: str = "ubj",
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
    **kwargs,
):
    """Save an XGBoost model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        xgb_model=xgb_model,
        conda_env=conda_env,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        model_format=model_format,
        metadata=metadata,
        **kwargs,
    )


def autolog(
    importance_types: list[str] | None = None,
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    registered_model_name: str | None = None,
    model_format: str = "ubj",
    extra_tags: dict | None = None,
) -> None:
    """Autologging for XGBoost, as ``mlflow.xgboost.autolog`` (what it logs: :mod:`gitml.autologging.xgboost`)."""
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
        importance_types=importance_types,
        model_format=model_format,
    )


def _load(folder: str, conf: dict):
    from gitml.modelformat.flavor import flavor_file, library_class

    _xgb()
    cls = library_class(conf.get("model_class"), "xgboost.", _BOOSTER)
    model = cls()
    model.load_model(flavor_file(folder, conf, "data", "model.xgb"))
    return model


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The XGBoost model itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(model_uri, dst_path, FLAVOR, _load)


class _XGBModelWrapper:
    def __init__(self, xgb_model):
        self.xgb_model = xgb_model

    def predict(self, data, params: dict | None = None):
        import inspect

        xgb = _xgb()
        params = dict(params or {})
        if isinstance(self.xgb_model, xgb.Booster):
            accepted = inspect.signature(self.xgb_model.predict).parameters
            kwargs = {k: v for k, v in params.items() if k in accepted}
            return self.xgb_model.predict(xgb.DMatrix(data), validate_features=True, **kwargs)
        accepted = inspect.signature(self.xgb_model.predict).parameters
        kwargs = {k: v for k, v in params.items() if k in accepted}  # as MLflow: others are dropped
        return self.xgb_model.predict(data, validate_features=True, **kwargs)

    def get_raw_model(self):
        return self.xgb_model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _XGBModelWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.xgboost``."""
    from gitml.modelformat.flavor import flavor_conf, model_folder

    folder = model_folder(path)
    return _XGBModelWrapper(_load(folder, flavor_conf(folder, FLAVOR)))


__all__ = ["autolog", "load_model", "log_model", "save_model"]

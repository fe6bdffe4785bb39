"""statsmodels results in MLflow's ``statsmodels`` flavor, as ``mlflow.statsmodels`` writes and reads it.

    results = sm.OLS(y, X).fit()
    gitml.statsmodels.log_model(results, name="model", input_example=X[:5])
    results = gitml.statsmodels.load_model("runs:/<run>/model")

The folder is MLflow's: ``model.statsmodels`` (the results object's own ``save``: a pickle),
flavor keys ``statsmodels_version``, ``data``; ``loader_module: mlflow.statsmodels``. A time
series model predicts from one row with ``start`` and ``end`` columns, as MLflow's. statsmodels
is optional (``pip install 'gitml[statsmodels]'``) and imported only here.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "statsmodels"
LOADER = "mlflow.statsmodels"
MODEL_FILE = "model.statsmodels"


def _sm():
    from gitml.modelformat.flavor import require

    return require("statsmodels", "statsmodels")


def save_model(
    statsmodels_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    remove_data: bool = False,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
) -> None:
    """Save a fitted statsmodels results object as an MLflow model folder at ``path``
    (``remove_data`` drops the training data from it). ``signature`` None is inferred from
    ``input_example`` as MLflow does."""
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    sm = _sm()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not callable(getattr(statsmodels_model, "save", None)) or not hasattr(statsmodels_model, "model"):
        raise InvalidInputError(
            f"statsmodels_model must be a fitted statsmodels results object, not {type(statsmodels_model).__name__}"
        )
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    statsmodels_model.save(os.path.join(folder, MODEL_FILE), remove_data)
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={"statsmodels_version": sm.__version__, "data": MODEL_FILE, "code": code},
        pyfunc_conf={"loader_module": LOADER, "data": MODEL_FILE, "code": code},
        packages=[f"statsmodels=={sm.__version__}"],
        signature=signature,
        input_example=input_example,
        predict=_StatsmodelsModelWrapper(statsmodels_model).predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    statsmodels_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    remove_data: bool = False,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
):
    """Save a statsmodels results object and log it to the active run (or ``run_id``) under
    ``name``; returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        statsmodels_model=statsmodels_model,
        conda_env=conda_env,
        code_paths=code_paths,
        remove_data=remove_data,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def _load(folder: str, conf: dict):
    from gitml.modelformat.flavor import flavor_file
    from gitml.pyfunc.model import load_pickle

    _sm()
    return load_pickle(flavor_file(folder, conf, "data", MODEL_FILE))  # what statsmodels' load_pickle does


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The statsmodels results object (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(model_uri, dst_path, FLAVOR, _load)


class _StatsmodelsModelWrapper:
    def __init__(self, statsmodels_model):
        self.statsmodels_model = statsmodels_model

    def predict(self, data, params: dict | None = None):
        from statsmodels.tsa.base.tsa_model import TimeSeriesModel

        if isinstance(self.statsmodels_model.model, TimeSeriesModel):
            if data.shape[0] != 1 or "start" not in data.columns or "end" not in data.columns:
                raise InvalidInputError("a time series model predicts from one row with columns start and end")
            return self.statsmodels_model.predict(start=data["start"][0], end=data["end"][0])
        return self.statsmodels_model.predict(data)

    def get_raw_model(self):
        return self.statsmodels_model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _StatsmodelsModelWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.statsmodels``."""
    from gitml.modelformat.flavor import flavor_conf, model_folder

    folder = model_folder(path)
    return _StatsmodelsModelWrapper(_load(folder, flavor_conf(folder, FLAVOR)))


__all__ = ["load_model", "log_model", "save_model"]

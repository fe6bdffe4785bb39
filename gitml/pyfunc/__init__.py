"""MLflow's ``python_function`` flavor: any model as ``predict(data, params=None)``.

    model = gitml.pyfunc.load_model("runs:/<run>/model")   # or models:/..., or a folder
    model.predict(df)                                       # input checked against the signature
    model.metadata.signature

    class AddN(gitml.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input + self.n
    gitml.pyfunc.log_model(name="model", python_model=AddN(), artifacts={"vocab": "vocab.txt"})

    predict = gitml.pyfunc.spark_udf(spark, "models:/churn@production")   # Spark (gitml[spark])
    scores = gitml.pyfunc.dask_predict(ddf, "models:/churn@production")   # Dask (gitml[dask])

Models saved by MLflow in the flavors gitml has (``mlflow.sklearn``, ``mlflow.pytorch``,
``mlflow.xgboost``, ``mlflow.lightgbm``, ``mlflow.catboost``, ``mlflow.statsmodels``,
``mlflow.onnx``, ``mlflow.keras``, ``mlflow.transformers`` text classifiers, ``mlflow.pyfunc`` with a
``PythonModel``) load without MLflow installed; any other ``mlflow.*`` loader goes through
MLflow's own loader when MLflow is installed. A model loaded from a run has every file
checked against the run's manifest hashes before anything in it is read.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import weakref
from typing import Any

from gitml.errors import CorruptRecordError, InvalidInputError, UnsupportedFlavorError
from gitml.modelformat.mlmodel import PYFUNC, Model, inside
from gitml.pyfunc.dask import dask_predict
from gitml.pyfunc.model import PythonModel, PythonModelContext, save_python_model
from gitml.pyfunc.spark import spark_udf

# loader modules gitml reads, and the gitml module that loads each
NATIVE = ("sklearn", "pytorch", "xgboost", "lightgbm", "catboost", "statsmodels", "onnx", "keras", "transformers")
LOADERS = {
    **{f"mlflow.{flavor}": f"gitml.{flavor}" for flavor in NATIVE},
    **{f"gitml.{flavor}": f"gitml.{flavor}" for flavor in NATIVE},
    "mlflow.pyfunc.model": "gitml.pyfunc.model",
    "gitml.pyfunc.model": "gitml.pyfunc.model",
}


class PyFuncModel:
    """A loaded model: ``predict(data, params=None)`` with its input checked against the
    signature (``metadata.signature``) as MLflow checks it."""

    def __init__(self, model_meta: Model, model_impl: Any, predict_fn: str = "predict"):
        self._model_meta = model_meta
        self._model_impl = model_impl
        function = getattr(model_impl, predict_fn, None)
        if function is None:
            raise InvalidInputError(f"the model has no {predict_fn!r} function")
        self._predict_fn: Any = function
        try:
            parameters = inspect.signature(self._predict_fn).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        self._takes_params = "params" in parameters and parameters["params"].kind != inspect.Parameter.VAR_KEYWORD

    @property
    def metadata(self) -> Model:
        return self._model_meta

    @property
    def loader_module(self) -> str | None:
        return self._model_meta.flavors.get(PYFUNC, {}).get("loader_module")

    @property
    def input_example(self):
        return self._model_meta.load_input_example()

    def predict(self, data: Any, params: dict | None = None) -> Any:
        """Predictions for ``data`` (a DataFrame, dict, list or array). Raises
        SchemaEnforcementError naming the column that does not fit the signature."""
        from gitml.modelformat.enforce import enforce_params, enforce_schema

        schema = self._model_meta.get_input_schema()
        if schema is not None:
            data = enforce_schema(data, schema)
        params = enforce_params(params, self._model_meta.get_params_schema())
        if self._takes_params:
            return self._predict_fn(data, params=params)
        return self._predict_fn(data)

    def predict_conformed(self, frame: Any, params: dict | None = None) -> Any:
        """Predictions for ``frame``, a DataFrame already holding the signature's columns in
        its order and types (what :meth:`predict`'s enforcement would make of it): the
        scoring server builds such frames straight from JSON. Params are still checked."""
        from gitml.modelformat.enforce import enforce_params

        params = enforce_params(params, self._model_meta.get_params_schema())
        if self._takes_params:
            return self._predict_fn(frame, params=params)
        return self._predict_fn(frame)

    def unwrap_python_model(self) -> PythonModel:
        """The PythonModel object of a model saved with ``python_model=``."""
        python_model = getattr(self._model_impl, "python_model", None)
        if python_model is None:
            raise InvalidInputError("this model was not saved with a PythonModel")
        return python_model

    def get_raw_model(self):
        """The framework's own model object (the sklearn estimator, the torch module...)."""
        if hasattr(self._model_impl, "get_raw_model"):
            return self._model_impl.get_raw_model()
        return self._model_impl

    def __repr__(self) -> str:
        meta = self._model_meta
        where = f"runs:/{meta.run_id}/{meta.artifact_path}" if meta.run_id else meta.path
        return f"gitml.pyfunc.PyFuncModel(loader={self.loader_module!r}, from={where!r})"


def load_folder(folder: str, model_config: dict | None = None) -> PyFuncModel:
    """Load the ``python_function`` flavor of a model folder on disk (no verification)."""
    meta = Model.load(folder)
    conf = meta.flavors.get(PYFUNC)
    if not isinstance(conf, dict):
        flavors = ", ".join(map(str, meta.flavors)) or "none"
        raise UnsupportedFlavorError(f"the model at {folder!r} has no python_function flavor (its flavors: {flavors})")
    loader = LOADERS.get(str(conf.get("loader_module")))
    if loader is None:
        return through_mlflow(
            folder,
            meta,
            model_config,
            UnsupportedFlavorError(
                f"the model's loader {conf.get('loader_module')!r} is not one gitml has "
                f"(it loads {', '.join(sorted(k for k in LOADERS if k.startswith('mlflow.')))} models; "
                "any other mlflow.* loader with MLflow installed)"
            ),
        )
    if conf.get("code"):
        code = inside(folder, conf["code"], "code path")
        if code not in sys.path:
            sys.path.insert(0, code)
    data_path = inside(folder, conf["data"], "data path") if conf.get("data") else folder
    try:
        impl = importlib.import_module(loader)._load_pyfunc(data_path, model_config)
    except UnsupportedFlavorError as e:  # a variant of a flavor gitml reads (e.g. models-from-code)
        return through_mlflow(folder, meta, model_config, e)
    return PyFuncModel(meta, impl, conf.get("predict_fn") or "predict")


class _MlflowLoaded:
    """A model MLflow's own loader loaded, as gitml's PyFuncModel calls it."""

    def __init__(self, model):
        self.model = model

    def predict(self, data, params: dict | None = None):
        return self.model.predict(data, params=params)

    def get_raw_model(self):
        return self.model.get_raw_model() if hasattr(self.model, "get_raw_model") else self.model


def through_mlflow(folder: str, meta: Model, model_config: dict | None, refusal: UnsupportedFlavorError) -> PyFuncModel:
    """Load a model gitml has no loader for with MLflow's own ``mlflow.pyfunc.load_model``, when
    MLflow is installed and the loader is one of MLflow's (``mlflow.*``: a model file never makes
    gitml import any other module); else raise ``refusal``. The caller has verified the folder
    (a run's model: every file against the manifest), so MLflow reads exactly the files recorded."""
    import importlib.util

    conf = meta.flavors.get(PYFUNC, {})
    name = str(conf.get("loader_module"))
    for key in ("code", "data", "model_path"):  # MLflow's loader takes them as they are: a path out
        if conf.get(key):  # of the folder (``code: ../../site``) would reach sys.path or a pickle elsewhere
            inside(folder, conf[key], f"{key} path", exists=False)
    if not name.startswith("mlflow.") or importlib.util.find_spec("mlflow") is None:
        raise refusal
    import mlflow.pyfunc

    return PyFuncModel(meta, _MlflowLoaded(mlflow.pyfunc.load_model(folder, model_config=model_config)))


def load_model(
    model_uri: str | os.PathLike,
    suppress_warnings: bool = False,
    dst_path: str | None = None,
    model_config: dict | None = None,
) -> PyFuncModel:
    """Load a model as a :class:`PyFuncModel`.

    ``model_uri``: a folder, ``runs:/<run>/<path>`` (run id, prefix or name) or
    ``models:/<name>/<version>`` / ``models:/<name>@<alias>``. A run's model is downloaded
    (to ``dst_path``, else a temporary folder removed with the model) and every file checked
    against the run's manifest before anything is read.

    Raises NotFoundError, IntegrityError / ModelIntegrityError (a tampered file, named),
    UnsupportedFlavorError.
    """
    from gitml.modelformat.uri import local_model

    folder, run_id = local_model(model_uri, dst_path)
    try:
        model = load_folder(folder, model_config)
    except BaseException as e:
        if run_id is not None and dst_path is None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        if run_id is not None and isinstance(e, CorruptRecordError) and e.what.startswith(folder + os.sep):
            # name the file in the model, not in the temporary folder it was downloaded to
            raise CorruptRecordError(f"{os.path.relpath(e.what, folder)} of model {model_uri}", e.detail) from None
        raise
    if run_id is not None and dst_path is None:
        import shutil

        weakref.finalize(model, shutil.rmtree, folder, True)
    return model


def save_model(
    path: str | os.PathLike,
    loader_module: str | None = None,
    data_path: str | None = None,
    code_paths: list[str] | None = None,
    conda_env=None,
    mlflow_model: Model | None = None,
    python_model: PythonModel | None = None,
    artifacts: dict[str, str] | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    **kwargs,
) -> None:
    """Save a :class:`PythonModel` (with ``artifacts``: name → local file or folder, copied
    into the model) as an MLflow model folder. MLflow loads it with gitml importable."""
    if loader_module is not None or data_path is not None or conda_env is not None:
        raise InvalidInputError(
            "gitml.pyfunc.save_model takes python_model= (loader_module, data_path and conda_env are not supported)"
        )
    if kwargs:
        raise TypeError(f"save_model() got unexpected keyword arguments {', '.join(kwargs)}")
    if python_model is None:
        raise InvalidInputError("give python_model= (a gitml.pyfunc.PythonModel)")
    save_python_model(
        os.fspath(path),
        python_model,
        artifacts=artifacts,
        code_paths=code_paths,
        mlflow_model=mlflow_model,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    artifact_path: str | None = None,
    python_model: PythonModel | None = None,
    artifacts: dict | None = None,
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
):
    """Save a :class:`PythonModel` and log it to the active run under ``name``; returns a
    ModelInfo whose ``model_uri`` is ``runs:/<run_id>/<name>``."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        python_model=python_model,
        artifacts=artifacts,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


__all__ = [
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "UnsupportedFlavorError",
    "dask_predict",
    "load_model",
    "log_model",
    "save_model",
    "spark_udf",
]

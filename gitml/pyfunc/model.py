"""Custom Python models (``PythonModel``) saved and loaded as MLflow's ``python_function`` flavor.

gitml writes ``python_model.pkl`` (cloudpickle, as MLflow) with ``loader_module:
gitml.pyfunc.model``, so MLflow loads it when gitml is importable beside it. gitml reads
MLflow's own (``loader_module: mlflow.pyfunc.model``) without MLflow: its ``PythonModel``
base class is read as gitml's.
"""

from __future__ import annotations

import inspect
import os
import pickle
import shutil
from typing import Any

from gitml.errors import InvalidInputError

PYTHON_MODEL_FILE = "python_model.pkl"
LOADER = "gitml.pyfunc.model"


class PythonModel:
    """Subclass it and define ``predict(self, context, model_input, params=None)`` (``context``
    may be left out); ``load_context(context)`` runs once when the model is loaded."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load what ``context.artifacts`` (name → local path) holds; called at load time."""

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        raise NotImplementedError("a PythonModel defines predict(self, context, model_input, params=None)")


class PythonModelContext:
    """What a PythonModel gets at load time: ``artifacts`` (name → absolute path in the
    model folder) and ``model_config``."""

    def __init__(self, artifacts: dict[str, str], model_config: dict | None):
        self._artifacts = artifacts
        self._model_config = model_config

    @property
    def artifacts(self) -> dict[str, str]:
        return self._artifacts

    @property
    def model_config(self) -> dict | None:
        return self._model_config


class _MlflowStub:
    """Stands in for an MLflow object a pickled model refers to (e.g. cached type hints)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


_MLFLOW_NAMES = {"PythonModel": PythonModel, "PythonModelContext": PythonModelContext}


# Where a class an older gitml pickled now lives: ``gitml.models``' modules moved to
# ``gitml.modelformat`` (a pickled PythonModel may hold a Model, a ModelInfo, a loaded
# NativeModel); the signature classes still load from their public path, ``gitml.models.signature``.
_MOVED = {
    f"gitml.models.{name}": f"gitml.modelformat.{name}"
    for name in ("enforce", "mlmodel", "environment", "uri", "save", "flavor")
}


class ModelUnpickler(pickle.Unpickler):
    """Reads MLflow's and gitml's pickled models: MLflow's ``PythonModel`` base class becomes
    gitml's, so a model MLflow saved loads without MLflow, and a class an older gitml pickled
    under a module that has moved is read from where it is now."""

    def find_class(self, module: str, name: str):
        module = _MOVED.get(module, module)
        if module == "mlflow" or module.startswith("mlflow."):
            try:
                return super().find_class(module, name)
            except ImportError:
                if name in _MLFLOW_NAMES:
                    return _MLFLOW_NAMES[name]
                return type(name, (_MlflowStub,), {"__module__": module})
        return super().find_class(module, name)


def load_pickle(path: str):
    with open(path, "rb") as f:
        return ModelUnpickler(f).load()


def _takes_context(function) -> bool:
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "params"]
    return bool(parameters) and (parameters[0].name == "context" or len(parameters) >= 2)


class _PythonModelWrapper:
    """``predict(data, params=None)`` over a PythonModel and its context."""

    def __init__(self, python_model: PythonModel, context: PythonModelContext):
        self.python_model = python_model
        self.context = context
        parameters = inspect.signature(python_model.predict).parameters
        self._takes_params = "params" in parameters
        self._takes_context = _takes_context(python_model.predict)

    def predict(self, model_input, params: dict | None = None):
        kwargs = {"params": params} if self._takes_params else {}
        if self._takes_context:
            return self.python_model.predict(self.context, model_input, **kwargs)
        return self.python_model.predict(model_input, **kwargs)

    def get_raw_model(self):
        return self.python_model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _PythonModelWrapper:
    """The loader MLflow (and gitml) call for ``loader_module: gitml.pyfunc.model``."""
    from gitml.modelformat.mlmodel import PYFUNC, Model
    from gitml.pyfunc import inside

    conf = Model.load(path).flavors.get(PYFUNC) or {}
    if conf.get("python_model_compression"):
        raise InvalidInputError("compressed python_model.pkl files are not supported")
    if "model_code_path" in conf:
        from gitml.errors import UnsupportedFlavorError

        raise UnsupportedFlavorError(
            "models-from-code (model_code_path) are loaded only through MLflow (install mlflow)"
        )
    python_model = load_pickle(inside(path, conf.get("python_model", PYTHON_MODEL_FILE), "python_model"))
    artifacts = {
        name: inside(path, info.get("path") if isinstance(info, dict) else None, f"artifact {name!r}")
        for name, info in (conf.get("artifacts") or {}).items()
    }
    context = PythonModelContext(artifacts, model_config or conf.get("config"))
    python_model.load_context(context)
    return _PythonModelWrapper(python_model, context)


def save_python_model(
    path: str,
    python_model: PythonModel,
    *,
    artifacts: dict[str, str] | None,
    code_paths,
    mlflow_model,
    signature,
    input_example,
    pip_requirements,
    extra_pip_requirements,
    metadata,
) -> None:
    import cloudpickle

    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    if not callable(getattr(python_model, "predict", None)):
        raise InvalidInputError("python_model must have a predict method (subclass gitml.pyfunc.PythonModel)")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    saved: dict[str, dict] = {}
    for name, source in (artifacts or {}).items():
        if not os.path.exists(source):
            raise InvalidInputError(f"artifact {name!r}: {source!r} does not exist")
        target = os.path.join("artifacts", os.path.basename(os.path.normpath(source)))
        os.makedirs(os.path.join(folder, "artifacts"), exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(folder, target))
        else:
            shutil.copy2(source, os.path.join(folder, target))
        saved[name] = {"path": target, "uri": source}
    with open(os.path.join(folder, PYTHON_MODEL_FILE), "wb") as f:
        cloudpickle.dump(python_model, f)
    conf: dict[str, Any] = {
        "loader_module": LOADER,
        "python_model": PYTHON_MODEL_FILE,
        "cloudpickle_version": cloudpickle.__version__,
        "code": copy_code_paths(folder, code_paths),
    }
    if saved:
        conf["artifacts"] = saved

    def predict(example):
        context = PythonModelContext({n: os.path.join(folder, s["path"]) for n, s in saved.items()}, None)
        python_model.load_context(context)
        return _PythonModelWrapper(python_model, context).predict(example)

    from gitml.version import __version__

    if pip_requirements is None:  # the loader is gitml's: the model needs gitml (and cloudpickle)
        extra_pip_requirements = [
            f"gitml=={__version__}",
            *_pinned(["cloudpickle"]),
            *(extra_pip_requirements or []),
        ]
    finish_folder(
        folder,
        model,
        flavor=None,
        flavor_conf=None,
        pyfunc_conf=conf,
        packages=[],
        signature=signature,
        input_example=input_example,
        predict=predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def _pinned(packages: list[str]) -> list[str]:
    from gitml.modelformat.environment import pinned

    return pinned(packages)

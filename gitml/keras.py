"""Keras 3 models in MLflow's ``keras`` flavor, as ``mlflow.keras`` writes and reads it.

    gitml.keras.log_model(model, name="model", signature=signature, input_example=x[:4])
    model = gitml.keras.load_model("runs:/<run>/model")

The folder is MLflow's: ``data/model.keras`` (Keras' own archive, read back with Keras' safe
mode: no lambda is deserialized) and ``data/keras_module.txt``; flavor keys ``data``,
``keras_version``, ``keras_backend``, ``save_exported_model``; ``loader_module: mlflow.keras``.
Any Keras 3 backend works (tests run on torch). When Keras is not imported yet and
``KERAS_BACKEND`` is unset, loading selects the backend the model was saved with. As MLflow, no
signature is inferred from the example. keras is optional (``pip install 'gitml[keras]'``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "keras"
LOADER = "mlflow.keras"
DATA = "data"
MODEL_FILE = "model.keras"
MODULE_FILE = "keras_module.txt"
_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")


def _keras(backend: object = None):
    from gitml.modelformat.flavor import require

    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND") and backend in _BACKENDS:
        os.environ["KERAS_BACKEND"] = str(backend)  # Keras reads it once, at import
    return require("keras", "keras")


def save_model(
    model: Any,
    path: str | os.PathLike,
    save_exported_model: bool = False,
    conda_env=None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    save_model_kwargs: dict | None = None,
    metadata: dict | None = None,
) -> None:
    """Save a Keras 3 model as an MLflow model folder at ``path``. A ``signature``'s inputs are
    tensors with a free first dimension (as MLflow requires)."""
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import finish_folder, prepare_folder
    from gitml.modelformat.signature import TensorSpec

    keras = _keras()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if save_exported_model:
        raise InvalidInputError(
            "save_exported_model=True needs TensorFlow's SavedModel export, which gitml does not write"
        )
    if int(keras.__version__.split(".")[0]) < 3:
        raise InvalidInputError(f"gitml.keras saves Keras 3 models (installed: keras {keras.__version__})")
    if not isinstance(model, keras.Model):
        raise InvalidInputError(f"model must be a keras.Model, not {type(model).__name__}")
    if signature is not None and signature.inputs is not None:
        for field in signature.inputs:
            if not isinstance(field, TensorSpec) or field.shape[:1] != (-1,):
                raise InvalidInputError("a Keras model's signature inputs are tensors whose first dimension is -1")
    folder = prepare_folder(path)
    meta = mlflow_model if mlflow_model is not None else Model()
    os.makedirs(os.path.join(folder, DATA))
    with open(os.path.join(folder, DATA, MODULE_FILE), "w") as f:
        f.write("keras")
    model.save(os.path.join(folder, DATA, MODEL_FILE), **(save_model_kwargs or {}))
    finish_folder(
        folder,
        meta,
        flavor=FLAVOR,
        flavor_conf={
            "data": DATA,
            "keras_version": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "save_exported_model": False,
        },
        pyfunc_conf={"loader_module": LOADER},
        packages=[f"keras=={keras.__version__}"],
        signature=signature,
        input_example=input_example,
        predict=None,  # as MLflow: the signature is given, not inferred
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    model: Any,
    artifact_path: str | None = None,
    save_exported_model: bool = False,
    conda_env=None,
    signature=None,
    input_example=None,
    registered_model_name: str | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    save_model_kwargs: dict | None = None,
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
):
    """Save a Keras model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        model=model,
        save_exported_model=save_exported_model,
        conda_env=conda_env,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        save_model_kwargs=save_model_kwargs,
        metadata=metadata,
    )


def autolog(
    log_every_epoch: bool = True,
    log_every_n_steps: int | None = None,
    log_models: bool = True,
    log_model_signatures: bool = True,
    save_exported_model: bool = False,
    log_datasets: bool = True,
    log_input_examples: bool = False,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    registered_model_name: str | None = None,
    save_model_kwargs: dict | None = None,
    extra_tags: dict | None = None,
) -> None:
    """Autologging for Keras 3's ``Model.fit``, as ``mlflow.keras.autolog`` (what it logs:
    :mod:`gitml.autologging.keras`; per-step metrics and exported models are not logged)."""
    from gitml.autologging import configure
    from gitml.errors import InvalidInputError

    if not log_every_epoch or log_every_n_steps is not None or save_exported_model:
        raise InvalidInputError(
            "gitml.keras.autolog logs every epoch; log_every_n_steps and save_exported_model are not supported"
        )
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
        save_model_kwargs=save_model_kwargs,
    )


def _load(folder: str, conf: dict, custom_objects: dict | None = None, **load_model_kwargs):
    from gitml.pyfunc import inside

    if conf.get("save_exported_model"):
        raise InvalidInputError("this Keras model was exported as a TensorFlow SavedModel: gitml does not load those")
    keras = _keras(conf.get("keras_backend"))
    data = inside(folder, conf.get("data") or DATA, "data")
    file = os.path.join(data, MODEL_FILE) if os.path.isdir(data) else data + ".keras"
    file = inside(folder, os.path.relpath(file, folder), "Keras model file")
    load_model_kwargs.setdefault("safe_mode", True)  # Keras' default, kept: no lambda is deserialized
    return keras.saving.load_model(file, custom_objects=custom_objects, **load_model_kwargs)


def load_model(
    model_uri: str | os.PathLike,
    dst_path: str | None = None,
    custom_objects: dict | None = None,
    load_model_kwargs: dict | None = None,
):
    """The Keras model itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(
        model_uri,
        dst_path,
        FLAVOR,
        lambda folder, conf: _load(folder, conf, custom_objects, **(load_model_kwargs or {})),
    )


class _KerasModelWrapper:
    def __init__(self, model):
        self.model = model

    def predict(self, data, params: dict | None = None):
        import numpy as np
        import pandas as pd

        keras = _keras()
        if isinstance(data, pd.DataFrame):
            return pd.DataFrame(self.model.predict(data.values, verbose=0), index=data.index)
        if not isinstance(data, (np.ndarray, list, tuple, dict)):
            raise InvalidInputError(
                f"a Keras model takes a DataFrame, array, list, tuple or dict, not {type(data).__name__}"
            )
        return keras.ops.convert_to_numpy(self.model.predict(data, verbose=0))

    def get_raw_model(self):
        return self.model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _KerasModelWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.keras``."""
    from gitml.modelformat.flavor import flavor_conf, model_folder

    folder = model_folder(path)
    return _KerasModelWrapper(_load(folder, flavor_conf(folder, FLAVOR)))


__all__ = ["autolog", "load_model", "log_model", "save_model"]

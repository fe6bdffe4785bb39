"""Models in MLflow's format: the ``MLmodel`` folder, signatures, input examples,
environment files, model URIs, and loading with every file verified.

    from gitml.models import infer_signature
    signature = infer_signature(X_train, model.predict(X_train))
    gitml.sklearn.log_model(model, name="model", signature=signature, input_example=X_train[:5])
    gitml.pyfunc.load_model("runs:/<run>/model").predict(X_test)

Submodules: ``signature`` (ModelSignature and its schemas), ``enforce`` (checking input
against a signature), ``mlmodel`` (the MLmodel file, input examples), ``environment``
(requirements.txt, python_env.yaml, conda.yaml), ``uri`` (model URIs, download and
verification), ``save`` (what every flavor's save/log shares), ``flavor`` (what the native
flavor modules share when they load). Batch scoring and export, and evaluation, which load
models, are ``gitml.pyfunc.batch`` and ``gitml.pyfunc.evaluation``, above the loader.

This ``__init__`` is a face, as ``gitml/__init__.py`` is: it names each thing where MLflow has
it and imports it on first use, ``evaluate`` (``mlflow.models.evaluate``) from the layer above
that loads the model. It sits with the package face; the submodules take nothing from it.
"""

from typing import TYPE_CHECKING

from gitml.errors import ModelIntegrityError, RegisteredModelNotFoundError, SchemaEnforcementError

if TYPE_CHECKING:
    from gitml.models.mlmodel import Model
    from gitml.models.save import ModelInfo
    from gitml.models.signature import (
        ColSpec,
        DataType,
        ModelSignature,
        ParamSchema,
        ParamSpec,
        Schema,
        TensorSpec,
        infer_signature,
    )
    from gitml.models.uri import parse_model_uri, resolve_model_uri
    from gitml.pyfunc.evaluation import EvaluationResult, evaluate

# each name is imported from its submodule on first use: loading a model (gitml.pyfunc,
# gitml serve) then imports only what loading needs, not saving's environment capture
_WHERE = {
    "EvaluationResult": "gitml.pyfunc.evaluation",  # evaluate loads the model it is given: above the loader
    "evaluate": "gitml.pyfunc.evaluation",
    "Model": "gitml.models.mlmodel",
    "ModelInfo": "gitml.models.save",
    **dict.fromkeys(
        [
            "ColSpec",
            "DataType",
            "ModelSignature",
            "ParamSchema",
            "ParamSpec",
            "Schema",
            "TensorSpec",
            "infer_signature",
        ],
        "gitml.models.signature",
    ),
    **dict.fromkeys(["parse_model_uri", "resolve_model_uri"], "gitml.models.uri"),
}


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'gitml.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "ColSpec",
    "DataType",
    "EvaluationResult",
    "Model",
    "ModelInfo",
    "ModelIntegrityError",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "RegisteredModelNotFoundError",
    "Schema",
    "SchemaEnforcementError",
    "TensorSpec",
    "evaluate",
    "infer_signature",
    "parse_model_uri",
    "resolve_model_uri",
]

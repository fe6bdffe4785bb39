"""Models in MLflow's format: the ``MLmodel`` folder, signatures, input examples,
environment files, model URIs, and loading with every file verified.

    from gitml.models import infer_signature
    signature = infer_signature(X_train, model.predict(X_train))
    gitml.sklearn.log_model(model, name="model", signature=signature, input_example=X_train[:5])
    gitml.pyfunc.load_model("runs:/<run>/model").predict(X_test)

The code is ``gitml.modelformat`` (the MLmodel folder and file, signatures, enforcing them,
environment files, model URIs, what saving and the flavors share), below the loader
``gitml.pyfunc``; batch scoring and export, and evaluation, which load models, are
``gitml.pyfunc.batch`` and ``gitml.pyfunc.evaluation``, above it.

This folder is a face, as ``gitml/__init__.py`` is, and sits above ``gitml.pyfunc``: its
``__init__`` names each thing where MLflow has it and imports it on first use (``evaluate``,
``mlflow.models.evaluate``, from the layer that loads the model), and ``gitml.models.signature``
is ``mlflow.models.signature``'s path. Nothing in gitml imports it.
"""

from typing import TYPE_CHECKING

from gitml.errors import ModelIntegrityError, RegisteredModelNotFoundError, SchemaEnforcementError

if TYPE_CHECKING:
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import ModelInfo
    from gitml.modelformat.signature import (
        ColSpec,
        DataType,
        ModelSignature,
        ParamSchema,
        ParamSpec,
        Schema,
        TensorSpec,
        infer_signature,
    )
    from gitml.modelformat.uri import parse_model_uri, resolve_model_uri
    from gitml.pyfunc.evaluation import EvaluationResult, evaluate

# each name is imported from its submodule on first use: loading a model (gitml.pyfunc,
# gitml serve) then imports only what loading needs, not saving's environment capture
_WHERE = {
    "EvaluationResult": "gitml.pyfunc.evaluation",  # evaluate loads the model it is given: above the loader
    "evaluate": "gitml.pyfunc.evaluation",
    "Model": "gitml.modelformat.mlmodel",
    "ModelInfo": "gitml.modelformat.save",
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
        "gitml.modelformat.signature",
    ),
    **dict.fromkeys(["parse_model_uri", "resolve_model_uri"], "gitml.modelformat.uri"),
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

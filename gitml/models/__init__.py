"""Models in MLflow's format: the ``MLmodel`` folder, signatures, input examples,
environment files, model URIs, and loading with every file verified.

    from gitml.models import infer_signature
    signature = infer_signature(X_train, model.predict(X_train))
    gitml.sklearn.log_model(model, name="model", signature=signature, input_example=X_train[:5])
    gitml.pyfunc.load_model("runs:/<run>/model").predict(X_test)

Submodules: ``signature`` (ModelSignature and its schemas), ``enforce`` (checking input
against a signature), ``mlmodel`` (the MLmodel file, input examples), ``environment``
(requirements.txt, python_env.yaml, conda.yaml), ``uri`` (model URIs, download and
verification), ``save`` (what every flavor's save/log shares), ``batch`` (batch scoring and
export).
"""

from gitml.models.enforce import SchemaEnforcementError
from gitml.models.mlmodel import Model
from gitml.models.save import ModelInfo
from gitml.models.signature import ColSpec, DataType, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec, infer_signature
from gitml.models.uri import ModelIntegrityError, RegisteredModelNotFoundError, parse_model_uri, resolve_model_uri

__all__ = [
    "ColSpec",
    "DataType",
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
    "infer_signature",
    "parse_model_uri",
    "resolve_model_uri",
]

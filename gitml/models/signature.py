"""``mlflow.models.signature`` under gitml's name: ``from gitml.models.signature import
infer_signature`` as MLflow's, and the signature classes a model pickled by an older gitml
names by this path. A face: the code is ``gitml.modelformat.signature``."""

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

__all__ = [
    "ColSpec",
    "DataType",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "Schema",
    "TensorSpec",
    "infer_signature",
]

"""MLflow's ``mlflow.exceptions`` under gitml: ``MlflowException`` is gitml's error root.

    from gitml.exceptions import MlflowException

    try:
        client.get_run("0" * 32)
    except MlflowException as e:
        assert e.error_code == "RESOURCE_DOES_NOT_EXIST"

Every error gitml raises on purpose is one (see :mod:`gitml.errors` for the tree).
"""

from gitml.errors import (
    AmbiguousRunError,
    ConflictError,
    CorruptRecordError,
    ExperimentNotFoundError,
    FilterSyntaxError,
    GitmlError,
    InvalidInputError,
    MlflowException,
    NotFoundError,
    ParamConflictError,
    RepositoryError,
    RunNotFoundError,
)

__all__ = [
    "AmbiguousRunError",
    "ConflictError",
    "CorruptRecordError",
    "ExperimentNotFoundError",
    "FilterSyntaxError",
    "GitmlError",
    "InvalidInputError",
    "MlflowException",
    "NotFoundError",
    "ParamConflictError",
    "RepositoryError",
    "RunNotFoundError",
]

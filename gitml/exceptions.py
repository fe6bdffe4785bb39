"""MLflow's ``mlflow.exceptions`` under gitml: ``MlflowException`` is gitml's error root.

    from gitml.exceptions import MlflowException

    try:
        client.get_run("0" * 32)
    except MlflowException as e:
        assert e.error_code == "RESOURCE_DOES_NOT_EXIST"

Every error gitml raises on purpose is one; this module offers every class of
:mod:`gitml.errors` (the tree is drawn there).
"""

from gitml import errors as _errors
from gitml.errors import GitmlError, MlflowException  # noqa: F401  (MLflow's name, the one most code imports)

__all__ = sorted(_errors.__all__)
globals().update({name: getattr(_errors, name) for name in __all__})

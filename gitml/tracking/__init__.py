"""MLflow's ``mlflow.tracking`` face: ``gitml.tracking.MlflowClient`` is :class:`gitml.Client`.

A face alone, as ``gitml/__init__.py`` and :mod:`gitml.artifacts` are: the name in the place
MLflow has it (``from mlflow.tracking import MlflowClient``), imported on first use. It sits
above the client; what records runs and experiments is :mod:`gitml.runlog`, below the client.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitml.client import Client as MlflowClient


def __getattr__(name: str):
    if name == "MlflowClient":
        from gitml.client import Client

        return Client
    raise AttributeError(f"module 'gitml.tracking' has no attribute {name!r}")


__all__ = ["MlflowClient"]

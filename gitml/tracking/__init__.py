"""Experiment tracking: runs, experiments, the journal, search (the submodules).

This ``__init__`` is a face, as ``gitml/__init__.py`` is: ``gitml.tracking.MlflowClient`` is
:class:`gitml.Client`, under the name and in the place MLflow has it (``from mlflow.tracking
import MlflowClient``), imported on first use. The face sits above the client; the submodules
sit below it and take nothing from the face, so importing one loads no client.
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

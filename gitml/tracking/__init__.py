"""Experiment tracking: runs, experiments, the journal, search.

``gitml.tracking.MlflowClient`` is the :class:`gitml.Client`, under the name and in
the place MLflow has it (``from mlflow.tracking import MlflowClient``). It is
looked up on first use, so this package (a lower layer) never imports the client.
"""


def __getattr__(name: str):
    if name == "MlflowClient":
        import importlib

        return importlib.import_module("gitml.client").Client
    raise AttributeError(f"module 'gitml.tracking' has no attribute {name!r}")

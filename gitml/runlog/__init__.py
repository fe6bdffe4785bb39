"""The run log: experiment tracking's runs and experiments on git, below the client.

``tracker`` (the Tracker: open runs' writers and their refs), ``record`` (a run's record,
checked as it is loaded), ``journal``, ``writer``, ``committer`` and ``group`` (a run's calls
journaled, then committed, alone or as a group), ``experiments``, ``index`` and ``columns``
(the search index's table), ``filter`` and ``search`` (run search), ``checks``, ``rows``,
``recovery``, ``identity``, ``lineage``, ``imports``, ``ci``. MLflow's ``mlflow.tracking``
face (``MlflowClient``) is :mod:`gitml.tracking`, above the client; nothing here imports it.
"""

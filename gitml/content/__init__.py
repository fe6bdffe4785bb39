"""Artifacts by content hash, beneath MLflow's ``mlflow.artifacts`` face (:mod:`gitml.artifacts`):
``cas`` (the local cache and the fsspec remote store, and what a push confirmed), ``config``
(the repository's artifact settings), ``formats`` (dicts, tables, images and figures as
bytes), ``statcache`` (hashes of unchanged files, by stat), ``service`` (a run's manifest:
log, list, read, download; it uses tracking).
"""

"""``dask_predict``: a model scored over a Dask DataFrame, partition by partition.

    import dask.dataframe as dd
    ddf = dd.read_parquet("s3://bucket/customers/")
    scores = gitml.pyfunc.dask_predict(ddf, "models:/churn@production")   # lazy, like ddf
    scores.to_frame().to_parquet("s3://bucket/scores/")

The model is verified once where this is called (:mod:`gitml.pyfunc.shipping`); its bytes enter
the task graph once, as one key every partition's task depends on, so dask.distributed moves them
to each worker once (never per partition). A worker checks them against the hashes in the task
before it unpickles anything, and loads the model once per process.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError


def _as_output(result: Any, index: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result.set_axis(index, axis=0)
    if isinstance(result, pd.Series):
        return pd.Series(result.to_numpy(), index=index, name=result.name if result.name is not None else "prediction")
    if isinstance(result, dict):
        return pd.DataFrame({k: np.asarray(v) for k, v in result.items()}, index=index)
    array = np.asarray(result)
    if array.ndim == 1:
        return pd.Series(array, index=index, name="prediction")
    if array.ndim == 2:
        return pd.DataFrame(array, index=index, columns=[str(i) for i in range(array.shape[1])])
    return pd.Series(list(array), index=index, name="prediction")


def score_partition(
    frame: Any, files: dict[str, bytes], key: Any, params: dict | None, model_config: dict | None
) -> Any:
    """On a worker: the model (checked, loaded once per process) applied to one partition; the
    predictions keep the partition's index."""
    if len(frame) == 0:
        return _as_output([], frame.index)
    model = key.load(files, model_config)
    return _as_output(model.predict(frame, params), frame.index)


def dask_predict(
    ddf: Any,
    model_uri: str | os.PathLike,
    *,
    params: dict | None = None,
    model_config: dict | None = None,
    meta: Any = None,
) -> Any:
    """Predictions of ``model_uri`` (a folder, ``runs:/``, ``models:/``) for every row of the Dask
    DataFrame ``ddf``: a lazy Dask Series named ``prediction`` (a DataFrame for a model of several
    outputs), partitioned and indexed as ``ddf``. ``meta``: the output's empty pandas form (default:
    found by scoring the first rows here). ``params``: passed to every ``predict``.

    Raises MissingExtraError (no dask), InvalidInputError, NotFoundError,
    ModelIntegrityError (a file of the model that does not match its run's hashes: nothing is
    sent to a worker)."""
    from gitml.errors import MissingExtraError

    MissingExtraError.unless_installed("dask", ("dask.dataframe",))
    import dask
    import dask.dataframe as dd

    from gitml.modelformat.enforce import enforce_params
    from gitml.pyfunc.shipping import ship_model

    if not isinstance(ddf, dd.DataFrame):
        raise InvalidInputError(f"dask_predict takes a dask DataFrame, not {type(ddf).__name__}")
    shipped = ship_model(model_uri)
    params = enforce_params(params, shipped.metadata.get_params_schema())
    key = shipped.key()
    if meta is None:
        sample = ddf.head(5, npartitions=1, compute=True)
        if len(sample) == 0:
            raise InvalidInputError(
                "dask_predict cannot find the output's form from an empty first partition: give meta="
            )
        meta = score_partition(sample, shipped.files, key, params, model_config).iloc[:0]
    files = dask.delayed(shipped.files, pure=True, name=f"gitml-model-{shipped.digest}")
    return ddf.map_partitions(score_partition, files, key, params, model_config, meta=meta, align_dataframes=False)

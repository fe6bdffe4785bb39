"""Datasets a run used, as MLflow's ``mlflow.data`` describes them.

    dataset = gitml.data.from_pandas(df, source="data/train.csv", targets="label")
    with gitml.start_run():
        gitml.log_input(dataset, context="training")

    gitml.search_runs(filter_string="datasets.context = 'training'")

A dataset is recorded by its name, digest (a hash of its content: the first
10,000 rows), source, schema and profile, in the run's ``meta.yaml``; the data
itself is not stored. The digest is gitml's own (8 hex digits, as long as
MLflow's), so it is stable across gitml versions but not equal to MLflow's.
"""

from __future__ import annotations

import hashlib
import json
import sys

from gitml.errors import InvalidInputError

DIGEST_ROWS = 10_000
# MLflow's limits on a logged dataset (longer values are refused, as there)
MAX_NAME = 500
MAX_DIGEST = 36
MAX_SOURCE = 65_535
MAX_SCHEMA = 1_048_575
MAX_PROFILE = 16_777_215


class Dataset:
    """A dataset's description: ``name``, ``digest``, ``source_type``, ``source`` (JSON),
    ``schema`` and ``profile`` (JSON or None)."""

    def __init__(self, *, name: str | None, digest: str, source: str | None, schema: dict | None, profile: dict):
        self.name = name or "dataset"
        self.digest = digest
        self.source_type, self.source = _source(source)
        self.schema = json.dumps(schema) if schema is not None else None
        self.profile = json.dumps(profile)

    def to_dict(self) -> dict:
        """The fields recorded in a run (and checked against MLflow's limits)."""
        out = {
            "name": self.name,
            "digest": self.digest,
            "source_type": self.source_type,
            "source": self.source,
            "schema": self.schema,
            "profile": self.profile,
        }
        limits = {
            "name": MAX_NAME,
            "digest": MAX_DIGEST,
            "source": MAX_SOURCE,
            "schema": MAX_SCHEMA,
            "profile": MAX_PROFILE,
        }
        for field, limit in limits.items():
            value = out[field]
            if not isinstance(value, str) and not (value is None and field in ("schema", "profile")):
                raise InvalidInputError(f"dataset {field} must be a string, not {type(value).__name__}")
            if value is not None and len(value) > limit:
                raise InvalidInputError(f"dataset {field} is longer than {limit} characters")
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} digest={self.digest!r}>"


class PandasDataset(Dataset):
    """A DataFrame as a dataset (``df``; ``targets`` and ``predictions`` name columns)."""

    def __init__(self, df, *, source, targets, name, digest, predictions):
        for column in (targets, predictions):
            if column is not None and column not in df.columns:
                raise InvalidInputError(f"column {column!r} is not in the DataFrame")
        self.df, self.targets, self.predictions = df, targets, predictions
        super().__init__(
            name=name,
            digest=digest or _pandas_digest(df),
            source=source,
            schema={
                "mlflow_colspec": [
                    {"type": _column_type(df[c].dtype), "name": str(c), "required": True} for c in df.columns
                ]
            },
            profile={"num_rows": int(len(df)), "num_elements": int(df.size)},
        )


class NumpyDataset(Dataset):
    """A feature array (and optional target array) as a dataset."""

    def __init__(self, features, *, source, targets, name, digest):
        self.features, self.targets = features, targets
        arrays = {"features": features} if targets is None else {"features": features, "targets": targets}
        spec, profile = {}, {}
        for role, array in arrays.items():
            if isinstance(array, dict):
                raise InvalidInputError(f"{role} given as a dict of arrays is not supported; give one array")
            shape = [-1, *array.shape[1:]]
            spec[role] = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": str(array.dtype), "shape": shape}}])
            profile.update(
                {
                    f"{role}_shape": list(array.shape),
                    f"{role}_size": int(array.size),
                    f"{role}_nbytes": int(array.nbytes),
                }
            )
        super().__init__(
            name=name,
            digest=digest or _numpy_digest(arrays),
            source=source,
            schema={"mlflow_tensorspec": spec},
            profile=profile,
        )


def from_pandas(
    df,
    source: str | None = None,
    targets: str | None = None,
    name: str | None = None,
    digest: str | None = None,
    predictions: str | None = None,
) -> PandasDataset:
    """A dataset from a pandas DataFrame, for :func:`gitml.log_input`.

    >>> ds = gitml.data.from_pandas(df, source="s3://bucket/train.parquet", targets="y")
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"from_pandas takes a pandas DataFrame, not {type(df).__name__}")
    return PandasDataset(df, source=source, targets=targets, name=name, digest=digest, predictions=predictions)


def from_numpy(
    features, source: str | None = None, targets=None, name: str | None = None, digest: str | None = None
) -> NumpyDataset:
    """A dataset from a numpy feature array (and target array), for :func:`gitml.log_input`."""
    import numpy as np

    if not isinstance(features, np.ndarray) or (targets is not None and not isinstance(targets, np.ndarray)):
        raise InvalidInputError("from_numpy takes numpy arrays for features and targets")
    return NumpyDataset(features, source=source, targets=targets, name=name, digest=digest)


def _source(source) -> tuple[str, str]:
    """``(source_type, source JSON)``: a path or URI given, else the code that ran (as MLflow)."""
    if source is None:
        from gitml.store.git import user_name

        main = sys.argv[0] if sys.argv and sys.argv[0] else "<console>"
        tags = {"mlflow.user": user_name(), "mlflow.source.name": main, "mlflow.source.type": "LOCAL"}
        return "code", json.dumps({"tags": tags})
    if not isinstance(source, str):
        raise InvalidInputError(f"dataset source must be a path or URI string, not {type(source).__name__}")
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    kind = {"": "local", "file": "local", "s3": "s3", "gs": "gcs", "http": "http", "https": "http"}.get(scheme, scheme)
    return kind, json.dumps({"uri": source})


def _column_type(dtype) -> str:
    kind = getattr(dtype, "kind", "O")
    if kind == "f":
        return "float" if dtype.itemsize == 4 else "double"
    if kind in "iu":
        return "integer" if dtype.itemsize <= 4 else "long"
    return {"b": "boolean", "M": "datetime", "S": "binary"}.get(kind, "string")


def _pandas_digest(df) -> str:
    import pandas as pd

    head = df.head(DIGEST_ROWS)
    h = hashlib.sha256(json.dumps([str(c) for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(head, index=False).values.tobytes())
    h.update(str(len(df)).encode())
    return h.hexdigest()[:8]


def _numpy_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for role, array in arrays.items():
        h.update(f"{role}{array.dtype}{array.shape}".encode())
        h.update(array[:DIGEST_ROWS].tobytes() if array.ndim else array.tobytes())
    return h.hexdigest()[:8]


__all__ = ["Dataset", "NumpyDataset", "PandasDataset", "from_numpy", "from_pandas"]

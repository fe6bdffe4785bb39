"""Signature enforcement on predict, by MLflow's rules (``mlflow.models.utils._enforce_schema``).

A named column-based signature: a missing required column is an error naming it, extra
columns are dropped (with a warning), columns are put in the signature's order. Each column's
type must match or widen safely: int → long, float → double, (u)int of ≤ 6 bytes →
double, object → string, datetime64 at any precision → datetime; a long column of only
0/1 may become float/double. Anything else (double → long, double → float, string → long)
is an error naming the column. Tensor signatures check dtype (same widening) and shape.
"""

from __future__ import annotations

import logging
from typing import Any

from gitml.errors import SchemaEnforcementError
from gitml.modelformat.signature import ColSpec, DataType, ParamSchema, Schema, TensorSpec

log = logging.getLogger(__name__)


def _as_frame(data, schema: Schema):
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return pd.DataFrame(data)
    if isinstance(data, dict):
        if all(np.isscalar(v) or v is None for v in data.values()):
            return pd.DataFrame([data])
        try:
            return pd.DataFrame(data)
        except ValueError as e:
            raise SchemaEnforcementError(f"the input is not a table the signature's columns fit: {e}") from None
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame(data)
    if isinstance(data, (list, np.ndarray)):
        # columns 0, 1, ...: a named signature then finds its columns missing, as in MLflow (an
        # array's columns are never matched to names by position, which could swap them silently)
        return pd.DataFrame(data)
    if np.isscalar(data):
        return pd.DataFrame([data])
    raise SchemaEnforcementError(f"expected a DataFrame (or dict, list, array), got {type(data).__name__}")


def _column(name, values, t: DataType):
    """``values`` (a Series) as type ``t``, or SchemaEnforcementError naming the column."""
    import numpy as np
    import pandas as pd

    if values.dtype == object and t not in (DataType.binary, DataType.string):
        values = values.infer_objects()
    if t == DataType.string and (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
        return values
    if t == DataType.binary and (
        values.dtype == object or isinstance(values.dtype, pd.StringDtype) or values.dtype.kind == "S"
    ):
        return values
    target = t.to_numpy()
    if values.dtype == target:
        return values
    if t == DataType.datetime:
        if values.dtype.kind == "M" or values.dtype == object:
            try:
                return values.astype(np.dtype("datetime64[ns]"))
            except (TypeError, ValueError) as e:
                raise SchemaEnforcementError(
                    f"column {name!r}: cannot convert {values.dtype} to datetime ({e})"
                ) from None
    if t == DataType.boolean and values.dtype == object:
        return values
    kind, size = values.dtype.kind, getattr(values.dtype, "itemsize", 0)
    if not isinstance(values.dtype, np.dtype):  # pandas' string, categorical... dtypes
        upcast = False
    elif kind == target.kind and kind in "biuf":
        upcast = size <= target.itemsize
    elif kind == "u" and target.kind == "i":
        upcast = size < target.itemsize
    elif kind in ("i", "u") and target == np.float64:
        upcast = size <= 6
    else:
        upcast = False
    if upcast:
        return values.astype(target)
    if values.dtype == np.int64 and target.kind == "f" and all(pd.isnull(x) or x in (0, 1) for x in values):
        return values.astype(target)
    hint = ""
    if values.dtype == np.float64 and target.kind in "iu" and values.hasnans:
        hint = " (missing values make an integer column float: declare it double in the signature)"
    raise SchemaEnforcementError(f"column {name!r}: cannot safely convert {values.dtype} to {t.value} ({target}){hint}")


def _enforce_columns(frame, schema: Schema):
    import pandas as pd

    if schema.has_input_names():
        present = set(frame.columns)
        missing = [i.name for i in schema.inputs if i.required and i.name not in present]
        if missing:
            raise SchemaEnforcementError(
                f"the input lacks column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                "that the model's signature requires"
            )
        extra = [c for c in frame.columns if c not in set(schema.input_names())]
        if extra:
            log.warning("columns not in the model's signature are dropped: %s", ", ".join(map(str, extra[:10])))
        specs = [(i.name, i) for i in schema.inputs if i.name in present]
    else:
        if len(frame.columns) < len(schema.inputs):
            raise SchemaEnforcementError(
                f"the signature declares {len(schema.inputs)} unnamed columns; the input has {len(frame.columns)}"
            )
        specs = list(zip(frame.columns[: len(schema.inputs)], schema.inputs, strict=False))
    out = {}
    for name, spec in specs:
        assert isinstance(spec, ColSpec)
        out[name] = _column(name, frame[name], spec.type) if isinstance(spec.type, DataType) else frame[name]
    return pd.DataFrame(out, index=frame.index)


def _tensor(name, value, spec: TensorSpec):
    import numpy as np
    import pandas as pd

    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = value.to_numpy()
    value = np.asarray(value)
    if value.dtype != spec.type:
        kind, size, target = value.dtype.kind, value.dtype.itemsize, spec.type
        safe = (
            (kind == target.kind and size <= target.itemsize)
            or (kind in "iu" and target == np.float64 and size <= 6)
            or (kind == "u" and target.kind == "i" and size < target.itemsize)
        )
        if not safe:
            raise SchemaEnforcementError(f"tensor {name!r}: cannot safely convert {value.dtype} to {target}")
        value = value.astype(target)
    if len(spec.shape) != value.ndim or any(d not in (-1, n) for d, n in zip(spec.shape, value.shape, strict=False)):
        raise SchemaEnforcementError(f"tensor {name!r}: shape {value.shape} does not fit the signature's {spec.shape}")
    return value


def enforce_schema(data: Any, schema: Schema):
    """``data`` made to fit ``schema`` (columns typed and ordered, tensors cast), or
    :class:`SchemaEnforcementError` naming the column or tensor that does not fit."""
    if not schema.inputs:
        return data
    if schema.is_tensor_spec():
        specs = schema.inputs
        if len(specs) == 1 and not isinstance(data, dict):
            return _tensor(specs[0].name or "input", data, specs[0])
        if not isinstance(data, dict):
            import pandas as pd

            if not isinstance(data, pd.DataFrame):
                raise SchemaEnforcementError(f"the signature has {len(specs)} named tensors: give a dict of arrays")
            data = {c: data[c] for c in data.columns}
        missing = [s.name for s in specs if s.name not in data]
        if missing:
            raise SchemaEnforcementError(
                f"the input lacks tensor{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
            )
        return {s.name: _tensor(s.name, data[s.name], s) for s in specs}
    return _enforce_columns(_as_frame(data, schema), schema)


_PARAM_WIDENING = {
    DataType.long: (int,),
    DataType.float: (int,),
    DataType.double: (int, float),
}


def _param_value(name: str, value, dtype: DataType):
    import numpy as np

    if value is None:
        return None
    if dtype == DataType.datetime:
        try:
            return np.datetime64(value).item()
        except ValueError:
            raise SchemaEnforcementError(f"param {name!r}: {value!r} is not a datetime") from None
    if isinstance(value, np.generic):
        value = value.item()
    python = dtype.to_python()
    if isinstance(value, bool) and dtype != DataType.boolean:
        raise SchemaEnforcementError(f"param {name!r}: expected {dtype.value}, got a boolean")
    if isinstance(value, python) or isinstance(value, _PARAM_WIDENING.get(dtype, ())):
        return python(value)
    raise SchemaEnforcementError(f"param {name!r}: cannot safely convert {type(value).__name__} to {dtype.value}")


def enforce_params(params: dict | None, schema: ParamSchema | None) -> dict | None:
    """``params`` checked against the signature's, with its defaults for those not given.
    A param the signature does not declare is dropped with a warning, as MLflow does."""
    if schema is None:
        if params:
            log.warning("the model's signature declares no params; ignoring %s", ", ".join(map(str, params)))
        return None
    if params is not None and not isinstance(params, dict):
        raise SchemaEnforcementError(f"params must be a dict, not {type(params).__name__}")
    params = params or {}
    out = {}
    for spec in schema:
        if spec.name not in params:
            out[spec.name] = spec.default
            continue
        value = params[spec.name]
        if spec.shape is not None:
            if not isinstance(value, (list, tuple)):
                raise SchemaEnforcementError(f"param {spec.name!r}: expected a list of {spec.dtype.value}")
            out[spec.name] = [_param_value(spec.name, v, spec.dtype) for v in value]
        else:
            if isinstance(value, (list, tuple, dict)):
                raise SchemaEnforcementError(
                    f"param {spec.name!r}: expected one {spec.dtype.value}, got {type(value).__name__}"
                )
            out[spec.name] = _param_value(spec.name, value, spec.dtype)
    unknown = [k for k in params if k not in out]
    if unknown:
        log.warning("params not in the model's signature are ignored: %s", ", ".join(map(str, unknown)))
    return out

"""Model signatures in MLflow's JSON forms: what a model takes, returns and accepts as params.

``MLmodel`` holds each part as a JSON string, exactly as MLflow writes it::

    signature:
      inputs: '[{"type": "double", "name": "x", "required": true}]'
      outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
      params: '[{"name": "k", "type": "long", "default": 3, "shape": null}]'

>>> sig = infer_signature(pd.DataFrame({"x": [1.0]}), np.array([0]))
>>> sig.inputs.input_names()
['x']

Complex column types (MLflow's ``array``, ``object``, ``map``, ``any``) are kept as their
JSON dicts: read and written back unchanged, and not enforced.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from gitml.errors import InvalidInputError


class DataType(Enum):
    """MLflow's column types, with the numpy type each stands for."""

    boolean = "boolean"
    integer = "integer"
    long = "long"
    float = "float"
    double = "double"
    string = "string"
    binary = "binary"
    datetime = "datetime"

    def to_numpy(self):
        import numpy as np

        return np.dtype(_NUMPY[self.value])

    def to_python(self) -> type:
        import datetime

        return {
            "boolean": bool,
            "integer": int,
            "long": int,
            "float": float,
            "double": float,
            "string": str,
            "binary": bytes,
            "datetime": datetime.datetime,
        }[self.value]


_NUMPY = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


def _data_type(name: object, what: str) -> DataType:
    try:
        return DataType(name)
    except ValueError:
        raise InvalidInputError(
            f"{what}: unknown type {name!r} (one of {', '.join(t.value for t in DataType)})"
        ) from None


class ColSpec:
    """A column: ``type`` (a :class:`DataType`, or a complex type's JSON dict), optional ``name``."""

    def __init__(
        self, type: DataType | str | dict, name: str | None = None, optional: bool | None = None, required: bool = True
    ):
        self.type = type if isinstance(type, (DataType, dict)) else _data_type(type, f"column {name!r}")
        self.name = name
        self.required = (not optional) if optional is not None else required

    def to_dict(self) -> dict:
        out: dict[str, Any] = dict(self.type) if isinstance(self.type, dict) else {"type": self.type.value}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ColSpec:
        kind = d.get("type")
        body = {k: v for k, v in d.items() if k not in ("name", "required", "optional")}
        spec_type: DataType | dict = (
            body
            if kind in ("array", "object", "map", "any", "sparkml_vector")
            else _data_type(kind, f"column {d.get('name')!r}")
        )
        required = d.get("required", not d.get("optional", False))
        return cls(spec_type, d.get("name"), required=bool(required))

    def __eq__(self, other) -> bool:
        return isinstance(other, ColSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        kind = self.type.value if isinstance(self.type, DataType) else self.type.get("type")
        return f"{self.name!r}: {kind}" + ("" if self.required else " (optional)")


class TensorSpec:
    """A tensor: a numpy ``dtype`` and a ``shape`` (``-1`` for a free dimension), optional ``name``."""

    def __init__(self, type, shape: tuple | list, name: str | None = None):
        import numpy as np

        self.type = np.dtype(type)
        self.shape = tuple(shape)
        self.name = name

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"type": "tensor", "tensor-spec": {"dtype": self.type.name, "shape": list(self.shape)}}
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        spec = d.get("tensor-spec")
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise InvalidInputError(f"tensor spec {d!r} lacks tensor-spec dtype and shape")
        try:
            return cls(spec["dtype"], tuple(int(n) for n in spec["shape"]), d.get("name"))
        except TypeError:
            raise InvalidInputError(f"tensor spec {d!r}: unknown dtype {spec['dtype']!r}") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{self.name!r}: Tensor({self.type.name!r}, {self.shape!r})"


class Schema:
    """A list of :class:`ColSpec` or of :class:`TensorSpec` (not both)."""

    def __init__(self, inputs: list):
        if inputs and len({isinstance(i, TensorSpec) for i in inputs}) > 1:
            raise InvalidInputError("a schema holds either columns or tensors, not both")
        self.inputs = list(inputs)

    def is_tensor_spec(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return bool(self.inputs) and all(i.name is not None for i in self.inputs)

    def input_names(self) -> list:
        return [i.name if i.name is not None else n for n, i in enumerate(self.inputs)]

    def required_input_names(self) -> list:
        return [i.name for i in self.inputs if getattr(i, "required", True)]

    def to_dict(self) -> list[dict]:
        return [i.to_dict() for i in self.inputs]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Schema:
        items = _json_list(text, "schema")
        return cls([TensorSpec.from_dict(d) if d.get("type") == "tensor" else ColSpec.from_dict(d) for d in items])

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):
        return iter(self.inputs)

    def __eq__(self, other) -> bool:
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "[" + ", ".join(map(repr, self.inputs)) + "]"


class ParamSpec:
    """An inference parameter: ``name``, ``dtype``, ``default`` and ``shape`` (None or ``(-1,)``)."""

    def __init__(self, name: str, dtype: DataType | str, default: Any, shape: tuple | None = None):
        self.name = name
        self.dtype = dtype if isinstance(dtype, DataType) else _data_type(dtype, f"param {name!r}")
        self.default = default
        self.shape = tuple(shape) if shape is not None else None

    def to_dict(self) -> dict:
        default = self.default
        if hasattr(default, "isoformat"):
            default = default.isoformat()
        return {
            "name": self.name,
            "type": self.dtype.value,
            "default": default,
            "shape": list(self.shape) if self.shape is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ParamSpec:
        if not isinstance(d.get("name"), str):
            raise InvalidInputError(f"param spec {d!r} has no name")
        return cls(d["name"], str(d.get("type")), d.get("default"), d.get("shape"))

    def __eq__(self, other) -> bool:
        return isinstance(other, ParamSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{self.name!r}: {self.dtype.value} (default: {self.default!r})"


class ParamSchema:
    def __init__(self, params: list[ParamSpec]):
        self.params = list(params)

    def to_json(self) -> str:
        return json.dumps([p.to_dict() for p in self.params])

    @classmethod
    def from_json(cls, text: str) -> ParamSchema:
        return cls([ParamSpec.from_dict(d) for d in _json_list(text, "params schema")])

    def __iter__(self):
        return iter(self.params)

    def __eq__(self, other) -> bool:
        return isinstance(other, ParamSchema) and [p.to_dict() for p in self.params] == [
            p.to_dict() for p in other.params
        ]


class ModelSignature:
    """``inputs``, ``outputs`` (:class:`Schema`) and ``params`` (:class:`ParamSchema`), each optional."""

    def __init__(self, inputs: Schema | None = None, outputs: Schema | None = None, params: ParamSchema | None = None):
        self.inputs = inputs
        self.outputs = outputs
        self.params = params

    def to_dict(self) -> dict:
        """The ``signature`` mapping of MLmodel: each part a JSON string, or None."""
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": self.params.to_json() if self.params is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSignature:
        if not isinstance(d, dict):
            raise InvalidInputError(f"signature {d!r} is not a mapping")
        return cls(
            Schema.from_json(d["inputs"]) if d.get("inputs") else None,
            Schema.from_json(d["outputs"]) if d.get("outputs") else None,
            ParamSchema.from_json(d["params"]) if d.get("params") else None,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, ModelSignature) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"inputs: {self.inputs!r}\noutputs: {self.outputs!r}\nparams: {self.params!r}"


def _json_list(text: object, what: str) -> list[dict]:
    try:
        items = json.loads(text) if isinstance(text, str) else text
    except ValueError as e:
        raise InvalidInputError(f"{what} is not JSON: {e}") from None
    except RecursionError:  # a teammate's MLmodel: a few kilobytes of '[' exhaust the parser's stack
        raise InvalidInputError(f"{what} is JSON nested deeper than the parser's stack") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInputError(f"{what} is not a JSON list of objects")
    return items


# -- inference -------------------------------------------------------------
def data_type_of(dtype, values=None) -> DataType | None:
    """MLflow's type for a numpy/pandas dtype (an object column by its first value), else None."""
    import numpy as np

    kind = getattr(dtype, "kind", None)
    if kind == "b":
        return DataType.boolean
    if kind in ("i", "u"):
        return DataType.long if dtype.itemsize > 4 or (kind == "u" and dtype.itemsize == 4) else DataType.integer
    if kind == "f":
        return DataType.float if dtype.itemsize <= 4 else DataType.double
    if kind == "M":
        return DataType.datetime
    if kind in ("U", "T") or str(dtype) in ("string", "str"):
        return DataType.string
    if kind == "S":
        return DataType.binary
    if kind == "O" and values is not None:
        first = next((v for v in values if v is not None), None)
        if isinstance(first, str):
            return DataType.string
        if isinstance(first, (bytes, bytearray)):
            return DataType.binary
        if isinstance(first, (bool, np.bool_)):
            return DataType.boolean
    return None


def infer_schema(data) -> Schema:
    """MLflow's schema of one piece of data (``mlflow.types.utils._infer_schema``)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, dict) and data and all(isinstance(v, np.ndarray) for v in data.values()):
        return Schema([TensorSpec(_tensor_type(v.dtype), (-1, *v.shape[1:]), str(k)) for k, v in data.items()])
    if isinstance(data, dict) and all(np.isscalar(v) or v is None for v in data.values()):
        data = pd.DataFrame([data])
    elif isinstance(data, dict):
        data = pd.DataFrame(data)
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        data = pd.DataFrame(data)
    if isinstance(data, pd.Series):
        kind = data_type_of(data.dtype, data.values)
        if kind is None:
            raise InvalidInputError(f"cannot infer a column type from dtype {data.dtype}")
        return Schema([ColSpec(kind, data.name if isinstance(data.name, str) else None)])
    if isinstance(data, pd.DataFrame):
        specs = []
        for name in data.columns:
            column = data[name]
            kind = data_type_of(column.dtype, column.values)
            if kind is None:
                raise InvalidInputError(f"cannot infer a type for column {name!r} (dtype {column.dtype})")
            specs.append(ColSpec(kind, str(name), required=not bool(column.isna().any())))
        return Schema(specs)
    if isinstance(data, list):
        data = np.asarray(data)
        if data.dtype.kind in ("U", "O"):
            kind = data_type_of(data.dtype, data.ravel())
            if kind is None:
                raise InvalidInputError(f"cannot infer a type from a list of {data.dtype}")
            return Schema([ColSpec(kind)])
    if hasattr(data, "detach") and hasattr(data, "numpy"):  # a torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, np.ndarray):
        if data.dtype.kind == "O":
            raise InvalidInputError("cannot infer a tensor spec from an object array")
        return Schema([TensorSpec(_tensor_type(data.dtype), (-1, *data.shape[1:]))])
    raise InvalidInputError(f"cannot infer a schema from {type(data).__name__}")


def _tensor_type(dtype):
    """A tensor's dtype as MLflow records it: strings and bytes without their width."""
    import numpy as np

    return np.dtype("str") if dtype.char == "U" else np.dtype("bytes") if dtype.char == "S" else dtype


def _infer_params(params: dict) -> ParamSchema:
    import numpy as np

    specs = []
    for name, value in params.items():
        shape = None
        sample = value
        if isinstance(value, (list, np.ndarray)):
            shape, sample = (-1,), (value[0] if len(value) else None)
        kind = data_type_of(np.asarray(sample).dtype, [sample]) if sample is not None else None
        if kind is None:
            raise InvalidInputError(f"cannot infer a type for param {name!r} from {value!r}")
        if kind == DataType.integer:
            kind = DataType.long  # as MLflow: Python ints are longs
        specs.append(ParamSpec(name, kind, value.tolist() if isinstance(value, np.ndarray) else value, shape))
    return ParamSchema(specs)


def infer_signature(model_input: Any = None, model_output: Any = None, params: dict | None = None) -> ModelSignature:
    """A signature from example data, as MLflow's ``infer_signature``: a DataFrame gives named
    columns, a numpy array a tensor spec with a free first dimension.

    >>> infer_signature(X_train, model.predict(X_train), params={"top_k": 3})
    """
    return ModelSignature(
        infer_schema(model_input) if model_input is not None else None,
        infer_schema(model_output) if model_output is not None else None,
        _infer_params(params) if params else None,
    )

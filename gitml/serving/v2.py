"""The V2 (Open Inference, KServe's) protocol over one loaded model: the routes and the
tensor encoding, shared by ``gitml serve`` and the MLServer runtime
(:mod:`gitml.serving.mlserver`), so both answer a request with the same outputs.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready           200 {"live": true} / {"ready": true}
    GET  /v2/models/<name>[/versions/<v>]            model metadata (inputs, outputs)
    GET  /v2/models/<name>[/versions/<v>]/ready      200 {"name": ..., "ready": true}
    POST /v2/models/<name>[/versions/<v>]/infer      {"inputs": [tensor, ...]} -> {"outputs": [...]}

A tensor is ``{"name", "shape", "datatype", "data"}``; ``data`` is flat (row-major) or
nested to the shape. Inputs map to the signature's columns by name (each of shape ``[N]``
or ``[N, 1]``), or one input of shape ``[N, columns]`` stands for the whole table in the
signature's order; a tensor signature takes the inputs by its tensors' names. A refusal
is a 4xx ``{"error": message}`` (the protocol's form) naming the input and what was wrong.
"""

from __future__ import annotations

import math
from typing import Any

from gitml.errors import RequestError

# V2 datatype -> numpy dtype name
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
# the V2 datatypes a signature's column type takes (wider integers and floats are read as the column's)
_ACCEPTS = {
    "boolean": {"BOOL"},
    "integer": {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"},
    "long": {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"},
    "float": {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"},
    "string": {"BYTES"},
    "binary": {"BYTES"},
    "datetime": {"BYTES"},
}
_ACCEPTS["double"] = _ACCEPTS["float"]
_V2_OF_COLUMN = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
MAX_DIMS = 8
_NAME_MAX = 256


def _bad(message: str, status: int = 400) -> RequestError:
    return RequestError(status, "BAD_REQUEST", message)


def _show(name: object) -> str:
    text = str(name)
    return repr(text if len(text) <= 60 else text[:60] + "...")


def datatype_of(dtype) -> str:
    """The V2 datatype of a numpy dtype (strings and objects: BYTES)."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'INT' if kind == 'i' else 'UINT'}{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


class V2Model:
    """The V2 view of one loaded model (a PyFuncModel) named ``name`` (``version`` or None)."""

    def __init__(
        self, model, *, name: str, version: str | None = None, max_cells: int | None = None, platform: str = "gitml"
    ):
        self.model, self.name, self.version, self.platform = model, name, version, platform
        self.max_cells = max_cells
        self.schema = model.metadata.get_input_schema()
        self.output_schema = model.metadata.get_output_schema()

    # -- routes ------------------------------------------------------------------------------
    def route(self, path: str, method: str) -> str:
        """What ``method path`` asks: ``server``, ``live``, ``ready``, ``model``, ``model_ready``
        or ``infer``; RequestError 404/405 for anything else."""
        if path in ("/v2", "/v2/"):
            action = "server"
        elif path in ("/v2/health/live", "/v2/health/ready"):
            action = path.rsplit("/", 1)[1]
        elif path.startswith("/v2/models/"):
            action = self._model_route(path[len("/v2/models/") :])
        else:
            raise _bad(
                "no such V2 endpoint: /v2, /v2/health/{live,ready}, /v2/models/<name>[/versions/<v>][/ready|/infer]",
                404,
            )
        wanted = "POST" if action == "infer" else "GET"
        if method != wanted and not (wanted == "GET" and method == "HEAD"):
            raise _bad(f"{path[:100]} takes {wanted}", 405)
        return action

    def _model_route(self, rest: str) -> str:
        parts = rest.split("/")
        name, parts = parts[0], parts[1:]
        version = None
        if len(parts) >= 2 and parts[0] == "versions":
            version, parts = parts[1], parts[2:]
        tail = "/".join(parts)
        action = {"": "model", "ready": "model_ready", "infer": "infer"}.get(tail)
        if action is None:
            raise _bad(f"no such V2 endpoint under /v2/models/{_show(name)[1:-1]}: it has /ready and /infer", 404)
        if name != self.name:
            raise _bad(f"no model named {_show(name)} here: this server serves {self.name!r}", 404)
        if version is not None and version != self.version:
            held = f"version {self.version!r}" if self.version is not None else "no version"
            raise _bad(f"no version {_show(version)} of {self.name!r} here: this server serves {held}", 404)
        return action

    def server_metadata(self, version: str) -> dict:
        return {"name": "gitml", "version": version, "extensions": []}

    def metadata(self) -> dict:
        """The model's metadata: name, versions, platform, its inputs and outputs as tensors."""
        out: dict[str, Any] = {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": self.platform,
            "inputs": self.tensors(self.schema),
            "outputs": self.tensors(self.output_schema),
        }
        return out

    @staticmethod
    def tensors(schema) -> list[dict]:
        """A signature's inputs (or outputs) as V2 tensor metadata."""
        if schema is None:
            return []
        found = []
        for i, spec in enumerate(schema.inputs):
            name = spec.name if spec.name is not None else f"input-{i}"
            if schema.is_tensor_spec():
                found.append({"name": name, "datatype": datatype_of(spec.type), "shape": list(spec.shape)})
            else:
                found.append({"name": name, "datatype": _V2_OF_COLUMN[spec.type.value], "shape": [-1]})
        return found

    # -- inference ---------------------------------------------------------------------------
    def infer(self, request: Any) -> dict:
        """The response to a parsed inference request; RequestError when refused."""
        if not isinstance(request, dict):
            raise _bad('the body must be a JSON object with "inputs"')
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise _bad('"inputs" must be a non-empty list of tensors {name, shape, datatype, data}')
        tensors: dict[str, Any] = {}
        datatypes: dict[str, str] = {}
        for i, tensor in enumerate(inputs):
            name, datatype, array = self._tensor(tensor, i)
            if name in tensors:
                raise _bad(f"input {_show(name)} is given twice")
            tensors[name], datatypes[name] = array, datatype
        data = self._model_input(tensors, datatypes)
        try:
            predictions = self.model.predict(data)
        except Exception as e:
            from gitml.errors import GitmlError

            if isinstance(e, GitmlError):
                raise _bad(str(e)) from None
            raise _bad(
                f"the model failed on this input ({type(e).__name__}); check it against the model's signature"
            ) from None
        outputs = self._outputs(predictions)
        wanted = request.get("outputs")
        if wanted is not None:
            if not isinstance(wanted, list) or not all(
                isinstance(w, dict) and isinstance(w.get("name"), str) for w in wanted
            ):
                raise _bad('"outputs" must be a list of {"name": ...}')
            names = [w["name"] for w in wanted]
            known = {o["name"] for o in outputs}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise _bad(f"no output named {_show(unknown[0])}: the model's outputs are {sorted(known)}")
            outputs = [o for o in outputs if o["name"] in names]
        response: dict[str, Any] = {"model_name": self.name, "outputs": outputs}
        if self.version is not None:
            response["model_version"] = self.version
        if isinstance(request.get("id"), str):
            response["id"] = request["id"][:_NAME_MAX]
        return response

    def _tensor(self, tensor: Any, i: int):
        """``(name, datatype, numpy array of the shape)`` of one input tensor."""
        if not isinstance(tensor, dict):
            raise _bad(f"inputs[{i}] is not an object {{name, shape, datatype, data}}")
        name = tensor.get("name")
        if not isinstance(name, str) or not name or len(name) > _NAME_MAX:
            raise _bad(f"inputs[{i}] has no name (a non-empty string of at most {_NAME_MAX} characters)")
        what = f"input {_show(name)}"
        if tensor.get("parameters", {}) and not isinstance(tensor.get("parameters"), dict):
            raise _bad(f"{what}: parameters must be an object")
        if isinstance(tensor.get("parameters"), dict) and tensor["parameters"].get("binary_data_size") is not None:
            raise _bad(f"{what}: the binary tensor extension is not supported: send the data as JSON", 415)
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise _bad(f"{what}: its datatype is not one of {', '.join(DATATYPES)}")
        shape = tensor.get("shape")
        if (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise _bad(f"{what}: shape must be a list of 1 to {MAX_DIMS} sizes (integers >= 0)")
        cells = math.prod(shape)
        if self.max_cells is not None and cells > self.max_cells:
            raise RequestError(
                413,
                "REQUEST_LIMIT_EXCEEDED",
                f"{what}: shape {shape} holds {cells} values, over the server's limit of {self.max_cells}",
            )
        if "data" not in tensor:
            raise _bad(f"{what} has no data")
        flat = _flatten(tensor["data"], what, cells)
        if len(flat) != cells:
            raise _bad(f"{what}: shape {shape} holds {cells} values but data has {len(flat)}")
        array = _typed_array(flat, datatype, what)
        return name, datatype, array.reshape(shape)

    def _model_input(self, tensors: dict, datatypes: dict):
        """The model's input: a DataFrame of the signature's columns, or the tensors."""
        import pandas as pd

        schema = self.schema
        if schema is not None and schema.is_tensor_spec():
            specs = {spec.name: spec for spec in schema.inputs}
            if len(specs) == 1 and None in specs:
                if len(tensors) != 1:
                    raise _bad(f"the model takes one tensor; the request has {len(tensors)} inputs")
                return next(iter(tensors.values()))
            unknown = [n for n in tensors if n not in specs]
            if unknown:
                raise _bad(
                    f"input {_show(unknown[0])} is not one of the model's tensors: {sorted(str(s) for s in specs)}"
                )
            return dict(tensors)
        columns = list(schema.input_names()) if schema is not None and schema.has_input_names() else None
        if len(tensors) == 1:
            ((name, array),) = tensors.items()
            if (columns is None or name not in columns) and array.ndim == 2:
                if columns is not None and array.shape[1] != len(columns):
                    raise _bad(
                        f"input {_show(name)} has {array.shape[1]} columns; the model's signature has "
                        f"{len(columns)} ({', '.join(map(str, columns[:10]))}{', ...' if len(columns) > 10 else ''})"
                    )
                if columns is None:
                    return pd.DataFrame(array)
                return pd.DataFrame(
                    {
                        spec.name: self._as_column(name, datatypes[name], spec, array[:, i])
                        for i, spec in enumerate(schema.inputs)
                    }
                )
        frame: dict[str, Any] = {}
        rows = None
        for name, array in tensors.items():
            if columns is not None and name not in columns:
                raise _bad(
                    f"input {_show(name)} is not a column of the model's signature "
                    f"({', '.join(map(str, columns[:10]))}{', ...' if len(columns) > 10 else ''})"
                )
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise _bad(
                    f"input {_show(name)} stands for one column: its shape must be [N] or [N, 1], "
                    f"not {list(array.shape)}"
                )
            if rows is not None and len(array) != rows:
                raise _bad(f"input {_show(name)} has {len(array)} rows; the inputs before it have {rows}")
            rows = len(array)
            frame[name] = array
        if schema is not None and columns is not None:
            for spec in schema.inputs:
                if spec.name in frame:
                    frame[spec.name] = self._as_column(spec.name, datatypes[spec.name], spec, frame[spec.name])
            missing = [c for c in schema.required_input_names() if c not in frame]
            if missing:
                raise _bad(
                    f"the request lacks the model's column {_show(missing[0])}"
                    + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                )
            return pd.DataFrame({c: frame[c] for c in columns if c in frame})
        return pd.DataFrame(frame)

    @staticmethod
    def _as_column(name: str, datatype: str, spec, values):
        """``values`` as the signature's column ``spec`` holds them (integers read into a
        float column); refused when the datatype does not fit the column's type."""
        column_type = spec.type.value
        if datatype not in _ACCEPTS[column_type]:
            column = f"column {spec.name!r}" if spec.name is not None else "input"
            raise _bad(
                f"input {_show(name)} is {datatype} but the model's {column} is {column_type} "
                f"(send {_V2_OF_COLUMN[column_type]})"
            )
        if column_type in ("float", "double", "integer", "long") and values.dtype != spec.type.to_numpy():
            return values.astype(spec.type.to_numpy())
        return values

    def _outputs(self, predictions) -> list[dict]:
        """The predictions as output tensors: a DataFrame's columns or a dict's entries one
        tensor each, anything else one tensor (named after the signature's one output, else
        ``predict``)."""
        import numpy as np
        import pandas as pd

        named = (
            self.output_schema.input_names()
            if self.output_schema is not None and self.output_schema.has_input_names()
            else []
        )
        if isinstance(predictions, pd.DataFrame):
            parts = [(str(c), predictions[c].to_numpy()) for c in predictions.columns]
        elif isinstance(predictions, dict):
            parts = [(str(k), np.asarray(v)) for k, v in predictions.items()]
        else:
            values = predictions.to_numpy() if isinstance(predictions, pd.Series) else np.asarray(predictions)
            parts = [(str(named[0]) if len(named) == 1 else "predict", values)]
        return [_encode(name, values) for name, values in parts]


def _flatten(data: Any, what: str, cells: int) -> list:
    """The values of ``data`` (flat or nested lists) in row-major order, refusing more than
    ``cells`` values before building them."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) > MAX_DIMS:
                    raise _bad(f"{what}: data is nested deeper than {MAX_DIMS} levels")
                stack.append(iter(x))
                break
            out.append(x)
            if len(out) > cells:
                raise _bad(f"{what}: data has more values than its shape holds ({cells})")
        else:
            stack.pop()
    return out


def _typed_array(flat: list, datatype: str, what: str):
    """``flat`` as a numpy array of ``datatype``'s dtype; refused when a value is not of it."""
    import numpy as np

    try:
        raw = np.asarray(flat) if flat else np.asarray([], dtype=DATATYPES[datatype])
    except (ValueError, OverflowError):
        raise _bad(f"{what}: data holds values of mixed kinds or nested unevenly") from None
    kind = raw.dtype.kind
    if datatype == "BYTES":
        if kind not in "UO" or (kind == "O" and not all(isinstance(x, str) for x in flat)):
            raise _bad(f"{what} is BYTES but its data holds values that are not strings")
        return raw.astype(object)
    if datatype == "BOOL":
        if kind != "b" and flat:
            raise _bad(f"{what} is BOOL but its data holds values that are not true or false")
        return raw.astype(bool)
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind in "iu":
        if flat and (kind not in "iu" or any(isinstance(x, bool) for x in flat[:1])):
            raise _bad(f"{what} is {datatype} but its data holds values that are not integers")
        info = np.iinfo(dtype)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise _bad(f"{what}: a value is outside {datatype}'s range [{info.min}, {info.max}]")
        return raw.astype(dtype)
    if flat and kind not in "iuf":
        raise _bad(f"{what} is {datatype} but its data holds values that are not numbers")
    return raw.astype(dtype)


def _encode(name: str, values) -> dict:
    import numpy as np

    values = np.asarray(values)
    datatype = datatype_of(values.dtype)
    if datatype == "BYTES":
        data = [
            v if isinstance(v, str) else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for v in values.ravel().tolist()
        ]
    else:
        data = values.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(values.shape), "data": data}


def model_name_of(model_uri: str) -> tuple[str, str | None]:
    """The name (and version, when the URI pins one) a model is served under in V2 routes:
    ``models:/churn/3`` -> ``("churn", "3")``, ``models:/churn@prod`` -> ``("churn", None)``,
    a folder or ``runs:/<run>/model`` -> the folder's name."""
    import os

    from gitml.modelformat.uri import parse_model_uri

    parsed = parse_model_uri(model_uri)
    if parsed.kind == "models" and parsed.name:
        return parsed.name, parsed.version if parsed.version and parsed.version.isdigit() else None
    base = os.path.basename(os.path.normpath(parsed.path.removeprefix("file://"))) if parsed.path else ""
    return (base or "model"), None

"""Batch scoring of files and export of verified model folders (``gitml predict``,
``gitml models export``).

    predict_file("runs:/<run>/model", "input.csv", "out.json")
    export_model("runs:/<run>/model", "served/model")   # a plain MLmodel folder for other servers

Input: CSV, JSON or Parquet (by ``content_type`` or the file's extension). JSON is one of
MLflow's scoring forms (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``) or a bare records/split table. Output: ``{"predictions": [...]}`` as MLflow's
scoring server writes it, or CSV when the output file ends in ``.csv``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from gitml.errors import BadInputFileError, ConflictError, InputTooLargeError, InvalidInputError, NotFoundError

CONTENT_TYPES = {
    "csv": "csv",
    "text/csv": "csv",
    "json": "json",
    "application/json": "json",
    "parquet": "parquet",
    "application/x-parquet": "parquet",
}
CHUNK_ROWS = 10_000


def _kind(path: str, content_type: str | None) -> str:
    if content_type is not None:
        kind = CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if kind is None:
            raise InvalidInputError(f"content type {content_type!r} is not one of csv, json, parquet")
        return kind
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("csv", "json", "parquet"):
        raise InvalidInputError(
            f"cannot tell the format of {path!r} from its extension: give --content-type csv|json|parquet"
        )
    return ext


def _typed(frame, schema):
    """Columns the signature declares float/double read as floats (a CSV of whole numbers
    reads as int64, which MLflow's rules would refuse), as MLflow's server parses with the schema."""
    from gitml.modelformat.signature import ColSpec, DataType

    if schema is None or schema.is_tensor_spec():
        return frame
    for spec in schema.inputs:
        if isinstance(spec, ColSpec) and spec.name in frame.columns and spec.type in (DataType.float, DataType.double):
            if frame[spec.name].dtype.kind in "iu":
                frame[spec.name] = frame[spec.name].astype(spec.type.to_numpy())
    return frame


def _too_large(what: str, cells: int, max_cells: int) -> InputTooLargeError:
    return InputTooLargeError(
        f"{what} holds a table of {cells:,} cells (rows x columns), over the limit of {max_cells:,}"
    )


def _rows_cells(rows: Any, columns: Any = None) -> int:
    """The cells pandas makes of ``rows`` (a JSON list of lists or of records): rows times
    the widest row, or the union of the records' keys (records with a thousand different
    keys each make a thousand columns for every row)."""
    if not isinstance(rows, list):
        return 0
    width = len(columns) if isinstance(columns, list) else 0
    keys: set = set()
    for row in rows:
        if isinstance(row, dict):
            keys.update(row)
        elif isinstance(row, list):
            width = max(width, len(row))
    return len(rows) * max(width, len(keys), 1)


def _json_cells(payload: Any) -> int:
    if isinstance(payload, list):
        return _rows_cells(payload)
    if not isinstance(payload, dict):
        return 0
    split = payload.get("dataframe_split")
    if isinstance(split, dict):
        return _rows_cells(split.get("data"), split.get("columns"))
    for name in ("dataframe_records", "instances", "inputs"):
        if name in payload:
            return _rows_cells(payload[name])
    return _rows_cells(payload.get("data"), payload.get("columns"))


def table_from_json(payload: Any, *, max_cells: int | None = None, what: str = "the input"):
    """A DataFrame (or array) from one of MLflow's JSON scoring forms; InputTooLargeError
    when it would hold over ``max_cells`` cells."""
    import numpy as np
    import pandas as pd

    if max_cells is not None and (cells := _json_cells(payload)) > max_cells:
        raise _too_large(what, cells, max_cells)
    if isinstance(payload, dict):
        keys = set(payload) - {"params"}
        if keys == {"dataframe_split"} and isinstance(payload["dataframe_split"], dict):
            split = payload["dataframe_split"]
            return pd.DataFrame(split.get("data"), columns=split.get("columns"))
        if keys == {"dataframe_records"}:
            return pd.DataFrame(payload["dataframe_records"])
        if keys in ({"instances"}, {"inputs"}):
            value = payload[keys.pop()]
            if isinstance(value, dict):
                return {k: np.asarray(v) for k, v in value.items()}
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                return pd.DataFrame(value)
            return np.asarray(value)
        if "columns" in payload and "data" in payload:
            return pd.DataFrame(payload["data"], columns=payload["columns"])
        raise BadInputFileError("JSON input must hold one of dataframe_split, dataframe_records, instances or inputs")
    if isinstance(payload, list):
        return pd.DataFrame(payload)
    raise BadInputFileError("JSON input must be an object or a list of records")


def read_input(path: str, content_type: str | None = None, schema=None):
    """The table in ``path`` (and the params a JSON input carries), typed by ``schema``."""
    kind = _kind(path, content_type)
    try:
        with open(path, "rb") as f:
            return read_table(f, kind, schema, what=repr(path))
    except FileNotFoundError:
        raise NotFoundError(f"no input file {path!r}") from None


def _unreadable(what: str, kind: str, e: BaseException) -> BadInputFileError:
    first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return BadInputFileError(f"{what} is not readable as {kind}: {first}")


def _csv_cells(data: bytes) -> int:
    """At least the cells pandas makes of a CSV: its lines times the header's fields, one
    more for an index column (a blank line or a quoted line break only counts more)."""
    import csv

    header = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    fields = len(next(csv.reader([header]), None) or [None])
    return (data.count(b"\n") + 1) * (fields + 1)


def _check_parquet(data: bytes, max_cells: int, what: str) -> None:
    """Refuse a Parquet file whose table would be over ``max_cells`` cells (the values its
    metadata counts, repeated values and nested lists included) or over 8 bytes a cell
    (the uncompressed pages, and the strings as they would be once their dictionary is
    expanded), reading no more than its dictionary-encoded text columns."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    max_bytes = 8 * max_cells
    try:
        file = pq.ParquetFile(io.BytesIO(data))
        meta = file.metadata
        values = size = 0
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            for j in range(group.num_columns):
                column = group.column(j)
                values += max(column.num_values, group.num_rows)
                size += column.total_uncompressed_size
        cells = max(meta.num_rows * meta.num_columns, values)
        if cells > max_cells:
            raise _too_large(what, cells, max_cells)
        if size > max_bytes:
            raise InputTooLargeError(f"{what} decompresses to {size:,} bytes, over the limit of {max_bytes:,}")
        texts = [
            f.name
            for f in file.schema_arrow
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type)
            or pa.types.is_large_binary(f.type)
        ]
        if not texts:
            return
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=texts).read(columns=texts)
    except (pa.ArrowException, OSError, ValueError) as e:
        if isinstance(e, InputTooLargeError):
            raise
        raise _unreadable(what, "parquet", e) from None
    dense = 0
    for name in texts:
        for chunk in table.column(name).chunks:
            if pa.types.is_dictionary(chunk.type):
                dense += pc.sum(pc.take(pc.binary_length(chunk.dictionary), chunk.indices)).as_py() or 0
            else:
                dense += chunk.nbytes
    if dense > max_bytes:
        raise InputTooLargeError(f"{what} holds {dense:,} bytes of text once expanded, over the limit of {max_bytes:,}")


def read_table(
    source,
    kind: str,
    schema=None,
    *,
    what: str = "the input",
    loads: Callable[[bytes], Any] | None = None,
    max_cells: int | None = None,
):
    """The table (and the params a JSON input carries) in ``source`` (a binary file or
    bytes) of ``kind`` csv, json or parquet, typed by ``schema``: the one reader of
    ``gitml predict`` and ``gitml serve``. ``loads`` parses JSON (default ``json.loads``).
    ``max_cells``: refuse (InputTooLargeError) a table of more rows x columns, before
    it is built (a small CSV of empty fields or Parquet of repeated values can expand
    to gigabytes). Raises BadInputFileError naming ``what`` and the parser's first line
    (never the input)."""
    import io

    import pandas as pd

    if max_cells is not None and kind in ("csv", "parquet"):
        data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else source.read()
        if kind == "csv" and (cells := _csv_cells(data)) > max_cells:
            raise _too_large(what, cells, max_cells)
        if kind == "parquet":
            try:
                _check_parquet(data, max_cells, what)
            except ImportError:
                raise InvalidInputError("Parquet input needs pyarrow: pip install 'gitml[parquet]'") from None
        source = data
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        if kind == "json":
            payload = (loads or json.loads)(source.read())
        elif kind == "csv":
            data = pd.read_csv(source)
        else:
            try:
                data = pd.read_parquet(source)
            except ImportError:
                raise InvalidInputError("Parquet input needs pyarrow: pip install 'gitml[parquet]'") from None
    except (ValueError, TypeError, RecursionError, pd.errors.ParserError, UnicodeDecodeError) as e:
        if isinstance(e, InvalidInputError):
            raise
        raise _unreadable(what, kind, e) from None
    if kind == "json":
        return table_from_payload(payload, schema, what=what, max_cells=max_cells)
    return _typed(data, schema), None


def table_from_payload(payload: Any, schema=None, *, what: str = "the input", max_cells: int | None = None):
    """The table and params of a parsed JSON input (one of MLflow's scoring forms),
    typed by ``schema``; BadInputFileError when it is none of them, InputTooLargeError
    when it would hold over ``max_cells`` cells."""
    import pandas as pd

    try:
        data = table_from_json(payload, max_cells=max_cells, what=what)
    except (ValueError, TypeError) as e:
        if isinstance(e, InvalidInputError):
            raise
        raise _unreadable(what, "json", e) from None
    params = payload.get("params") if isinstance(payload, dict) else None
    if params is not None and not isinstance(params, dict):
        raise BadInputFileError(f"{what}: params must be a JSON object")
    if isinstance(data, pd.DataFrame):
        return _typed(data, schema), params
    return _tensors(data, schema, what), params


def _tensors(data, schema, what: str):
    """``inputs``/``instances`` arrays in the dtypes of a tensor signature, as MLflow's server
    parses them (JSON numbers are float64; a float32 tensor takes them as float32)."""
    import numpy as np

    if schema is None or not schema.is_tensor_spec():
        return data
    try:
        if isinstance(data, np.ndarray) and len(schema.inputs) == 1 and data.dtype != object:
            return data.astype(schema.inputs[0].type)
        if isinstance(data, dict):
            types = {spec.name: spec.type for spec in schema.inputs}
            return {k: v.astype(types[k]) if k in types and v.dtype != object else v for k, v in data.items()}
    except (ValueError, TypeError) as e:
        raise BadInputFileError(f"{what}: the inputs do not fit the signature's tensor types ({e})") from None
    return data


def _plain(predictions) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return json.loads(predictions.to_json(orient="records", date_format="iso"))
    if isinstance(predictions, pd.Series):  # as MLflow's server: the Series as a one-column frame's records
        return json.loads(pd.DataFrame(predictions).to_json(orient="records", date_format="iso"))
    if isinstance(predictions, np.ndarray):
        return predictions.tolist()
    if isinstance(predictions, dict):
        return {k: _plain(v) for k, v in predictions.items()}
    return predictions


def predictions_json(predictions) -> str:
    """``{"predictions": ...}`` as MLflow's scoring server writes it (DataFrames as records)."""
    return json.dumps({"predictions": _plain(predictions)})


def predict_table(model, data, params: dict | None = None, progress: Callable[[int, int], None] | None = None):
    """``model.predict`` over ``data`` in chunks of CHUNK_ROWS rows, calling
    ``progress(rows done, rows)``; the chunks' predictions joined."""
    import numpy as np
    import pandas as pd

    rows = len(data) if isinstance(data, (pd.DataFrame, np.ndarray)) else None
    if rows is None or rows <= CHUNK_ROWS:
        out = model.predict(data, params=params)
        if progress is not None and rows:
            progress(rows, rows)
        return out
    parts = []
    for start in range(0, rows, CHUNK_ROWS):
        chunk = (
            data.iloc[start : start + CHUNK_ROWS]
            if isinstance(data, pd.DataFrame)
            else data[start : start + CHUNK_ROWS]
        )
        parts.append(model.predict(chunk, params=params))
        if progress is not None:
            progress(min(start + CHUNK_ROWS, rows), rows)
    if isinstance(parts[0], (pd.DataFrame, pd.Series)):
        return pd.concat(parts)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [p for part in parts for p in part]


def predict_file(
    model_uri: str,
    input_path: str,
    output_path: str | None = None,
    *,
    content_type: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> str | None:
    """Score the table in ``input_path`` with the model at ``model_uri``; write the predictions
    to ``output_path`` (JSON ``{"predictions": ...}``, or CSV for a ``.csv`` name) or return
    them as JSON text when ``output_path`` is None.

    Raises NotFoundError, BadInputFileError, SchemaEnforcementError (naming the column),
    IntegrityError (a tampered model file)."""
    import pandas as pd

    from gitml.pyfunc import load_model

    model = load_model(model_uri)
    data, params = read_input(input_path, content_type, model.metadata.get_input_schema())
    predictions = predict_table(model, data, params, progress)
    if output_path is not None and output_path.lower().endswith(".csv"):
        frame = predictions if isinstance(predictions, pd.DataFrame) else pd.DataFrame(predictions)
        frame.to_csv(output_path, index=False)
        return None
    text = predictions_json(predictions)
    if output_path is None:
        return text
    with open(output_path, "w") as f:
        f.write(text)
    return None


def export_model(model_uri: str, dst: str) -> str:
    """Write the model at ``model_uri`` as a plain MLmodel folder ``dst`` (new or empty) for
    other servers (MLServer, KServe, ``mlflow models serve``). A run's model is verified
    against the run's manifest first; a folder is copied as it is. Returns ``dst``."""
    from gitml.modelformat.mlmodel import Model, model_files
    from gitml.modelformat.uri import local_model, parse_model_uri

    dst = os.path.abspath(dst)
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise ConflictError(f"{dst!r} exists and is not empty: export writes a new folder")
    if parse_model_uri(model_uri).kind == "path":
        folder, _ = local_model(model_uri)
        Model.load(folder)  # a model folder, or NotFoundError
        names = model_files(folder)  # regular files only: a link would copy a file from outside it
        created = not os.path.isdir(dst)
        try:
            for name in names:
                target = os.path.join(dst, *name.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(folder, name), target)
        except BaseException:
            if created:
                shutil.rmtree(dst, ignore_errors=True)
            raise
        return dst
    local_model(model_uri, dst)
    Model.load(dst)
    return dst

"""The ``MLmodel`` file of a model folder, read and written in MLflow's layout.

    flavors:
      python_function: {loader_module: mlflow.sklearn, model_path: model.pkl, env: {...}, python_version: 3.11.7}
      sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle, sklearn_version: 1.9.1}
    signature: {inputs: '<json>', outputs: '<json>', params: null}
    saved_input_example_info: {artifact_path: input_example.json, type: dataframe, pandas_orient: split, ...}
    model_uuid: 32 hex;  utc_time_created: '2026-01-01 12:00:00.000000';  run_id, artifact_path when logged

>>> Model.load("path/to/model").flavors["python_function"]["loader_module"]
'mlflow.sklearn'
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from typing import Any

from gitml.errors import CorruptRecordError, InvalidInputError, ModelIntegrityError, NotFoundError
from gitml.modelformat.signature import ModelSignature

MLMODEL = "MLmodel"
PYFUNC = "python_function"
EXAMPLE_FILE = "input_example.json"
SERVING_EXAMPLE_FILE = "serving_input_example.json"
_KNOWN = (
    "artifact_path",
    "run_id",
    "utc_time_created",
    "flavors",
    "signature",
    "saved_input_example_info",
    "model_uuid",
    "metadata",
    "model_size_bytes",
)


class Model:
    """An MLmodel: ``flavors``, ``signature``, ``saved_input_example_info``, ``model_uuid``,
    ``utc_time_created``, ``run_id`` and ``artifact_path`` (when logged), and any other key
    MLflow wrote (kept in ``extra`` and written back)."""

    def __init__(
        self,
        artifact_path: str | None = None,
        run_id: str | None = None,
        utc_time_created: str | None = None,
        flavors: dict | None = None,
        signature: ModelSignature | None = None,
        saved_input_example_info: dict | None = None,
        model_uuid: str | None = None,
        metadata: dict | None = None,
        model_size_bytes: int | None = None,
        **extra: Any,
    ):
        self.artifact_path = artifact_path
        self.run_id = run_id
        self.utc_time_created = utc_time_created or str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        self.flavors = flavors if flavors is not None else {}
        self.signature = signature
        self.saved_input_example_info = saved_input_example_info
        self.model_uuid = model_uuid or uuid.uuid4().hex
        self.metadata = metadata
        self.model_size_bytes = model_size_bytes
        self.extra = extra
        self.path: str | None = None  # the folder it was loaded from

    # -- MLflow's accessors ----------------------------------------------
    def get_input_schema(self):
        return self.signature.inputs if self.signature is not None else None

    def get_output_schema(self):
        return self.signature.outputs if self.signature is not None else None

    def get_params_schema(self):
        return self.signature.params if self.signature is not None else None

    def add_flavor(self, name: str, **params) -> Model:
        self.flavors[name] = params
        return self

    def load_input_example(self, path: str | None = None):
        """The saved input example (a DataFrame or array), or None."""
        folder = path or self.path
        if not self.saved_input_example_info or folder is None:
            return None
        return read_example(folder, self.saved_input_example_info)

    # -- the file --------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = dict(self.extra)
        if self.artifact_path is not None:
            out["artifact_path"] = self.artifact_path
        out["flavors"] = self.flavors
        out["model_uuid"] = self.model_uuid
        if self.run_id is not None:
            out["run_id"] = self.run_id
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
            out.setdefault("is_signature_from_type_hint", False)
            out.setdefault("type_hint_from_example", False)
        if self.saved_input_example_info is not None:
            out["saved_input_example_info"] = self.saved_input_example_info
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.model_size_bytes is not None:
            out["model_size_bytes"] = self.model_size_bytes
        out["utc_time_created"] = self.utc_time_created
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), default_flow_style=False)

    def save(self, path: str) -> None:
        """Write ``path`` (the MLmodel file, or a folder to write it in)."""
        if os.path.isdir(path):
            path = os.path.join(path, MLMODEL)
        with open(path, "w") as f:
            f.write(self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict) -> Model:
        if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
            raise InvalidInputError("an MLmodel is a mapping with a 'flavors' mapping")
        fields = dict(data)
        if isinstance(fields.get("signature"), dict):
            fields["signature"] = ModelSignature.from_dict(fields["signature"])
        elif fields.get("signature") is not None:
            raise InvalidInputError("the MLmodel's signature is not a mapping")
        return cls(**{k: v for k, v in fields.items() if isinstance(k, str)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model folder's MLmodel (``path`` is the folder or the file).
        Raises NotFoundError when there is none, CorruptRecordError when it does not parse."""
        from gitml.yamlread import read_yaml_file  # the guarded reader: a model folder may be anyone's

        path = os.fspath(path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        file = os.path.join(path, MLMODEL) if os.path.isdir(path) else path
        if os.path.islink(file) and not _within(folder, file):
            raise CorruptRecordError(file, "is a symbolic link out of the model folder")
        try:
            data = read_yaml_file(file, file)
        except FileNotFoundError:
            raise NotFoundError(f"{path!r} is not a model folder: it has no {MLMODEL} file") from None
        except OSError as e:
            raise CorruptRecordError(file, f"cannot be read ({e.strerror or e})") from None
        try:
            model = cls.from_dict(data)
        except InvalidInputError as e:
            raise CorruptRecordError(file, str(e)) from None
        model.path = folder
        return model


# -- input examples ------------------------------------------------------------
def _within(folder: str, path: str) -> bool:
    """Whether ``path``, links resolved, is ``folder`` or under it (links resolved too)."""
    root = os.path.realpath(folder)
    full = os.path.realpath(path)
    return full == root or full.startswith(root + os.sep)


def model_files(folder: str) -> list[str]:
    """The files of a model folder, relative (``/``-separated), sorted; ModelIntegrityError
    naming the first symbolic link or special file (a FIFO, a device): a model folder
    someone else wrote (a teammate's branch, an unpacked archive) must not make an export,
    a shipped copy or an image carry a file from outside it (``secret -> ~/.ssh/id_rsa``)."""
    import stat

    found = []
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise ModelIntegrityError(
                    f"model folder {folder!r}: {rel!r} is a symbolic link (to {os.readlink(full)!r}); "
                    "a model folder holds regular files only"
                )
            if not stat.S_ISREG(mode):
                raise ModelIntegrityError(f"model folder {folder!r}: {rel!r} is not a regular file")
            found.append(rel)
    return sorted(found)


def _jsonable(frame) -> dict:
    """A DataFrame as MLflow's ``split`` orient without the index (NaN as null, times as ISO)."""
    return json.loads(frame.to_json(orient="split", index=False, date_format="iso", default_handler=str))


def save_example(folder: str, example) -> tuple[dict | None, object]:
    """Write ``input_example.json`` and ``serving_input_example.json`` as MLflow does;
    returns ``saved_input_example_info`` (None for no example) and the example as a
    DataFrame or array (what a signature is inferred from)."""
    import numpy as np
    import pandas as pd

    if example is None:
        return None, None
    if isinstance(example, list) and not any(isinstance(v, np.ndarray) for v in example):
        # as MLflow 3: a list (of strings, numbers or mappings) is a json_object, written as it is
        info = {"artifact_path": EXAMPLE_FILE, "type": "json_object", "serving_input_path": SERVING_EXAMPLE_FILE}
        try:
            text = json.dumps(example)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"input_example is not JSON: {e}") from None
        with open(os.path.join(folder, EXAMPLE_FILE), "w") as f:
            f.write(text)
        with open(os.path.join(folder, SERVING_EXAMPLE_FILE), "w") as f:
            json.dump({"inputs": example}, f, indent=2)
        return info, example
    if isinstance(example, dict) and example:
        arrays = [isinstance(v, np.ndarray) for v in example.values()]
        if any(arrays) and not all(arrays):
            raise InvalidInputError("input_example mixes numpy arrays with other values in one mapping")
        if all(arrays):  # as MLflow 3: a mapping of arrays is an ndarray example, written as lists
            body: Any = {str(k): v.tolist() for k, v in example.items()}
            info = {"artifact_path": EXAMPLE_FILE, "type": "ndarray", "serving_input_path": SERVING_EXAMPLE_FILE}
            _write_example(folder, body, {"inputs": body})
            return info, example
        # as MLflow 3: any other mapping is a json_object, written as it is (its table infers the signature)
        try:
            body = json.loads(json.dumps(example, default=_json_scalar))
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"input_example is not JSON: {e}") from None
        info = {"artifact_path": EXAMPLE_FILE, "type": "json_object", "serving_input_path": SERVING_EXAMPLE_FILE}
        llm = any(key in body for key in ("messages", "prompt", "input"))  # MLflow's unified LLM request: as it is
        _write_example(folder, body, body if llm else {"inputs": body})
        scalars = all(np.isscalar(v) or v is None for v in example.values())
        try:
            return info, pd.DataFrame([example]) if scalars else pd.DataFrame(example)
        except ValueError:
            return info, None  # no table: no signature from it
    if isinstance(example, (dict, list)) and not isinstance(example, np.ndarray):
        try:
            example = pd.DataFrame(example)
        except ValueError as e:
            raise InvalidInputError(f"input_example is not a table: {e}") from None
    elif isinstance(example, pd.Series):
        example = example.to_frame()
    if isinstance(example, pd.DataFrame):
        body = _jsonable(example)
        info = {
            "artifact_path": EXAMPLE_FILE,
            "type": "dataframe",
            "pandas_orient": "split",
            "serving_input_path": SERVING_EXAMPLE_FILE,
        }
        serving = {"dataframe_split": body}
    elif isinstance(example, np.ndarray):
        body = example.tolist()  # as MLflow 3: the bare list (MLflow 2 wrote {"inputs": ...}, format: tf-serving)
        info = {"artifact_path": EXAMPLE_FILE, "type": "ndarray", "serving_input_path": SERVING_EXAMPLE_FILE}
        serving = {"inputs": body}
    else:
        raise InvalidInputError(
            f"input_example must be a DataFrame, dict, list or numpy array, not {type(example).__name__}"
        )
    with open(os.path.join(folder, EXAMPLE_FILE), "w") as f:
        json.dump(body, f)
    with open(os.path.join(folder, SERVING_EXAMPLE_FILE), "w") as f:
        json.dump(serving, f, indent=2)
    return info, example


def _json_scalar(value):
    """numpy scalars and arrays inside a json_object example, as MLflow's NumpyEncoder writes them."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _write_example(folder: str, body, serving) -> None:
    with open(os.path.join(folder, EXAMPLE_FILE), "w") as f:
        json.dump(body, f)
    with open(os.path.join(folder, SERVING_EXAMPLE_FILE), "w") as f:
        json.dump(serving, f, indent=2)


def read_example(folder: str, info: dict):
    import numpy as np
    import pandas as pd

    name = info.get("artifact_path", EXAMPLE_FILE)
    if (
        not isinstance(name, str)
        or os.path.isabs(name)
        or ".." in name.split("/")
        or not _within(folder, os.path.join(folder, name))  # a link out of the folder
    ):
        raise CorruptRecordError(f"{folder}/{MLMODEL}", f"input example path {name!r} leaves the model folder")
    from gitml.yamlread import load_json  # the example may be a teammate's: deep nesting is one line

    with open(os.path.join(folder, name), "rb") as f:
        body = load_json(f.read(), f"{folder}/{name}")
    if info.get("type") == "json_object":
        return body
    if info.get("type") == "ndarray":
        inputs = body["inputs"] if isinstance(body, dict) and set(body) == {"inputs"} else body  # MLflow 2's, 3's
        return {k: np.array(v) for k, v in inputs.items()} if isinstance(inputs, dict) else np.array(inputs)
    if isinstance(body, dict) and "columns" in body:
        return pd.DataFrame(body["data"], columns=body["columns"])
    return pd.DataFrame(body)


def inside(folder: str, relative: object, what: str, *, exists: bool = True) -> str:
    """``folder/relative``, refused (InvalidInputError) if it would leave ``folder``, and
    NotFoundError if it does not exist (unless ``exists`` is False)."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        raise InvalidInputError(f"{what} {relative!r} is not a relative path in the model folder")
    root = os.path.realpath(folder)
    full = os.path.realpath(os.path.join(root, relative))
    if full != root and not full.startswith(root + os.sep):
        raise InvalidInputError(f"{what} {relative!r} leaves the model folder")
    if exists and not os.path.exists(full):
        from gitml.errors import NotFoundError

        raise NotFoundError(f"the model folder {folder!r} lacks its {what} {relative!r}")
    return full

"""ONNX models in MLflow's ``onnx`` flavor, as ``mlflow.onnx`` writes and reads it; predictions
through onnxruntime.

    gitml.onnx.log_model(onnx_model, name="model", input_example=X[:5])
    gitml.pyfunc.load_model("runs:/<run>/model").predict(X)   # a DataFrame: one column per output

The folder is MLflow's: ``model.onnx`` (tensors over 1 KB in external data files beside it when
``save_as_external_data``; each must lie inside the folder), flavor keys ``onnx_version``, ``data``, ``providers``,
``onnx_session_options``, ``code``; ``loader_module: mlflow.onnx``. As MLflow, no signature is
inferred (give one). onnx and onnxruntime are optional (``pip install 'gitml[onnx]'``) and
imported only here; a provider the MLmodel names that this onnxruntime lacks is skipped for the CPU.
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "onnx"
LOADER = "mlflow.onnx"
MODEL_FILE = "model.onnx"
PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # MLflow's default list
_SESSION_OPTIONS = (
    "graph_optimization_level",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "execution_mode",
    "extra_session_config",
)


def _onnx():
    from gitml.modelformat.flavor import require

    return require("onnx", "onnx")


def save_model(
    onnx_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    onnx_execution_providers: list | None = None,
    onnx_session_options: dict | None = None,
    metadata: dict | None = None,
    save_as_external_data: bool = True,
    **kwargs,
) -> None:
    """Save an ``onnx.ModelProto`` as an MLflow model folder at ``path``."""
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    onnx = _onnx()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not isinstance(onnx_model, onnx.ModelProto):
        raise InvalidInputError(f"onnx_model must be an onnx.ModelProto, not {type(onnx_model).__name__}")
    if onnx_session_options is not None and (
        not isinstance(onnx_session_options, dict) or set(onnx_session_options) - set(_SESSION_OPTIONS)
    ):
        raise InvalidInputError(f"onnx_session_options takes only {', '.join(_SESSION_OPTIONS)}")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    onnx.save_model(onnx_model, os.path.join(folder, MODEL_FILE), save_as_external_data=save_as_external_data, **kwargs)
    import importlib.metadata

    runtime = importlib.metadata.version("onnxruntime") if _installed("onnxruntime") else None
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={
            "onnx_version": onnx.__version__,
            "data": MODEL_FILE,
            "providers": onnx_execution_providers if onnx_execution_providers is not None else list(PROVIDERS),
            "onnx_session_options": onnx_session_options,
            "code": code,
        },
        pyfunc_conf={"loader_module": LOADER, "data": MODEL_FILE, "code": code},
        packages=[f"onnx=={onnx.__version__}", f"onnxruntime=={runtime}" if runtime else "onnxruntime"],
        signature=signature,
        input_example=input_example,
        predict=None,  # as MLflow: no signature inferred
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def log_model(
    onnx_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    onnx_execution_providers: list | None = None,
    onnx_session_options: dict | None = None,
    metadata: dict | None = None,
    save_as_external_data: bool = True,
    *,
    name: str | None = None,
    run_id: str | None = None,
    **kwargs,
):
    """Save an ONNX model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        onnx_model=onnx_model,
        conda_env=conda_env,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        onnx_execution_providers=onnx_execution_providers,
        onnx_session_options=onnx_session_options,
        metadata=metadata,
        save_as_external_data=save_as_external_data,
        **kwargs,
    )


def _checked(folder: str, file: str) -> str:
    """``file`` once every external data file its tensors name is inside the model folder
    (a model file cannot make onnx read a file outside it) and the checker accepts it."""
    from gitml.pyfunc import inside

    onnx = _onnx()
    from onnx import external_data_helper

    proto = onnx.load(file, load_external_data=False)
    base = os.path.relpath(os.path.dirname(file), folder)
    for tensor in external_data_helper._get_all_tensors(proto):
        if external_data_helper.uses_external_data(tensor):
            location = external_data_helper.ExternalDataInfo(tensor).location
            inside(folder, os.path.normpath(os.path.join(base, location)), "external data file")
    onnx.checker.check_model(file)
    return file


def _load(folder: str, conf: dict):
    from gitml.modelformat.flavor import flavor_file

    return _onnx().load(_checked(folder, flavor_file(folder, conf, "data", MODEL_FILE)))


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The ``onnx.ModelProto`` (a run's model verified against its manifest first)."""
    from gitml.modelformat.flavor import on_disk

    return on_disk(model_uri, dst_path, FLAVOR, _load)


class _OnnxModelWrapper:
    """``predict`` over an onnxruntime session, as MLflow's: a DataFrame in gives a DataFrame of
    one column per output; an array or a feed dict gives a dict of arrays."""

    def __init__(self, file: str, conf: dict):
        from gitml.modelformat.flavor import require

        ort = require("onnxruntime", "onnx")
        providers = conf.get("providers") or PROVIDERS
        providers = [providers] if isinstance(providers, str) else providers
        names = [p[0] if isinstance(p, (list, tuple)) and p else p for p in providers]
        available = set(ort.get_available_providers())
        usable = [
            tuple(p) if isinstance(p, list) else p for p, n in zip(providers, names, strict=False) if n in available
        ]
        options = ort.SessionOptions()
        for key, value in (conf.get("onnx_session_options") or {}).items():
            if key in ("inter_op_num_threads", "intra_op_num_threads") and value:
                setattr(options, key, int(value))
            elif key == "execution_mode" and isinstance(value, str):
                options.execution_mode = (
                    ort.ExecutionMode.ORT_PARALLEL if value.upper() == "PARALLEL" else ort.ExecutionMode.ORT_SEQUENTIAL
                )
            elif key == "graph_optimization_level" and value:
                options.graph_optimization_level = ort.GraphOptimizationLevel(int(value))
            elif key == "extra_session_config" and isinstance(value, dict):
                for name, setting in value.items():
                    options.add_session_config_entry(str(name), str(setting))
        self.rt = ort.InferenceSession(file, providers=usable or ["CPUExecutionProvider"], sess_options=options)
        self.inputs = [(i.name, i.type) for i in self.rt.get_inputs()]
        self.output_names = [o.name for o in self.rt.get_outputs()]

    def predict(self, data, params: dict | None = None):
        import numpy as np
        import pandas as pd

        if isinstance(data, dict):
            feed = dict(data)
        elif isinstance(data, np.ndarray):
            if len(self.inputs) != 1:
                raise InvalidInputError(
                    f"the model takes {len(self.inputs)} inputs: give a dict or DataFrame of "
                    f"{', '.join(n for n, _ in self.inputs)}"
                )
            feed = {self.inputs[0][0]: data}
        elif isinstance(data, pd.DataFrame):
            feed = (
                {name: data[name].values for name, _ in self.inputs}
                if len(self.inputs) > 1
                else {self.inputs[0][0]: data.values}
            )
        else:
            raise InvalidInputError(
                f"an ONNX model takes a dict, a numpy array or a DataFrame, not {type(data).__name__}"
            )
        for name, kind in self.inputs:  # as MLflow: float64 fed to a float input is cast
            if kind == "tensor(float)" and getattr(feed.get(name), "dtype", None) == np.float64:
                feed[name] = feed[name].astype(np.float32)
        predicted = self.rt.run(self.output_names, feed)
        if isinstance(data, pd.DataFrame):
            return pd.DataFrame(
                {name: np.asarray(p).reshape(-1) for name, p in zip(self.output_names, predicted, strict=False)}
            )
        return dict(zip(self.output_names, predicted, strict=False))

    def get_raw_model(self):
        return self.rt


def _load_pyfunc(path: str, model_config: dict | None = None) -> _OnnxModelWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.onnx``."""
    from gitml.modelformat.flavor import flavor_conf, flavor_file, model_folder

    folder = model_folder(path)
    conf = flavor_conf(folder, FLAVOR)
    return _OnnxModelWrapper(_checked(folder, flavor_file(folder, conf, "data", MODEL_FILE)), conf)


__all__ = ["load_model", "log_model", "save_model"]

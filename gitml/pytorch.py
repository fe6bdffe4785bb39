"""PyTorch models in MLflow's ``pytorch`` flavor, as ``mlflow.pytorch`` writes and reads it.

    gitml.pytorch.log_model(net, name="model", input_example=x[:4].numpy())
    net = gitml.pytorch.load_model("runs:/<run>/model")

torch is optional (``pip install gitml[pytorch]``) and imported only here. The folder is
MLflow's: ``data/model.pth`` saved by ``torch.save`` with cloudpickle (classes defined in
``__main__`` travel by value), ``data/pickle_module_info.txt`` naming
``mlflow.pytorch.pickle_module``, ``loader_module: mlflow.pytorch``, so MLflow loads it
where gitml is not installed.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "pytorch"
LOADER = "mlflow.pytorch"
DATA = "data"
MODEL_FILE = "model.pth"
PICKLE_INFO = "pickle_module_info.txt"
PICKLE_MODULE = "mlflow.pytorch.pickle_module"  # the name MLflow imports when it loads the model


def _torch():
    try:
        import torch
    except ImportError:
        raise InvalidInputError(
            "PyTorch models need torch: pip install 'gitml[pytorch]' (or pip install torch)"
        ) from None
    return torch


class _SavingPickleModule:
    """What ``torch.save`` needs of a pickle module, with cloudpickle's Pickler (as
    ``mlflow.pytorch.pickle_module``)."""

    import cloudpickle as _cloudpickle

    Pickler = _cloudpickle.CloudPickler
    Unpickler = pickle.Unpickler
    dump = staticmethod(_cloudpickle.dump)
    dumps = staticmethod(_cloudpickle.dumps)
    load = staticmethod(pickle.load)
    loads = staticmethod(pickle.loads)
    __name__ = PICKLE_MODULE


class _LoadingPickleModule:
    """``torch.load``'s pickle module: gitml's unpickler (MLflow's base classes read as gitml's)."""

    from gitml.pyfunc.model import ModelUnpickler as Unpickler

    load = staticmethod(pickle.load)
    __name__ = "pickle"


def save_model(
    pytorch_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    mlflow_model=None,
    code_paths: list[str] | None = None,
    pickle_module=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    serialization_format: str = "pickle",
    **kwargs,
) -> None:
    """Save a ``torch.nn.Module`` as an MLflow model folder at ``path`` (a new folder).
    ``signature`` None is inferred from ``input_example`` (a numpy array or DataFrame)."""
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    torch = _torch()
    if conda_env is not None or pickle_module is not None:
        raise InvalidInputError("conda_env and pickle_module are not supported by gitml.pytorch.save_model")
    if serialization_format != "pickle":
        raise InvalidInputError("gitml.pytorch saves serialization_format='pickle' only")
    if not isinstance(pytorch_model, torch.nn.Module):
        raise InvalidInputError(f"pytorch_model must be a torch.nn.Module, not {type(pytorch_model).__name__}")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    os.makedirs(os.path.join(folder, DATA))
    with open(os.path.join(folder, DATA, PICKLE_INFO), "w") as f:
        f.write(PICKLE_MODULE)
    target = os.path.join(folder, DATA, MODEL_FILE)
    if isinstance(pytorch_model, torch.jit.ScriptModule):
        torch.jit.save(pytorch_model, target)
    else:
        torch.save(pytorch_model, target, pickle_module=_SavingPickleModule, **kwargs)
    example = input_example.detach().cpu().numpy() if hasattr(input_example, "detach") else input_example
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={"model_data": DATA, "pytorch_version": str(torch.__version__), "code": code},
        pyfunc_conf={
            "loader_module": LOADER,
            "data": DATA,
            "pickle_module_name": PICKLE_MODULE,
            "code": code,
            "config": {"device": None},
        },
        packages=["torch", "cloudpickle", "numpy"],
        signature=signature,
        input_example=example,
        predict=_PyTorchWrapper(pytorch_model, "cpu").predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    pytorch_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    pickle_module=None,
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
    **kwargs,
):
    """Save a torch model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        pytorch_model=pytorch_model,
        conda_env=conda_env,
        code_paths=code_paths,
        pickle_module=pickle_module,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **kwargs,
    )


def autolog(
    log_every_n_epoch: int = 1,
    log_every_n_step: int | None = None,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    registered_model_name: str | None = None,
    extra_tags: dict | None = None,
    checkpoint: bool = True,
    checkpoint_monitor: str = "val_loss",
    checkpoint_mode: str = "min",
    checkpoint_save_best_only: bool = True,
    checkpoint_save_weights_only: bool = False,
    checkpoint_save_freq: str = "epoch",
    log_model_signatures: bool = True,
) -> None:
    """Autologging for PyTorch Lightning's ``Trainer.fit``, as ``mlflow.pytorch.autolog`` (what it
    logs: :mod:`gitml.autologging.lightning`; per-step metrics and checkpoints by step are not logged)."""
    from gitml.autologging import configure
    from gitml.errors import InvalidInputError

    if log_every_n_epoch != 1 or log_every_n_step is not None or checkpoint_save_freq != "epoch":
        raise InvalidInputError(
            "gitml.pytorch.autolog logs every epoch; log_every_n_epoch, log_every_n_step and an integer "
            "checkpoint_save_freq are not supported"
        )
    if checkpoint_mode not in ("min", "max"):
        raise InvalidInputError(f"checkpoint_mode must be 'min' or 'max', not {checkpoint_mode!r}")
    configure(
        FLAVOR,
        log_model,
        disable=disable,
        extra_tags=extra_tags,
        log_models=log_models,
        log_model_signatures=log_model_signatures,
        log_datasets=log_datasets,
        exclusive=exclusive,
        silent=silent,
        checkpoint=checkpoint,
        checkpoint_monitor=checkpoint_monitor,
        checkpoint_mode=checkpoint_mode,
        checkpoint_save_best_only=checkpoint_save_best_only,
        checkpoint_save_weights_only=checkpoint_save_weights_only,
    )


def _load(data_path: str, device: str | None = None):
    from gitml.pyfunc import inside

    torch = _torch()
    file = inside(data_path, MODEL_FILE, "model file") if os.path.isdir(data_path) else data_path
    if not os.path.exists(file):
        raise InvalidInputError(f"no {MODEL_FILE} in {data_path!r} (pt2 models are not supported by gitml)")
    try:
        model = torch.load(file, map_location=device or "cpu", pickle_module=_LoadingPickleModule, weights_only=False)
    except RuntimeError:  # a TorchScript archive
        model = torch.jit.load(file, map_location=device or "cpu")
    model.eval()
    return model


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None, **kwargs):
    """The ``torch.nn.Module`` itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.uri import model_on_disk
    from gitml.pyfunc import inside

    with model_on_disk(model_uri, dst_path) as folder:  # a temporary download is removed once loaded
        conf = Model.load(folder).flavors.get(FLAVOR)
        if not isinstance(conf, dict):
            raise InvalidInputError(f"the model at {folder!r} has no pytorch flavor")
        return _load(inside(folder, conf.get("model_data", DATA), "model_data"), kwargs.get("map_location"))


class _PyTorchWrapper:
    def __init__(self, pytorch_model, device: str):
        self.pytorch_model = pytorch_model
        self.device = device

    def predict(self, data, params: dict | None = None):
        import numpy as np
        import pandas as pd

        torch = _torch()
        if isinstance(data, pd.DataFrame):
            values = data.to_numpy(dtype=np.float32)
        elif isinstance(data, np.ndarray):
            values = data
        else:
            raise InvalidInputError("a PyTorch model takes a DataFrame or a numpy array")
        with torch.no_grad():
            preds = self.pytorch_model(torch.from_numpy(values).to(self.device), **(params or {}))
        if not isinstance(preds, torch.Tensor):
            raise InvalidInputError(f"the model returned {type(preds).__name__}, not one tensor")
        out = preds.cpu().numpy()
        if isinstance(data, pd.DataFrame):
            frame = pd.DataFrame(out)
            frame.index = data.index
            return frame
        return out

    def get_raw_model(self):
        return self.pytorch_model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _PyTorchWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.pytorch``."""
    device = (model_config or {}).get("device") or "cpu"
    return _PyTorchWrapper(_load(path, device), device)


__all__ = ["autolog", "load_model", "log_model", "save_model"]

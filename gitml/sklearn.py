"""scikit-learn models in MLflow's ``sklearn`` flavor, as ``mlflow.sklearn`` writes and reads it.

    gitml.sklearn.log_model(model, name="model", signature=signature, input_example=X[:5])
    model = gitml.sklearn.load_model("runs:/<run>/model")

A model gitml saves loads with ``mlflow.pyfunc.load_model`` / ``mlflow.sklearn.load_model``
where gitml is not installed (the files and MLmodel entries are MLflow's; the loader module
is ``mlflow.sklearn``); a model MLflow saved (pickle, cloudpickle or skops) loads here.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from gitml.errors import InvalidInputError

FLAVOR = "sklearn"
LOADER = "mlflow.sklearn"  # MLflow's module: the folder must load where only MLflow is
FORMATS = ("cloudpickle", "pickle", "skops")
_FILES = {"cloudpickle": "model.pkl", "pickle": "model.pkl", "skops": "model.skops"}


def _sklearn():
    try:
        import sklearn
    except ImportError:
        raise InvalidInputError("scikit-learn models need scikit-learn: pip install scikit-learn") from None
    return sklearn


def save_model(
    sk_model: Any,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    serialization_format: str = "cloudpickle",
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    pyfunc_predict_fn: str = "predict",
    metadata: dict | None = None,
    skops_trusted_types: list[str] | None = None,
) -> None:
    """Save a scikit-learn model as an MLflow model folder at ``path`` (a new folder).

    ``serialization_format``: ``cloudpickle`` (default, as MLflow 2), ``pickle``, or
    ``skops`` (needs skops). ``signature`` None is inferred from ``input_example``.
    """
    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    sklearn = _sklearn()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if serialization_format not in FORMATS:
        raise InvalidInputError(f"serialization_format {serialization_format!r} is not one of {', '.join(FORMATS)}")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    file = _FILES[serialization_format]
    dump_estimator(sk_model, os.path.join(folder, file), serialization_format)
    packages = ["scikit-learn", "numpy", "pandas", "scipy"]
    packages += (
        ["cloudpickle"]
        if serialization_format == "cloudpickle"
        else ["skops"]
        if serialization_format == "skops"
        else []
    )
    predict = getattr(sk_model, pyfunc_predict_fn, None)
    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={
            "pickled_model": file,
            "sklearn_version": sklearn.__version__,
            "serialization_format": serialization_format,
            "code": code,
            "skops_trusted_types": skops_trusted_types,
        },  # as MLflow: written in every format
        pyfunc_conf={"loader_module": LOADER, "model_path": file, "predict_fn": pyfunc_predict_fn, "code": code}
        if predict is not None
        else None,
        packages=packages,
        signature=signature,
        input_example=input_example,
        predict=predict,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def dump_estimator(sk_model, path: str, serialization_format: str) -> None:
    """Write an estimator to ``path`` in ``serialization_format`` (also LightGBM's scikit-learn models)."""
    if serialization_format == "skops":
        try:
            import skops.io
        except ImportError:
            raise InvalidInputError("serialization_format='skops' needs skops: pip install skops") from None
        skops.io.dump(sk_model, path)
        return
    with open(path, "wb") as f:
        if serialization_format == "cloudpickle":
            import cloudpickle

            cloudpickle.dump(sk_model, f)
        else:
            pickle.dump(sk_model, f)


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    serialization_format: str = "cloudpickle",
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    pyfunc_predict_fn: str = "predict",
    metadata: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
    skops_trusted_types: list[str] | None = None,
):
    """Save a scikit-learn model and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``).
    ``registered_model_name`` registers it as that model's next version."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        sk_model=sk_model,
        conda_env=conda_env,
        code_paths=code_paths,
        serialization_format=serialization_format,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        pyfunc_predict_fn=pyfunc_predict_fn,
        metadata=metadata,
        skops_trusted_types=skops_trusted_types,
    )


def load_estimator(path: str, serialization_format: str, trusted: list[str] | None):
    """Read an estimator :func:`dump_estimator` wrote (skops with ``trusted`` types only)."""
    _sklearn()
    if serialization_format == "skops":
        try:
            import skops.io
        except ImportError:
            raise InvalidInputError("this model was saved in skops format: pip install skops") from None
        return skops.io.load(path, trusted=trusted)
    if serialization_format not in FORMATS:
        raise InvalidInputError(f"unknown sklearn serialization_format {serialization_format!r}")
    from gitml.pyfunc.model import load_pickle

    return load_pickle(path)  # cloudpickle's output is read by pickle (cloudpickle.load is pickle.load)


def _flavor(folder: str) -> dict:
    from gitml.modelformat.mlmodel import Model

    conf = Model.load(folder).flavors.get(FLAVOR)
    if not isinstance(conf, dict):
        raise InvalidInputError(f"the model at {folder!r} has no sklearn flavor")
    return conf


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None):
    """The scikit-learn model itself (a run's model verified against its manifest first)."""
    from gitml.modelformat.uri import model_on_disk
    from gitml.pyfunc import inside

    with model_on_disk(model_uri, dst_path) as folder:  # a temporary download is removed once loaded
        conf = _flavor(folder)
        file = inside(folder, conf.get("pickled_model", "model.pkl"), "pickled_model")
        return load_estimator(file, conf.get("serialization_format", "pickle"), conf.get("skops_trusted_types"))


class _SklearnModelWrapper:
    def __init__(self, sklearn_model):
        self.sklearn_model = sklearn_model
        for name in ("predict_proba", "predict_log_proba", "predict_joint_log_proba", "score"):
            if (fn := getattr(sklearn_model, name, None)) is not None:
                setattr(self, name, fn)

    def predict(self, data, params: dict | None = None):
        return self.sklearn_model.predict(data)

    def get_raw_model(self):
        return self.sklearn_model


def _load_pyfunc(path: str, model_config: dict | None = None) -> _SklearnModelWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.sklearn``."""
    from gitml.modelformat.mlmodel import PYFUNC, Model
    from gitml.pyfunc import inside

    folder = os.path.dirname(path) if os.path.isfile(path) else path
    flavors = Model.load(folder).flavors  # read once for both flavors
    conf = flavors.get(FLAVOR)
    if not isinstance(conf, dict):
        raise InvalidInputError(f"the model at {folder!r} has no sklearn flavor")
    if os.path.isfile(path):
        file = path
    else:
        found = flavors.get(PYFUNC)
        pyfunc: dict = found if isinstance(found, dict) else {}
        file = inside(folder, pyfunc.get("model_path") or conf.get("pickled_model", "model.pkl"), "model_path")
    return _SklearnModelWrapper(
        load_estimator(file, conf.get("serialization_format", "pickle"), conf.get("skops_trusted_types"))
    )


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int = 5,
    log_post_training_metrics: bool = True,
    serialization_format: str = "cloudpickle",
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: dict | None = None,
) -> None:
    """Autologging for scikit-learn, as ``mlflow.sklearn.autolog`` (what it logs:
    :mod:`gitml.autologging.sklearn`)."""
    from gitml.autologging import configure

    configure(
        FLAVOR,
        log_model,
        disable=disable,
        extra_tags=extra_tags,
        log_input_examples=log_input_examples,
        log_model_signatures=log_model_signatures,
        log_models=log_models,
        log_datasets=log_datasets,
        exclusive=exclusive,
        silent=silent,
        pos_label=pos_label,
    )


__all__ = ["autolog", "load_model", "log_model", "save_model"]

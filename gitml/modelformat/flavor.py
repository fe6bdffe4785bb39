"""What the native flavor modules (``gitml.xgboost``, ``gitml.lightgbm``, ...) share: importing
their library lazily with an install hint, reading their MLmodel entry, resolving the files it
names inside the folder, and the one class name a model file may ask for.

    xgb = require("xgboost", "xgboost")           # InvalidInputError naming `pip install 'gitml[xgboost]'`
    conf = flavor_conf(folder, "xgboost")         # the flavor's MLmodel mapping, or a one-line error
    cls = library_class(conf["model_class"], "xgboost.")   # never a module outside the library

A flavor never imports a module a model file names unless it belongs to the flavor's own library:
MLflow's loaders import ``model_class`` as written; gitml refuses a name outside the library.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from gitml.errors import InvalidInputError


def require(module: str, extra: str, package: str | None = None) -> Any:
    """Import ``module`` or raise InvalidInputError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidInputError(
            f"{extra} models need {package or module}: "
            f"pip install 'gitml[{extra}]' (or pip install {package or module})"
        ) from None


def model_folder(path: str) -> str:
    """The model folder of ``path`` (a pyfunc loader gets the folder or the file its ``data`` names)."""
    return os.path.dirname(path) if os.path.isfile(path) else path


def flavor_conf(folder: str, flavor: str) -> dict:
    """The ``flavor`` mapping of the folder's MLmodel; InvalidInputError if it has none."""
    from gitml.modelformat.mlmodel import Model

    conf = Model.load(folder).flavors.get(flavor)
    if not isinstance(conf, dict):
        raise InvalidInputError(f"the model at {folder!r} has no {flavor} flavor")
    return conf


def flavor_file(folder: str, conf: dict, key: str, default: str) -> str:
    """The file the flavor's ``key`` names (``default`` when absent), refused if it leaves the folder."""
    from gitml.modelformat.mlmodel import inside

    return inside(folder, conf.get(key) or default, key)


def library_class(qualified: object, prefix: str, default: str | None = None) -> type:
    """The class ``qualified`` (``module.Class``) names, only from a module under ``prefix``
    (the flavor's own library): a model file cannot make gitml import anything else."""
    name = qualified if qualified is not None else default
    if not isinstance(name, str) or "." not in name:
        raise InvalidInputError(f"model class {qualified!r} is not a module.Class name")
    module, _, cls = name.rpartition(".")
    if not (module + ".").startswith(prefix):
        raise InvalidInputError(f"model class {name!r} is not from {prefix.rstrip('.')}: refusing to import it")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise InvalidInputError(f"model class {name!r} does not exist in the installed {prefix.rstrip('.')}") from None
    if not isinstance(found, type):
        raise InvalidInputError(f"model class {name!r} is not a class")
    return found


def qualified_name(obj: object) -> str:
    """``module.Class`` of an object, as MLflow records ``model_class``."""
    return f"{type(obj).__module__}.{type(obj).__name__}"


def on_disk(model_uri: str | os.PathLike, dst_path: str | None, flavor: str, load) -> Any:
    """``load(folder, conf)`` on the model ``model_uri`` names, downloaded and every file verified
    against its run's manifest first (a temporary download is removed once loaded)."""
    from gitml.modelformat.uri import model_on_disk

    with model_on_disk(model_uri, dst_path) as folder:
        return load(folder, flavor_conf(folder, flavor))


class NativeModel:
    """A model whose own ``predict(data)`` is its pyfunc ``predict`` (CatBoost's, LightGBM's), as
    MLflow's wrappers of those flavors: ``params`` are not passed on; ``get_raw_model()`` gives the
    model back."""

    def __init__(self, model):
        self.model = model

    def predict(self, data, params: dict | None = None):
        return self.model.predict(data)

    def get_raw_model(self):
        return self.model

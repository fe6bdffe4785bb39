"""Autologging's engine: parameters, metrics, models and datasets logged from training calls
without MLflow installed, under MLflow's names.

    import gitml
    gitml.autolog()                     # every integration whose library is importable
    model = LogisticRegression().fit(X, y)   # a run with params, training_* metrics, the model

    gitml.sklearn.autolog(log_models=False)  # one integration, as mlflow.sklearn.autolog

An integration patches its library's training methods when the library is imported (now,
when it already is; else by an import hook, so ``gitml.autolog()`` imports no framework).
A training call logs into the active run, or into a run it starts and ends (tagged
``mlflow.autologging``); ``exclusive=True`` logs only into runs autolog starts;
``disable=True`` restores the library's methods. A failure while logging is a warning:
training itself is never broken by autolog. Integrations: ``sklearn``
(:mod:`gitml.autologging.sklearn`), ``xgboost`` (:mod:`gitml.autologging.xgboost`),
``lightgbm`` (:mod:`gitml.autologging.lightgbm`), ``keras`` (Keras 3:
:mod:`gitml.autologging.keras`), ``pytorch`` (PyTorch Lightning:
:mod:`gitml.autologging.lightning`).

The engine sits below the flavors: a flavor's ``autolog()`` (``gitml.sklearn.autolog``) calls
:func:`configure` with its own ``log_model``, which the integration logs the model with, and
``gitml.autolog()`` (:mod:`gitml.flavors`) does so for every flavor; nothing here imports a
flavor.
"""

from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gitml")

INTEGRATIONS = {  # name -> (library module, gitml module)
    "sklearn": ("sklearn", "gitml.autologging.sklearn"),
    "xgboost": ("xgboost", "gitml.autologging.xgboost"),
    "lightgbm": ("lightgbm", "gitml.autologging.lightgbm"),
    "keras": ("keras", "gitml.autologging.keras"),
    "pytorch": ("lightning", "gitml.autologging.lightning"),  # MLflow's name: mlflow.pytorch.autolog
}


@dataclass
class Config:
    """An integration's settings (MLflow's autolog arguments)."""

    log_input_examples: bool = False
    log_model_signatures: bool = True
    log_models: bool = True
    log_datasets: bool = True
    exclusive: bool = False
    silent: bool = False
    extra_tags: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # the integration's own (pos_label, max_tuning_runs, ...)
    log_model: Callable[..., Any] | None = None  # the flavor's log_model (gitml.sklearn.log_model, ...)


_configs: dict[str, Config] = {}  # enabled integrations
_local = threading.local()  # depth of patched training calls on this thread


def config(name: str) -> Config | None:
    """The settings of an enabled integration (None: disabled)."""
    return _configs.get(name)


class TrainingCall:
    """The outermost patched training call on this thread logs; calls it makes (a pipeline
    fitting its steps, a search fitting candidates) run plainly."""

    def __enter__(self) -> bool:
        depth = getattr(_local, "depth", 0)
        _local.depth = depth + 1
        return depth == 0

    def __exit__(self, *exc) -> None:
        _local.depth -= 1


def configure(
    name: str,
    log_model: Callable[..., Any],
    *,
    disable: bool = False,
    extra_tags: dict | None = None,
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    exclusive: bool = False,
    silent: bool = False,
    **options: Any,
) -> None:
    """Enable or disable one integration, whose models ``log_model`` logs (``gitml.sklearn.autolog``
    calls this with ``gitml.sklearn.log_model``)."""
    library, module = INTEGRATIONS[name]
    if disable:
        _configs.pop(name, None)
        if library in sys.modules:
            importlib.import_module(module).unpatch()
        return
    _configs[name] = Config(
        log_input_examples,
        log_model_signatures,
        log_models,
        log_datasets,
        exclusive,
        silent,
        {str(k): str(v) for k, v in (extra_tags or {}).items()},
        options,
        log_model,
    )
    if library in sys.modules:
        importlib.import_module(module).patch()
    else:
        _PostImport.install()


class _PostImport(importlib.abc.MetaPathFinder):
    """Patches an integration's library right after it is imported (MLflow's post-import hooks)."""

    installed = False

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            sys.meta_path.insert(0, cls())
            cls.installed = True

    def find_spec(self, fullname, path, target=None):
        names = [n for n, (library, _) in INTEGRATIONS.items() if library == fullname and n in _configs]
        if not names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                original = spec.loader.exec_module

                def exec_module(module, _original=original, _names=names):
                    _original(module)
                    for name in _names:
                        if name in _configs:
                            importlib.import_module(INTEGRATIONS[name][1]).patch()

                spec.loader.exec_module = exec_module
                return spec
            if spec is not None:
                return spec
        return None


def warn(config: Config, what: str, error: BaseException) -> None:
    """A logging step failed: said (unless ``silent``), and training goes on."""
    if not config.silent:
        log.warning("gitml: autolog: %s failed: %s: %s", what, type(error).__name__, error)


def step(config: Config, what: str, do: Callable[[], object]) -> None:
    """Run one logging step of an integration: a failure is :func:`warn`-ed, never raised
    (autolog never breaks training)."""
    try:
        do()
    except Exception as e:  # noqa: BLE001 - autolog never breaks training
        warn(config, what, e)


def now_ms() -> int:
    """Now, in ms since the epoch (a metric point's time)."""
    return int(time.time() * 1000)


__all__ = ["Config", "TrainingCall", "config", "configure"]

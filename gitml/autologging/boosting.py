"""The scikit-learn API of XGBoost and LightGBM (``XGBClassifier.fit``, ``LGBMRegressor.fit``...),
logged as ``mlflow.sklearn._autolog`` does for them: the estimator's ``fit`` owns the run and
logs the fitted estimator (with a signature from the first rows of ``X``) under ``model``;
the params, per-iteration metrics, datasets and feature importances come from the library's
own ``train``, which ``fit`` calls and the integration patches (without its model logging).
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from typing import Any

from gitml.autologging import Config, TrainingCall, config, step, warn

_EXAMPLE_ROWS = 5
_local = threading.local()  # the integration whose sklearn-API fit is logging on this thread


def fitting(name: str) -> bool:
    """True inside a patched sklearn-API ``fit`` of integration ``name`` that logs."""
    return getattr(_local, "fitting", None) == name


def estimators(module, base: type) -> list[type]:
    """The classes of ``module`` (a library's ``sklearn`` module) deriving from ``base``, as MLflow finds them."""
    package = module.__name__.split(".")[0]
    return sorted(
        (
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, base) and c is not base and c.__module__.split(".")[0] == package
        ),
        key=lambda c: c.__name__,
    )


def patch_fits(classes: list[type], name: str, log_estimator, patched: dict) -> None:
    """Wrap ``fit`` of each class (its own or inherited); ``patched`` keeps what to restore;
    ``log_estimator(cfg, estimator, run_id=, signature=, input_example=)`` logs a fitted one."""
    for cls in classes:
        original = getattr(cls, "fit", None)
        if original is None or (cls, "fit") in patched:
            continue
        patched[(cls, "fit")] = (original, "fit" in cls.__dict__)
        setattr(cls, "fit", _wrap(original, name, log_estimator))  # noqa: B010


def patch_library(
    library,
    name: str,
    *,
    dataset: Any,
    base: type,
    wrap_train,
    wrap_dataset,
    log_estimator,
    originals: dict,
    fits: dict,
) -> None:
    """Patch a boosting library (``xgboost``, ``lightgbm``) once: its ``train`` (logged by
    ``wrap_train``), the ``train`` its sklearn module calls (without the model: ``fit`` logs the
    estimator), its ``dataset`` class's ``__init__`` (``wrap_dataset``: an input example kept)
    and the ``fit`` of its sklearn-API estimators deriving from ``base``; ``originals`` and
    ``fits`` keep what :func:`unpatch_library` puts back."""
    if "train" in originals:
        return
    originals["train"] = library.train
    originals["sklearn.train"] = library.sklearn.train
    originals["dataset.__init__"] = dataset.__init__
    library.train = wrap_train(library.train)
    library.sklearn.train = wrap_train(library.sklearn.train, log_models=False)  # fit logs the estimator
    setattr(dataset, "__init__", wrap_dataset(dataset.__init__))  # noqa: B010  (mypy refuses assigning a method)
    patch_fits(estimators(library.sklearn, base), name, log_estimator, fits)


def unpatch_library(library, *, dataset: Any, originals: dict, fits: dict) -> None:
    """Put back what :func:`patch_library` changed (nothing when it did not patch)."""
    if "train" in originals:
        library.train = originals.pop("train")
        library.sklearn.train = originals.pop("sklearn.train")
        setattr(dataset, "__init__", originals.pop("dataset.__init__"))  # noqa: B010  (mypy refuses assigning a method)
        unpatch_fits(fits)


def unpatch_fits(patched: dict) -> None:
    for (cls, method), (original, own) in list(patched.items()):
        if own:
            setattr(cls, method, original)
        else:
            delattr(cls, method)
    patched.clear()


def _wrap(original, name: str, log_estimator):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        found = config(name)
        with TrainingCall() as outermost:
            if found is None or not outermost:
                return original(self, *args, **kwargs)
            return _fit(found, name, original, log_estimator, self, args, kwargs)

    setattr(fit, "__gitml_autolog__", True)  # noqa: B010  (typed either way whether the library is typed or not)
    return fit


def _fit(cfg: Config, name: str, original, log_estimator, estimator, args: tuple, kwargs: dict):
    from gitml import fluent

    active = fluent.active_run()
    if active is not None and cfg.exclusive:
        return original(estimator, *args, **kwargs)
    run = active if active is not None else fluent.start_run(tags={"mlflow.autologging": name, **cfg.extra_tags})
    example: Any = None
    try:  # before training: the example and signature see the data as given
        X: Any = args[0] if args else kwargs.get("X")
        example = copy.deepcopy(X[:_EXAMPLE_ROWS])
    except Exception as e:  # noqa: BLE001 - no example then
        if cfg.log_models:
            warn(cfg, "taking an input example", e)
    failed = True
    _local.fitting = name
    try:
        result = original(estimator, *args, **kwargs)
        _local.fitting = None
        if cfg.log_models:
            try:
                _log(cfg, run.info.run_id, estimator, example, log_estimator)
            except Exception as e:  # noqa: BLE001 - autolog never breaks training
                warn(cfg, "logging the model", e)
        failed = False
        return result
    finally:
        _local.fitting = None
        if active is None:
            fluent.end_run("FAILED" if failed else "FINISHED")


def _log(cfg: Config, run_id: str, estimator, example, log_estimator) -> None:
    signature = None
    if example is not None and cfg.log_model_signatures:
        try:
            from gitml.modelformat.signature import infer_signature

            signature = infer_signature(example, estimator.predict(copy.deepcopy(example)))
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    log_estimator(
        cfg,
        estimator,
        run_id=run_id,
        signature=signature if signature is not None else False,
        input_example=example if cfg.log_input_examples else None,
    )


__all__ = ["estimators", "fitting", "patch_fits", "patch_library", "unpatch_fits", "unpatch_library"]


def wrap_train(name: str, original, log_train):
    """A boosting library's ``train`` patched: logged through ``log_train(cfg, original, args,
    kwargs, inside_fit)`` when autolog is on for ``name`` and this is the outermost training
    call, or one a patched estimator's ``fit`` that logs made."""

    @functools.wraps(original)
    def train(*args, **kwargs):
        found = config(name)
        inside_fit = fitting(name)  # a patched XGBClassifier.fit / LGBMClassifier.fit... that logs called it
        with TrainingCall() as outermost:
            if found is None or not (outermost or inside_fit):
                return original(*args, **kwargs)
            return log_train(found, original, args, kwargs, inside_fit)

    return train


def log_train(
    name: str,
    cfg: Config,
    original,
    args: tuple,
    kwargs: dict,
    *,
    inside_fit: bool,
    unlogged: set[str],
    datasets,
    recorder,
    after,
):
    """One ``train`` call logged as MLflow's autolog logs it: the booster params and
    ``train``'s own arguments (but ``unlogged``), ``datasets(client, run_id, bound)``, a
    metric point per iteration through the callback ``recorder(client, run_id, history)``
    makes, then ``after(client, run_id, model, bound, history)`` (early stopping, importance,
    the model). The run is the active one, else one started and ended here."""
    from gitml import fluent

    active = fluent.active_run()
    if active is not None and cfg.exclusive and not inside_fit:
        return original(*args, **kwargs)
    run = active if active is not None else fluent.start_run(tags={"mlflow.autologging": name, **cfg.extra_tags})
    run_id = run.info.run_id
    client = fluent.client()
    signature = inspect.signature(original).parameters
    names = list(signature)
    bound = dict(zip(names, args, strict=False)) | kwargs
    failed = True
    try:

        def params() -> None:
            booster = {str(k): str(v) for k, v in dict(bound.get("params") or {}).items()}
            given = {
                n: bound.get(n, p.default)
                for n, p in signature.items()
                if n not in unlogged and (n in bound or p.default is not inspect.Parameter.empty)
            }
            client.log_batch(run_id, params=list(booster.items()) + [(k, str(v)) for k, v in given.items()])
            if cfg.log_datasets:
                datasets(client, run_id, bound)

        step(cfg, "logging the params", params)
        history: list[dict[str, float]] = []
        callbacks = list(bound.get("callbacks") or []) + [recorder(client, run_id, history)]
        if "callbacks" in kwargs or len(args) <= names.index("callbacks"):
            kwargs = {**kwargs, "callbacks": callbacks}
        else:
            args = args[: names.index("callbacks")] + (callbacks,) + args[names.index("callbacks") + 1 :]
        model = original(*args, **kwargs)
        step(cfg, "logging the metrics and model", lambda: after(client, run_id, model, bound, history))
        failed = False
        return model
    finally:
        if active is None:
            fluent.end_run("FAILED" if failed else "FINISHED")

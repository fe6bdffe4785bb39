"""Autologging for LightGBM's native API (``lightgbm.train``), as ``mlflow.lightgbm.autolog``
(3.17) logs it: the booster params and ``train``'s own arguments (not the data, callbacks or
functions), ``<set>-<metric>`` at each iteration (``@`` written ``_at_``), with early
stopping ``stopped_iteration``, ``best_iteration`` and the best iteration's metrics one
step past the last; the ``train`` and ``eval`` datasets as inputs;
``feature_importance_split`` and ``feature_importance_gain`` as JSON and PNG; and the
booster under ``model`` through ``gitml.lightgbm`` (the flavor), signed from the first rows
given to ``lightgbm.Dataset``. The scikit-learn API (``LGBMClassifier.fit``... every estimator of
``lightgbm.sklearn``) logs the same through the ``train`` it calls (the estimator's params as
``train`` receives them, ``valid_<i>-<metric>`` per ``eval_set`` entry), and the fitted
estimator under ``model`` (:mod:`gitml.autologging.boosting`).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from gitml.autologging import Config, boosting, config, now_ms, step, warn

NAME = "lightgbm"
_UNLOGGED = {
    "params",
    "train_set",
    "valid_sets",
    "valid_names",
    "fobj",
    "feval",
    "init_model",
    "learning_rates",
    "callbacks",
}
_EXAMPLE_ROWS = 5
_originals: dict[str, Any] = {}
_fits: dict = {}  # (class, "fit") -> (the original, defined by the class)


def patch() -> None:
    import lightgbm
    import lightgbm.sklearn

    boosting.patch_library(
        lightgbm,
        NAME,
        dataset=lightgbm.Dataset,
        base=lightgbm.sklearn._LGBMModelBase,  # scikit-learn's BaseEstimator, as MLflow's list of estimators
        wrap_train=_wrap_train,
        wrap_dataset=_wrap_dataset,
        log_estimator=_log_estimator,
        originals=_originals,
        fits=_fits,
    )


def unpatch() -> None:
    import lightgbm
    import lightgbm.sklearn

    boosting.unpatch_library(lightgbm, dataset=lightgbm.Dataset, originals=_originals, fits=_fits)


def _log_estimator(cfg: Config, estimator, *, run_id: str, signature, input_example) -> None:
    log_model: Any = cfg.log_model  # gitml.lightgbm.log_model
    log_model(estimator, name="model", run_id=run_id, signature=signature, input_example=input_example)


def _wrap_dataset(original):
    @functools.wraps(original)
    def init(self, *args, **kwargs):
        data = args[0] if args else kwargs.get("data")
        original(self, *args, **kwargs)
        if config(NAME) is not None and data is not None and not isinstance(data, str):
            try:
                self._gitml_example = copy.deepcopy(data[:_EXAMPLE_ROWS])
            except Exception:  # noqa: BLE001 - no example then
                pass

    return init


def _wrap_train(original, log_models: bool = True):
    def logged(cfg: Config, original, args: tuple, kwargs: dict, inside_fit: bool):
        return boosting.log_train(
            NAME,
            cfg,
            original,
            args,
            kwargs,
            inside_fit=inside_fit,
            unlogged=_UNLOGGED,
            datasets=_datasets,
            recorder=_recorder,
            after=lambda client, run_id, model, bound, history: _after(
                cfg, client, run_id, model, bound, history, log_models
            ),
        )

    return boosting.wrap_train(NAME, original, logged)


def _recorder(client, run_id: str, history: list):
    """The callback ``train`` calls each iteration: its ``<set>-<metric>`` values logged."""

    def record(env) -> None:
        values = {
            f"{data}-{metric}".replace("@", "_at_"): float(value)
            for data, metric, value, *_ in env.evaluation_result_list
        }
        history.append(values)
        if values:
            client.log_batch(run_id, metrics=[(k, v, now_ms(), env.iteration) for k, v in values.items()])

    return record


def _datasets(client, run_id: str, bound: dict) -> None:
    import numpy as np
    import pandas as pd

    from gitml import data

    def one(matrix, context: str, name: str | None) -> None:
        frame, label = matrix.data, matrix.label
        if hasattr(frame, "toarray"):
            frame = frame.toarray()
        dataset: Any
        if isinstance(frame, pd.DataFrame):
            dataset = data.from_pandas(frame, name=name)
        elif isinstance(frame, np.ndarray):
            dataset = data.from_numpy(frame, targets=np.asarray(label) if label is not None else None, name=name)
        else:
            return
        client.log_inputs(run_id, [dataset], context=context)

    if bound.get("train_set") is not None:
        one(bound["train_set"], "train", None)
    sets, names = bound.get("valid_sets"), bound.get("valid_names")
    for i, matrix in enumerate(sets or ()):
        one(matrix, "eval", names[i] if names is not None else None)


def _after(cfg: Config, client, run_id: str, model, bound: dict, history: list, log_models: bool) -> None:
    if model.best_iteration > 0:
        last = len(history)
        points = [
            ("stopped_iteration", float(last), now_ms(), 0),
            ("best_iteration", float(model.best_iteration), now_ms(), 0),
        ]
        points += [(k, v, now_ms(), last) for k, v in history[model.best_iteration - 1].items()]
        client.log_batch(run_id, metrics=points)
    for kind in ("split", "gain"):
        step(cfg, f"feature importance ({kind})", functools.partial(_importance, client, run_id, model, kind))
    if cfg.log_models and log_models:
        step(cfg, "logging the model", lambda: _log_model(cfg, run_id, model, bound))


def _importance(client, run_id: str, model, kind: str) -> None:
    import numpy as np

    features = model.feature_name()
    importance = model.feature_importance(importance_type=kind)
    client.artifacts.log_bytes(
        run_id,
        json.dumps(dict(zip(features, importance.tolist(), strict=True)), indent=2).encode(),
        f"feature_importance_{kind}.json",
    )
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    order = np.argsort(importance)
    height = 4.8 + (0.1 * len(features) if len(features) > 10 else 0)
    fig, ax = pyplot.subplots(figsize=(6.4, height))
    try:
        ax.barh(np.arange(len(features)), importance[order], align="center", height=0.5)
        ax.set_yticks(np.arange(len(features)))
        ax.set_yticklabels(np.array(features)[order])
        ax.set(xlabel="Importance", title=f"Feature Importance ({kind})")
        fig.tight_layout()
        client.log_figure(run_id, fig, f"feature_importance_{kind}.png")
    finally:
        pyplot.close(fig)


def _log_model(cfg: Config, run_id: str, model, bound: dict) -> None:
    log_model: Any = cfg.log_model  # gitml.lightgbm.log_model
    example = getattr(bound.get("train_set"), "_gitml_example", None)
    signature = None
    if example is not None and cfg.log_model_signatures:
        try:
            from gitml.modelformat.signature import infer_signature

            signature = infer_signature(example, model.predict(example))
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    log_model(
        model,
        name="model",
        run_id=run_id,
        signature=signature if signature is not None else False,
        input_example=example if cfg.log_input_examples else None,
    )


__all__ = ["patch", "unpatch"]

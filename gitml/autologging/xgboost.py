"""Autologging for XGBoost's native API (``xgboost.train``), as ``mlflow.xgboost.autolog``
(3.17) logs it: the booster params and ``train``'s own arguments (not the data, callbacks
or functions), a metric per evaluation set and metric at each iteration
(``<set>-<metric>``, ``@`` written ``_at_``), with early stopping ``stopped_iteration``,
``best_iteration`` and the best iteration's metrics one step past the last; the
``train`` and ``eval`` datasets as inputs; ``feature_importance_<type>.json`` and ``.png``
(``importance_types``, default ``["weight"]``); and the booster under ``model`` through
``gitml.xgboost`` (the flavor), with a signature from the first rows given to ``DMatrix``.
The scikit-learn API (``XGBClassifier.fit``... every ``XGBModel`` of ``xgboost.sklearn``) logs
the same through the ``train`` it calls (the estimator's params as ``train`` receives them,
``validation_<i>-<metric>`` per ``eval_set`` entry), and the fitted estimator under ``model``
(:mod:`gitml.autologging.boosting`).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from gitml.autologging import Config, boosting, config, now_ms, step, warn

NAME = "xgboost"
_UNLOGGED = {"params", "dtrain", "evals", "obj", "feval", "evals_result", "xgb_model", "callbacks", "learning_rates"}
_EXAMPLE_ROWS = 5
_originals: dict[str, Any] = {}
_fits: dict = {}  # (class, "fit") -> (the original, defined by the class)


def patch() -> None:
    import xgboost
    import xgboost.sklearn

    boosting.patch_library(
        xgboost,
        NAME,
        dataset=xgboost.DMatrix,
        base=xgboost.sklearn.XGBModel,
        wrap_train=_wrap_train,
        wrap_dataset=_wrap_dmatrix,
        log_estimator=_log_estimator,
        originals=_originals,
        fits=_fits,
    )


def unpatch() -> None:
    import xgboost
    import xgboost.sklearn

    boosting.unpatch_library(xgboost, dataset=xgboost.DMatrix, originals=_originals, fits=_fits)


def _log_estimator(cfg: Config, estimator, *, run_id: str, signature, input_example) -> None:
    log_model: Any = cfg.log_model  # gitml.xgboost.log_model
    log_model(
        estimator,
        name="model",
        run_id=run_id,
        signature=signature,
        input_example=input_example,
        model_format=cfg.options.get("model_format", "ubj"),
    )


def _wrap_dmatrix(original):
    @functools.wraps(original)
    def init(self, *args, **kwargs):
        data = args[0] if args else kwargs.get("data")
        if config(NAME) is not None and data is not None and not isinstance(data, str):
            try:
                self._gitml_example = copy.deepcopy(data[:_EXAMPLE_ROWS])  # a DMatrix does not give its data back
            except Exception:  # noqa: BLE001 - no example then
                pass
        original(self, *args, **kwargs)

    return init


def _wrap_train(original, log_models: bool = True):
    def logged(cfg: Config, original, args: tuple, kwargs: dict, inside_fit: bool):
        import xgboost

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
                cfg, client, run_id, model, bound, history, xgboost, log_models
            ),
        )

    return boosting.wrap_train(NAME, original, logged)


def _datasets(client, run_id: str, bound: dict) -> None:
    import numpy as np
    import pandas as pd

    from gitml import data

    def one(matrix, context: str, name: str | None) -> None:
        frame = matrix.get_data()
        if hasattr(frame, "toarray"):
            frame = frame.toarray()
        dataset: Any
        if isinstance(frame, pd.DataFrame):
            dataset = data.from_pandas(frame, name=name)
        elif isinstance(frame, np.ndarray):
            dataset = data.from_numpy(frame, name=name)
        else:
            return
        client.log_inputs(run_id, [dataset], context=context)

    if bound.get("dtrain") is not None:
        one(bound["dtrain"], "train", None)
    for matrix, name in bound.get("evals") or ():
        one(matrix, "eval", name)


def _metric_names(values: dict[str, Any]) -> dict[str, Any]:
    return {name.replace("@", "_at_"): value for name, value in values.items()}


def _recorder(client, run_id: str, history: list):
    """An ``xgboost.callback.TrainingCallback`` logging each iteration's evaluation results."""
    import xgboost

    class Recorder(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            values = {}
            for data_name, metrics in evals_log.items():
                for metric, series in _metric_names(metrics).items():
                    values[f"{data_name}-{metric}"] = float(series[-1])
            history.append(values)
            if values:
                client.log_batch(run_id, metrics=[(k, v, now_ms(), epoch) for k, v in values.items()])
            return False

    return Recorder()


def _after(cfg: Config, client, run_id: str, model, bound: dict, history: list, xgboost, log_models: bool) -> None:
    if bound.get("early_stopping_rounds"):
        last = len(history)
        best = int(model.best_iteration)
        points = [("stopped_iteration", float(last - 1), now_ms(), 0), ("best_iteration", float(best), now_ms(), 0)]
        points += [(k, v, now_ms(), last) for k, v in (history[best] if best < len(history) else {}).items()]
        client.log_batch(run_id, metrics=points)
    for kind in cfg.options.get("importance_types") or ["weight"]:
        step(cfg, f"feature importance ({kind})", functools.partial(_importance, client, run_id, model, kind))
    if cfg.log_models and log_models:
        step(cfg, "logging the model", lambda: _log_model(cfg, run_id, model, bound, xgboost))


def _importance(client, run_id: str, model, kind: str) -> None:
    scores = model.get_score(importance_type=kind)
    client.artifacts.log_bytes(run_id, json.dumps(scores).encode(), f"feature_importance_{kind}.json")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    features, values = zip(*sorted(scores.items(), key=lambda kv: kv[1]), strict=True) if scores else ((), ())
    height = 4.8 + (0.1 * len(features) if len(features) > 10 else 0)
    fig, ax = pyplot.subplots(figsize=(6.4, height))
    try:
        ax.barh(range(len(features)), values, align="center", height=0.5)
        ax.set_yticks(range(len(features)))
        ax.set_yticklabels(features)
        ax.set(xlabel="Importance", title=f"Feature Importance ({kind})")
        fig.tight_layout()
        client.log_figure(run_id, fig, f"feature_importance_{kind}.png")
    finally:
        pyplot.close(fig)


def _log_model(cfg: Config, run_id: str, model, bound: dict, xgboost) -> None:
    log_model: Any = cfg.log_model  # gitml.xgboost.log_model
    example = getattr(bound.get("dtrain"), "_gitml_example", None)
    signature = None
    if example is not None and cfg.log_model_signatures:
        try:
            from gitml.modelformat.signature import infer_signature

            signature = infer_signature(example, model.predict(xgboost.DMatrix(example)))
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    log_model(
        model,
        name="model",
        run_id=run_id,
        signature=signature if signature is not None else False,
        input_example=example if cfg.log_input_examples else None,
        model_format=cfg.options.get("model_format", "ubj"),
    )


__all__ = ["patch", "unpatch"]

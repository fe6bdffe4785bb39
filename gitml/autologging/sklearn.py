"""Autologging for scikit-learn, as ``mlflow.sklearn.autolog`` (3.17) logs it.

A training call (``fit``, ``fit_transform``, ``fit_predict`` of every estimator
``sklearn.utils.all_estimators`` lists, and ``Pipeline``, ``GridSearchCV``,
``RandomizedSearchCV``; not the preprocessing, imputation and feature modules, as MLflow)
logs: the params (``get_params(deep=True)``; a search's own, not deep, and ``best_<param>``),
the tags ``estimator_name`` and ``estimator_class``, the training data as an input
(context ``train``), after training the metrics ``training_precision_score``,
``training_recall_score``, ``training_f1_score``, ``training_accuracy_score``,
``training_log_loss``, ``training_roc_auc`` (a classifier with ``predict_proba``) or
``training_mean_squared_error``, ``training_root_mean_squared_error``,
``training_mean_absolute_error``, ``training_r2_score`` (a regressor), and
``training_score``; a search's ``best_cv_score`` and ``cv_results.csv``; the plots
``training_confusion_matrix.png`` (and, binary, ``training_roc_curve.png``,
``training_precision_recall_curve.png``), ``estimator.html``; and the fitted model under
``model`` (a search's best under ``best_estimator``) with its signature inferred from the
first rows. MLflow's post-training metrics (``model.score(X_test, ...)`` logged under the
variable's name) and a search's child runs are not logged.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

from gitml.autologging import Config, TrainingCall, config, step, warn

NAME = "sklearn"
_METHODS = ("fit", "fit_transform", "fit_predict")
_EXCLUDED_MODULES = (
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
)
_EXCLUDED = ("sklearn.compose._column_transformer.ColumnTransformer",)
_MAX_PARAM = 6000  # MLflow's longest param value; autolog truncates longer ones, as MLflow's does
_EXAMPLE_ROWS = 5
_patched: dict[tuple[type, str], tuple[Any, bool]] = {}  # (class, method) -> (the original, defined by the class)


def _classes() -> list[type]:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    found = {cls for _, cls in all_estimators()} | {GridSearchCV, RandomizedSearchCV, Pipeline}
    return sorted(
        (
            c
            for c in found
            if not c.__module__.startswith(_EXCLUDED_MODULES) and f"{c.__module__}.{c.__name__}" not in _EXCLUDED
        ),
        key=lambda c: f"{c.__module__}.{c.__name__}",
    )


def patch() -> None:
    """Wrap the training methods each estimator class defines itself (idempotent)."""
    for cls in _classes():
        for method in _METHODS:
            original = getattr(cls, method, None)  # its own or inherited (GridSearchCV's fit is BaseSearchCV's)
            if original is None or (cls, method) in _patched or not callable(original):
                continue
            _patched[(cls, method)] = (original, method in cls.__dict__)
            setattr(cls, method, _wrap(original))


def unpatch() -> None:
    """Restore every method :func:`patch` wrapped."""
    for (cls, method), (original, own) in list(_patched.items()):
        if own:
            setattr(cls, method, original)
        else:
            delattr(cls, method)
    _patched.clear()


def _wrap(original):
    @functools.wraps(original)
    def training(self, *args, **kwargs):
        found = config(NAME)
        with TrainingCall() as outermost:
            if found is None or not outermost:
                return original(self, *args, **kwargs)
            return _train(found, original, self, args, kwargs)

    training.__gitml_autolog__ = True
    return training


def _train(cfg: Config, original, estimator, args: tuple, kwargs: dict):
    from gitml import fluent

    active = fluent.active_run()
    if active is not None and cfg.exclusive:
        return original(estimator, *args, **kwargs)
    run = active if active is not None else fluent.start_run(tags={"mlflow.autologging": NAME, **cfg.extra_tags})
    run_id = run.info.run_id
    failed = True
    try:
        X, y, weight = _inputs(original, args, kwargs)
        step(cfg, "logging the params", lambda: _before(cfg, run_id, estimator, X, y))
        result = original(estimator, *args, **kwargs)
        step(cfg, "logging the metrics and model", lambda: _after(cfg, run_id, estimator, X, y, weight))
        failed = False
        return result
    finally:
        if active is None:
            fluent.end_run("FAILED" if failed else "FINISHED")


def _inputs(method, args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    """``(X, y, sample_weight)`` of a training call, copied (training may change them)."""
    names = [p for p in inspect.signature(method).parameters][1:]  # past self
    bound = dict(zip(names, args, strict=False)) | kwargs
    X = bound.get(names[0]) if names else None
    y = bound.get(names[1]) if len(names) > 1 else None
    weight = bound.get("sample_weight") if "sample_weight" in names else None
    return copy.deepcopy(X), copy.deepcopy(y), weight


def _search(estimator) -> bool:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    return isinstance(estimator, (GridSearchCV, RandomizedSearchCV))


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM else text[:_MAX_PARAM]


def _before(cfg: Config, run_id: str, estimator, X, y) -> None:
    from gitml import fluent

    params = {k: _text(v) for k, v in estimator.get_params(deep=not _search(estimator)).items()}
    cls = type(estimator)
    tags = {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}
    fluent.client().log_batch(run_id, params=list(params.items()), tags=list(tags.items()))
    if cfg.log_datasets:
        dataset = _dataset(X, y)
        if dataset is not None:
            fluent.client().log_inputs(run_id, [dataset], context="train")


def _dataset(X, y):
    import numpy as np
    import pandas as pd

    from gitml import data

    if isinstance(X, pd.DataFrame):
        return data.from_pandas(X)
    if isinstance(X, np.ndarray):
        return data.from_numpy(X, targets=np.asarray(y) if y is not None else None)
    return None


def _after(cfg: Config, run_id: str, estimator, X, y, weight) -> None:
    import time

    import sklearn

    from gitml import fluent

    client = fluent.client()
    metrics: dict[str, float] = {}
    plots = []
    if y is not None:
        if sklearn.base.is_classifier(estimator):
            metrics.update(_classifier_metrics(cfg, estimator, X, y, weight))
            plots = _classifier_plots(estimator, X, y, weight)
        elif sklearn.base.is_regressor(estimator):
            metrics.update(_regressor_metrics(estimator, X, y, weight))
        if hasattr(estimator, "score"):
            try:
                takes = "sample_weight" in inspect.signature(estimator.score).parameters
                metrics["training_score"] = estimator.score(X, y, weight) if takes else estimator.score(X, y)
            except Exception as e:  # noqa: BLE001 - as MLflow: the metric is left out, with a warning
                warn(cfg, "training_score", e)
    params: dict[str, str] = {}
    if _search(estimator):
        if hasattr(estimator, "best_score_"):
            metrics["best_cv_score"] = estimator.best_score_
        if hasattr(estimator, "best_params_"):
            params = {f"best_{k}": _text(v) for k, v in estimator.best_params_.items()}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[(k, float(v), now, 0) for k, v in metrics.items()], params=list(params.items()))
    for name, draw in plots:
        step(cfg, f"the plot {name}", functools.partial(_plot, client, run_id, name, draw))
    step(cfg, "estimator.html", lambda: client.log_text(run_id, _html(estimator), "estimator.html"))
    if _search(estimator) and hasattr(estimator, "cv_results_"):
        step(cfg, "cv_results.csv", lambda: _cv_results(client, run_id, estimator))
    if cfg.log_models:
        _log_model(cfg, run_id, estimator, X, "model")
        if _search(estimator) and hasattr(estimator, "best_estimator_"):
            _log_model(cfg, run_id, estimator.best_estimator_, X, "best_estimator")


def _metric_values(cfg: Config, metrics: list[tuple[str, Any, dict]]) -> dict[str, float]:
    out = {}
    for name, function, arguments in metrics:
        try:
            out[name] = function(**arguments)
        except Exception as e:  # noqa: BLE001 - as MLflow: one metric that fails is left out
            warn(cfg, name, e)
    return out


def _classifier_metrics(cfg: Config, estimator, X, y, weight) -> dict[str, float]:
    from sklearn import metrics as sk

    pos_label = cfg.options.get("pos_label")
    average = "weighted" if pos_label is None else "binary"
    y_pred = estimator.predict(X)
    common = {"y_true": y, "y_pred": y_pred, "sample_weight": weight}
    todo = [
        (f"training_{n}", f, {**common, "pos_label": pos_label, "average": average})
        for n, f in (
            ("precision_score", sk.precision_score),
            ("recall_score", sk.recall_score),
            ("f1_score", sk.f1_score),
        )
    ]
    todo.append(("training_accuracy_score", sk.accuracy_score, {**common, "normalize": True}))
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        todo.append(
            (
                "training_log_loss",
                lambda y_true, proba, sample_weight: sk.log_loss(  # positional: its
                    y_true, proba, sample_weight=sample_weight
                ),
                {"y_true": y, "proba": proba, "sample_weight": weight},
            )
        )  # 2nd arg's name moved
        score = proba[:, 1] if len(proba[0]) == 2 else proba
        todo.append(
            (
                "training_roc_auc",
                sk.roc_auc_score,
                {"y_true": y, "y_score": score, "average": "weighted", "sample_weight": weight, "multi_class": "ovo"},
            )
        )
    return _metric_values(cfg, todo)


def _regressor_metrics(estimator, X, y, weight) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as sk

    y_pred = estimator.predict(X)
    args = {"y_true": y, "y_pred": y_pred, "sample_weight": weight, "multioutput": "uniform_average"}
    mse = sk.mean_squared_error(**args)
    return {
        "training_mean_squared_error": mse,
        "training_mean_absolute_error": sk.mean_absolute_error(**args),
        "training_r2_score": sk.r2_score(**args),
        "training_root_mean_squared_error": np.sqrt(mse),
    }


def _classifier_plots(estimator, X, y, weight) -> list[tuple[str, Any]]:
    import numpy as np
    from sklearn import metrics as sk

    labels = getattr(estimator, "classes_", None)
    count = len(labels) if labels is not None else len(set(np.asarray(y).ravel().tolist()))

    def confusion(ax):
        sk.ConfusionMatrixDisplay.from_estimator(
            estimator, X, y, sample_weight=weight, normalize="true", cmap="Blues", ax=ax
        )
        ax.set_title("Normalized confusion matrix")

    plots: list[tuple[str, Any]] = [
        ("training_confusion_matrix", (confusion, {"font.size": min(8.0, 50.0 / max(count, 1))}))
    ]
    if len(set(np.asarray(y).ravel().tolist())) == 2:

        def roc(ax):
            sk.RocCurveDisplay.from_estimator(estimator, X, y, sample_weight=weight, ax=ax)
            ax.set_title("ROC curve")

        def pr(ax):
            sk.PrecisionRecallDisplay.from_estimator(estimator, X, y, sample_weight=weight, ax=ax)
            ax.set_title("Precision recall curve")

        plots += [("training_roc_curve", (roc, {})), ("training_precision_recall_curve", (pr, {}))]
    return plots


def _plot(client, run_id: str, name: str, draw) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    function, style = draw
    with matplotlib.rc_context({"axes.labelsize": 8.0, "figure.dpi": 175, **style}):
        fig, ax = pyplot.subplots(1, 1, figsize=(6.0, 4.0))
        try:
            function(ax)
            client.log_figure(run_id, fig, f"{name}.png")
        finally:
            pyplot.close(fig)


def _html(estimator) -> str:
    from sklearn.utils import estimator_html_repr

    return (
        '\n<!DOCTYPE html>\n<html lang="en">\n  <head>\n    <meta charset="UTF-8"/>\n  </head>\n  <body>\n    '
        f"{estimator_html_repr(estimator)}\n  </body>\n</html>\n    "
    )


def _cv_results(client, run_id: str, estimator) -> None:
    import pandas as pd

    client.artifacts.log_bytes(
        run_id, pd.DataFrame.from_dict(estimator.cv_results_).to_csv(index=False).encode(), "cv_results.csv"
    )


def _log_model(cfg: Config, run_id: str, estimator, X, name: str) -> None:
    log_model: Any = cfg.log_model  # gitml.sklearn.log_model
    example = signature = None
    if cfg.log_input_examples or cfg.log_model_signatures:
        try:
            example = copy.deepcopy(X[:_EXAMPLE_ROWS])
        except Exception as e:  # noqa: BLE001 - no example: the model is logged without
            warn(cfg, "taking an input example", e)
    if example is not None and cfg.log_model_signatures:
        try:
            from gitml.modelformat.signature import infer_signature

            predict = getattr(estimator, "predict", None) or estimator.transform
            signature = infer_signature(example, predict(copy.deepcopy(example)))
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    step(
        cfg,
        f"logging the model {name}",
        lambda: log_model(
            estimator,
            name=name,
            run_id=run_id,
            signature=signature if signature is not None else False,
            input_example=example if cfg.log_input_examples else None,
        ),
    )


__all__ = ["patch", "unpatch"]

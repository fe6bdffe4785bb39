"""``gitml.evaluate``: MLflow's default evaluation of a classifier or regressor.

    result = gitml.evaluate("runs:/<run>/model", test_df, targets="label", model_type="classifier")
    result.metrics["f1_score"], result.artifacts["confusion_matrix"].uri

The metrics have MLflow's names and values (``mlflow.models.evaluate`` with its default
evaluator, 3.17: a differential test runs both on one model and one dataset); they are
logged to the active run (else a new one, ended after) at step 0, with the dataset as an
input of the run. Artifacts (PNG, logged into the run as MLflow names them):
``confusion_matrix``, ``roc_curve_plot`` and ``precision_recall_curve_plot`` (a classifier
with ``predict_proba``), and ``residuals_plot`` (a regressor: gitml's, MLflow has none).
MLflow's lift and calibration curves, SHAP plots, ``extra_metrics`` and
``custom_artifacts`` are not made. scikit-learn computes the metrics and matplotlib
draws the plots (both imported here only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gitml.errors import InvalidInputError

MODEL_TYPES = ("classifier", "regressor")
_CONFIG_KEYS = {"pos_label", "label_list", "average", "metric_prefix", "sample_weights", "log_plots"}


@dataclass(frozen=True)
class EvaluationArtifact:
    """An artifact the evaluation logged: ``uri`` (``runs:/<run>/<file>``) and its path in the run."""

    uri: str
    path: str


@dataclass
class EvaluationResult:
    """What :func:`evaluate` computed (``metrics``: name → value) and logged."""

    metrics: dict[str, float]
    artifacts: dict[str, EvaluationArtifact] = field(default_factory=dict)
    run_id: str | None = None


def _sk():
    try:
        from sklearn import metrics
    except ImportError:
        raise InvalidInputError("gitml.evaluate needs scikit-learn: pip install 'gitml[sklearn]'") from None
    return metrics


def _frames(data: Any, targets: Any, predictions: str | None, feature_names: list[str] | None):
    """``(X as a DataFrame, y_true, static predictions or None, the dataset to log)``."""
    import numpy as np
    import pandas as pd

    from gitml import data as datasets

    if isinstance(data, pd.DataFrame):
        if not isinstance(targets, str) or targets not in data.columns:
            raise InvalidInputError(
                f"targets must name a column of data (its columns: {', '.join(map(str, data.columns))})"
            )
        if predictions is not None and predictions not in data.columns:
            raise InvalidInputError(f"predictions names {predictions!r}, which is not a column of data")
        y = data[targets].to_numpy()
        X = data.drop(columns=[c for c in (targets, predictions) if c is not None])
        if feature_names is not None:
            X = X[list(feature_names)]
        static = data[predictions].to_numpy() if predictions is not None else None
        return X, y, static, datasets.from_pandas(data, targets=targets, predictions=predictions)
    if isinstance(data, (np.ndarray, list)):
        array = np.asarray(data)
        if array.ndim != 2 or targets is None:
            raise InvalidInputError("data as an array must be 2-D, with targets an array of its labels")
        y = np.asarray(targets)
        if len(y) != len(array):
            raise InvalidInputError(f"targets has {len(y)} values for {len(array)} rows of data")
        width = math.ceil(math.log10(array.shape[1] + 1))
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"feature_{str(i + 1).zfill(width)}" for i in range(array.shape[1])]
        )
        return pd.DataFrame(array, columns=names), y, None, datasets.from_numpy(array, targets=y)
    raise InvalidInputError(f"data must be a pandas DataFrame or a 2-D array, not {type(data).__name__}")


def _predictors(model: Any) -> tuple[Callable | None, Callable | None, Any]:
    """``(predict, predict_proba, sklearn estimator or None)`` as MLflow takes them: from the
    raw estimator of a scikit-learn model (its ``predict_proba`` and ``score``), else the
    model's ``predict``, else the function itself."""
    if model is None:
        return None, None, None
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from gitml.pyfunc import load_model

        model = load_model(model)
    from gitml.pyfunc import PyFuncModel

    if isinstance(model, PyFuncModel):
        if model.loader_module == "mlflow.sklearn":
            raw = model.get_raw_model()
            return raw.predict, getattr(raw, "predict_proba", None), raw
        return model.predict, None, None
    if callable(model):
        return model, None, None
    raise InvalidInputError(f"model must be a model URI, a loaded model or a function, not {type(model).__name__}")


def _column(values: Any):
    import numpy as np
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise InvalidInputError(f"the model returned {values.shape[1]} columns; evaluation takes one")
        values = values.iloc[:, 0]
    array = np.asarray(values)
    return array.ravel() if array.ndim == 2 and array.shape[1] == 1 else array


def evaluate(
    model: Any = None,
    data: Any = None,
    *,
    model_type: str,
    targets: Any = None,
    predictions: str | None = None,
    feature_names: list[str] | None = None,
    evaluator_config: dict | None = None,
    extra_metrics: list | None = None,
    custom_artifacts: list | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` (a model URI, a loaded model, a function of a DataFrame, or None with
    ``predictions`` naming a column of ``data``) on ``data`` (a DataFrame with the
    ``targets`` column, or a 2-D array with ``targets`` an array) as MLflow's default
    evaluator does; log the metrics, the plots and the dataset into the active run (else a
    new run). ``evaluator_config``: ``pos_label``, ``label_list``, ``average`` (multiclass,
    default ``weighted``), ``metric_prefix``, ``sample_weights``, ``log_plots`` (default True).

    >>> result = gitml.evaluate(model_uri, df, targets="y", model_type="regressor")
    >>> result.metrics["root_mean_squared_error"]

    Raises InvalidInputError (an unknown model type, targets that are not in the data, a
    config key MLflow's evaluator does not take)."""
    from gitml import fluent
    from gitml.pyfunc import evaluation_plots

    values, plots, dataset, config = _compute(
        model,
        data,
        model_type=model_type,
        targets=targets,
        predictions=predictions,
        feature_names=feature_names,
        evaluator_config=evaluator_config,
        extra_metrics=extra_metrics,
        custom_artifacts=custom_artifacts,
    )
    prefix = str(config.get("metric_prefix") or "")
    active = fluent.active_run()
    run = active if active is not None else fluent.start_run()
    try:
        run_id = run.info.run_id
        fluent.log_input(dataset, run_id=run_id)
        fluent.log_metrics(values, step=0, run_id=run_id)
        artifacts = {}
        if config.get("log_plots", True):
            for name, (draw, kwargs) in plots.items():
                path = evaluation_plots.log_plot(run_id, f"{prefix}{name}.png", draw, **kwargs)
                if path is not None:
                    artifacts[name] = EvaluationArtifact(f"runs:/{run_id}/{path}", path)
    finally:
        if active is None:
            fluent.end_run()
    return EvaluationResult(values, artifacts, run_id)


def compute(
    model: Any = None,
    data: Any = None,
    *,
    model_type: str,
    targets: Any = None,
    predictions: str | None = None,
    feature_names: list[str] | None = None,
    evaluator_config: dict | None = None,
) -> dict[str, float]:
    """The metrics :func:`evaluate` would log, computed and returned only (nothing is logged:
    the registry's gates judge a model on a dataset this way)."""
    return _compute(
        model,
        data,
        model_type=model_type,
        targets=targets,
        predictions=predictions,
        feature_names=feature_names,
        evaluator_config=evaluator_config,
    )[0]


def _compute(
    model: Any,
    data: Any,
    *,
    model_type: str,
    targets: Any,
    predictions: str | None,
    feature_names: list[str] | None,
    evaluator_config: dict | None,
    extra_metrics: list | None = None,
    custom_artifacts: list | None = None,
) -> tuple[dict[str, float], dict[str, tuple], Any, dict]:
    """``(metrics, plots to draw, the dataset to log, the config)``."""
    from gitml.pyfunc import evaluation_plots

    if model_type not in MODEL_TYPES:
        raise InvalidInputError(f"model_type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
    if extra_metrics or custom_artifacts:
        raise InvalidInputError(
            "gitml.evaluate computes MLflow's default metrics only: extra_metrics and "
            "custom_artifacts are not supported"
        )
    config = dict(evaluator_config or {})
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise InvalidInputError(
            f"evaluator_config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_KEYS))}"
        )
    if model is None and predictions is None:
        raise InvalidInputError("give a model, or predictions= naming the column of data that holds them")
    X, y_true, static, dataset = _frames(data, targets, predictions, feature_names)
    predict, predict_proba, estimator = _predictors(model)
    weights = config.get("sample_weights")
    metrics: dict[str, Any] = {}
    if estimator is not None:
        try:
            metrics["score"] = estimator.score(X.copy(), y_true, sample_weight=weights)
        except Exception:  # noqa: BLE001 - MLflow logs a warning and goes on
            pass
    y_pred = _column(predict(X.copy())) if predict is not None else static
    if model_type == "classifier":
        found, plots = _classifier(y_true, y_pred, predict_proba(X.copy()) if predict_proba else None, config)
        metrics.update(found)
    else:
        metrics.update(_regressor(y_true, y_pred, weights))
        plots = {"residuals_plot": (evaluation_plots.residuals, {"y_true": y_true, "y_pred": y_pred})}
    prefix = str(config.get("metric_prefix") or "")
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}, plots, dataset, config


def _classifier(y_true, y_pred, y_proba, config: dict) -> tuple[dict, dict]:
    """MLflow's classifier metrics and the plots to draw (its ``ClassifierEvaluator``)."""
    import numpy as np

    from gitml.pyfunc import evaluation_plots

    sk = _sk()
    weights = config.get("sample_weights")
    pos_label = config.get("pos_label")
    labels = (
        np.array(config["label_list"])
        if config.get("label_list") is not None
        else np.unique(np.concatenate([y_true, y_pred]))
    )
    if pos_label is not None and config.get("label_list") is not None and pos_label not in labels:
        raise InvalidInputError(f"pos_label {pos_label!r} must be one of label_list {list(labels)!r}")
    if len(labels) < 2:
        raise InvalidInputError(
            f"a classifier's evaluation needs at least two labels, found {len(labels)}: "
            "give evaluator_config={'label_list': [...]}"
        )
    labels.sort()
    out: dict[str, Any] = {}
    plots: dict[str, tuple] = {}
    if len(labels) == 2:
        pos_index = int(np.where(labels == pos_label)[0][0]) if pos_label is not None and pos_label in labels else 1
        if pos_label is None:
            pos_label = labels[-1]
        else:
            labels = np.append(np.delete(labels, np.where(labels == pos_label)), pos_label)
        tn, fp, fn, tp = sk.confusion_matrix(y_true, y_pred, labels=labels).ravel()
        out.update(true_negatives=tn, false_positives=fp, false_negatives=fn, true_positives=tp)
        out.update(_common(sk, y_true, y_pred, y_proba, labels, "binary", pos_label, weights))
        if y_proba is not None:
            score = np.asarray(y_proba)[:, pos_index]
            out["roc_auc"] = sk.roc_auc_score(
                y_true=np.asarray(y_true) == pos_label, y_score=score, sample_weight=weights
            )
            out["precision_recall_auc"] = sk.average_precision_score(
                y_true=y_true, y_score=score, pos_label=pos_label, sample_weight=weights
            )
            curve = {"y_true": y_true, "y_score": score, "pos_label": pos_label, "weights": weights}
            plots["roc_curve_plot"] = (evaluation_plots.roc_binary, curve)
            plots["precision_recall_curve_plot"] = (evaluation_plots.pr_binary, curve)
    else:
        average = config.get("average", "weighted")
        out.update(_common(sk, y_true, y_pred, y_proba, labels, average, None, weights))
        if average in ("macro", "weighted") and y_proba is not None:
            out["roc_auc"] = sk.roc_auc_score(
                y_true=y_true, y_score=y_proba, sample_weight=weights, average=average, multi_class="ovr"
            )
        if y_proba is not None and len(labels) <= 10:
            curves = {"y_true": y_true, "y_proba": np.asarray(y_proba), "labels": labels, "weights": weights}
            plots["roc_curve_plot"] = (evaluation_plots.roc_multiclass, curves)
            plots["precision_recall_curve_plot"] = (evaluation_plots.pr_multiclass, curves)
    matrix = sk.confusion_matrix(y_true, y_pred, labels=labels, normalize="true", sample_weight=weights)
    plots["confusion_matrix"] = (evaluation_plots.confusion, {"matrix": matrix, "labels": labels})
    return out, plots


def _common(sk, y_true, y_pred, y_proba, labels, average, pos_label, weights) -> dict:
    out = {
        "example_count": len(y_true),
        "accuracy_score": sk.accuracy_score(y_true, y_pred, sample_weight=weights),
        "recall_score": sk.recall_score(y_true, y_pred, average=average, pos_label=pos_label, sample_weight=weights),
        "precision_score": sk.precision_score(
            y_true, y_pred, average=average, pos_label=pos_label, sample_weight=weights
        ),
        "f1_score": sk.f1_score(y_true, y_pred, average=average, pos_label=pos_label, sample_weight=weights),
    }
    if y_proba is not None:
        out["log_loss"] = sk.log_loss(y_true, y_proba, labels=labels, sample_weight=weights)
    return out


def _regressor(y_true, y_pred, weights) -> dict:
    """MLflow's regressor metrics (its ``_get_regressor_metrics``)."""
    import numpy as np

    sk = _sk()
    total = (np.array(y_true) * np.array(weights)).sum() if weights is not None else sum(y_true)
    return {
        "example_count": len(y_true),
        "mean_absolute_error": sk.mean_absolute_error(y_true, y_pred, sample_weight=weights),
        "mean_squared_error": sk.mean_squared_error(y_true, y_pred, sample_weight=weights),
        "root_mean_squared_error": sk.root_mean_squared_error(y_true=y_true, y_pred=y_pred, sample_weight=weights),
        "sum_on_target": total,
        "mean_on_target": total / len(y_true),
        "r2_score": sk.r2_score(y_true, y_pred, sample_weight=weights),
        "max_error": sk.max_error(y_true, y_pred),
        "mean_absolute_percentage_error": sk.mean_absolute_percentage_error(y_true, y_pred, sample_weight=weights),
    }


__all__ = ["EvaluationArtifact", "EvaluationResult", "compute", "evaluate"]

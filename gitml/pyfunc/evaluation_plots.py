"""The plots :func:`gitml.pyfunc.evaluation.evaluate` logs, drawn with matplotlib (imported
here only; without it the metrics are still logged and the plots are skipped, with a warning)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("gitml")


def log_plot(run_id: str, artifact_file: str, draw: Callable, **kwargs) -> str | None:
    """Draw a figure and log it into the run as ``artifact_file``; its path (None: not drawn)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import pyplot
    except ImportError:
        log.warning(
            "gitml: evaluate: %s not drawn: matplotlib is not installed (pip install matplotlib)", artifact_file
        )
        return None
    from gitml import fluent

    with matplotlib.rc_context(
        {"figure.dpi": 175, "figure.figsize": [6.0, 4.0], "figure.autolayout": True, "font.size": 8}
    ):
        fig, ax = pyplot.subplots()
        try:
            draw(ax, **kwargs)
            fluent.client().log_figure(run_id, fig, artifact_file)
        finally:
            pyplot.close(fig)
    return artifact_file


def confusion(ax, *, matrix, labels) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    ConfusionMatrixDisplay(confusion_matrix=matrix, display_labels=labels).plot(cmap="Blues", ax=ax)
    ax.set_title("Normalized confusion matrix")


def _finish(ax, title: str, xlabel: str, ylabel: str, diagonal: tuple) -> None:
    ax.plot([0, 1], list(diagonal), color="gray", alpha=0.3, linestyle="dashed")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(loc="best")


def roc_binary(ax, *, y_true, y_score, pos_label, weights) -> None:
    from sklearn import metrics

    fpr, tpr, _ = metrics.roc_curve(y_true, y_score, pos_label=pos_label, sample_weight=weights)
    auc = metrics.roc_auc_score(y_true == pos_label, y_score, sample_weight=weights)
    ax.plot(fpr, tpr, drawstyle="steps-post", linewidth=1, label=f"AUC={auc:.3f}")
    _finish(
        ax,
        "ROC curve",
        f"False Positive Rate (Positive label: {pos_label})",
        f"True Positive Rate (Positive label: {pos_label})",
        (0, 1),
    )


def pr_binary(ax, *, y_true, y_score, pos_label, weights) -> None:
    from sklearn import metrics

    precision, recall, _ = metrics.precision_recall_curve(y_true, y_score, pos_label=pos_label, sample_weight=weights)
    ap = metrics.average_precision_score(y_true, y_score, pos_label=pos_label, sample_weight=weights)
    ax.plot(recall, precision, drawstyle="steps-post", linewidth=1, label=f"AP={ap:.3f}")
    _finish(
        ax,
        "Precision recall curve",
        f"Recall (Positive label: {pos_label})",
        f"Precision (Positive label: {pos_label})",
        (1, 0),
    )


def roc_multiclass(ax, *, y_true, y_proba, labels, weights) -> None:
    import numpy as np
    from sklearn import metrics

    for i, label in enumerate(labels):
        y = np.where(np.asarray(y_true) == label, 1, 0)
        fpr, tpr, _ = metrics.roc_curve(y, y_proba[:, i], sample_weight=weights)
        auc = metrics.roc_auc_score(y == 1, y_proba[:, i], sample_weight=weights)
        ax.plot(fpr, tpr, drawstyle="steps-post", linewidth=1, label=f"label={label},AUC={auc:.3f}")
    _finish(ax, "ROC curve", "False Positive Rate", "True Positive Rate", (0, 1))


def pr_multiclass(ax, *, y_true, y_proba, labels, weights) -> None:
    import numpy as np
    from sklearn import metrics

    for i, label in enumerate(labels):
        y = np.where(np.asarray(y_true) == label, 1, 0)
        precision, recall, _ = metrics.precision_recall_curve(y, y_proba[:, i], sample_weight=weights)
        ap = metrics.average_precision_score(y, y_proba[:, i], pos_label=1, sample_weight=weights)
        ax.plot(recall, precision, drawstyle="steps-post", linewidth=1, label=f"label={label},AP={ap:.3f}")
    _finish(ax, "Precision recall curve", "Recall", "Precision", (1, 0))


def residuals(ax, *, y_true, y_pred) -> None:
    import numpy as np

    residual = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
    ax.scatter(y_pred, residual, s=8, alpha=0.6)
    ax.axhline(0, color="gray", alpha=0.5, linestyle="dashed")
    ax.set(title="Residuals", xlabel="Predicted value", ylabel="Residual (true - predicted)")

"""The scoring server's fast path: a ``dataframe_split`` body of plain numbers for a
model whose signature takes only ``double`` columns becomes one float64 array and one
DataFrame block, with no per-column inference or enforcement.

    fast = SplitFastPath.for_model(model)          # None when the signature does not fit
    frame = fast.frame(payload) if fast else None  # None when this body does not fit

It is taken only where the general path (:func:`gitml.pyfunc.batch.table_from_payload`,
then the signature's enforcement) would build the same DataFrame: the body's columns are
the signature's, in its order, every row has one ``int`` or ``float`` per column (no
bool, no null, no string, integers within 2**53 so float64 holds them exactly), and
``index`` is absent. Any other body takes the general path, which gives the errors.

A scikit-learn model whose input goes straight to one of scikit-learn's own validating
estimators (a Pipeline's first step: a scaler, an imputer, a linear model, trees...),
fitted on exactly these columns, gets the float64 array itself: that estimator's
``validate_data`` checks the names of a DataFrame against ``feature_names_in_`` and
converts it to this same array, so the predictions are equal, and scikit-learn's pandas
checks (about 85 % of a one-row request) are skipped. Anything that may read the
DataFrame as a DataFrame (FunctionTransformer, ColumnTransformer, a meta-estimator,
an estimator from another package) gets the DataFrame.
"""

from __future__ import annotations

from typing import Any

_EXACT = 2**53  # integers float64 holds exactly
# scikit-learn packages whose estimators validate (and convert) X first in every method
_VALIDATING = {
    "preprocessing",
    "linear_model",
    "svm",
    "tree",
    "neighbors",
    "naive_bayes",
    "decomposition",
    "impute",
    "discriminant_analysis",
    "kernel_approximation",
    "feature_selection",
    "ensemble",
    "cluster",
    "neural_network",
    "cross_decomposition",
    "random_projection",
}
# ... except these, which hand X on as it is or select columns by name
_PASS_X_ON = {
    "FunctionTransformer",
    "ColumnTransformer",
    "VotingClassifier",
    "VotingRegressor",
    "StackingClassifier",
    "StackingRegressor",
    "SelectFromModel",
    "RFE",
    "RFECV",
    "SequentialFeatureSelector",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
}


def takes_array(model, columns: list[str]) -> bool:
    """Whether ``model`` (a PyFuncModel) predicts the same from the float64 array of a
    DataFrame with ``columns`` as from the DataFrame (see the module docstring)."""
    if model.loader_module not in ("mlflow.sklearn", "gitml.sklearn"):
        return False
    from sklearn.pipeline import Pipeline

    receiver = model.get_raw_model()
    while isinstance(receiver, Pipeline):
        steps = [step for _, step in receiver.steps if step is not None and step != "passthrough"]
        if not steps:
            return False
        receiver = steps[0]
    cls = type(receiver)
    parts = cls.__module__.split(".")
    if parts[0] != "sklearn" or len(parts) < 2 or parts[1] not in _VALIDATING or cls.__name__ in _PASS_X_ON:
        return False
    names = getattr(receiver, "feature_names_in_", None)
    return names is not None and list(names) == columns


class SplitFastPath:
    """Builds the DataFrame of a numeric ``dataframe_split`` body for one signature."""

    def __init__(self, columns: list[str], *, as_array: bool = False):
        self.columns = columns
        self.as_array = as_array
        self._width = len(columns)

    @classmethod
    def for_model(cls, model) -> SplitFastPath | None:
        """The fast path for ``model`` (a PyFuncModel), or None when its signature is not
        a named, all-required, all-double column signature."""
        from gitml.modelformat.signature import ColSpec, DataType

        schema = model.metadata.get_input_schema()
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        specs = schema.inputs
        if not specs or not all(isinstance(s, ColSpec) and s.type == DataType.double and s.required for s in specs):
            return None
        names = schema.input_names()
        if len(set(names)) != len(names):
            return None
        return cls(list(names), as_array=takes_array(model, list(names)))

    def frame(self, payload: Any):
        """The DataFrame (or, with ``as_array``, its array) for ``payload`` (parsed JSON),
        or None when it must take the general path."""
        if not isinstance(payload, dict) or not 1 <= len(payload) <= 2:
            return None
        split = payload.get("dataframe_split")
        if not isinstance(split, dict) or len(payload) == 2 and "params" not in payload:
            return None
        if len(split) != 2 or split.get("columns") != self.columns:
            return None
        rows = split.get("data")
        if not isinstance(rows, list) or not rows:
            return None
        width = self._width
        for row in rows:
            if type(row) is not list or len(row) != width:
                return None
            for v in row:
                t = type(v)
                if t is not float and (t is not int or not -_EXACT <= v <= _EXACT):
                    return None
        import numpy as np
        import pandas as pd

        array = np.array(rows, dtype=np.float64)
        return array if self.as_array else pd.DataFrame(array, columns=self.columns)

"""Metric series for charts: parsing a stored history, M4 downsampling, EMA, groups.

M4 (Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation",
VLDB 2014) keeps, for each pixel column of the chart, the first, last, smallest and
largest point that falls in it. A line drawn through those points covers exactly
the pixels the full series covers, so a one-point spike among a million is always
drawn (MLflow's UI takes every n-th point, and loses it).

>>> x, y = m4(np.arange(10**6, dtype=float), values, None, None, width=800)   # <= 3,200 points
"""

from __future__ import annotations

import io
import math

import numpy as np

X_AXES = ("step", "time", "relative")  # step; wall time (s since the epoch); seconds since the first point


def parse_history(text: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, timestamps ms, values)`` of ``step<TAB>timestamp<TAB>value`` lines."""
    if not text.strip():
        empty = np.empty(0)
        return empty.astype(np.int64), empty.astype(np.int64), empty
    import pandas as pd

    frame = pd.read_csv(
        io.BytesIO(text),
        sep="\t",
        header=None,
        names=["step", "ts", "value"],
        dtype={"step": np.int64, "ts": np.int64, "value": np.float64},
        engine="c",
    )
    return frame["step"].to_numpy(), frame["ts"].to_numpy(), frame["value"].to_numpy()


def x_values(axis: str, steps: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """The x coordinate of each point on ``axis`` (one of ``X_AXES``)."""
    if axis == "step":
        return steps.astype(np.float64)
    seconds = timestamps.astype(np.float64) / 1000.0
    if axis == "relative":
        return seconds - seconds.min() if len(seconds) else seconds
    return seconds


def ordered(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points sorted by x (stable: equal x keep their logged order)."""
    if len(x) > 1 and np.any(x[1:] < x[:-1]):
        order = np.argsort(x, kind="stable")
        return x[order], y[order]
    return x, y


def ema(y: np.ndarray, smoothing: float) -> np.ndarray:
    """Exponential moving average with weight ``smoothing`` on the past (0: none),
    debiased at the start as TensorBoard does. NaN and infinite values are carried
    through as they are, not smeared into their neighbours."""
    if smoothing <= 0 or len(y) == 0:
        return y
    a = float(smoothing)
    finite = np.isfinite(y)
    x = np.where(finite, y, 0.0)
    w = finite.astype(np.float64)
    # y_t = a*y_{t-1} + (1-a)*x_t, solved per block with powers of a that stay finite
    block = max(1, min(4096, int(250 / -math.log10(a)))) if a < 1 else 4096
    num = np.empty_like(x)
    den = np.empty_like(x)
    carry_num = carry_den = 0.0
    for start in range(0, len(x), block):
        xs, ws = x[start : start + block], w[start : start + block]
        k = np.arange(len(xs), dtype=np.float64)
        up = a**-k
        down = a ** (k + 1)
        num[start : start + len(xs)] = (np.cumsum(xs * up) * (1 - a) * a**k) + carry_num * down
        den[start : start + len(xs)] = (np.cumsum(ws * up) * (1 - a) * a**k) + carry_den * down
        carry_num, carry_den = num[start + len(xs) - 1], den[start + len(xs) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(finite, out, y)


def m4(x: np.ndarray, y: np.ndarray, lo: float | None, hi: float | None, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The points of the sorted series ``(x, y)`` to draw in ``[lo, hi]`` on ``width``
    pixel columns: per column its first, last, min and max point (at most ``4 * width``),
    plus the nearest point outside each end so the line runs to the chart's edges.
    Non-finite values are kept (a NaN breaks the line, an infinity shows where it was)."""
    pick = m4_indices(x, y, lo, hi, width)
    return x[pick], y[pick]


def m4_indices(x: np.ndarray, y: np.ndarray, lo: float | None, hi: float | None, width: int) -> np.ndarray:
    """The indices of the points :func:`m4` keeps, in x order."""
    width = max(1, int(width))
    if len(x) == 0:
        return np.empty(0, dtype=np.int64)
    lo = float(x[0]) if lo is None else lo
    hi = float(x[-1]) if hi is None else hi
    start = int(np.searchsorted(x, lo, side="left"))
    stop = int(np.searchsorted(x, hi, side="right"))
    first, last = max(0, start - 1), min(len(x), stop + 1)  # one neighbour beyond each end
    if stop - start <= 4 * width:
        return np.arange(first, last)
    xs, ys = x[start:stop], y[start:stop]
    span = hi - lo if hi > lo else 1.0
    column = np.minimum(((xs - lo) / span * width).astype(np.int64), width - 1)
    bounds = np.flatnonzero(np.diff(column)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(xs)])) - 1
    finite = np.isfinite(ys)
    counts = ends - starts + 1
    parts = [starts, ends, np.flatnonzero(~finite)]  # NaN / inf points are never dropped
    with np.errstate(invalid="ignore"):
        for reduce in (np.fmin, np.fmax):  # fmin/fmax skip NaN
            extreme = reduce.reduceat(ys, starts)
            hits = np.flatnonzero(ys == np.repeat(extreme, counts))
            _, first_hit = np.unique(column[hits], return_index=True)
            parts.append(hits[first_hit])
    pick = np.unique(np.concatenate(parts)) + start
    if first < start:
        pick = np.concatenate(([first], pick))
    if last > stop:
        pick = np.concatenate((pick, [stop]))
    return pick


def column_means(x: np.ndarray, y: np.ndarray, lo: float, hi: float, width: int) -> np.ndarray:
    """The mean of the finite values falling in each of ``width`` columns over ``[lo, hi]``
    (NaN where a column has none): a run's curve on a grid shared with other runs."""
    out = np.full(width, np.nan)
    inside = (x >= lo) & (x <= hi) & np.isfinite(y)
    if not inside.any():
        return out
    span = hi - lo if hi > lo else 1.0
    column = np.minimum(((x[inside] - lo) / span * width).astype(np.int64), width - 1)
    sums = np.bincount(column, weights=y[inside], minlength=width)
    counts = np.bincount(column, minlength=width)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.where(counts > 0, means, out)


def band(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, min, max)`` across runs' curves on one grid (NaN where no run has a value)."""
    stack = np.vstack(curves)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            return np.nanmean(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)

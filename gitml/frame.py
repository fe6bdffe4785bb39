"""Search results as a pandas DataFrame with MLflow's column names, built by columns."""

from __future__ import annotations

import functools

from gitml.runlog.columns import SECTIONS, RunTable


def runs_frame(rows: list[dict]):
    """The DataFrame of search rows (dicts)."""
    entries = [(b"", b"", row) for row in rows]
    return table_frame(RunTable.from_rows(entries), list(range(len(rows))))


def table_frame(table: RunTable, positions: list[int]):
    """The DataFrame of the runs at ``positions`` of a :class:`RunTable`, one column at a time:
    attributes, then ``metrics.*`` (float64), ``params.*``, ``tags.*``, each sorted by key and
    present when any of these runs has the key."""
    import numpy as np
    import pandas as pd

    index = np.array(positions, dtype=np.intp)

    def take(section: str, key: str, *, floats: bool = False):
        return taken(section, key, floats=floats)[0]

    texts = _text_maker(pd)

    def taken(section: str, key: str, *, floats: bool = False):
        """The values at ``positions`` and their presence (None: all present)."""
        if not positions and not floats:
            return [], None  # the dtype pandas gives an empty list, as before
        return table.take(section, key, index, floats=floats)

    def times(key: str):
        return pd.to_datetime(take("attributes", key, floats=True), unit="ms", utc=True)

    columns: dict[str, object] = {
        "run_id": texts(take("attributes", "run_id")),
        "experiment_id": texts(take("attributes", "experiment_id")),
        "status": texts(take("attributes", "status")),
        "artifact_uri": texts(take("attributes", "artifact_uri")),
        "start_time": times("start_time"),
        "end_time": times("end_time"),
    }
    for section in SECTIONS:
        for key in table.keys[section]:
            values, present = taken(section, key, floats=section == "metrics")
            if not positions or (present is not None and not present.any()):
                continue  # a key none of these runs has is no column
            columns[f"{section}.{key}"] = values if section == "metrics" else texts(values)
    return pd.DataFrame(columns, index=range(len(positions)))


@functools.cache
def _text_dtype(pd):
    """pandas' own dtype for a column of strings."""
    return pd.Series(["x"]).dtype


def _text_maker(pd):
    """What turns a column of strings (None where missing) into the array pandas would
    make of it: pandas 3 stores strings in Arrow, and converted each one in Python
    first (80 ms of a 12,000-run frame's 27 text columns); Arrow converts the column
    itself. Anything else (an older pandas, no string in the column, a value that is
    not a string) is left to pandas."""
    dtype = _text_dtype(pd)
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return lambda values: values
    import pyarrow as pa

    def texts(values):
        if not len(values) or all(value is None for value in values):
            return values  # pandas gives such a column no string dtype
        try:
            return pd.array(pa.array(values, type=pa.large_string(), from_pandas=True), dtype=dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return values

    return texts

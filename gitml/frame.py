"""Search results as a pandas DataFrame with MLflow's column names, built by columns."""

from __future__ import annotations


from gitml.tracking.columns import SECTIONS, RunTable


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

    def taken(section: str, key: str, *, floats: bool = False):
        """The values at ``positions`` and their presence (None: all present)."""
        if not positions and not floats:
            return [], None  # the dtype pandas gives an empty list, as before
        return table.take(section, key, index, floats=floats)

    def times(key: str):
        return pd.to_datetime(take("attributes", key, floats=True), unit="ms", utc=True)

    columns: dict[str, object] = {
        "run_id": take("attributes", "run_id"),
        "experiment_id": take("attributes", "experiment_id"),
        "status": take("attributes", "status"),
        "artifact_uri": take("attributes", "artifact_uri"),
        "start_time": times("start_time"),
        "end_time": times("end_time"),
    }
    for section in SECTIONS:
        for key in table.keys[section]:
            values, present = taken(section, key, floats=section == "metrics")
            if not positions or (present is not None and not present.any()):
                continue  # a key none of these runs has is no column
            columns[f"{section}.{key}"] = values
    return pd.DataFrame(columns, index=range(len(positions)))

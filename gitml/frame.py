"""Search results as a pandas DataFrame with MLflow's column names, built by columns."""

from __future__ import annotations

from typing import Any

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

    def take(section: str, key: str) -> list[Any]:
        column = table.column(section, key)
        return [column[i] for i in positions]

    def times(key: str):
        return pd.to_datetime(
            np.array([np.nan if v is None else v for v in take("attributes", key)], dtype="float64"),
            unit="ms", utc=True,
        )

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
            values = take(section, key)
            if all(v is None for v in values):
                continue
            if section == "metrics":
                columns[f"metrics.{key}"] = np.array([np.nan if v is None else v for v in values], dtype="float64")
            else:
                columns[f"{section}.{key}"] = values
    return pd.DataFrame(columns, index=range(len(positions)))

"""Search results as a pandas DataFrame with MLflow's column names."""

from __future__ import annotations


def runs_frame(rows: list[dict]):
    import pandas as pd

    columns: dict[str, object] = {
        "run_id": [r["run_id"] for r in rows],
        "experiment_id": [r["experiment_id"] for r in rows],
        "status": [r["status"] for r in rows],
        "artifact_uri": [r["artifact_uri"] for r in rows],
        "start_time": pd.to_datetime([r["start_time"] for r in rows], unit="ms", utc=True),
        "end_time": pd.to_datetime([r["end_time"] for r in rows], unit="ms", utc=True),
    }
    n = len(rows)
    for section in ("metrics", "params", "tags"):
        keys = sorted({k for r in rows for k in r[section]})
        for key in keys:
            columns[f"{section}.{key}"] = [r[section].get(key) for r in rows]
    frame = pd.DataFrame(columns, index=range(n))
    for key in [c for c in columns if c.startswith("metrics.")]:
        frame[key] = frame[key].astype("float64")
    return frame

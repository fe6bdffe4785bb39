"""What each page shows, gathered through the Client; and the Jinja2 renderer
(autoescaping on: every name, param and tag reaches the page as text)."""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING

from gitml.errors import GitmlError, InvalidInputError
from gitml.runlog.entities import ViewType
from gitml.runviews import duration, when
from gitml.ui import previews

if TYPE_CHECKING:
    from gitml.ops import Operations
    from gitml.ui.reader import Reader
    from gitml.ui.tables import Search

MAX_COMPARE = 50  # runs one compare page shows


class Renderer:
    def __init__(self) -> None:
        import jinja2

        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            finalize=visible,
        )
        self.env.filters.update(when=when, duration=duration, value=value_text, size=size_text)

    def __call__(self, name: str, **context) -> str:
        return self.env.get_template(name).render(**context)


_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value):
    """Every value a page shows (Jinja's ``finalize``): control characters and the
    bidirectional overrides that make text read other than it is (a tagger ``Mal\u202eyrol``)
    written as their escapes, as the CLI shows them; markup gitml made is left alone."""
    import markupsafe

    if isinstance(value, str) and not isinstance(value, markupsafe.Markup) and _HIDDEN.search(value):
        return _HIDDEN.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), value)
    return value


def value_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def size_text(size: int | None) -> str:
    if size is None:
        return ""
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def experiment_list(reader: Reader, search: Search) -> list[dict]:
    """The experiments with their runs counted in ``search`` (of all runs, made first:
    outside the Reader's lock)."""
    client = reader.client
    counts: dict[str, list[int]] = {}
    for experiment_id, status in zip(
        search.values["attributes.experiment_id"], search.values["attributes.status"], strict=False
    ):
        c = counts.setdefault(experiment_id, [0, 0])
        c[0] += 1
        c[1] += status == "RUNNING"
    return [
        {
            "experiment_id": e.experiment_id,
            "name": e.name,
            "creation_time": e.creation_time,
            "runs": counts.get(e.experiment_id, [0, 0])[0],
            "running": counts.get(e.experiment_id, [0, 0])[1],
        }
        for e in client.search_experiments(ViewType.ACTIVE_ONLY)
    ]


def experiments(reader: Reader, search: Search) -> dict:
    return {"experiments": experiment_list(reader, search)}


def runs(client: Operations, experiment_id: str) -> dict:
    experiment = client.get_experiment(experiment_id) if experiment_id else None
    return {"experiment": experiment}


def run(reader: Reader, run_id: str) -> dict:
    import numpy as np

    client = reader.client
    run_id = client.resolve_run(run_id)
    r = client.get_run(run_id)
    try:
        experiment = client.get_experiment(r.info.experiment_id).name
    except GitmlError:
        experiment = r.info.experiment_id
    metrics = []
    for key in sorted(r.data.metrics):
        _, _, values = reader.history(run_id, key)
        finite = values[np.isfinite(values)]
        metrics.append(
            {
                "key": key,
                "latest": r.data.metrics[key],
                "points": len(values),
                "min": float(finite.min()) if len(finite) else None,
                "max": float(finite.max()) if len(finite) else None,
            }
        )
    tags = r.data.tags
    children = client.search_rows(filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    return {
        "run": r,
        "experiment": experiment,
        "metrics": metrics,
        "params": sorted(r.data.params.items()),
        "user_tags": sorted((k, v) for k, v in tags.items() if not k.startswith("mlflow.")),
        "system_tags": sorted((k, v) for k, v in tags.items() if k.startswith("mlflow.")),
        "parent": tags.get("mlflow.parentRunId"),
        "children": [(c["run_id"], c["run_name"], c["status"]) for c in children],
        "diff": {k: diff_lines(v) for k, v in client.run_code_diff(run_id).items()},
        **_lineage(client.run_lineage(run_id)),
        "tree": previews.tree(client.artifact_manifest(run_id)),
    }


def _lineage(entries: list, shown: int = 10) -> dict:
    """The run's newest commits (a run logged point by point has thousands), then its source history."""
    own = [e for e in entries if e.is_run_commit]
    return {
        "lineage": own[:shown] + [e for e in entries if not e.is_run_commit],
        "hidden_commits": max(0, len(own) - shown),
    }


def diff_lines(patch: str) -> list[tuple[str, str]]:
    """``(kind, line)`` of a unified diff, kind one of add, del, hunk, file, ctx (for colouring)."""
    out = []
    for line in patch.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


def run_summary(client: Operations, run_id: str) -> dict:
    """What a live run page refreshes: status, end time, latest metrics."""
    r = client.get_run(client.resolve_run(run_id))
    return {
        "run_id": r.info.run_id,
        "status": r.info.status,
        "end_time": r.info.end_time,
        "metrics": {k: v if math.isfinite(v) else str(v) for k, v in r.data.metrics.items()},
    }


def artifact(client: Operations, run_id: str, path: str) -> dict:
    run_id = client.resolve_run(run_id)
    r = client.get_run(run_id)
    manifest = client.artifact_manifest(run_id)
    with client.open_artifact(run_id, path) as stream:
        shown = previews.preview(path, manifest[path.strip("/")]["size"], stream)
    return {"run": r, "path": path.strip("/"), "preview": shown}


def _compared(client: Operations, run_ids: list[str]):
    if len(run_ids) > MAX_COMPARE:
        raise InvalidInputError(f"compare at most {MAX_COMPARE} runs at once, not {len(run_ids)}")
    return [client.get_run(client.resolve_run(i)) for i in run_ids]


def compare(client: Operations, run_ids: list[str]) -> dict:
    found = _compared(client, run_ids)
    params = []
    for key in sorted({k for r in found for k in r.data.params}):
        values = [r.data.params.get(key) for r in found]
        params.append({"key": key, "values": values, "differs": len(set(values)) > 1})
    metrics = []
    for key in sorted({k for r in found for k in r.data.metrics}):
        values = [r.data.metrics.get(key) for r in found]
        base = values[0]
        deltas = [None if v is None or base is None or i == 0 else v - base for i, v in enumerate(values)]
        metrics.append({"key": key, "values": values, "deltas": deltas, "differs": len(set(map(str, values))) > 1})
    return {"runs": found, "params": params, "metrics": metrics, "run_ids": ",".join(r.info.run_id for r in found)}


def compare_data(client: Operations, run_ids: list[str]) -> dict:
    """The compared runs' params and metrics as columns, for parallel coordinates and scatter."""
    found = _compared(client, run_ids)
    columns = [f"params.{k}" for k in sorted({k for r in found for k in r.data.params})]
    columns += [f"metrics.{k}" for k in sorted({k for r in found for k in r.data.metrics})]
    rows = []
    for r in found:
        values = []
        for column in columns:
            kind, _, key = column.partition(".")
            v = (r.data.params if kind == "params" else r.data.metrics).get(key)
            values.append(v if not isinstance(v, float) or math.isfinite(v) else None)
        rows.append({"run_id": r.info.run_id, "run_name": r.info.run_name, "values": values})
    return {"columns": columns, "runs": rows}


def chart(reader: Reader, query: dict, group_keys: list[str] | None = None) -> dict:
    """The chart page; ``group_keys``: the metric keys of the runs the filter keeps (a
    search made first, outside the Reader's lock), when the runs are grouped."""
    client = reader.client
    run_ids = [p for p in query.get("runs", "").split(",") if p]
    found = [client.get_run(client.resolve_run(i)) for i in run_ids[:50]]
    keys = sorted({k for r in found for k in r.data.metrics})
    experiment = query.get("experiment", "")
    if query.get("group") and group_keys is not None:
        keys = group_keys
    return {
        "runs": found,
        "keys": keys,
        "key": query.get("key") or (keys[0] if keys else ""),
        "experiment": experiment,
        "filter": query.get("filter", ""),
        "group": query.get("group", ""),
        "run_ids": ",".join(r.info.run_id for r in found),
    }

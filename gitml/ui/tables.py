"""The runs table: columns, nested runs under their parent, pages.

Rows are the search rows of ``Client.search_rows``; the server filters and sorts
them (gitml's filter grammar), then groups and pages, so the browser only ever
holds one page.
"""

from __future__ import annotations

from gitml.errors import InvalidInputError

MAX_PAGE = 500
COLUMN_KINDS = ("params", "metrics", "tags")
PARENT_TAG = "mlflow.parentRunId"
HIDDEN_TAGS = ("mlflow.",)  # system tags have their own columns (name, source, parent)


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """``params.lr,metrics.auc`` → ``[("params", "lr"), ("metrics", "auc")]``.
    Keys may hold dots but never commas (the key rule)."""
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, key = item.partition(".")
        if kind not in COLUMN_KINDS or not key:
            raise InvalidInputError(f"column {item!r} is not params.<key>, metrics.<key> or tags.<key>")
        out.append((kind, key))
    return out


def column_keys(rows: list[dict]) -> dict[str, list[str]]:
    """Every param, metric and (user) tag key of ``rows``, sorted: what the column chooser offers."""
    keys: dict[str, set[str]] = {kind: set() for kind in COLUMN_KINDS}
    for row in rows:
        for kind in COLUMN_KINDS:
            keys[kind].update(row[kind])
    keys["tags"] = {k for k in keys["tags"] if not k.startswith(HIDDEN_TAGS)}
    return {kind: sorted(found) for kind, found in keys.items()}


def group_nested(rows: list[dict]) -> list[tuple[dict, int]]:
    """``(row, depth)`` with each run followed by the runs nested in it (any depth), in
    the given order within each level; a run whose parent is not among ``rows`` (filtered
    out, or deleted) stands at the top level."""
    present = {row["run_id"] for row in rows}
    children: dict[str, list[dict]] = {}
    top = []
    for row in rows:
        parent = row["tags"].get(PARENT_TAG)
        if parent and parent in present and parent != row["run_id"]:
            children.setdefault(parent, []).append(row)
        else:
            top.append(row)
    out: list[tuple[dict, int]] = []
    seen: set[str] = set()

    def add(row: dict, depth: int) -> None:
        if row["run_id"] in seen:  # a cycle of parent tags (hand-edited): show each run once
            return
        seen.add(row["run_id"])
        out.append((row, depth))
        for child in children.get(row["run_id"], ()):
            add(child, depth + 1)

    for row in top:
        add(row, 0)
    for row in rows:  # runs only reachable through a cycle
        if row["run_id"] not in seen:
            add(row, 0)
    return out


def page_of(rows: list[dict], columns: list[tuple[str, str]], *, offset: int, limit: int) -> dict:
    """One page of the table as JSON-ready data."""
    if limit < 1 or limit > MAX_PAGE:
        raise InvalidInputError(f"limit must be 1..{MAX_PAGE}, not {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be >= 0, not {offset}")
    grouped = group_nested(rows)
    out = []
    for row, depth in grouped[offset:offset + limit]:
        tags = row["tags"]
        out.append(
            {
                "run_id": row["run_id"],
                "run_name": row["run_name"],
                "experiment_id": row["experiment_id"],
                "status": row["status"],
                "start_time": row["start_time"],
                "end_time": row["end_time"],
                "depth": depth,
                "parent_run_id": tags.get(PARENT_TAG),
                "source_commit": tags.get("mlflow.source.git.commit"),
                "branch": tags.get("mlflow.source.git.branch"),
                "values": [_json_value(row[kind].get(key)) for kind, key in columns],
            }
        )
    return {"total": len(grouped), "offset": offset, "rows": out, "columns": [f"{k}.{c}" for k, c in columns]}


def _json_value(value):
    """A value JSON can carry: NaN and infinities as strings (strict JSON has none)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value


def order_clause(field: str, descending: bool) -> str:
    """An order_by clause for a column the page sorts by: ``attributes.start_time``,
    ``params.lr`` ... with the key in back ticks (keys may hold spaces, dots, dashes)."""
    kind, _, key = field.partition(".")
    if kind == "attributes" and key in ("start_time", "end_time", "run_name", "status", "run_id"):
        name = f"attributes.{key}"
    elif kind in COLUMN_KINDS and key and "`" not in key:
        name = f"{kind}.`{key}`"
    else:
        raise InvalidInputError(f"cannot sort by {field!r}")
    return f"{name} {'DESC' if descending else 'ASC'}"

"""The runs table: columns, nested runs under their parent, pages.

The server searches by column (``Client.search_columns``: gitml's filter grammar,
order_by), groups nested runs under their parent, and builds the rows of one page
only, so the browser holds one page and a request never builds 20,000 rows.
Searches are kept until a run's ref changes (``SearchCache``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitml.errors import InvalidInputError, TimeBudgetError

if TYPE_CHECKING:
    from gitml.ops import Operations

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


DEFAULT_COLUMNS = {"metrics": 6, "params": 4}  # what a first visit shows before a choice is remembered
SEARCHES_KEPT = 8
BASE_FIELDS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time")
ROW_TAGS = {
    "parent_run_id": PARENT_TAG,
    "source_commit": "mlflow.source.git.commit",
    "branch": "mlflow.source.git.branch",
}


@dataclass
class Search:
    """A search of the runs by column (``Client.search_columns``), with its rows grouped
    (``order``: ``(position, depth)``), kept while ``state`` (the runs' refs) holds."""

    state: dict[bytes, bytes]
    keys: dict[str, list[str]]
    values: dict[str, list]
    order: list[tuple[int, int]]

    def column(self, name: str) -> list:
        return self.values.get(name) or [None] * len(self.order)


class SearchCache:
    """The last few searches of the runs table, each kept until a run changes: a page,
    a sort already made, the next page, cost one listing of the refs, not a search.

    It searches through its own Operations behind its own lock (a Operations is not for
    threads), so a long search holds up other searches only, never a run page or a
    chart; ``deadline`` bounds both the wait for the lock and the filter."""

    def __init__(self, client: Operations, size: int = SEARCHES_KEPT):
        self.client = client
        self.size = size
        self.lock = threading.Lock()
        self._kept: OrderedDict[tuple, Search] = OrderedDict()

    def get(
        self,
        experiment_ids: list[str] | None,
        filter_string: str = "",
        *,
        view: int = 1,
        order_by: list[str] | None = None,
        deadline: float | None = None,
    ) -> Search:
        """The search, from the cache while the runs' refs are what they were. Raises
        TimeBudgetError when ``deadline`` (``time.monotonic()``) passes first."""
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.lock.acquire(timeout=wait):
            raise TimeBudgetError("another search is running and this one ran out of time waiting: try again")
        try:
            return self._get(experiment_ids, filter_string, view, order_by, deadline)
        finally:
            self.lock.release()

    def _get(
        self,
        experiment_ids: list[str] | None,
        filter_string: str,
        view: int,
        order_by: list[str] | None,
        deadline: float | None,
    ) -> Search:
        key = (
            tuple(experiment_ids) if experiment_ids is not None else None,
            filter_string,
            view,
            tuple(order_by or ()),
        )
        state = self.client.run_commits(experiment_ids)  # before the search: a run changing during it shows next time
        found = self._kept.get(key)
        if found is not None and found.state == state:
            self._kept.move_to_end(key)
            return found
        keys, values = self.client.search_columns(
            experiment_ids, filter_string, view=view, order_by=order_by, deadline=deadline
        )
        keys["tags"] = [k for k in keys["tags"] if not k.startswith(HIDDEN_TAGS)]
        ids = values["attributes.run_id"]
        found = Search(state, keys, values, nested_order(ids, values.get(f"tags.{PARENT_TAG}") or [None] * len(ids)))
        self._kept[key] = found
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return found


def nested_order(run_ids: list[str], parents: list[str | None]) -> list[tuple[int, int]]:
    """``(position, depth)`` with each run followed by the runs nested in it (any depth),
    in the given order within each level; a run whose parent is not among ``run_ids``
    (filtered out, or deleted) stands at the top level."""
    present = set(run_ids)
    children: dict[str, list[int]] = {}
    top = []
    for i, (run_id, parent) in enumerate(zip(run_ids, parents, strict=False)):
        if parent and parent in present and parent != run_id:
            children.setdefault(parent, []).append(i)
        else:
            top.append(i)
    if not children:
        return [(i, 0) for i in top]
    out: list[tuple[int, int]] = []
    seen: set[int] = set()

    def add(i: int, depth: int) -> None:
        stack = [(i, depth)]
        while stack:
            i, depth = stack.pop()
            if i in seen:  # a cycle of parent tags (hand-edited): show each run once
                continue
            seen.add(i)
            out.append((i, depth))
            stack.extend((c, depth + 1) for c in reversed(children.get(run_ids[i], ())))

    for i in top:
        add(i, 0)
    for i in range(len(run_ids)):  # runs only reachable through a cycle
        if i not in seen:
            add(i, 0)
    return out


def default_columns(keys: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The columns a first visit shows: the first metrics, then the first params."""
    return [(kind, key) for kind, count in DEFAULT_COLUMNS.items() for key in keys[kind][:count]]


def page_of(search: Search, columns: list[tuple[str, str]], *, offset: int, limit: int) -> dict:
    """One page of the table as JSON-ready data: only its rows are built."""
    if limit < 1 or limit > MAX_PAGE:
        raise InvalidInputError(f"limit must be 1..{MAX_PAGE}, not {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be >= 0, not {offset}")
    base = {name: search.column(f"attributes.{name}") for name in BASE_FIELDS}
    tags = {name: search.column(f"tags.{tag}") for name, tag in ROW_TAGS.items()}
    chosen = [search.column(f"{kind}.{key}") for kind, key in columns]
    out = []
    for i, depth in search.order[offset : offset + limit]:
        row = {name: column[i] for name, column in base.items()}
        row["depth"] = depth
        row.update((name, column[i]) for name, column in tags.items())
        row["values"] = [_json_value(column[i]) for column in chosen]
        out.append(row)
    return {"total": len(search.order), "offset": offset, "rows": out, "columns": [f"{k}.{c}" for k, c in columns]}


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

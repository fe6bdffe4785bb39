"""Search, in one place: runs by a filter (:mod:`gitml.runlog.filter`) over the search
index's table of every run (:mod:`gitml.runlog.index`, :mod:`gitml.runlog.columns`),
the matches ordered and cut, a repeated search of an unchanged table remembered; the
matches as rows (:func:`search_rows`) or by column (:func:`search_columns`); experiments
by MLflow's experiment filter (:func:`search_experiments`); and the pages every search of
gitml's returns (:class:`PagedList`, MLflow's page token), the registry's included.

The faces call into it: ``Client.search_runs`` / ``search_experiments`` (:mod:`gitml.search`),
the fluent ``search_runs``' DataFrame (:mod:`gitml.ops`), ``gitml runs`` and the UI
(:mod:`gitml.runviews`), ``search_registered_models`` (:mod:`gitml.registry.mlflow_search`).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from gitml.errors import InvalidInputError
from gitml.runlog.columns import ATTRIBUTES, SECTIONS, RunTable
from gitml.runlog.entities import Experiment

if TYPE_CHECKING:
    from gitml.runlog.tracker import Tracker

log = logging.getLogger("gitml")


class PagedList(list):
    """A page of results (a list) and ``token``, the ``page_token`` of the next page (None on
    the last page), as MLflow's ``PagedList``: what every search of gitml's pages returns."""

    def __init__(self, items: Sequence = (), token: str | None = None):
        super().__init__(items)
        self.token = token


def page_token(offset: int) -> str:
    """MLflow's page token: base64 of ``{"offset": N}``."""
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    """The offset a page token holds (0 for none); InvalidInputError for anything else."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (ValueError, TypeError, KeyError):  # binascii.Error and JSON's errors are ValueErrors
        raise InvalidInputError(f"invalid page token: page_token {token[:40]!r} is not one a search returned") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInputError(f"invalid page token: page_token {token[:40]!r} is not one a search returned")
    return offset


SEARCHES_KEPT = 16  # searches of one table remembered (its matches, its DataFrame): a repeated one is free


def search_key(experiment_ids, filter_string, view, max_results, order_by) -> tuple:
    """What a search's result depends on besides the table it searched."""
    return (
        tuple(experiment_ids) if experiment_ids is not None else None,
        filter_string,
        view,
        max_results,
        tuple(order_by or ()),
    )


def search_table(
    tracker: Tracker,
    experiment_ids: list[str] | None,
    filter_string: str | None = None,
    *,
    view: int = 1,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    deadline: float | None = None,
) -> tuple[RunTable, list[int]]:
    """The runs matching a filter, ordered, at most ``max_results``: a table of the runs
    and the positions of the matches in it, in order. Call inside ``tracker.index.reading()``.
    ``deadline``: a ``time.monotonic()`` value past which filtering stops (TimeBudgetError)."""
    if max_results is not None and max_results < 0:
        raise InvalidInputError(f"max_results must be >= 0, not {max_results}")
    from gitml.runlog.entities import ViewType
    from gitml.runlog.filter import compile_filter, filter_mask, parse_order_by, sort_rows

    predicate = compile_filter(filter_string)
    order = parse_order_by(order_by)
    table, errors = tracker.table(experiment_ids)
    for error in errors:
        log.warning("gitml: skipping unreadable run: %s", error)
    key = search_key(experiment_ids, filter_string, view, max_results, order_by)
    memo = tracker.searches.get(key)
    if memo is not None and memo[0] is table:  # the same table: no run ref changed since
        return table, list(memo[1])
    stages = table.column("attributes", "lifecycle_stage")
    shown = {stage for stage in set(stages) if ViewType.matches(view, stage)}
    mask = map(operator.and_, filter_mask(predicate, table, deadline), map(shown.__contains__, stages))
    matched = list(itertools.compress(range(len(table)), mask))
    matched = sort_rows(matched, order, getter=lambda section, key: _run_getter(table, section, key), limit=max_results)
    matched = matched[:max_results] if max_results is not None else matched
    if len(tracker.searches) >= SEARCHES_KEPT or any(t is not table for t, _, _ in tracker.searches.values()):
        tracker.searches.clear()  # the memos of an older table go with it
    tracker.searches[key] = (table, tuple(matched), None)
    return table, matched


def _run_getter(table: RunTable, section: str, key: str):
    """``table.getter``, but a run's id read from its ref (a run ref ends in it, and a record
    whose id differs from its ref's does not load) while the column is not decoded: the
    tie-breaker of the default order needed 100,000 ids decoded for a page of 20."""
    if (section, key) == ("attributes", "run_id") and not table.has_column(section, key):
        refs = table.refs
        return lambda i: refs[i][-32:].decode()
    return table.getter(section, key)


def search_rows(
    tracker: Tracker,
    experiment_ids: list[str] | None,
    filter_string: str | None = None,
    *,
    view: int = 1,
    max_results: int | None = None,
    order_by: list[str] | None = None,
) -> list[dict]:
    """Rows of the runs matching a filter, ordered, at most ``max_results``. A page of few
    runs (``gitml runs -n 20``) takes their rows from the index's row table, not a
    column of every field for every run (0.5 s at 100,000 runs)."""
    with tracker.index.reading():
        table, matched = search_table(
            tracker, experiment_ids, filter_string, view=view, max_results=max_results, order_by=order_by
        )
        if len(matched) * 8 > len(table):
            return [table.row(i) for i in matched]
        found = tracker.index.rows_at({table.refs[i]: table.commits[i] for i in matched}, tracker._load_row)
        fields = (*ATTRIBUTES, *SECTIONS, "datasets")
        return [
            {f: row.get(f) for f in fields} if (row := found.get(table.refs[i])) is not None else table.row(i)
            for i in matched
        ]


def search_columns(
    tracker: Tracker,
    experiment_ids: list[str] | None,
    filter_string: str | None = None,
    *,
    view: int = 1,
    order_by: list[str] | None = None,
    deadline: float | None = None,
) -> tuple[dict[str, list[str]], dict[str, list]]:
    """The matches of a search by column, without a dict per run: ``(keys, values)``, the
    param, metric and tag keys the matched runs have, and each field of each matched run in
    order (None where a run has none); see ``Operations.search_columns``."""
    with tracker.index.reading():
        table, matched = search_table(
            tracker, experiment_ids, filter_string, view=view, order_by=order_by, deadline=deadline
        )
        keys: dict[str, list[str]] = {section: [] for section in SECTIONS}
        values: dict[str, list] = {}
        for attribute in ATTRIBUTES:
            column = table.column("attributes", attribute)
            values[f"attributes.{attribute}"] = [column[i] for i in matched]
        for section in SECTIONS:
            for key in table.keys[section]:
                column = table.column(section, key)
                picked = [column[i] for i in matched]
                if any(v is not None for v in picked):
                    keys[section].append(key)
                    values[f"{section}.{key}"] = picked
    return keys, values


def search_experiments(
    experiments: list[Experiment],
    filter_string: str | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = None,
) -> list[Experiment]:
    """The experiments matching MLflow's experiment filter, in ``order_by`` order (default:
    newest first), at most ``max_results``; see ``Client.search_experiments``."""
    from gitml.runlog.filter import EXPERIMENTS, compile_filter, parse_order_by, sort_rows

    if max_results is not None and max_results < 0:
        raise InvalidInputError(f"max_results must be >= 0, not {max_results}")
    predicate = compile_filter(filter_string, EXPERIMENTS)
    order = parse_order_by(order_by, EXPERIMENTS)
    rows = [
        {
            "experiment_id": e.experiment_id,
            "name": e.name,
            "creation_time": e.creation_time,
            "last_update_time": e.last_update_time,
            "lifecycle_stage": e.lifecycle_stage,
            "tags": e.tags,
            "_experiment": e,
        }
        for e in experiments
    ]
    rows = sort_rows([r for r in rows if predicate(r)], order, EXPERIMENTS)
    found: list[Experiment] = [cast(Experiment, r["_experiment"]) for r in rows]
    return found[:max_results] if max_results is not None else found

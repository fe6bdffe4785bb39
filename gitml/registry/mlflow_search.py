"""``search_registered_models`` and ``search_model_versions``: MLflow's filter grammar (the
runs' parser, :mod:`gitml.runlog.filter`, with the registry's fields), its order_by and its
page tokens.

Registered models: ``name``, ``tags.<key>``; ordered by ``name``, ``creation_timestamp``,
``last_updated_timestamp`` (``timestamp``), then by name. Model versions: ``name``,
``version_number``, ``run_id``, ``source_path``, ``tags.<key>`` (and the two timestamps);
by default ``last_updated_timestamp DESC, name ASC, version_number DESC``, and after any
order_by, name ASC then version_number DESC (MLflow's SQL store's order). A page token is
MLflow's: base64 of ``{"offset": N}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gitml.errors import InvalidInputError
from gitml.runlog.filter import OrderKey, Schema, compile_filter, parse_order_by, sort_rows
from gitml.runlog.search import PagedList, page_offset, page_token

T = TypeVar("T")

_PREFIXES = {"tags": "tags", "tag": "tags", "attributes": "attributes", "attribute": "attributes", "attr": "attributes"}

REGISTERED_MODELS = Schema(
    noun="registered model",
    prefixes=_PREFIXES,
    string_attributes=frozenset({"name"}),
    numeric_attributes=frozenset({"creation_timestamp", "last_updated_timestamp"}),
    aliases={"timestamp": "last_updated_timestamp"},
    order_sections=frozenset({"attributes"}),
    default_order=(OrderKey("attributes", "name"),),
    tiebreak=(OrderKey("attributes", "name"),),
)

MODEL_VERSIONS = Schema(
    noun="model version",
    prefixes=_PREFIXES,
    string_attributes=frozenset({"name", "run_id", "source_path", "current_stage"}),
    numeric_attributes=frozenset({"version_number", "creation_timestamp", "last_updated_timestamp"}),
    aliases={"timestamp": "last_updated_timestamp"},
    order_sections=frozenset({"attributes"}),
    default_order=(
        OrderKey("attributes", "last_updated_timestamp", False),
        OrderKey("attributes", "name"),
        OrderKey("attributes", "version_number", False),
    ),
    tiebreak=(OrderKey("attributes", "name"), OrderKey("attributes", "version_number", False)),
)


def search(
    items: list[T],
    row: Callable[[T], dict[str, Any]],
    schema: Schema,
    filter_string: str | None,
    max_results: int,
    order_by: Sequence[str] | None,
    token: str | None,
) -> PagedList:
    """The page of ``items`` (each seen as ``row(item)``) a search asks for."""
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidInputError(f"max_results must be a positive whole number, not {max_results!r}")
    keep = compile_filter(filter_string, schema)
    order = parse_order_by(order_by, schema) if order_by else None
    rows = [(row(item), item) for item in items]
    found = [pair for pair in rows if keep(pair[0])]
    ordered = sort_rows(found, order, schema, getter=_getter)
    offset = page_offset(token)
    page = ordered[offset : offset + max_results]
    more = offset + max_results < len(ordered)
    return PagedList([item for _, item in page], page_token(offset + max_results) if more else None)


def _getter(section: str, key: str) -> Callable[[tuple[dict, Any]], Any]:
    if section == "attributes":
        return lambda pair: pair[0].get(key)
    return lambda pair: pair[0][section].get(key)

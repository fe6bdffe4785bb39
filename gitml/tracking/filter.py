"""Search filters and order_by clauses over run rows, compiled once to closures.

MLflow's ``search_runs`` filter grammar, plus OR and parentheses. Keywords are
case-insensitive::

    expr        := term (OR term)*
    term        := factor (AND factor)*
    factor      := '(' expr ')' | comparison
    comparison  := identifier comparator value
                 | identifier IS [NOT] NULL
                 | identifier [NOT] IN '(' value (',' value)* ')'
    identifier  := prefix '.' key | attribute
    prefix      := metrics | metric                                  (numbers)
                 | params | param | parameters | parameter           (strings)
                 | tags | tag                                        (strings)
                 | attributes | attribute | attr | run
    key         := bare word (letters, digits, _ - . / :) | `back ticked` | "double quoted"
    attribute   := run_id | run_name | status | user_id | artifact_uri
                 | lifecycle_stage | experiment_id                   (strings)
                 | start_time | created (= start_time) | end_time    (numbers, ms)
    value       := 'string' | "string" ('' or \\' escapes) | number (1, -2.5, 1e-3)
    comparator  := = | != | < | <= | > | >=            numbers and strings
                 | LIKE | ILIKE                         strings only (% any run, _ one char)

Example: ``metrics.acc > 0.9 AND (params.model = 'cnn' OR tags.`my tag` ILIKE '%best%')``.

Semantics follow SQL: a comparison on a missing value is false (``!=`` and
``NOT IN`` included); only ``IS NULL`` is true for it. A NaN metric is a value,
not NULL: ``=``, ``<``, ``>`` are false for it while ``!=`` and ``NOT IN`` are
true (Python's float semantics). Strings compare as strings (``'10' < '9'``).

Order by: ``"<identifier> [ASC|DESC]"``; rows missing the value (or holding NaN)
sort last in either direction; ties break by start_time DESC, then run_id ASC.

Every malformed filter raises :class:`~gitml.errors.FilterSyntaxError` naming the
offending token and its 0-based position.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gitml.errors import FilterSyntaxError

__all__ = ["OrderKey", "Predicate", "Row", "compile_filter", "parse_order_by", "sort_rows"]

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

PREFIXES = {
    "metrics": "metrics", "metric": "metrics",
    "params": "params", "param": "params", "parameters": "params", "parameter": "params",
    "tags": "tags", "tag": "tags",
    "attributes": "attributes", "attribute": "attributes", "attr": "attributes",
    "run": "attributes",
}
STRING_ATTRIBUTES = frozenset(
    {"run_id", "run_name", "status", "user_id", "artifact_uri", "lifecycle_stage", "experiment_id"}
)
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
ATTRIBUTE_ALIASES = {"created": "start_time"}
_VALID_ATTRIBUTES = ", ".join(sorted(STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES | {"created"}))

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE"})

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<word>[^\W\d][\w.\-/:]*)
      | (?P<op>[=!<>]+)
      | (?P<punct>[(),])
      | (?P<quote>['"`])""",
    re.VERBOSE,
)


# --- tokens -----------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # number, string, key (back ticked), word, op, '(', ')', ',', eof
    value: Any  # float for numbers, unquoted text for strings, keys and words
    pos: int
    raw: str

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of filter"
        return self.raw if self.kind == "string" else f"'{self.raw}'"

    def keyword(self) -> str | None:
        word = self.value.upper() if self.kind == "word" else None
        return word if word in _KEYWORDS else None


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The text of the quoted run at ``start`` and the offset just past it."""
    quote, i = text[start], start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == quote and text[i + 1 : i + 2] == quote:
            out.append(quote)
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise FilterSyntaxError(f"unterminated string {text[start:start + 20]!r}", text, start)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise FilterSyntaxError(f"unexpected character {text[i]!r}", text, i)
        kind, end = m.lastgroup, m.end()
        if kind == "quote":
            value, end = _read_quoted(text, i)
            tokens.append(_Token("key" if text[i] == "`" else "string", value, i, text[i:end]))
        elif kind == "word":
            word = m.group()
            if word.endswith(".") and text[end : end + 1] in ('"', "`"):  # params."my key"
                key, end = _read_quoted(text, end)
                word += key
            tokens.append(_Token("word", word, i, text[i:end]))
        elif kind == "number":
            tokens.append(_Token("number", float(m.group()), i, m.group()))
        elif kind == "op":
            if m.group() not in COMPARATORS:
                raise FilterSyntaxError(f"unknown comparator {m.group()!r}", text, i)
            tokens.append(_Token("op", m.group(), i, m.group()))
        elif kind == "punct":
            tokens.append(_Token(m.group(), m.group(), i, m.group()))
        i = end
    tokens.append(_Token("eof", "", len(text), ""))
    return tokens


# --- identifiers ------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    section: str  # metrics, params, tags or attributes
    key: str  # canonical: attribute aliases resolved
    numeric: bool

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}"


def _value_getter(section: str, key: str) -> Callable[[Row], Any]:
    if section == "attributes":
        return lambda row: row.get(key)
    return lambda row: row[section].get(key)


# --- parser -----------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens, building the predicate as it goes."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def fail(self, message: str, token: _Token) -> FilterSyntaxError:
        return FilterSyntaxError(message, self.text, token.pos)

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "eof":
            raise self.fail(f"unexpected token {token.describe()}", token)

    def expr(self) -> Predicate:
        predicate = self.term()
        while self.peek().keyword() == "OR":
            self.next()
            predicate = _either(predicate, self.term())
        return predicate

    def term(self) -> Predicate:
        predicate = self.factor()
        while self.peek().keyword() == "AND":
            self.next()
            predicate = _both(predicate, self.factor())
        return predicate

    def factor(self) -> Predicate:
        if self.peek().kind != "(":
            return self.comparison()
        opening = self.next()
        predicate = self.expr()
        closing = self.next()
        if closing.kind == "eof":
            raise self.fail("unclosed '('", opening)
        if closing.kind != ")":
            raise self.fail(f"unexpected token {closing.describe()}", closing)
        return predicate

    def identifier(self) -> _Field:
        token = self.next()
        if token.kind == "eof":
            raise self.fail("expected a comparison, got end of filter", token)
        if token.kind not in ("word", "key") or token.keyword():
            raise self.fail(f"unexpected token {token.describe()}", token)
        name: str = token.value
        if token.kind == "word" and "." in name:
            prefix, key = name.split(".", 1)
            section = PREFIXES.get(prefix.lower())
            if section is None:
                raise self.fail(
                    f"unknown prefix {prefix!r} in {token.raw!r}; "
                    "expected metrics., params., tags. or attributes.", token)
            if not key:
                raise self.fail(f"missing key after {token.raw!r}", token)
            if section != "attributes":
                return _Field(section, key, numeric=section == "metrics")
        elif name.lower() in STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES | ATTRIBUTE_ALIASES.keys():
            key = name
        else:
            raise self.fail(
                f"unknown identifier {token.raw!r}; "
                "prefix it with metrics., params., tags. or attributes.", token)
        attribute = ATTRIBUTE_ALIASES.get(key.lower(), key.lower())
        if attribute not in STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES:
            raise self.fail(
                f"unknown attribute {key!r}; valid attributes: {_VALID_ATTRIBUTES}", token)
        return _Field("attributes", attribute, numeric=attribute in NUMERIC_ATTRIBUTES)

    def value(self, field: _Field, after: _Token) -> Any:
        token = self.next()
        if token.kind == "eof":
            raise self.fail(f"expected a value after {after.describe()}, got end of filter", token)
        if field.numeric and token.kind != "number":
            raise self.fail(
                f"{field.label} is numeric: expected a number, got {token.describe()}", token)
        if not field.numeric and token.kind != "string":
            raise self.fail(
                f"{field.label} is a string: expected a quoted string, got {token.describe()}",
                token)
        return token.value

    def comparison(self) -> Predicate:
        field = self.identifier()
        get = _value_getter(field.section, field.key)
        token = self.next()
        keyword = token.keyword()
        if keyword == "IS":
            negated = self.peek().keyword() == "NOT"
            if negated:
                self.next()
            null = self.next()
            if null.keyword() != "NULL":
                raise self.fail(f"expected NULL, got {null.describe()}", null)
            if negated:
                return lambda row: get(row) is not None
            return lambda row: get(row) is None
        if keyword == "NOT":
            in_token = self.next()
            if in_token.keyword() != "IN":
                raise self.fail(f"expected IN after NOT, got {in_token.describe()}", in_token)
            return _in(get, self.in_list(field, in_token), negated=True)
        if keyword == "IN":
            return _in(get, self.in_list(field, token), negated=False)
        if keyword in ("LIKE", "ILIKE"):
            if field.numeric:
                raise self.fail(
                    f"comparator {token.raw!r} is not valid for numeric {field.label}", token)
            regex = _like_regex(self.value(field, token), ignore_case=keyword == "ILIKE")
            return lambda row: (v := get(row)) is not None and regex.fullmatch(v) is not None
        if token.kind == "op":
            compare, value = COMPARATORS[token.value], self.value(field, token)
            return lambda row: (v := get(row)) is not None and compare(v, value)
        raise self.fail(
            f"expected a comparator after {field.label!r}, got {token.describe()}", token)

    def in_list(self, field: _Field, in_token: _Token) -> frozenset[Any]:
        opening = self.next()
        if opening.kind != "(":
            raise self.fail(f"expected '(' after IN, got {opening.describe()}", opening)
        if self.peek().kind == ")":
            raise self.fail("empty IN list: expected a value, got ')'", self.peek())
        values = [self.value(field, in_token)]
        while (token := self.next()).kind == ",":
            values.append(self.value(field, token))
        if token.kind != ")":
            raise self.fail(f"expected ',' or ')' in IN list, got {token.describe()}", token)
        return frozenset(values)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) and right(row)


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) or right(row)


def _in(get: Callable[[Row], Any], values: frozenset[Any], *, negated: bool) -> Predicate:
    if negated:
        return lambda row: (v := get(row)) is not None and v not in values
    return lambda row: (v := get(row)) is not None and v in values


def _like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE pattern to a regex: ``%`` any run, ``_`` one character."""
    wildcards = {"%": ".*", "_": "."}
    body = "".join(wildcards.get(ch) or re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _always(row: Row) -> bool:
    return True


@functools.lru_cache(maxsize=256)
def compile_filter(text: str | None) -> Predicate:
    """Compile a search filter to a predicate over run rows (cached by text).

    >>> keep = compile_filter("metrics.acc > 0.9 and params.model = 'cnn'")
    >>> keep({"metrics": {"acc": 0.95}, "params": {"model": "cnn"}, "tags": {}})
    True

    An empty or ``None`` filter keeps every row. Raises FilterSyntaxError.
    """
    if text is None or not text.strip():
        return _always
    parser = _Parser(text)
    predicate = parser.expr()
    parser.expect_end()
    return predicate


# --- order by ---------------------------------------------------------------


@dataclass(frozen=True)
class OrderKey:
    """One order_by clause: ``section`` is metrics, params, tags or attributes."""

    section: str
    key: str
    ascending: bool = True

    def __str__(self) -> str:
        return f"{self.section}.`{self.key}` {'ASC' if self.ascending else 'DESC'}"


_DEFAULT_ORDER = (OrderKey("attributes", "start_time", False), OrderKey("attributes", "run_id"))


def parse_order_by(clauses: Sequence[str] | None) -> list[OrderKey]:
    """Parse order_by clauses such as ``["metrics.m2 DESC", "params.p1"]``.

    >>> parse_order_by(["metrics.`val loss` DESC"])
    [OrderKey(section='metrics', key='val loss', ascending=False)]

    Raises FilterSyntaxError, whose ``text`` is the offending clause.
    """
    keys = []
    for clause in clauses or ():
        parser = _Parser(clause)
        if parser.peek().kind == "eof":
            raise parser.fail("empty order_by clause", parser.peek())
        field = parser.identifier()
        direction = parser.peek()
        ascending = True
        if direction.kind == "word" and direction.value.upper() in ("ASC", "DESC"):
            ascending = parser.next().value.upper() == "ASC"
        elif direction.kind != "eof":
            raise parser.fail(f"expected ASC or DESC, got {direction.describe()}", direction)
        parser.expect_end()
        keys.append(OrderKey(field.section, field.key, ascending))
    return keys


def _mixed(pair: tuple[Any, Row]) -> tuple[bool, Any]:
    """Sort key for a column holding both numbers and strings: numbers first."""
    return isinstance(pair[0], str), pair[0]


def sort_rows(rows: Sequence[Row], order: Sequence[OrderKey] | None = None) -> list[Row]:
    """Rows sorted by ``order``, then start_time DESC, then run_id ASC.

    Stable. Rows missing a key's value (or holding NaN) sort last in either
    direction. One stable sort per key, least significant first.
    """
    result = list(rows)
    first = operator.itemgetter(0)
    for order_key in reversed([*(order or ()), *_DEFAULT_ORDER]):
        get = _value_getter(order_key.section, order_key.key)
        present: list[tuple[Any, Row]] = []
        missing: list[Row] = []
        for row in result:
            value = get(row)
            if value is None or value != value:  # None or NaN
                missing.append(row)
            else:
                present.append((value, row))
        try:
            present = sorted(present, key=first, reverse=not order_key.ascending)
        except TypeError:  # sorted() leaves ``present`` intact for the retry
            present = sorted(present, key=_mixed, reverse=not order_key.ascending)
        result = [row for _, row in present]
        result.extend(missing)
    return result

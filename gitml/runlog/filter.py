"""Search filters and order_by clauses over run (and experiment) rows, compiled once to closures.

MLflow's ``search_runs`` grammar as MLflow 3.17.2 parses it, plus OR, parentheses,
IN and IS NULL on every field. Keywords are case-insensitive::

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
                 | datasets | dataset    (key: name, digest or context; strings)
                 | attributes | attribute | attr | run
                   (a prefix may be back ticked: `metric`.acc)
    key         := bare word (letters, digits, _ - . / :) | `back ticked` | "double quoted"
    attribute   := run_id | run_name | `run name` | status | user_id | artifact_uri
                 | lifecycle_stage | experiment_id                   (strings)
                 | start_time | created (= start_time) | end_time    (numbers, ms)
    value       := 'string' | "string" | number (1, -2.5, 1e-3)
    comparator  := = | != | < | <= | > | >=            numbers and strings
                 | LIKE | ILIKE                         strings only (% any run, _ one char)

Example: ``metrics.acc > 0.9 AND (params.model = 'cnn' OR tags.`my tag` ILIKE '%best%')``.

Quoted text is taken verbatim, as MLflow takes it: there are no escapes. A
backslash is a character (``'C:\\data'``); a quote of the string's own kind may
appear doubled or after a backslash and stays as written (``'it''s'`` is the six
characters ``it''s``); write ``"it's"`` for a value holding ``'``.

Semantics follow SQL: a comparison on a missing value is false (``!=`` and
``NOT IN`` included); only ``IS NULL`` is true for it. A NaN metric is a value,
not NULL: ``=``, ``<``, ``>`` are false for it while ``!=`` and ``NOT IN`` are
true (Python's float semantics). Strings compare as strings (``'10' < '9'``).
A ``datasets.`` comparison is true when any of the row's dataset inputs (the list
of ``{name, digest, context}`` dicts under ``row["datasets"]``) satisfies it; a
run with no inputs matches none, and ``IS NULL`` when no input has the field.

Order by: ``"<identifier> [ASC|DESC]"``. As MLflow orders: values first (in
the asked direction), then NaN, then rows missing the value, in either
direction; ties break by start_time DESC, then run_id ASC. A field may appear
once. Experiments have their own fields (:data:`EXPERIMENTS`).

Every malformed filter raises :class:`~gitml.errors.FilterSyntaxError` naming the
offending token and its 0-based position.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
import re
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gitml.errors import FilterSyntaxError, TimeBudgetError

__all__ = [
    "EXPERIMENTS",
    "RUNS",
    "OrderKey",
    "Predicate",
    "Row",
    "Schema",
    "compile_filter",
    "filter_mask",
    "parse_order_by",
    "sort_rows",
]

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class OrderKey:
    """One order_by clause: ``section`` is metrics, params, tags or attributes."""

    section: str
    key: str
    ascending: bool = True

    def __str__(self) -> str:
        return f"{self.section}.`{self.key}` {'ASC' if self.ascending else 'DESC'}"


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of compile_filter's cache
class Schema:
    """What a filter may name in one kind of row, and how its rows are ordered."""

    noun: str  # "run" or "experiment", for messages
    prefixes: Mapping[str, str]  # lower-case prefix -> section
    string_attributes: frozenset[str]
    numeric_attributes: frozenset[str]
    aliases: Mapping[str, str]  # lower-case alias -> attribute
    order_sections: frozenset[str]  # sections order_by may name
    default_order: tuple[OrderKey, ...]  # with no order_by
    tiebreak: tuple[OrderKey, ...]  # after the order_by keys

    @property
    def hint(self) -> str:
        return ", ".join(f"{p}." for p in dict.fromkeys(self.prefixes.values()))

    @property
    def attribute_names(self) -> str:
        return ", ".join(sorted(self.string_attributes | self.numeric_attributes | self.aliases.keys()))


_RUN_ORDER = (OrderKey("attributes", "start_time", False), OrderKey("attributes", "run_id"))

RUNS = Schema(
    noun="run",
    prefixes={
        "metrics": "metrics",
        "metric": "metrics",
        "params": "params",
        "param": "params",
        "parameters": "params",
        "parameter": "params",
        "tags": "tags",
        "tag": "tags",
        "datasets": "datasets",
        "dataset": "datasets",
        "attributes": "attributes",
        "attribute": "attributes",
        "attr": "attributes",
        "run": "attributes",
    },
    string_attributes=frozenset(
        {"run_id", "run_name", "status", "user_id", "artifact_uri", "lifecycle_stage", "experiment_id"}
    ),
    numeric_attributes=frozenset({"start_time", "end_time"}),
    aliases={"created": "start_time", "run name": "run_name"},
    order_sections=frozenset({"metrics", "params", "tags", "attributes"}),
    default_order=_RUN_ORDER,
    tiebreak=_RUN_ORDER,
)
"""Runs: MLflow's ``search_runs`` fields (plus lifecycle_stage and experiment_id)."""

EXPERIMENTS = Schema(
    noun="experiment",
    prefixes={
        "tags": "tags",
        "tag": "tags",
        "attributes": "attributes",
        "attribute": "attributes",
        "attr": "attributes",
    },
    string_attributes=frozenset({"name", "experiment_id"}),
    numeric_attributes=frozenset({"creation_time", "last_update_time"}),
    aliases={},
    order_sections=frozenset({"attributes"}),
    default_order=(OrderKey("attributes", "creation_time", False), OrderKey("attributes", "experiment_id")),
    tiebreak=(OrderKey("attributes", "experiment_id", False),),
)
"""Experiments: MLflow's ``search_experiments`` fields; rows hold name, experiment_id,
creation_time, last_update_time and tags. Ordered by creation_time DESC, experiment_id
when no order_by is given, else by the order_by keys then experiment_id DESC (as MLflow)."""

DATASET_FIELDS = frozenset({"name", "digest", "context"})

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
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
# A quoted run ends at the first quote that is neither doubled nor after a backslash
# (SQL's literal as sqlparse reads it for MLflow); its text is kept verbatim.
_QUOTED = {
    "'": re.compile(r"'(?:''|\\'|[^'])*'"),
    '"': re.compile(r'"(?:""|\\"|[^"])*"'),
    "`": re.compile(r"`(?:``|[^`])*`"),
}
_BARE_KEY = re.compile(r"[\w.\-/:]*")


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
    """The verbatim text of the quoted run at ``start`` and the offset just past it."""
    m = _QUOTED[text[start]].match(text, start)
    if m is None:
        raise FilterSyntaxError(f"unterminated string {text[start : start + 20]!r}", text, start)
    return m.group()[1:-1], m.end()


def _read_key(text: str, start: int) -> tuple[str, int]:
    """The key after ``prefix.``: quoted (back ticks or double quotes) or bare."""
    if text[start : start + 1] in ('"', "`"):
        return _read_quoted(text, start)
    m = _BARE_KEY.match(text, start)
    assert m is not None  # the pattern matches the empty string
    return m.group(), m.end()


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
            if text[i] == "`" and text[end : end + 1] == ".":  # `metric`.acc
                key, end = _read_key(text, end + 1)
                tokens.append(_Token("word", f"{value}.{key}", i, text[i:end]))
            else:
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
    section: str  # metrics, params, tags, datasets or attributes
    key: str  # canonical: attribute aliases resolved
    numeric: bool

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}"


def _value_getter(section: str, key: str) -> Callable[[Row], Any]:
    if section == "attributes":
        return lambda row: row.get(key)
    return lambda row: row[section].get(key)


def _lift(field: _Field, test: Callable[[Any], bool]) -> Predicate:
    """The row predicate applying ``test`` to the field's value (never to a missing one)."""
    return _Lift(field.section, field.key, test)


class _Lift:
    """A comparison: ``test`` on one field's value; false where the value is missing.

    Called on a row dict, or with :meth:`mask` on a table's columns (a
    :class:`~gitml.runlog.columns.RunTable`): the same test, one column at a time.
    """

    __slots__ = ("section", "key", "test", "_get")

    def __init__(self, section: str, key: str, test: Callable[[Any], bool]):
        self.section, self.key, self.test = section, key, test
        self._get = _value_getter(section, key)

    def __call__(self, row: Row) -> bool:
        test = self.test
        if self.section == "datasets":
            key = self.key
            return any((v := d.get(key)) is not None and test(v) for d in row.get("datasets") or ())
        return (v := self._get(row)) is not None and test(v)

    def mask(self, table: Any, deadline: float | None = None) -> list[bool]:
        test = self.test
        if self.section == "datasets":
            key = self.key
            return _blocks(
                table.column("datasets"),
                deadline,
                lambda inputs: any((v := d.get(key)) is not None and test(v) for d in inputs or ()),
            )
        column = table.column(self.section, self.key)
        if not table.has_missing(self.section, self.key):  # every run has the field: no test per value in Python
            if isinstance(test, _Compare):
                return list(map(test.op, column, itertools.repeat(test.operand)))
            if isinstance(test, types.BuiltinMethodType):  # IN: the set's own method
                return list(map(test, column))
        if deadline is None:
            return [v is not None and test(v) for v in column]
        return _blocks(column, deadline, lambda v: v is not None and test(v))


_BLOCK = 64  # values tested between two looks at the clock


def _blocks(values: Sequence[Any], deadline: float | None, test: Callable[[Any], bool]) -> list[bool]:
    """``test`` over ``values``; TimeBudgetError once ``time.monotonic()`` passes
    ``deadline`` (looked at every _BLOCK values)."""
    if deadline is None:
        return list(map(test, values))
    out: list[bool] = []
    for start in range(0, len(values), _BLOCK):
        if time.monotonic() > deadline:
            raise TimeBudgetError(
                f"the search ran out of time after {start:,} of {len(values):,} runs: narrow the filter "
                "(a LIKE over long values costs the most)"
            )
        out.extend(map(test, values[start : start + _BLOCK]))
    return out


class _Compare:
    """``value <op> operand``: a test whose column mask is one ``map`` of ``op``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: Callable[[Any, Any], bool], operand: Any):
        self.op, self.operand = op, operand

    def __call__(self, value: Any) -> bool:
        return self.op(value, self.operand)


class _Both:
    __slots__ = ("left", "right")

    def __init__(self, left: Any, right: Any):
        self.left, self.right = left, right

    def __call__(self, row: Row) -> bool:
        return self.left(row) and self.right(row)

    def mask(self, table: Any, deadline: float | None = None) -> list[bool]:
        return list(map(operator.and_, self.left.mask(table, deadline), self.right.mask(table, deadline)))


class _Either(_Both):
    __slots__ = ()

    def __call__(self, row: Row) -> bool:
        return self.left(row) or self.right(row)

    def mask(self, table: Any, deadline: float | None = None) -> list[bool]:
        return list(map(operator.or_, self.left.mask(table, deadline), self.right.mask(table, deadline)))


class _Not:
    __slots__ = ("inner",)

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, row: Row) -> bool:
        return not self.inner(row)

    def mask(self, table: Any, deadline: float | None = None) -> list[bool]:
        return list(map(operator.not_, self.inner.mask(table, deadline)))


class _Always:
    __slots__ = ()

    def __call__(self, row: Row) -> bool:
        return True

    def mask(self, table: Any, deadline: float | None = None) -> list[bool]:
        return [True] * len(table)


def filter_mask(predicate: Predicate, table: Any, deadline: float | None = None) -> list[bool]:
    """``predicate`` (from :func:`compile_filter`) over every row of a table, a column at a
    time; TimeBudgetError once ``time.monotonic()`` passes ``deadline``."""
    return predicate.mask(table, deadline)  # type: ignore[attr-defined]


# --- parser -----------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens, building the predicate as it goes."""

    def __init__(self, text: str, schema: Schema):
        self.text = text
        self.schema = schema
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields: list[_Field] = []  # every field named, in order

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
        field = self._identifier()
        self.fields.append(field)
        return field

    def _identifier(self) -> _Field:
        schema = self.schema
        token = self.next()
        if token.kind == "eof":
            raise self.fail("expected a comparison, got end of filter", token)
        if token.kind not in ("word", "key") or token.keyword():
            raise self.fail(f"unexpected token {token.describe()}", token)
        name: str = token.value
        if token.kind == "word" and "." in name:
            prefix, key = name.split(".", 1)
            section = schema.prefixes.get(prefix.lower())
            if section is None:
                raise self.fail(f"unknown prefix {prefix!r} in {token.raw!r}; expected {schema.hint}", token)
            if not key:
                raise self.fail(f"missing key after {token.raw!r}", token)
            if section == "datasets":
                if key.lower() not in DATASET_FIELDS:
                    raise self.fail(f"unknown dataset field {key!r}; valid fields: context, digest, name", token)
                return _Field(section, key.lower(), numeric=False)
            if section != "attributes":
                return _Field(section, key, numeric=section == "metrics")
        else:
            key = name
        attribute = schema.aliases.get(key.lower(), key.lower())
        if attribute in schema.string_attributes | schema.numeric_attributes:
            return _Field("attributes", attribute, numeric=attribute in schema.numeric_attributes)
        if "." in name and token.kind == "word":
            raise self.fail(f"unknown attribute {key!r}; valid attributes: {schema.attribute_names}", token)
        raise self.fail(
            f"unknown identifier {token.raw!r}; valid {schema.noun} attributes: "
            f"{schema.attribute_names}; other fields take a prefix: {schema.hint}",
            token,
        )

    def value(self, field: _Field, after: _Token) -> Any:
        token = self.next()
        if token.kind == "eof":
            raise self.fail(f"expected a value after {after.describe()}, got end of filter", token)
        if field.numeric and token.kind != "number":
            raise self.fail(f"{field.label} is numeric: expected a number, got {token.describe()}", token)
        if not field.numeric and token.kind != "string":
            raise self.fail(f"{field.label} is a string: expected a quoted string, got {token.describe()}", token)
        return token.value

    def comparison(self) -> Predicate:
        field = self.identifier()
        token = self.next()
        keyword = token.keyword()
        test: Callable[[Any], bool]
        if keyword == "IS":
            negated = self.peek().keyword() == "NOT"
            if negated:
                self.next()
            null = self.next()
            if null.keyword() != "NULL":
                raise self.fail(f"expected NULL, got {null.describe()}", null)
            present = _lift(field, _anything)
            return present if negated else _Not(present)
        if keyword == "NOT":
            in_token = self.next()
            if in_token.keyword() != "IN":
                raise self.fail(f"expected IN after NOT, got {in_token.describe()}", in_token)
            values = self.in_list(field, in_token)
            test = lambda v: v not in values  # noqa: E731
        elif keyword == "IN":
            values = self.in_list(field, token)
            test = values.__contains__
        elif keyword in ("LIKE", "ILIKE"):
            if field.numeric:
                raise self.fail(f"comparator {token.raw!r} is not valid for numeric {field.label}", token)
            test = _Like(self.value(field, token), ignore_case=keyword == "ILIKE")
        elif token.kind == "op":
            test = _Compare(COMPARATORS[token.value], self.value(field, token))
        else:
            raise self.fail(f"expected a comparator after {field.label!r}, got {token.describe()}", token)
        return _lift(field, test)

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
    return _Both(left, right)


def _either(left: Predicate, right: Predicate) -> Predicate:
    return _Either(left, right)


def _anything(value: Any) -> bool:
    return True


class _Like:
    """A SQL LIKE test (``%`` any run, ``_`` one character) that never backtracks.

    The pattern is split at ``%`` into fixed-width segments; the first must match at the
    start, the last at the end, and each one between at its leftmost place after the one
    before (the leftmost place leaves the most room to the rest, so it is the only one to
    try). A value is thus scanned once per segment: ``O(len(value) * len(pattern))`` at
    worst, where the regular expression ``.*a.*a.*b`` took ``O(len(value) ** 3)`` (a
    filter from a web page could hold the search for hours). Each segment is a literal
    (found by ``str.find``) or a quantifier-free regular expression (``_`` as ``.``, and
    ILIKE's ``re.IGNORECASE``: the same case folding as before).
    """

    __slots__ = ("_first", "_middle", "_last", "_whole")

    def __init__(self, pattern: str, *, ignore_case: bool):
        parts = pattern.split("%")
        segments = [_Segment(part, ignore_case) for part in parts]
        self._whole = segments[0] if len(segments) == 1 else None
        self._first, self._last = segments[0], segments[-1]
        self._middle = [s for s in segments[1:-1] if s.width]

    def __call__(self, value: str) -> bool:
        whole = self._whole
        if whole is not None:
            return len(value) == whole.width and whole.at(value, 0)
        first, last = self._first, self._last
        end = len(value) - last.width
        if end < first.width or not first.at(value, 0):
            return False
        pos = first.width
        for segment in self._middle:
            found = segment.find(value, pos, end)
            if found < 0:
                return False
            pos = found + segment.width
        return last.at(value, end)


class _Segment:
    """A run of a LIKE pattern without ``%``: literal characters and ``_``."""

    __slots__ = ("width", "_literal", "_regex")

    def __init__(self, text: str, ignore_case: bool):
        self.width = len(text)
        self._literal: str | None
        self._regex: re.Pattern[str] | None
        if "_" in text or ignore_case:
            self._literal = None
            body = "".join("." if ch == "_" else re.escape(ch) for ch in text)
            self._regex = re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        else:
            self._literal, self._regex = text, None

    def at(self, value: str, pos: int) -> bool:
        """Whether the segment matches ``value`` at ``pos``."""
        if self._literal is not None:
            return value.startswith(self._literal, pos)
        assert self._regex is not None
        return self._regex.match(value, pos) is not None

    def find(self, value: str, pos: int, end: int) -> int:
        """The leftmost match at ``pos`` or after, ending by ``end``; -1 when none."""
        if self._literal is not None:
            return value.find(self._literal, pos, end)
        assert self._regex is not None
        found = self._regex.search(value, pos, end)
        return found.start() if found is not None else -1


_always = _Always()


@functools.lru_cache(maxsize=256)
def compile_filter(text: str | None, schema: Schema = RUNS) -> Predicate:
    """Compile a search filter to a predicate over rows (cached by text and schema).

    >>> keep = compile_filter("metrics.acc > 0.9 and params.model = 'cnn'")
    >>> keep({"metrics": {"acc": 0.95}, "params": {"model": "cnn"}, "tags": {}})
    True

    An empty or ``None`` filter keeps every row. ``schema`` says which fields
    exist (:data:`RUNS` or :data:`EXPERIMENTS`). Raises FilterSyntaxError.
    """
    if text is None or not text.strip():
        return _always
    parser = _Parser(text, schema)
    predicate = parser.expr()
    parser.expect_end()
    return predicate


def filter_fields(text: str | None, schema: Schema = RUNS) -> list[tuple[str, str]]:
    """``(section, key)`` of every field a filter names, in order (``attributes`` for run
    attributes). Raises FilterSyntaxError.

    >>> filter_fields("metrics.acc > 0.9 OR params.model = 'cnn'")
    [('metrics', 'acc'), ('params', 'model')]
    """
    if text is None or not text.strip():
        return []
    parser = _Parser(text, schema)
    parser.expr()
    parser.expect_end()
    return [(field.section, field.key) for field in parser.fields]


# --- order by ---------------------------------------------------------------


def parse_order_by(clauses: Sequence[str] | None, schema: Schema = RUNS) -> list[OrderKey]:
    """Parse order_by clauses such as ``["metrics.m2 DESC", "params.p1"]``.

    >>> parse_order_by(["metrics.`val loss` DESC"])
    [OrderKey(section='metrics', key='val loss', ascending=False)]

    Raises FilterSyntaxError, whose ``text`` is the offending clause (a field
    named twice is refused, as MLflow refuses it).
    """
    try:
        return _order_keys(clauses, schema)
    except FilterSyntaxError as e:  # said as the order-by clause it is, not as a filter
        raise FilterSyntaxError(
            e.reason.replace("end of filter", "end of clause"), e.text, e.position, what="order-by clause"
        ) from None


def _order_keys(clauses: Sequence[str] | None, schema: Schema) -> list[OrderKey]:
    keys: list[OrderKey] = []
    seen: set[tuple[str, str]] = set()
    for clause in clauses or ():
        parser = _Parser(clause, schema)
        if parser.peek().kind == "eof":
            raise parser.fail("empty order_by clause", parser.peek())
        start = parser.peek()
        field = parser.identifier()
        if field.section not in schema.order_sections:
            raise parser.fail(f"{schema.noun}s cannot be ordered by {field.label}", start)
        direction = parser.peek()
        ascending = True
        if direction.kind == "word" and direction.value.upper() in ("ASC", "DESC"):
            ascending = parser.next().value.upper() == "ASC"
        elif direction.kind != "eof":
            raise parser.fail(f"expected ASC or DESC, got {direction.describe()}", direction)
        parser.expect_end()
        if (field.section, field.key) in seen:
            raise parser.fail(f"{field.label} appears twice in order_by", start)
        seen.add((field.section, field.key))
        keys.append(OrderKey(field.section, field.key, ascending))
    return keys


def _first_candidates(
    rows: list[Any], key: OrderKey, getter: Callable[[str, str], Callable[[Any], Any]], limit: int
) -> list[Any]:
    """The rows that can be among the first ``limit`` by ``key``: the limit-th value and
    those before it (ties kept), then the others. Unchanged when the column has a
    missing value, a NaN or mixed kinds (every row is then sorted)."""
    get = getter(key.section, key.key)
    values = list(map(get, rows))
    if None in values or not all(map(operator.eq, values, values)):
        return rows
    try:
        if key.ascending:
            cut = heapq.nsmallest(limit, values)[-1]
            first = [row for row, value in zip(rows, values, strict=False) if value <= cut]
        else:
            cut = heapq.nlargest(limit, values)[-1]
            first = [row for row, value in zip(rows, values, strict=False) if value >= cut]
    except TypeError:
        return rows
    return first


def _mixed(pair: tuple[Any, Row]) -> tuple[bool, Any]:
    """Sort key for a column holding both numbers and strings: numbers first."""
    return isinstance(pair[0], str), pair[0]


def sort_rows(
    rows: Sequence[Any],
    order: Sequence[OrderKey] | None = None,
    schema: Schema = RUNS,
    *,
    getter: Callable[[str, str], Callable[[Any], Any]] = _value_getter,
    limit: int | None = None,
) -> list[Any]:
    """Rows sorted by ``order``, then the schema's tie-breakers (for runs:
    start_time DESC, then run_id ASC); by the schema's default order without ``order``.

    Stable. In either direction, values come first, then NaN, then rows
    missing the value (MLflow's order). One stable sort per key, least
    significant first. ``getter(section, key)`` gives the value of a row (default: of a
    row dict); with a table's :meth:`~gitml.runlog.columns.RunTable.getter` the
    rows are positions in the table. ``limit``: only the first ``limit`` rows are wanted,
    and rows that cannot be among them by the first key may be left out (they are
    then not sorted by the other keys).
    """
    result = list(rows)
    first = operator.itemgetter(0)
    keys = [*order, *schema.tiebreak] if order else list(schema.default_order)
    if limit is not None and 0 < limit * 4 < len(result):
        result = _first_candidates(result, keys[0], getter, limit)
    for order_key in reversed(keys):
        get = getter(order_key.section, order_key.key)
        values = list(map(get, result))
        if None not in values and all(map(operator.eq, values, values)):  # no missing value, no NaN
            try:  # sorted() leaves ``result`` intact when it fails
                result = sorted(result, key=get, reverse=not order_key.ascending)
                continue
            except TypeError:  # numbers and strings: below, numbers first
                pass
        present: list[tuple[Any, Any]] = []
        nan: list[Any] = []
        missing: list[Any] = []
        for row, value in zip(result, values, strict=False):
            if value is None:
                missing.append(row)
            elif value != value:
                nan.append(row)
            else:
                present.append((value, row))
        try:
            present = sorted(present, key=first, reverse=not order_key.ascending)
        except TypeError:  # sorted() leaves ``present`` intact for the retry
            present = sorted(present, key=_mixed, reverse=not order_key.ascending)
        result = [row for _, row in present]
        result.extend(nan)
        result.extend(missing)
    return result

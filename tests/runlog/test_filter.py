"""Search filters and order_by: every operator, alias, error position and sort rule."""

from __future__ import annotations

import math
import random
import re

import pytest

from gitml.errors import FilterSyntaxError
from gitml.runlog.filter import EXPERIMENTS, OrderKey, compile_filter, parse_order_by, sort_rows


def make_row(run_id: str, *, metrics=None, params=None, tags=None, **attributes) -> dict:
    row = {
        "run_id": run_id,
        "run_name": f"name-{run_id}",
        "status": "FINISHED",
        "start_time": 1000,
        "end_time": 2000,
        "user_id": "alice",
        "lifecycle_stage": "active",
        "experiment_id": "0",
        "artifact_uri": f"file:///artifacts/{run_id}",
        "metrics": metrics or {},
        "params": params or {},
        "tags": tags or {},
    }
    row.update(attributes)
    return row


ROWS = [
    make_row(
        "a",
        metrics={"acc": 0.9, "loss": 0.1, "train/loss": 0.5},
        params={"model": "cnn", "lr": "0.01", "my key": "x"},
        tags={"mlflow.runName": "alpha", "team": "Vision"},
        start_time=100,
        end_time=200,
    ),
    make_row(
        "b",
        metrics={"acc": 0.5, "loss": math.nan},
        params={"model": "rnn", "lr": "0.1"},
        tags={"team": "nlp"},
        status="FAILED",
        user_id="bob",
        start_time=300,
        end_time=None,
    ),
    make_row(
        "c",
        metrics={"acc": math.inf, "loss": -math.inf},
        params={"model": "cnn_large"},
        tags={},
        status="RUNNING",
        start_time=None,
        end_time=None,
        run_name="Cee",
    ),
    make_row(
        "d",
        metrics={},
        params={},
        tags={"team": "vision"},
        start_time=200,
        end_time=400,
        lifecycle_stage="deleted",
        experiment_id="7",
    ),
]


def matching(text: str | None) -> list[str]:
    keep = compile_filter(text)
    return [row["run_id"] for row in ROWS if keep(row)]


@pytest.mark.parametrize(
    "text, expected",
    [
        # metrics: every comparator, missing keys never match
        ("metrics.acc = 0.9", ["a"]),
        ("metrics.acc != 0.9", ["b", "c"]),
        ("metrics.acc > 0.5", ["a", "c"]),
        ("metrics.acc >= 0.5", ["a", "b", "c"]),
        ("metrics.acc < 0.9", ["b"]),
        ("metrics.acc <= 0.9", ["a", "b"]),
        ("metrics.acc > 1e308", ["c"]),
        ("metrics.acc = 9E-1", ["a"]),
        ("metrics.loss < -1", ["c"]),
        ("metrics.loss > -1.5e3", ["a"]),
        ("metrics.acc>0.5", ["a", "c"]),
        ("metrics.acc IN (0.5, 0.9)", ["a", "b"]),
        ("metrics.acc NOT IN (0.5)", ["a", "c"]),
        ("metrics.acc in (1)", []),
        # NaN: a value, never equal or ordered; != and NOT IN are true for it
        ("metrics.loss = 0.1", ["a"]),
        ("metrics.loss != 0.1", ["b", "c"]),
        ("metrics.loss > -1e308", ["a"]),
        ("metrics.loss NOT IN (0.1)", ["b", "c"]),
        ("metrics.loss IS NULL", ["d"]),
        ("metrics.loss IS NOT NULL", ["a", "b", "c"]),
        # prefix aliases and keys with dots, slashes, spaces
        ("metric.acc = 0.9", ["a"]),
        ("metrics.train/loss = 0.5", ["a"]),
        ("metrics.`train/loss` = 0.5", ["a"]),
        ('metrics."train/loss" = 0.5', ["a"]),
        ("params.`my key` = 'x'", ["a"]),
        ('params."my key" = "x"', ["a"]),
        ("param.model = 'cnn'", ["a"]),
        ("parameters.model = 'cnn'", ["a"]),
        ("parameter.model = 'cnn'", ["a"]),
        ("tags.mlflow.runName = 'alpha'", ["a"]),
        ("tag.team = 'nlp'", ["b"]),
        ("attribute.status = 'FAILED'", ["b"]),
        ("attr.status = 'FAILED'", ["b"]),
        ("run.status = 'FAILED'", ["b"]),
        ("METRICS.acc = 0.9", ["a"]),
        # strings: every comparator, quoting and escapes
        ("params.model = 'cnn'", ["a"]),
        ("params.model != 'cnn'", ["b", "c"]),
        ('params.model = "rnn"', ["b"]),
        ("params.model > 'cnn'", ["b", "c"]),
        ("params.model >= 'cnn'", ["a", "b", "c"]),
        ("params.model < 'rnn'", ["a", "c"]),
        ("params.model <= 'cnn'", ["a"]),
        ("params.lr < '0.05'", ["a"]),
        ("params.model IN ('cnn', 'rnn')", ["a", "b"]),
        ("params.model NOT IN ('cnn')", ["b", "c"]),
        ("params.model IS NULL", ["d"]),
        ("params.model IS NOT NULL", ["a", "b", "c"]),
        ("tags.team != 'nlp'", ["a", "d"]),
        # LIKE is case-sensitive, ILIKE not; % any run, _ one character
        ("params.model LIKE 'cnn%'", ["a", "c"]),
        ("params.model LIKE '%nn'", ["a", "b"]),
        ("params.model LIKE '_nn'", ["a", "b"]),
        ("params.model LIKE 'c_n'", ["a"]),
        ("params.model LIKE 'c%_large'", ["c"]),
        ("params.model LIKE 'CNN%'", []),
        ("params.model ILIKE 'CNN%'", ["a", "c"]),
        ("tags.team LIKE 'vision'", ["d"]),
        ("tags.team ILIKE 'VISION'", ["a", "d"]),
        ("tags.team like '%i%'", ["a", "d"]),
        ("params.lr LIKE '0.0_'", ["a"]),
        ("params.lr LIKE '0.%'", ["a", "b"]),
        ("params.model ILIKE '%'", ["a", "b", "c"]),
        # attributes, bare and prefixed; created is start_time
        ("attributes.status = 'RUNNING'", ["c"]),
        ("status = 'RUNNING'", ["c"]),
        ("status IN ('RUNNING', 'FAILED')", ["b", "c"]),
        ("attributes.run_name = 'Cee'", ["c"]),
        ("run_name ILIKE 'name-%'", ["a", "b", "d"]),
        ("attributes.run_id = 'b'", ["b"]),
        ("attributes.user_id != 'alice'", ["b"]),
        ("attributes.lifecycle_stage = 'deleted'", ["d"]),
        ("attributes.experiment_id = '7'", ["d"]),
        ("attributes.artifact_uri LIKE '%/c'", ["c"]),
        ("attributes.start_time > 100", ["b", "d"]),
        ("attributes.start_time >= 100", ["a", "b", "d"]),
        ("attributes.created < 300", ["a", "d"]),
        ("created = 200", ["d"]),
        ("start_time IN (100, 300)", ["a", "b"]),
        ("start_time NOT IN (100)", ["b", "d"]),
        ("attributes.start_time IS NULL", ["c"]),
        ("attributes.end_time IS NULL", ["b", "c"]),
        ("attributes.end_time IS NOT NULL", ["a", "d"]),
        ("end_time != 200", ["d"]),
        ("attributes.`status` = 'FAILED'", ["b"]),
        # back ticked prefixes, as MLflow accepts them
        ("`metric`.acc = 0.9", ["a"]),
        ("`metrics`.acc > 0.5", ["a", "c"]),
        ("`params`.model = 'rnn'", ["b"]),
        ("`param`.`my key` = 'x'", ["a"]),
        ("`tags`.\"team\" = 'nlp'", ["b"]),
        ("`attributes`.status = 'FAILED'", ["b"]),
        ("`run`.status = 'FAILED'", ["b"]),
        # MLflow's run-name spellings
        ("attributes.`Run name` = 'Cee'", ["c"]),
        ("attributes.`Run Name` = 'Cee'", ["c"]),
        ("`run name` = 'Cee'", ["c"]),
        ("run_name = 'Cee'", ["c"]),
        ("attributes.run_name = 'Cee'", ["c"]),
        ("tags.`mlflow.runName` = 'alpha'", ["a"]),
        ("Created < 300", ["a", "d"]),
        # AND binds tighter than OR; parentheses; keywords in any case
        ("params.model = 'cnn' OR params.model = 'rnn' AND metrics.acc > 0.9", ["a"]),
        ("(params.model = 'cnn' OR params.model = 'rnn') AND metrics.acc < 0.9", ["b"]),
        ("metrics.acc > 0.9 or metrics.acc < 0.6 and tags.team = 'nlp'", ["b", "c"]),
        ("(metrics.acc > 0.9 or metrics.acc < 0.6) and tags.team = 'nlp'", ["b"]),
        ("((tags.team = 'nlp'))", ["b"]),
        ("metrics.acc > 0 aNd params.model is not null AND status != 'FAILED'", ["a", "c"]),
        ("status = 'FAILED' OR status = 'RUNNING' OR lifecycle_stage = 'deleted'", ["b", "c", "d"]),
        # no filter at all
        ("", ["a", "b", "c", "d"]),
        ("   ", ["a", "b", "c", "d"]),
        (None, ["a", "b", "c", "d"]),
    ],
)
def test_filter_matches(text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize(
    "value, stored",
    [
        # as MLflow: the text between the quotes, verbatim; no escapes
        (r"'C:\data\x'", "C:\\data\\x"),
        (r"'C:\'", "C:\\"),
        (r"'it\'s'", "it\\'s"),
        ("'it''s'", "it''s"),
        ('"it\'s"', "it's"),
        ('"say ""hi"""', 'say ""hi""'),
        (r'"a\"b"', 'a\\"b'),
        (r'"back\\slash"', "back\\\\slash"),
        ("'%'", "%"),
    ],
)
def test_quoted_values_are_verbatim(value, stored):
    keep = compile_filter(f"params.p = {value}")
    assert keep(make_row("x", params={"p": stored}))
    assert not keep(make_row("y", params={"p": stored + "!"}))


def test_backslash_path_matches_with_like_and_in_an_and():
    keep = compile_filter(r"params.path LIKE 'C:\data\%' AND tags.t = 'a\'")
    assert keep(make_row("x", params={"path": "C:\\data\\x"}, tags={"t": "a\\"}))
    assert not keep(make_row("y", params={"path": "C:datax"}, tags={"t": "a\\"}))


def test_like_treats_regex_characters_literally():
    keep = compile_filter("params.p LIKE 'a.b(c)+%'")
    assert keep(make_row("x", params={"p": "a.b(c)+tail"}))
    assert not keep(make_row("y", params={"p": "aXb(c)+tail"}))


def test_like_wildcards_span_newlines():
    assert compile_filter("tags.note LIKE 'a%b'")(make_row("x", tags={"note": "a\n\nb"}))


def _regex_like(pattern: str, value: str, ignore_case: bool) -> bool:
    """LIKE as the regular expression it was compiled to before (the reference semantics)."""
    body = "".join({"%": ".*", "_": "."}.get(ch) or re.escape(ch) for ch in pattern)
    return re.fullmatch(body, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def test_like_agrees_with_the_regular_expression_on_random_patterns():
    rng = random.Random(21)
    alphabet = "aAbB%_.\n*"
    for _ in range(20_000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
        value = "".join(rng.choice("aAbB._\n*%") for _ in range(rng.randint(0, 9)))
        for keyword, ignore_case in (("LIKE", False), ("ILIKE", True)):
            keep = compile_filter(f"params.p {keyword} '{pattern}'")
            assert keep(make_row("x", params={"p": value})) == _regex_like(pattern, value, ignore_case), (
                pattern,
                value,
            )


def test_like_does_not_backtrack_on_a_hostile_pattern():
    # '.*a.*a...b' over 20,000 'a's backtracks for ages; the segment scan is one pass per '%'
    pattern = "%a" * 12 + "%b"
    keep = compile_filter(f"tags.note LIKE '{pattern}' OR tags.note ILIKE '{pattern.upper()}_'")
    rows = [make_row(str(i), tags={"note": "a" * 20_000}) for i in range(20)]
    assert not any(keep(row) for row in rows)
    assert keep(make_row("y", tags={"note": "a" * 20_000 + "b"}))
    assert compile_filter(f"tags.note ILIKE '{pattern.upper()}_'")(make_row("z", tags={"note": "a" * 20_000 + "bz"}))


def test_compiled_filters_are_cached():
    assert compile_filter("metrics.acc > 0.5") is compile_filter("metrics.acc > 0.5")


def test_predicate_over_5000_rows():  # its speed is measured in benchmarks/, not here
    rng = random.Random(0)
    rows = [
        make_row(
            f"r{i}", metrics={"m1": rng.random(), "m2": rng.random()}, params={"p1": rng.choice("abc")}, start_time=i
        )
        for i in range(5000)
    ]
    keep = compile_filter("metrics.m1 > 0.5 and params.p1 = 'a' or tags.x IS NOT NULL")
    kept = [row for row in rows if keep(row)]
    assert kept == [r for r in rows if r["metrics"]["m1"] > 0.5 and r["params"]["p1"] == "a"]


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("params.p = 'abc", 11, "unterminated string"),
        ('params.p = "abc', 11, "unterminated string"),
        ("params.`my key = 'x'", 7, 'unterminated string "`my key'),
        ("metrics.x >", 11, "expected a value after '>', got end of filter"),
        ("metrics.x > AND metrics.y < 1", 12, "got 'AND'"),
        ("metrics.x", 9, "expected a comparator after 'metrics.x', got end of filter"),
        ("metrics.x 1", 10, "expected a comparator after 'metrics.x', got '1'"),
        ("foo.x = 1", 0, "unknown prefix 'foo'"),
        ("mlflow.runName = 'x'", 0, "unknown prefix 'mlflow'"),
        ("metrics.x = 'abc'", 12, "metrics.x is numeric: expected a number, got 'abc'"),
        ("metrics.x IN (1, 'a')", 17, "expected a number, got 'a'"),
        ("start_time > 'yesterday'", 13, "expected a number, got 'yesterday'"),
        ("params.p = 1", 11, "params.p is a string: expected a quoted string, got '1'"),
        ("params.p = abc", 11, "expected a quoted string, got 'abc'"),
        ("status = 1", 9, "expected a quoted string, got '1'"),
        ("metrics.x LIKE '1%'", 10, "comparator 'LIKE' is not valid for numeric metrics.x"),
        ("metrics.x ilike '1%'", 10, "comparator 'ilike' is not valid"),
        ("created LIKE '1%'", 8, "comparator 'LIKE' is not valid for numeric attributes.start_time"),
        ("metrics.x == 1", 10, "unknown comparator '=='"),
        ("metrics.x <> 1", 10, "unknown comparator '<>'"),
        ("metrics.x ! 1", 10, "unknown comparator '!'"),
        ("metrics.x ~ 1", 10, "unexpected character '~'"),
        ("(metrics.x > 1", 0, "unclosed '('"),
        ("metrics.x > 1 AND (metrics.y < 2 OR (tags.t = 'a')", 18, "unclosed '('"),
        ("metrics.x > 1)", 13, "unexpected token ')'"),
        ("(metrics.x > 1 metrics.y < 2)", 15, "unexpected token 'metrics.y'"),
        ("metrics.x > 1 metrics.y < 2", 14, "unexpected token 'metrics.y'"),
        ("metrics.x > 1 2", 14, "unexpected token '2'"),
        ("metrics.x > 1 AND", 17, "expected a comparison, got end of filter"),
        ("AND metrics.x > 1", 0, "unexpected token 'AND'"),
        ("metrics.x > 1 OR OR metrics.y > 1", 17, "unexpected token 'OR'"),
        ("()", 1, "unexpected token ')'"),
        ("metrics.x IN ()", 14, "empty IN list"),
        ("params.p NOT IN ()", 17, "empty IN list"),
        ("metrics.x IN 1", 13, "expected '(' after IN, got '1'"),
        ("metrics.x IN (1, 2", 18, "expected ',' or ')' in IN list, got end of filter"),
        ("metrics.x IN (1 2)", 16, "expected ',' or ')' in IN list, got '2'"),
        ("metrics.x IN (1,)", 16, "expected a number, got ')'"),
        ("params.p NOT 'a'", 13, "expected IN after NOT, got 'a'"),
        ("params.p IS 'a'", 12, "expected NULL, got 'a'"),
        ("params.p IS NOT", 15, "expected NULL, got end of filter"),
        ("run_nam = 'x'", 0, "unknown identifier 'run_nam'"),
        ("`metrix`.acc > 1", 0, "unknown prefix 'metrix'"),
        ("`metric`. > 1", 0, "missing key after '`metric`.'"),
        ("datasets.size = 'x'", 0, "unknown dataset field 'size'"),
        ("datasets.name = 1", 16, "datasets.name is a string: expected a quoted string"),
        ("metrics.x > 1 AND acc > 1", 18, "unknown identifier 'acc'"),
        (
            "attributes.colour = 'red'",
            0,
            "unknown attribute 'colour'; valid attributes: artifact_uri, created, end_time",
        ),
        ("metrics.x > 1 and attributes.foo = 'x'", 18, "unknown attribute 'foo'"),
        ("metrics. = 1", 0, "missing key after 'metrics.'"),
        ("'a' = params.p", 0, "unexpected token 'a'"),
        ("metrics.`x` = 1 AND `status` LIKE 'a", 34, "unterminated string"),
    ],
)
def test_malformed_filter_points_at_token(text, position, message):
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(text)
    error = caught.value
    assert error.position == position
    assert error.text == text
    assert message in str(error)
    assert str(error).endswith(f" at position {position} in filter {text!r}")


# --- order by ---------------------------------------------------------------


@pytest.mark.parametrize(
    "clause, expected",
    [
        ("metrics.m2 DESC", OrderKey("metrics", "m2", ascending=False)),
        ("metrics.m2 desc", OrderKey("metrics", "m2", ascending=False)),
        ("params.p1", OrderKey("params", "p1")),
        ("params.p1 asc", OrderKey("params", "p1")),
        ("attributes.start_time ASC", OrderKey("attributes", "start_time")),
        ("attributes.created DESC", OrderKey("attributes", "start_time", ascending=False)),
        ("start_time", OrderKey("attributes", "start_time")),
        ("run_name DESC", OrderKey("attributes", "run_name", ascending=False)),
        ("metrics.`val loss` DESC", OrderKey("metrics", "val loss", ascending=False)),
        ('tags."my tag"', OrderKey("tags", "my tag")),
        ("tags.mlflow.runName", OrderKey("tags", "mlflow.runName")),
        ("  metric.m1   DESC  ", OrderKey("metrics", "m1", ascending=False)),
    ],
)
def test_parse_order_by(clause, expected):
    assert parse_order_by([clause]) == [expected]


def test_parse_order_by_empty():
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []


@pytest.mark.parametrize(
    "clause, position, message",
    [
        ("", 0, "empty order_by clause"),
        ("  ", 2, "empty order_by clause"),
        ("metrics.m1 DOWN", 11, "expected ASC or DESC, got 'DOWN'"),
        ("metrics.m1 DESC ASC", 16, "unexpected token 'ASC'"),
        ("foo.m1", 0, "unknown prefix 'foo'"),
        ("attributes.size", 0, "unknown attribute 'size'"),
        ("m1 DESC", 0, "unknown identifier 'm1'"),
        ("metrics.`m1 DESC", 8, "unterminated string"),
        ("datasets.name", 0, "runs cannot be ordered by datasets.name"),
        ("metrics.ok DESC", 0, "metrics.ok appears twice in order_by"),
        ("attributes.created", 0, "attributes.start_time appears twice"),
    ],
)
def test_parse_order_by_errors(clause, position, message):
    with pytest.raises(FilterSyntaxError) as caught:
        parse_order_by(["metrics.ok", "start_time", clause])
    assert caught.value.position == position
    assert caught.value.text == clause
    assert message in str(caught.value)


SORT_ROWS = [
    make_row("r1", metrics={"m": 2.0}, params={"p": "b"}, start_time=10),
    make_row("r2", metrics={"m": math.nan}, params={"p": "a"}, start_time=20),
    make_row("r3", metrics={"m": 1.0}, params={}, start_time=30),
    make_row("r4", metrics={}, params={"p": "10"}, start_time=40),
    make_row("r5", metrics={"m": 2.0}, params={"p": "9"}, start_time=50),
    make_row("r6", metrics={"m": -math.inf}, params={"p": "a"}, start_time=None),
]


def sorted_ids(*clauses: str) -> list[str]:
    return [row["run_id"] for row in sort_rows(SORT_ROWS, parse_order_by(list(clauses)))]


@pytest.mark.parametrize(
    "clauses, expected",
    [
        # default: start_time DESC (missing last), then run_id ASC
        ((), ["r5", "r4", "r3", "r2", "r1", "r6"]),
        # as MLflow: values, then NaN, then missing, in both directions; ties by start_time DESC
        (("metrics.m",), ["r6", "r3", "r5", "r1", "r2", "r4"]),
        (("metrics.m DESC",), ["r5", "r1", "r3", "r6", "r2", "r4"]),
        # strings compare as strings ("10" < "9")
        (("params.p",), ["r4", "r5", "r2", "r6", "r1", "r3"]),
        (("params.p DESC",), ["r1", "r2", "r6", "r5", "r4", "r3"]),
        # several keys, most significant first
        (("metrics.m DESC", "params.p"), ["r5", "r1", "r3", "r6", "r2", "r4"]),
        (("params.p DESC", "metrics.m DESC"), ["r1", "r6", "r2", "r5", "r4", "r3"]),
        (("attributes.start_time ASC",), ["r1", "r2", "r3", "r4", "r5", "r6"]),
        (("created DESC",), ["r5", "r4", "r3", "r2", "r1", "r6"]),
        (("tags.absent DESC",), ["r5", "r4", "r3", "r2", "r1", "r6"]),
    ],
)
def test_sort_rows(clauses, expected):
    assert sorted_ids(*clauses) == expected


def test_sort_rows_ties_break_by_run_id_and_leave_input_alone():
    rows = [make_row(run_id, start_time=5) for run_id in ("c", "a", "b")]
    assert [r["run_id"] for r in sort_rows(rows, [])] == ["a", "b", "c"]
    assert [r["run_id"] for r in rows] == ["c", "a", "b"]


def test_sort_rows_mixed_types_numbers_first():
    rows = [make_row("s", params={"p": "x"}), make_row("n", params={"p": 3})]
    assert [r["run_id"] for r in sort_rows(rows, [OrderKey("params", "p")])] == ["n", "s"]


def test_sort_rows_over_5000_rows():  # its speed is measured in benchmarks/, not here
    rng = random.Random(1)
    rows = [
        make_row(
            f"r{i:05}",
            metrics={"m": rng.random()} if i % 7 else {},
            params={"p": rng.choice("xyz")},
            start_time=rng.randrange(100),
        )
        for i in range(5000)
    ]
    order = parse_order_by(["params.p DESC", "metrics.m"])
    result = sort_rows(rows, order)
    present = [r for r in result if "m" in r["metrics"]]
    expected = sorted(present, key=lambda r: r["metrics"]["m"])
    expected = sorted(expected, key=lambda r: r["params"]["p"], reverse=True)
    assert present == expected
    missing_at = [i for i, r in enumerate(result) if "m" not in r["metrics"]]
    # within each p group, rows without m come after the rows with m
    for i in missing_at[:-1]:
        nxt = result[i + 1]
        assert "m" not in nxt["metrics"] or nxt["params"]["p"] != result[i]["params"]["p"]


# --- datasets ---------------------------------------------------------------

DATASET_ROWS = [
    make_row(
        "two",
        datasets=[
            {"name": "train", "digest": "d1", "context": "training"},
            {"name": "eval", "digest": "d2", "context": None},
        ],
    ),
    make_row("one", datasets=[{"name": "Train", "digest": "d3", "context": "eval"}]),
    make_row("none"),  # no dataset inputs: matches no datasets. comparison
    make_row("empty", datasets=[]),
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("datasets.name = 'train'", ["two"]),
        ("dataset.name = 'eval'", ["two"]),
        ("datasets.name != 'train'", ["two", "one"]),  # any input other than 'train'
        ("datasets.name ILIKE 'train'", ["two", "one"]),
        ("datasets.name LIKE 'T%'", ["one"]),
        ("datasets.digest IN ('d2', 'd3')", ["two", "one"]),
        ("datasets.digest NOT IN ('d1', 'd2')", ["one"]),
        ("datasets.context = 'training'", ["two"]),
        ("datasets.context = 'eval'", ["one"]),
        ("datasets.context != 'eval'", ["two"]),
        ("`datasets`.name = 'Train'", ["one"]),
        ("datasets.name IS NULL", ["none", "empty"]),
        ("datasets.context IS NOT NULL", ["two", "one"]),
        ("datasets.name = 'train' AND datasets.digest = 'd2'", ["two"]),
    ],
)
def test_dataset_filters_match_any_input(text, expected):
    keep = compile_filter(text)
    assert [row["run_id"] for row in DATASET_ROWS if keep(row)] == expected


# --- experiments ------------------------------------------------------------


def experiment_row(experiment_id, name, created, updated=None, tags=None):
    return {
        "experiment_id": experiment_id,
        "name": name,
        "creation_time": created,
        "last_update_time": updated if updated is not None else created,
        "lifecycle_stage": "active",
        "tags": tags or {},
    }


EXPERIMENT_ROWS = [
    experiment_row("0", "Default", None),
    experiment_row("11", "churn", 100, 500, {"note": "name = x", "team": "a"}),
    experiment_row("12", "Churn-v2", 200, 300, {"team": "b"}),
    experiment_row("13", "vision", 200, 200),
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name = 'churn'", ["11"]),
        ("attribute.name = 'churn'", ["11"]),
        ("attributes.name != 'churn'", ["0", "12", "13"]),
        ("name LIKE 'churn%'", ["11"]),
        ("name ILIKE 'churn%'", ["11", "12"]),
        ("`name` = 'vision'", ["13"]),
        ("tags.note = 'name = x'", ["11"]),  # text inside a string is a value
        ("tags.note LIKE '%name%' AND name = 'churn'", ["11"]),
        ("tag.team IN ('a', 'b')", ["11", "12"]),
        ("tags.team IS NULL", ["0", "13"]),
        ("creation_time > 100", ["12", "13"]),
        ("creation_time >= 100 AND last_update_time < 300", ["13"]),
        ("experiment_id IN ('11', '13')", ["11", "13"]),
        ("experiment_id = '0' OR name = 'vision'", ["0", "13"]),
    ],
)
def test_experiment_filters(text, expected):
    keep = compile_filter(text, EXPERIMENTS)
    assert [row["experiment_id"] for row in EXPERIMENT_ROWS if keep(row)] == expected


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("params.x = 'a'", 0, "unknown prefix 'params' in 'params.x'; expected tags., attributes."),
        (
            "run_name = 'x'",
            0,
            "unknown identifier 'run_name'; valid experiment attributes: "
            "creation_time, experiment_id, last_update_time, name",
        ),
        ("attributes.start_time > 1", 0, "unknown attribute 'start_time'"),
        ("creation_time > 'x'", 16, "expected a number"),
        ("name = 1", 7, "expected a quoted string"),
    ],
)
def test_experiment_filter_errors(text, position, message):
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(text, EXPERIMENTS)
    assert caught.value.position == position
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "clauses, expected",
    [
        # default: creation_time DESC (missing last), experiment_id ASC
        ((), ["12", "13", "11", "0"]),
        # given an order: its keys, then experiment_id DESC (as MLflow)
        (("name",), ["12", "0", "11", "13"]),
        (("name DESC",), ["13", "11", "0", "12"]),
        (("creation_time",), ["11", "13", "12", "0"]),
        (("attribute.creation_time DESC",), ["13", "12", "11", "0"]),
        (("last_update_time DESC",), ["11", "12", "13", "0"]),
        (("experiment_id DESC",), ["13", "12", "11", "0"]),
        (("creation_time", "experiment_id"), ["11", "12", "13", "0"]),
    ],
)
def test_experiment_order(clauses, expected):
    rows = sort_rows(EXPERIMENT_ROWS, parse_order_by(list(clauses), EXPERIMENTS), EXPERIMENTS)
    assert [row["experiment_id"] for row in rows] == expected


@pytest.mark.parametrize(
    "clause, message",
    [("tags.team", "experiments cannot be ordered by tags.team"), ("start_time", "unknown identifier")],
)
def test_experiment_order_errors(clause, message):
    with pytest.raises(FilterSyntaxError, match=message):
        parse_order_by([clause], EXPERIMENTS)

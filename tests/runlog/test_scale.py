"""Search at scale: the columnar snapshot of the index, column-wise filters, the frame
built by columns, and packed-refs read in one pass (issue 15)."""

import math
import os
import sqlite3

import pytest

import gitml
from gitml.runlog import index as index_module
from gitml.runlog.columns import RunTable, decode_column, encode_column
from gitml.runlog.filter import compile_filter, filter_mask, parse_order_by, sort_rows
from tests.conftest import git, run_python

FILTERS = [
    "",
    "metrics.m > 0.5",
    "metrics.m != 0.5",
    "metrics.m = 0.5 OR params.p = 'x'",
    "params.p IN ('x', 'y') AND tags.t IS NULL",
    "params.p NOT IN ('x')",
    "tags.t IS NOT NULL",
    "params.p LIKE 'x%' OR (metrics.m <= 0.2 AND tags.t = 'v')",
    "attributes.run_name ILIKE 'R1%'",
    "start_time >= 5 AND status = 'FINISHED'",
    "datasets.name = 'd1'",
    "datasets.context IS NULL",
    "metrics.missing IS NULL",
]


def make_rows(n):
    rows = []
    for i in range(n):
        metrics = {"m": float("nan") if i % 11 == 0 else (i % 10) / 10} if i % 7 else {}
        rows.append(
            {
                "run_id": f"{i:032x}",
                "experiment_id": "1",
                "run_name": f"r{i}",
                "status": "FINISHED",
                "start_time": i % 13,
                "end_time": None if i % 3 else i,
                "user_id": "u",
                "lifecycle_stage": "active",
                "artifact_uri": f"runs:/{i:032x}",
                "metrics": metrics,
                "params": {"p": "xyz"[i % 3]} if i % 5 else {},
                "tags": {"t": "v"} if i % 2 else {},
                "datasets": [{"name": f"d{i % 3}", "digest": "ab", "context": None if i % 4 else "train"}]
                if i % 6
                else [],
            }
        )
    return rows


def test_filters_by_column_match_filters_by_row():
    rows = make_rows(300)
    table = RunTable.from_rows([(b"r%d" % i, b"c", r) for i, r in enumerate(rows)])
    for text in FILTERS:
        predicate = compile_filter(text)
        assert filter_mask(predicate, table) == [predicate(r) for r in rows], text


def test_sorting_positions_matches_sorting_rows():
    rows = make_rows(300)
    table = RunTable.from_rows([(b"r%d" % i, b"c", r) for i, r in enumerate(rows)])
    for order in (None, ["metrics.m DESC"], ["params.p", "metrics.m"], ["attributes.end_time DESC"]):
        keys = parse_order_by(order)
        by_rows = [r["run_id"] for r in sort_rows(rows, keys)]
        by_positions = [rows[i]["run_id"] for i in sort_rows(range(len(rows)), keys, getter=table.getter)]
        assert by_positions == by_rows, order


def test_columns_round_trip_through_their_encoding():
    for column in (
        [1.5, None, math.inf, -0.0],
        [1, None, -(2**63)],
        ["a", None, "é", "a"],
        [None, None],
        [[{"name": "x"}], []],
        [True, 1.0],
        ["1", 1],
    ):
        back = decode_column(encode_column(column), len(column))
        assert [repr(v) for v in back] == [repr(v) for v in column]
    nan = decode_column(encode_column([math.nan]), 1)[0]
    assert math.isnan(nan)
    with pytest.raises(ValueError):
        decode_column(encode_column([1.0, 2.0])[:-3], 2)


@pytest.fixture
def small_slack(monkeypatch):
    monkeypatch.setattr(index_module, "SNAPSHOT_SLACK", 8)


def snapshot_generations(repo):
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        return [g for (g,) in db.execute("SELECT DISTINCT gen FROM snapshot")]


def make_runs(n, prefix="r"):
    ids = []
    for i in range(n):
        with gitml.start_run(run_name=f"{prefix}{i}") as run:
            gitml.log_params({"p": "xyz"[i % 3]})
            gitml.log_metrics({"m": i / n})
        ids.append(run.info.run_id)
    gitml.flush()
    return ids


def test_snapshot_serves_search_and_other_processes_changes_are_seen_at_once(repo, small_slack):
    gitml.set_experiment("scale")
    ids = make_runs(30)
    frame = gitml.search_runs(filter_string="params.p = 'x'", order_by=["metrics.m DESC"])
    assert snapshot_generations(repo) == [1]  # 30 runs outside any snapshot: one was written
    assert list(frame["run_id"]) == [ids[i] for i in range(27, -1, -3)]
    # another process changes a run, makes a new one, and deletes a ref
    run_python(
        f"""
import gitml, subprocess
gitml.set_experiment("scale")
with gitml.start_run(run_id="{ids[3]}"):
    gitml.log_metric("m", 5.0)
with gitml.start_run(run_name="new"):
    gitml.log_params({{"p": "x"}})
    gitml.log_metric("m", 7.0)
""",
        repo,
    )
    ref = [
        r for r in git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs/").split() if r.endswith(ids[6])
    ][0]
    git(repo, "update-ref", "-d", ref)
    frame = gitml.search_runs(filter_string="params.p = 'x'", order_by=["metrics.m DESC"])
    names = list(frame["tags.mlflow.runName"])
    assert names[:2] == ["new", "r3"] and "r6" not in names and len(names) == 10
    assert frame["metrics.m"].iloc[1] == 5.0
    # a fresh process sees the same, from the snapshot plus the changed rows
    out = (
        run_python(
            """
import gitml
gitml.set_experiment("scale")
f = gitml.search_runs(filter_string="params.p = 'x'", order_by=["metrics.m DESC"])
print(",".join(f["tags.mlflow.runName"]))
""",
            repo,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out.split(",") == names


def test_snapshot_is_rewritten_once_many_runs_are_outside_it(repo, small_slack):
    gitml.set_experiment("scale")
    make_runs(10)
    gitml.search_runs()
    assert snapshot_generations(repo) == [1]
    make_runs(3, prefix="s")
    assert len(gitml.search_runs()) == 13
    assert snapshot_generations(repo) == [1]  # 3 new runs are read as rows
    make_runs(9, prefix="t")
    assert len(gitml.search_runs()) == 22
    assert snapshot_generations(repo) == [2]  # the old generation is gone


def test_a_damaged_snapshot_is_one_line_error_then_rebuilt(repo, small_slack):
    gitml.set_experiment("scale")
    make_runs(10)
    gitml.search_runs()
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        db.execute("UPDATE snapshot SET data = x'6600' WHERE name = 'metrics.m'")
    out = run_python(
        """
import gitml
gitml.set_experiment("scale")
try:
    gitml.search_runs()
except gitml.GitmlError as e:
    print("ERROR", e)
print(len(gitml.search_runs()))
""",
        repo,
    ).stdout
    assert "ERROR search index" in out and "metrics.m" in out and "damaged" in out
    assert out.strip().splitlines()[-1] == "10"


def test_an_older_snapshot_format_is_ignored(repo, small_slack):
    gitml.set_experiment("scale")
    make_runs(10)
    gitml.search_runs()
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        db.execute("UPDATE snapshot SET data = x'30' WHERE name = 'format'")
    out = run_python("import gitml; print(len(gitml.search_runs(search_all_experiments=True)))", repo).stdout
    assert out.strip().splitlines()[-1] == "10"


def test_frame_built_by_columns_has_mlflow_columns_and_types(repo):
    from gitml.frame import runs_frame

    rows = make_rows(20)
    frame = runs_frame(rows)
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert frame["metrics.m"].dtype == "float64" and math.isnan(frame["metrics.m"].iloc[0])
    assert frame["end_time"].isna().sum() == sum(1 for r in rows if r["end_time"] is None)
    assert frame["params.p"].isna().tolist() == ["p" not in r["params"] for r in rows]
    assert frame["params.p"].dropna().tolist() == [r["params"]["p"] for r in rows if "p" in r["params"]]
    assert "metrics.missing" not in frame.columns
    assert len(runs_frame([]).columns) == 6


def test_text_columns_are_what_pandas_makes_of_the_same_values(repo):
    import pandas as pd

    from gitml.frame import runs_frame

    rows = make_rows(20)
    for i, row in enumerate(rows):
        row["tags"] = {"only": "x"} if i == 3 else {}  # one run has it: mostly missing
        row["params"]["unicode"] = "\u00e9t\u00e9 \U0001f600" if i % 2 else ""
        row["artifact_uri"] = None  # no run has one: no string column to pandas either
    frame = runs_frame(rows)
    for name in ("run_id", "status", "artifact_uri", "params.p", "params.unicode", "tags.only"):
        section, _, key = name.partition(".")
        values = [(r[section].get(key) if key else r[name]) for r in rows]
        pd.testing.assert_series_equal(frame[name], pd.Series(values, name=name))  # values, missing ones and dtype


def test_packed_refs_read_in_one_pass_match_git(tmp_path):
    from gitml.store.refs import RefLister

    path = tmp_path / "r"
    git(tmp_path, "init", "-q", str(path))
    git(path, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "c")
    head = git(path, "rev-parse", "HEAD").strip()
    lines = "".join(f"create refs/gitml/runs/{i % 7}/{i:032x} {head}\n" for i in range(3000))
    git(path, "update-ref", "--stdin", input_text=lines)
    git(path, "-c", "user.name=a", "-c", "user.email=a@b", "tag", "-a", "-m", "t", "v1")  # a peeled line in packed-refs
    git(path, "pack-refs", "--all")
    git(path, "update-ref", f"refs/gitml/runs/3/{3:032x}", git(path, "rev-parse", "v1").strip())  # loose wins
    lister = RefLister(str(path / ".git"))
    expected = dict(
        line.split(" ")[::-1]
        for line in git(path, "for-each-ref", "--format=%(objectname) %(refname)", "refs/gitml/runs/").split("\n")
        if line
    )
    got = {k.decode(): v.decode() for k, v in lister.under("refs/gitml/runs/").items()}
    assert got == expected and len(got) == 3000
    assert {k.decode() for k in lister.under("refs/tags/")} == {"refs/tags/v1"}


def test_push_reads_again_only_the_records_the_index_has_not_checked(repo, client, tmp_path, monkeypatch):
    from gitml.runlog.record import RunRecord

    gitml.set_experiment("scale")
    ids = make_runs(12)
    gitml.search_runs()  # every run's row is in the index
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        db.execute("DELETE FROM runs WHERE ref LIKE ?", (f"%{ids[0]}",))
    loaded = []
    real = RunRecord.load.__func__

    def counting(cls, store, commit, what, *, ref=None):
        loaded.append(what)
        return real(cls, store, commit, what, ref=ref)

    monkeypatch.setattr(RunRecord, "load", classmethod(counting))
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    from gitml.sync import push

    result = push(gitml.Client(repo), str(bare))
    assert len(git(bare, "for-each-ref", "refs/gitml/runs/").splitlines()) == 12
    assert loaded == [f"run {ids[0]}"], (loaded, result)


def test_plain_git_fetch_of_branches_never_lists_run_refs_over_protocol_v2(repo, tmp_path):
    """A teammate without gitml pays nothing for the runs: git's protocol v2 asks the
    server for the refs under the refspecs' prefixes only (``ls-refs`` ``ref-prefix``)."""
    gitml.set_experiment("scale")
    make_runs(3)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", f"file://{repo}", str(clone))
    env = {**os.environ, "GIT_TRACE_PACKET": str(tmp_path / "trace")}
    import subprocess

    subprocess.run(["git", "-c", "protocol.version=2", "fetch", "-q", "origin"], cwd=clone, env=env, check=True)
    trace = (tmp_path / "trace").read_text()
    assert "ref-prefix refs/heads/" in trace and "refs/gitml/" not in trace
    subprocess.run(["git", "-c", "protocol.version=0", "fetch", "-q", "origin"], cwd=clone, env=env, check=True)
    assert "refs/gitml/runs/" in (tmp_path / "trace").read_text()  # v0 advertises every ref


def test_a_repeated_search_reuses_its_table_until_a_run_ref_changes(repo, client):
    """At 100,000 runs listing the refs, matching them to the snapshot and decoding its
    columns took 0.2 s per search; while no run ref changes a search now reuses them,
    and a run another process makes is still seen by the next search."""
    gitml.set_experiment("scale")
    make_runs(5)
    past = os.stat(repo).st_mtime - 10  # folders changed long ago: their listing can be trusted
    for folder, _, _ in os.walk(repo / ".git" / "refs" / "gitml" / "runs"):
        os.utime(folder, (past, past))
    tracker = client.tracker

    def table():
        with tracker.index.reading():
            found, _ = tracker.table()
            found.column("params", "p")
            return found

    first = table()
    assert table() is first and tracker.run_refs() is tracker.run_refs()
    run_python(
        'import gitml\ngitml.set_experiment("scale")\n'
        'with gitml.start_run(run_name="other"):\n    gitml.log_param("p", "q")',
        repo,
    )
    after = table()
    assert after is not first and len(after) == 6 and "q" in after.column("params", "p")
    assert (
        list(client.search_runs([client.get_experiment_by_name("scale").experiment_id], "params.p = 'q'"))[
            0
        ].info.run_name
        == "other"
    )


def test_sorting_a_column_of_numbers_and_strings_puts_numbers_first():
    rows = [
        {"run_id": str(i), "start_time": 0, "metrics": {}, "tags": {}, "params": {"p": v}}
        for i, v in enumerate([3, "b", 1, "a", 2])
    ]
    assert [r["params"]["p"] for r in sort_rows(rows, parse_order_by(["params.p"]))] == [1, 2, 3, "a", "b"]
    assert [r["params"]["p"] for r in sort_rows(rows, parse_order_by(["params.p DESC"]))] == ["b", "a", 3, 2, 1]


def test_sorting_for_the_first_rows_gives_the_first_rows_of_the_whole_order():
    """``gitml runs -n 20`` sorts only the runs that can be among the first 20 by the
    first key (ties kept): at 100,000 runs two full sorts took most of its time."""
    rows = make_rows(300)
    table = RunTable.from_rows([(b"r%d" % i, b"c", r) for i, r in enumerate(rows)])
    for order in (
        None,
        ["attributes.start_time"],
        ["params.p DESC", "attributes.start_time"],
        ["metrics.m DESC"],
        ["attributes.run_name DESC"],
    ):
        keys = parse_order_by(order)
        whole = sort_rows(range(len(rows)), keys, getter=table.getter)
        for limit in (1, 5, 20, 74):
            first = sort_rows(range(len(rows)), keys, getter=table.getter, limit=limit)
            assert first[:limit] == whole[:limit], (order, limit)
    assert len(sort_rows(range(len(rows)), parse_order_by(None), getter=table.getter, limit=5)) < len(rows)


def test_runs_outside_the_snapshot_are_made_into_columns_a_chunk_at_a_time(repo, small_slack, monkeypatch):
    """A snapshot rebuilt from 100,000 rows held every row dict at once (1 GB): the rows
    are now read and made into columns 5,000 at a time, and not kept in memory."""
    gitml.set_experiment("scale")
    make_runs(13)
    expected = gitml.search_runs(filter_string="params.p != 'y'", order_by=["metrics.m DESC"])
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        db.execute("DELETE FROM snapshot")
    monkeypatch.setattr(index_module, "_TABLE_CHUNK", 4)
    monkeypatch.setattr(index_module, "_KEEP_ROWS", 2)
    client = gitml.Client(repo)
    tracker = client.tracker
    with tracker.index.reading():
        table, _ = tracker.table()
        assert len(table) == 13 and sorted(table.column("params", "p")) == sorted("xyz"[i % 3] for i in range(13))
    assert not tracker.index._mem  # 13 rows read at once: made into columns, not kept as dicts
    assert snapshot_generations(repo) == [1]  # rewritten from the rows
    out = (
        run_python(
            """
import gitml
gitml.set_experiment("scale")
f = gitml.search_runs(filter_string="params.p != 'y'", order_by=["metrics.m DESC"])
print(",".join(f["run_id"]))
""",
            repo,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out.split(",") == list(expected["run_id"])
    client.close()


def test_filters_on_columns_every_run_has_match_filters_by_row():
    """Where no run lacks the field, a comparison or IN is one ``map`` over the column
    (no Python call per value): the same answers, NaN included."""
    rows = make_rows(300)
    for i, r in enumerate(rows):
        r["metrics"].setdefault("m", float("nan") if i % 4 == 0 else i / 300)
        r["params"].setdefault("p", "w")
        r["tags"].setdefault("t", "u")
    table = RunTable.from_rows([(b"r%d" % i, b"c", r) for i, r in enumerate(rows)])
    for text in [
        *FILTERS,
        "metrics.m < 0.5",
        "metrics.m = 0.1",
        "params.p IN ('w', 'x')",
        "params.p >= 'x'",
        "tags.t != 'u' AND metrics.m >= 0.2",
        "start_time < 7",
    ]:
        predicate = compile_filter(text)
        assert filter_mask(predicate, table) == [predicate(r) for r in rows], text

"""The search index's snapshot written by generations (issue 28).

The first search after many new runs adds their columns as a new segment instead of
rewriting every run's, and segments are merged as packs are (each at least twice the
next newer one), so a search's write costs about what its new runs cost. Whatever
happened between searches (runs made or changed by other processes, refs deleted, a
damaged segment) a search must give what a full listing gives.
"""

import os
import sqlite3

import pytest

import gitml
from gitml.runlog import index as index_module
from gitml.runlog.columns import RunTable
from tests.conftest import git, run_python
from tests.runlog.test_index_stamp import listing, run_names, stamped_table
from tests.runlog.test_scale import make_runs


@pytest.fixture
def small_slack(monkeypatch):
    monkeypatch.setattr(index_module, "SNAPSHOT_SLACK", 8)


def segments(repo) -> list[list[bytes]]:
    """Each segment's refs, oldest first."""
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        rows = db.execute("SELECT gen, data FROM snapshot WHERE name = 'refs' ORDER BY gen").fetchall()
    return [data.split(b"\n") for _, data in rows]


def searched(repo) -> dict[str, float]:
    """``{run name: metric m}`` from a search of every run in a fresh process."""
    out = run_python(
        "import gitml\nf = gitml.search_runs(search_all_experiments=True)\n"
        "print(';'.join(f'{n}={m}' for n, m in zip(f['tags.mlflow.runName'], f['metrics.m'])))",
        repo,
    )
    return {k: float(v) for k, v in (p.split("=") for p in out.stdout.strip().splitlines()[-1].split(";"))}


@pytest.fixture
def encoded(monkeypatch):
    """How many runs each snapshot write encoded."""
    sizes = []
    real = RunTable.encode

    def counted(self):
        sizes.append(len(self))
        return real(self)

    monkeypatch.setattr(RunTable, "encode", counted)
    return sizes


def test_new_runs_are_added_as_a_segment_and_segments_merge_geometrically(repo, small_slack, encoded):
    gitml.set_experiment("gen")
    make_runs(40, prefix="a")
    assert len(gitml.search_runs(search_all_experiments=True)) == 40
    assert [len(s) for s in segments(repo)] == [40] and encoded == [40]
    make_runs(9, prefix="b")
    assert len(gitml.search_runs(search_all_experiments=True)) == 49
    assert [len(s) for s in segments(repo)] == [40, 9] and encoded[-1] == 9  # the 40 runs' columns untouched
    make_runs(8, prefix="c")
    assert len(gitml.search_runs(search_all_experiments=True)) == 57
    assert [len(s) for s in segments(repo)] == [40, 17] and encoded[-1] == 17  # 9 < 2 x 8: merged
    make_runs(8, prefix="d")
    assert len(gitml.search_runs(search_all_experiments=True)) == 65
    assert [len(s) for s in segments(repo)] == [40, 17, 8] and encoded[-1] == 8
    make_runs(30, prefix="e")  # 8 and 17 are smaller than twice 30, 40 is not; then 55 makes 40 merge too
    assert len(gitml.search_runs(search_all_experiments=True)) == 95
    assert [len(s) for s in segments(repo)] == [95] and encoded[-1] == 95
    for refs in segments(repo):
        assert refs == sorted(refs)
    assert sorted(r for s in segments(repo) for r in s) == sorted(listing(repo))
    # a fresh process serves every run from the stamped segments, as git lists them
    refs, names, errors = stamped_table(repo)
    assert refs == listing(repo) and not errors and len(set(names.values())) == 95


def test_runs_changed_and_made_by_other_processes_between_searches(repo, small_slack):
    gitml.set_experiment("gen")
    ids = make_runs(40)
    gitml.search_runs(search_all_experiments=True)
    make_runs(10, prefix="s")
    gitml.search_runs(search_all_experiments=True)
    assert [len(s) for s in segments(repo)] == [40, 10]
    # another process changes runs of both segments (their refs move), makes new ones,
    # and one ref is deleted by git
    run_python(
        f"""
import gitml
gitml.set_experiment("gen")
for run_id in {[ids[1], ids[35]]!r}:
    with gitml.start_run(run_id=run_id):
        gitml.log_metric("m", 9.0)
for i in range(10):
    with gitml.start_run(run_name=f"t{{i}}"):
        gitml.log_metric("m", 1.0)
""",
        repo,
    )
    gone = next(r for r in listing(repo) if r.endswith(ids[2].encode()))
    git(repo, "update-ref", "-d", gone.decode())
    found = searched(repo)  # a fresh process: the stamp's packed-refs changed, so it lists
    assert len(found) == 59 and "r2" not in found and found["r1"] == found["r35"] == 9.0
    assert found["t3"] == 1.0
    assert len(gitml.search_runs(search_all_experiments=True)) == 59  # this process too, from its segments read before
    # the 10 new runs and the 2 moved ones made a segment; the moved runs' old entries
    # stay in the oldest (not merged) and the stamp names them, so the fresh process that
    # finds the same packed-refs takes the current entry of each
    assert sum(map(len, segments(repo))) >= 59
    refs, names, errors = stamped_table(repo)
    assert refs == listing(repo) and not errors
    assert sorted(run_names(repo)) == sorted(found)
    # by name: the moved run is found once, at its current commit
    with gitml.Client(str(repo)) as c:
        assert c.tracker.resolve("r35") == ids[35]
        assert c.get_run(ids[35]).data.metrics["m"] == 9.0


def test_a_search_of_one_experiment_keeps_the_others_runs_and_a_true_stamp(repo, small_slack):
    gitml.set_experiment("one")
    make_runs(20, prefix="o")
    gitml.set_experiment("two")
    two = make_runs(20, prefix="w")
    git(repo, "pack-refs", "--all")
    assert len(gitml.search_runs(search_all_experiments=True)) == 40  # stamped: every run
    make_runs(10, prefix="x")  # loose refs, of experiment "two"
    assert len(gitml.search_runs()) == 30  # experiment "two" alone adds a segment
    assert [len(s) for s in segments(repo)] == [40, 10]
    # a loose run ref of the new segment deleted without packed-refs changing: the stamp
    # must have named it, or a fresh process would still show it
    newest = [r for r in listing(repo) if os.path.exists(os.path.join(repo, ".git", r.decode()))]
    assert newest
    git(repo, "update-ref", "-d", newest[0].decode())
    refs, _names, _errors = stamped_table(repo)
    assert refs == listing(repo)
    # the first experiment's runs are all still served by the snapshot
    assert len(run_names(repo)) == 49
    assert two[0] in {r[-32:].decode() for r in refs}


def test_a_damaged_segment_is_dropped_alone_and_its_runs_written_again(repo, small_slack):
    gitml.set_experiment("gen")
    make_runs(40)
    gitml.search_runs()
    make_runs(10, prefix="s")
    gitml.search_runs()
    before = segments(repo)
    assert [len(s) for s in before] == [40, 10]
    with sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3")) as db:
        (newest,) = db.execute("SELECT max(gen) FROM snapshot").fetchone()
        db.execute("UPDATE snapshot SET data = x'6600' WHERE name = 'metrics.m' AND gen = ?", (newest,))
    out = run_python(
        """
import gitml
from gitml.runlog import index
index.SNAPSHOT_SLACK = 8
try:
    gitml.search_runs(search_all_experiments=True)
except gitml.GitmlError as e:
    print("ERROR", e)
print(len(gitml.search_runs(search_all_experiments=True)))
""",
        repo,
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("ERROR search index") and "metrics.m" in lines[0] and "damaged" in lines[0]
    assert lines[-1] == "50"
    after = segments(repo)
    assert after[0] == before[0] and [len(s) for s in after] == [40, 10]  # the older segment kept as it was
    assert sorted(r for s in after for r in s) == sorted(listing(repo))  # every run once, none lost
    assert len(searched(repo)) == 50
    refs, _names, errors = stamped_table(repo)
    assert refs == listing(repo) and not errors


SWEEP = """
import sqlite3, gitml
from gitml.runlog import index, tracker
index.SNAPSHOT_SLACK = 8
tracker.FRESH_RUNS_SEGMENT = 16
gitml.set_experiment("sweep")
for i in range({n}):
    with gitml.start_run(run_name=f"r{{i}}"):
        gitml.log_params({{"p": str(i % 3)}})
        gitml.log_metrics({{"m": i / 100}})
gitml.flush()
with sqlite3.connect(".git/gitml/index.sqlite3") as db:
    print("segments before exit", db.execute("SELECT count(*) FROM snapshot WHERE name = 'refs'").fetchone()[0])
"""


def test_a_long_process_leaves_its_runs_columns_and_packed_refs(repo, monkeypatch):
    """A sweep of many runs in one process: their columns are written as it goes, and at
    exit its loose refs are packed and the snapshot stamped, so the next process reads
    neither a row nor the listing of every ref."""
    run_python(
        SWEEP.format(n=100), repo
    )  # (segments written while it ran depend on when the committer ran: not asserted)
    loose = [r for r in listing(repo) if os.path.exists(os.path.join(repo, ".git", r.decode()))]
    assert loose == []
    assert sorted(r for s in segments(repo) for r in s) == sorted(listing(repo))
    monkeypatch.setattr(index_module.RunIndex, "_select", lambda self, refs: pytest.fail(f"rows read: {refs[:3]}"))
    refs, names, errors = stamped_table(repo)
    assert refs == listing(repo) and not errors and sorted(names.values()) == sorted(f"r{i}" for i in range(100))
    assert len(searched(repo)) == 100


def test_a_short_process_leaves_the_snapshot_to_the_next_search(repo):
    run_python(SWEEP.format(n=5), repo)
    assert segments(repo) == []  # fewer runs than a segment's least: nothing written at exit
    assert len(searched(repo)) == 5


def test_a_selection_and_a_concatenation_take_what_their_arrays_hold():
    """A search's frame takes each column at the matching positions alone, through the
    segments (a concatenation) and the runs kept of them (a selection)."""
    import numpy as np

    from tests.runlog.test_scale import make_rows

    rows = make_rows(40)
    entries = [(f"refs/gitml/runs/1/{i:032x}".encode(), b"%040d" % i, row) for i, row in enumerate(rows)]
    parts = [RunTable.from_rows(entries[:15]), RunTable.from_rows([]), RunTable.from_rows(entries[15:])]
    whole = RunTable.concat(parts)
    kept = whole.select([i for i in range(40) if i % 3])
    index = np.array([20, 0, 5, 19, 1, 7], dtype=np.intp)
    for table in (whole, kept):
        for section, key, floats in (
            ("metrics", "m", True),
            ("params", "p", False),
            ("attributes", "end_time", True),
            ("tags", "t", False),
        ):
            values, present = table.take(section, key, index, floats=floats)
            column = table.column(section, key)
            expected = [column[i] if column[i] is None or not floats else float(column[i]) for i in index]
            got = [None if present is not None and not present[j] else v for j, v in enumerate(values.tolist())]
            assert [repr(v) for v in got] == [repr(v) for v in expected], (section, key)

"""The search index's snapshot, stamped with the refs it agrees with (issue 15).

A process that finds the stamp's ``packed-refs`` looks only at the refs the stamp names
and the loose ones instead of listing every run ref; whatever the refs did since (runs
made, changed or deleted by another process, refs packed by git, a run that cannot be
read, a stamp tampered with) it must see the runs a full listing gives.
"""

import json
import os
import sqlite3

import pytest

import gitml
import gitml.ops
from gitml.names import RUN_REF_NAMES, RUNS_PREFIX
from gitml.runlog import index as index_module
from gitml.store.git import GitStore
from tests.conftest import git, run_python
from tests.runlog.test_scale import make_runs


@pytest.fixture
def small_slack(monkeypatch):
    monkeypatch.setattr(index_module, "SNAPSHOT_SLACK", 8)


def index_db(repo):
    return sqlite3.connect(os.path.join(repo, ".git", "gitml", "index.sqlite3"))


def listing(repo) -> dict[bytes, bytes]:
    """``{ref: commit}`` of every run ref, as git lists them."""
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", RUNS_PREFIX)
    return {name.encode(): sha.encode() for sha, name in (line.split() for line in out.splitlines())}


def stamped_table(repo):
    """The table a fresh Client makes from the stamp, and its errors (None: the stamp did not serve)."""
    with gitml.ops.Operations(str(repo)) as c:
        t = c.tracker
        with t.index.reading():
            state = t.store.refs_state(RUNS_PREFIX, RUN_REF_NAMES)
            found = t.index.table_at(state, t.store.packed_ref, t._load_row)
            if found is None:
                return None
            table, errors = found
            names = dict(zip(table.refs, table.column("attributes", "run_name"), strict=False))
            return dict(zip(table.refs, table.commits, strict=False)), names, [str(e) for e in errors]


def run_names(repo) -> list[str]:
    out = run_python(
        "import gitml\nf = gitml.search_runs(search_all_experiments=True, order_by=['attributes.run_name'])\n"
        "print(','.join(f['tags.mlflow.runName']))",
        repo,
    )
    return out.stdout.strip().splitlines()[-1].split(",")


@pytest.fixture
def counted_listings(monkeypatch):
    calls = []
    real = GitStore.listing_and_state

    def counted(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GitStore, "listing_and_state", counted)
    return calls


def test_a_stamped_snapshot_serves_every_run_without_listing_them(repo, small_slack, counted_listings):
    gitml.set_experiment("stamp")
    make_runs(12)
    assert len(gitml.search_runs(search_all_experiments=True)) == 12  # lists the refs, writes a stamped snapshot
    assert len(counted_listings) == 1
    with index_db(repo) as db:
        (stamp,) = db.execute("SELECT data FROM snapshot WHERE name = 'stamp'").fetchone()
    assert len(stamp) >= 32
    refs, names, errors = stamped_table(repo)
    assert refs == listing(repo) and sorted(names.values()) == sorted(f"r{i}" for i in range(12)) and not errors
    with gitml.ops.Operations(str(repo)) as c:  # a fresh Client's search and name lookup: no listing
        assert len(c.search_rows()) == 12
        assert c.tracker.resolve("r7") == [k for k, v in names.items() if v == "r7"][0][-32:].decode()
    assert len(counted_listings) == 1


def test_what_other_processes_do_to_the_refs_is_seen_through_the_stamp(repo, small_slack):
    gitml.set_experiment("stamp")
    ids = make_runs(12)
    gitml.search_runs(search_all_experiments=True)
    # another process: a new run, a change to an old one, and git deletes a third's ref
    run_python(
        f"""
import gitml
gitml.set_experiment("stamp")
with gitml.start_run(run_id="{ids[3]}"):
    gitml.set_tag("mlflow.runName", "r3-renamed")
with gitml.start_run(run_name="new"):
    gitml.log_param("p", "x")
""",
        repo,
    )
    gone = [r for r in listing(repo) if r.endswith(ids[6].encode())][0]
    git(repo, "update-ref", "-d", gone.decode())
    refs, names, errors = stamped_table(repo)
    assert refs == listing(repo) and gone not in refs and not errors
    assert sorted(names.values()) == sorted([f"r{i}" for i in range(12) if i not in (3, 6)] + ["r3-renamed", "new"])
    assert run_names(repo) == sorted(names.values())


def test_refs_packed_by_git_are_listed_once_then_the_stamp_serves_again(repo, small_slack, counted_listings):
    gitml.set_experiment("stamp")
    make_runs(12)
    gitml.search_runs(search_all_experiments=True)
    with index_db(repo) as db:
        generations = db.execute("SELECT DISTINCT gen FROM snapshot").fetchall()
    git(repo, "pack-refs", "--all")
    assert stamped_table(repo) is None  # another packed-refs: the stamp cannot tell
    with gitml.ops.Operations(str(repo)) as c:
        assert len(c.search_rows()) == 12
    with index_db(repo) as db:  # stamped again, not written again
        assert db.execute("SELECT DISTINCT gen FROM snapshot").fetchall() == generations
    refs, names, _ = stamped_table(repo)
    assert refs == listing(repo) and len(names) == 12


def test_a_run_that_cannot_be_read_is_reported_through_the_stamp_too(repo, small_slack, caplog):
    gitml.set_experiment("stamp")
    ids = make_runs(12)
    head = git(repo, "rev-parse", "HEAD").strip()  # a commit that holds no run record
    bad = f"{RUNS_PREFIX}{gitml.get_run(ids[0]).info.experiment_id}/{'e' * 32}"
    git(repo, "update-ref", bad, head)
    assert len(gitml.search_runs(search_all_experiments=True)) == 12
    refs, _, errors = stamped_table(repo)
    assert bad.encode() not in refs and len(refs) == 12
    assert len(errors) == 1 and "e" * 32 in errors[0]


def test_a_tampered_stamped_snapshot_is_not_trusted(repo, small_slack, caplog):
    gitml.set_experiment("stamp")
    make_runs(12)
    gitml.search_runs(search_all_experiments=True)
    with index_db(repo) as db:  # the refs out of order: a bisection would miss runs
        (refs,) = db.execute("SELECT data FROM snapshot WHERE name = 'refs'").fetchone()
        db.execute("UPDATE snapshot SET data = ? WHERE name = 'refs'", (b"\n".join(reversed(refs.split(b"\n"))),))
    assert run_names(repo) == sorted(f"r{i}" for i in range(12))
    with index_db(repo) as db:
        db.execute("UPDATE snapshot SET data = x'00' WHERE name = 'stamp'")  # too short to be a stamp
    assert run_names(repo) == sorted(f"r{i}" for i in range(12))


def test_an_experiment_is_read_once_then_from_its_checked_copy(repo, tmp_path):
    experiment_id = gitml.create_experiment("kept")
    with gitml.ops.Operations(str(repo)) as c:
        assert c.get_experiment(experiment_id).name == "kept"
    path = repo / ".git" / "gitml" / "experiments.json"
    kept = json.loads(path.read_text())
    (commit,) = kept
    assert kept[commit]["name"] == "kept" and kept[commit]["artifact_location"] is None
    kept[commit]["name"] = "bad\x1bname"  # a copy tampered with is checked as the record is, and refused
    path.write_text(json.dumps(kept))
    with gitml.ops.Operations(str(repo)) as c:
        assert c.get_experiment(experiment_id).name == "kept"
    moved = tmp_path / "moved"
    os.rename(repo, moved)  # the default artifact location follows the repository
    with gitml.ops.Operations(str(moved)) as c:
        assert c.get_experiment(experiment_id).artifact_location.startswith(str(moved))


def test_a_run_is_found_by_name_from_the_stamped_snapshot_and_the_refs_that_moved(repo, small_slack, monkeypatch):
    from gitml.errors import AmbiguousRunError, RunNotFoundError
    from gitml.runlog.index import RunIndex

    gitml.set_experiment("stamp")
    ids = make_runs(12)
    gitml.search_runs(search_all_experiments=True)  # a stamped snapshot with its table of names
    run_python(
        f"""
import gitml
gitml.set_experiment("stamp")
with gitml.start_run(run_id="{ids[3]}"):
    gitml.set_tag("mlflow.runName", "renamed")
with gitml.start_run(run_name="r5"):
    pass
""",
        repo,
    )
    monkeypatch.setattr(RunIndex, "_read_snapshot", lambda self: (_ for _ in ()).throw(AssertionError("columns read")))
    with gitml.ops.Operations(str(repo)) as c:
        assert c.tracker.resolve("r7") == ids[7]
        assert c.tracker.resolve("renamed") == ids[3]  # a loose ref: its row, not the snapshot's name
        with pytest.raises(RunNotFoundError):
            c.tracker.resolve("r3")
        with pytest.raises(AmbiguousRunError):
            c.tracker.resolve("r5")  # one in the snapshot, one made since
    git(repo, "pack-refs", "--all")  # another packed-refs: the stamp cannot tell, the columns are read
    monkeypatch.undo()
    with gitml.ops.Operations(str(repo)) as c:
        assert c.tracker.resolve("renamed") == ids[3]


def test_a_stamped_snapshot_without_its_names_gets_them_at_the_next_search(repo, small_slack):
    gitml.set_experiment("stamp")
    ids = make_runs(12)
    gitml.search_runs(search_all_experiments=True)
    with index_db(repo) as db:  # as a gitml that kept no names left it
        db.execute("DELETE FROM snapshot WHERE name = 'by-name'")
        db.execute("DELETE FROM snapshot_names")
    with gitml.ops.Operations(str(repo)) as c:
        assert c.tracker.resolve("r2") == ids[2]  # from the columns; the names are written meanwhile
    with index_db(repo) as db:
        assert db.execute("SELECT count(*) FROM snapshot_names").fetchone()[0] == 12
        assert db.execute("SELECT count(*) FROM snapshot WHERE name = 'by-name'").fetchone()[0] == 1

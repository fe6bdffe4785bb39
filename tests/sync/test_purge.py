"""``gitml gc --purge``: deleted runs removed for good, here and on a real git remote, and never a
run a registry tag or a teammate still needs. Real repositories, a bare remote, the real git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.purge import parse_age, purge_plan
from tests.conftest import ROOT, git

pytestmark = pytest.mark.timeout(180)


def invoke(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)], prog_name="gitml")
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def log_runs(repo, names):
    """Runs logged by another process (whose journal is gone when it ends), an artifact each."""
    code = (
        "import json, sys, gitml\n"
        "gitml.set_experiment('sweep')\n"
        "ids = {}\n"
        "for name in sys.argv[1:]:\n"
        "    open('w.bin', 'wb').write(name.encode() * 40_000)  # over the inline limit: in the cache only\n"
        "    with gitml.start_run(run_name=name) as run:\n"
        "        gitml.log_artifact('w.bin')\n"
        "        gitml.log_metric('m', 1.0)\n"
        "    ids[name] = run.info.run_id\n"
        "print(json.dumps(ids))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *names],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def refs(path) -> str:
    return git(path, "for-each-ref", "--format=%(refname)", "refs/gitml/runs")


def test_purge_lists_then_removes_deleted_runs_and_their_objects_only(repo, tmp_path):
    ids = log_runs(repo, ["keep", "gone"])
    invoke(repo, "runs", "delete", "gone")
    listed = invoke(repo, "gc", "--purge", "--dry-run").stdout
    assert f"would purge run {ids['gone']} (gone)" in listed and "1 run(s) would be purged" in listed
    assert ids["gone"] in refs(repo)  # a dry run removes nothing
    out = invoke(repo, "gc", "--purge", "--keep-recent", "0").stdout
    assert f"purged run {ids['gone']} (gone)" in out and "dropped 1 cached object(s)" in out
    assert ids["gone"] not in refs(repo) and ids["keep"] in refs(repo)
    invoke(repo, "show", ids["gone"], code=1)
    invoke(repo, "artifacts", "get", ids["keep"], "w.bin", "-o", tmp_path / "out")  # the live run's objects stay
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"keep" * 40_000
    git(repo, "fsck", "--strict")
    assert "0 run(s) would be purged" in invoke(repo, "gc", "--purge", "--dry-run").stdout


def test_a_run_a_registry_tag_points_into_is_never_purged(repo):
    ids = log_runs(repo, ["model", "other"])
    code = (
        "import sys, gitml, gitml.sklearn\n"
        "from sklearn.linear_model import LinearRegression\n"
        "with gitml.start_run(run_id=sys.argv[1]):\n"
        "    gitml.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name='model')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, ids["model"]],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr
    invoke(repo, "registry", "register", "churn", f"{ids['model']}:model")
    invoke(repo, "runs", "delete", "model", "other")
    out = invoke(repo, "gc", "--purge").stdout
    assert f"keeping run {ids['model']}: registered as churn@v" in out
    assert f"purged run {ids['other']}" in out
    assert ids["model"] in refs(repo) and ids["other"] not in refs(repo)


def test_older_than_counts_from_the_deletion(repo):
    ids = log_runs(repo, ["old"])
    invoke(repo, "runs", "delete", "old")
    with gitml.ops.Operations(repo) as c:
        assert purge_plan(c, older_than=parse_age("30d")).runs == []
        later = time.time() + 31 * 86400
        assert [r.run_id for r in purge_plan(c, older_than=parse_age("30d"), now=later).runs] == [ids["old"]]
    assert "0 run(s) would be purged" in invoke(repo, "gc", "--purge", "--older-than", "1h", "--dry-run").stdout
    bad = invoke(repo, "gc", "--purge", "--older-than", "30x", code=1)
    assert bad.stderr.strip() == "gitml: age '30x' is not a whole number followed by s, m, h, d or w (e.g. 30d)"
    assert "apply to --purge" in invoke(repo, "gc", "--dry-run", code=2).stderr


def test_purge_on_the_remote_deletes_only_what_this_clone_holds(repo, tmp_path, monkeypatch):
    bare = tmp_path / "team.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    store = tmp_path / "team-artifacts"
    invoke(repo, "config", "artifacts.remote", store)
    ids = log_runs(repo, ["a", "b", "c"])
    invoke(repo, "push")
    objects = {p.name for p in store.glob("*/*")}
    assert len(objects) == 3
    # a teammate restores run b and pushes: the remote's b is no longer what this clone deleted
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(bare), str(mate))
    invoke(mate, "config", "artifacts.remote", store)
    invoke(mate, "pull")
    invoke(repo, "runs", "delete", "a", "b")
    invoke(repo, "push")
    invoke(mate, "pull")
    invoke(mate, "runs", "restore", "b")
    invoke(mate, "push")
    result = invoke(repo, "gc", "--purge", "--remote", "--delete", "--keep-recent", "0", code=1)
    assert f"purged run {ids['a']}" in result.stdout
    assert f"kept run {ids['b']}: {bare}: rejected: the remote's run changed since this clone saw it" in result.stderr
    # the artifact store's objects wait for this clone to know every run the remote has (b, restored)
    assert result.stderr.strip().endswith(
        "this clone lacks, whose artifacts would look unreferenced: `gitml fetch` first"
    )
    assert len({p.name for p in store.glob("*/*")}) == 3
    invoke(repo, "fetch")
    invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "0")
    assert ids["a"] not in refs(bare) and ids["a"] not in refs(repo)
    assert ids["b"] in refs(bare) and ids["b"] in refs(repo) and ids["c"] in refs(bare)
    git(bare, "fsck", "--strict")
    assert len({p.name for p in store.glob("*/*")}) == 2  # a's object left the artifact store; b's and c's stay
    # a second clone purging the same run at once finds it gone there: that is no failure
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    invoke(other, "pull")
    assert ids["a"] not in refs(other)


def _age(path, seconds: float) -> None:
    """The artifact store's clock for one file, set back (the store is a folder here)."""
    old = time.time() - seconds
    os.utime(path, (old, old))


def pushed_run(repo, tmp_path):
    """A run "old" with one artifact pushed to a bare origin and a shared folder store:
    ``(origin, store, the object's file)``."""
    bare = tmp_path / "team.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    store = tmp_path / "team-artifacts"
    invoke(repo, "config", "artifacts.remote", store)
    log_runs(repo, ["old"])
    invoke(repo, "push")
    (obj,) = [p for p in store.glob("*/*") if len(p.name) == 62]
    return bare, store, obj


def test_a_push_during_a_two_phase_gc_keeps_the_objects_it_uses(repo, tmp_path):
    """Clone A collects the artifact store while clone B pushes a run whose artifact has the same
    bytes as a purged one (found on the store, so not uploaded): the first gc only marks the
    object; B's push sees the mark and writes the object again; A's second gc, its grace passed
    and B's refs not yet there, keeps it. Without B's push the same second gc deletes it."""
    bare, store, obj = pushed_run(repo, tmp_path)
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(bare), str(mate))
    invoke(mate, "config", "artifacts.remote", store)
    invoke(mate, "pull")
    invoke(repo, "runs", "delete", "old")
    invoke(repo, "gc", "--purge", "--remote")
    invoke(mate, "fetch")  # the mate's clone still has run "old" (fetch never deletes)
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "init", "-q", "--bare", str(mirror))
    log_runs(mate, ["old"])  # the same bytes logged again: the store has them

    _age(obj, 600)
    first = invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "60").stdout
    assert "marked 1 unreferenced remote object(s)" in first and obj.exists()
    (mark,) = (store / "gitml-gc").iterdir()

    invoke(mate, "push", str(mirror))  # uses the marked object: writes it again
    _age(mark, 600)  # the grace has passed since the mark; the mate's refs are not on origin yet
    second = invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "60").stdout
    assert "deleting" not in second and obj.exists()
    invoke(mate, "push")  # its refs arrive: the object is referenced for every later gc
    invoke(repo, "fetch")
    assert "deleting" not in invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "0").stdout
    assert obj.exists()  # (the mate's clone still held run "old" and pushed it back: a purge is per clone)


def test_without_a_push_the_second_phase_deletes_what_the_first_marked(repo, tmp_path):
    bare, store, obj = pushed_run(repo, tmp_path)
    invoke(repo, "runs", "delete", "old")
    invoke(repo, "gc", "--purge", "--remote")
    _age(obj, 600)
    listed = invoke(repo, "gc", "--remote", "--keep-recent", "60").stdout
    assert f"would mark {store}/{obj.parent.name}/{obj.name}" in listed and obj.exists()
    invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "60")
    assert obj.exists()  # marked only
    (mark,) = (store / "gitml-gc").iterdir()
    _age(mark, 600)
    second = invoke(repo, "gc", "--remote", "--delete", "--keep-recent", "60").stdout
    assert f"deleting {store}/{obj.parent.name}/{obj.name}" in second
    assert not obj.exists() and list((store / "gitml-gc").iterdir()) == []

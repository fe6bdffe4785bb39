"""A long process: one process creates runs until it has crossed every housekeeping
threshold several times (journal rotation, ref packing, pack merging tiers, the
search index's snapshot rewrite), then exits normally, or is stopped by SIGTERM;
every run it ended is in git, with its data and its status (issue 27).

The thresholds are the module constants, made small here so that a test of ~1,500
runs crosses them as a process of 100,000 crosses the real ones; the process counts
each crossing (a wrapper around the housekeeping call) and the test checks the counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import gitml
from tests.conftest import ROOT, git

pytestmark = pytest.mark.timeout(600)

LONG_PROCESS = """
import os, sys, time, gitml
import gitml.store.packs as packs, gitml.runlog.index as index, gitml.runlog.tracker as tracker
import gitml.store.git as store_git
import gitml.runlog.committer as committer

committer.MAX_BATCH = 8                        # 64 ended runs a pack: more packs to merge

tracker.JOURNAL_ROTATE_BYTES = 96 << 10        # 64 MB
tracker.PACK_REFS_AFTER, tracker.PACK_CHECK_EVERY = 96, 32   # 1,024 and 256
packs.PACKS_PER_TIER, packs.TIER_FACTOR, packs.TIER_BASE_BYTES = 2, 4, 1 << 10   # 16, 16, 16 KB
index.SNAPSHOT_SLACK = 32                      # 256
tracker.FRESH_RUNS_SEGMENT = 128               # 1,024
counts = {"rotations": 0, "ref_packings": 0, "merges": 0, "snapshots": 0}

def counting(name, original, counted=lambda result: True):
    def call(*args, **kwargs):
        result = original(*args, **kwargs)
        if counted(result):
            counts[name] += 1
        return result
    return call

tracker.Tracker.rotate_journal = counting("rotations", tracker.Tracker.rotate_journal)
store_git.GitStore.pack_refs = counting("ref_packings", store_git.GitStore.pack_refs, bool)
store_git.maybe_merge_small_packs = counting("merges", store_git.maybe_merge_small_packs, bool)
index.RunIndex._write = counting("snapshots", index.RunIndex._write)  # a segment of the search index's snapshot

runs = int(sys.argv[1])
gitml.set_experiment("long")
for i in range(runs):
    with gitml.start_run(run_name=f"r{i}"):
        gitml.log_params({f"p{j}": f"{i}-{j}" for j in range(5)})
        for step in range(3):
            gitml.log_metrics({"loss": 1.0 / (i + step + 1), "acc": step / 3}, step=step)
        gitml.set_tags({"i": str(i)})
    print("ended", i, counts["rotations"], counts["ref_packings"], counts["merges"], counts["snapshots"], flush=True)
    if i % 200 == 199:
        gitml.search_runs(experiment_names=["long"], max_results=5)  # the index's snapshot is rewritten as runs pass it
if len(sys.argv) > 2:  # wait for the file that lets the process end (a reader lists the packs meanwhile)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
"""

READER = """
import os, sys, time
from gitml.store.git import open_store

repo, listed, stop = sys.argv[1:]

def runs():
    root = os.path.join(repo, ".git", "refs", "gitml", "runs")
    while True:
        try:  # a loose ref packed meanwhile: the refs read again
            files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f[-5:] != ".lock"]
            shas = [open(path).read().strip() for path in files]
            if os.path.exists(os.path.join(repo, ".git", "packed-refs")):
                for line in open(os.path.join(repo, ".git", "packed-refs")):
                    if " refs/gitml/runs/" in line:
                        shas.append(line.split()[0])
            return [sha.encode() for sha in set(shas)]
        except FileNotFoundError:
            pass

def read_all(store, commits):
    # every object of every run: its commit, trees and blobs, through gitml's reads (dulwich's packs)
    objects, todo = 0, [store.commit(sha).tree for sha in commits]
    objects += len(commits)
    while todo:
        for name, (mode, sha) in store.tree(todo.pop()).items():
            objects += 1
            if mode == 0o40000:
                todo.append(sha)
            else:
                store.blob(sha)
    return objects

rounds = 0
while not os.path.exists(listed + ".ask"):  # rounds while the writer merges packs
    with open_store(repo) as store:
        read_all(store, runs())
    rounds += 1
stale = open_store(repo)
stale.repo.object_store.packs  # the packs listed (none of them opened)
names = sorted(stale.repo.object_store._pack_cache)
open(listed, "w").close()
while not os.path.exists(stop):
    time.sleep(0.01)
gone = [n for n in names if not os.path.exists(os.path.join(repo, ".git", "objects", "pack", n + ".pack"))]
objects = read_all(stale, runs())  # through the listing taken before the writer's end
with open_store(repo) as fresh:
    fresh_objects = read_all(fresh, runs())
stale.close()
print(rounds, len(names), len(gone), objects, fresh_objects, flush=True)
"""


def _start(repo, runs: int, *extra: str) -> subprocess.Popen:
    # Every commit on the process's own thread, whose thresholds the script made small (a commit
    # process, a fresh interpreter, has the real ones): tests/runlog/test_commit_process.py kills
    # sweeps that commit on one.
    env = {**os.environ, "PYTHONPATH": ROOT, "GITML_COMMIT_PROCESS": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", LONG_PROCESS, str(runs), *extra],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_runs(repo, ended: int, *, killed_at_most: int = 0) -> None:
    """Runs r0..r<ended-1> are FINISHED with every param, metric point and tag; a run
    the process had not ended may be there as KILLED; git is clean; no journal is left."""
    with gitml.Client(repo) as client:
        experiment = client.get_experiment_by_name("long").experiment_id
        found = {r.info.run_name: r for r in client.search_runs([experiment], max_results=100_000)}
        for i in range(ended):
            run = found.pop(f"r{i}")
            assert run.info.status == "FINISHED", (i, run.info.status)
            assert run.data.params == {f"p{j}": f"{i}-{j}" for j in range(5)}
            assert run.data.tags["i"] == str(i)
            assert run.data.metrics["acc"] == 2 / 3
        assert len(found) <= killed_at_most and all(r.info.status == "KILLED" for r in found.values())
        sample = client.get_metric_history(
            client.search_runs([experiment], "attributes.run_name = 'r7'")[0].info.run_id, "loss"
        )
        assert [m.step for m in sample] == [0, 1, 2]
    assert os.listdir(repo / ".git" / "gitml" / "journal") == []
    git(repo, "fsck", "--strict")


def _thresholds_crossed(last_line: str) -> None:
    _, _, *counts = last_line.split()  # journal rotations, ref packings, pack merges, snapshot writes
    assert all(int(count) >= 3 for count in counts), last_line


def _wait_for(path, proc: subprocess.Popen) -> None:
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1][-3000:])
        time.sleep(0.01)


def _pack_count(repo) -> int:
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return int(counts["packs"])


def test_a_long_process_that_exits_normally_keeps_every_run(repo, tmp_path):
    """...and leaves its packs as few as a fresh repository's: at its end its small packs
    are rolled up and the packs it merged away deleted, while a reader in another process
    reads every run, also through a listing of the packs taken before that end."""
    runs = 1500
    go, listed, stop = (str(tmp_path / name) for name in ("go", "listed", "stop"))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(repo), listed, stop],
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = _start(repo, runs, go)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if len(lines) == runs:
                break
        retired = os.listdir(repo / ".git" / "gitml" / "retired")
        assert len(retired) > 3, "few packs merged away: the test proves nothing"  # all within their grace
        open(listed + ".ask", "w").close()
        _wait_for(listed, reader)  # the reader has listed the packs (and opened none of them)
        open(go, "w").close()
        out, err = proc.communicate(timeout=540)
        assert proc.returncode == 0, err[-3000:]
        assert "could not" not in err, err[-3000:]
        lines += out.splitlines()
        assert len(lines) == runs
        _thresholds_crossed(lines[-1])
        assert git(repo, "for-each-ref", "--count=1", "refs/gitml/runs/") and (repo / ".git" / "packed-refs").exists()
        open(stop, "w").close()
        reader_out, reader_err = reader.communicate(timeout=300)
        assert reader.returncode == 0, reader_err[-3000:]
        rounds, listed_packs, gone, objects, fresh_objects = map(int, reader_out.split())
        assert rounds >= 1 and gone >= 1, reader_out  # it read while packs merged, and its listing lost packs
        assert objects == fresh_objects > 10 * runs  # every object of every run, read through the old listing too
        # the shape a fresh repository has: the merged-away packs deleted, the small ones rolled up
        assert os.listdir(repo / ".git" / "gitml" / "retired") == []
        pack_dir = repo / ".git" / "objects" / "pack"
        sizes = sorted(os.path.getsize(pack_dir / n) for n in os.listdir(pack_dir) if n.endswith(".pack"))
        assert _pack_count(repo) == len(sizes) <= 4, sizes
        assert all(big >= 2 * sum(sizes[:i]) for i, big in enumerate(sizes) if i), sizes  # a geometric progression
    finally:  # a failed step leaves no process behind
        for child in (proc, reader):
            if child.poll() is None:
                child.kill()
                child.communicate()
    _check_runs(repo, runs)


def test_a_long_process_stopped_by_sigterm_keeps_every_run_it_ended(repo):
    """SIGTERM ends Python at once (no exit handlers: gitml installs no signal handler in
    the program that imports it). Every run whose ``end_run`` returned is in its journal;
    the next command commits them with their status, and the run then open as KILLED."""
    proc = _start(repo, 100_000)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if len(lines) >= 1200:
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    lines += rest.splitlines()
    assert proc.returncode == -signal.SIGTERM
    _thresholds_crossed(lines[-1])
    ended = len(lines)
    _check_runs(repo, ended, killed_at_most=1)

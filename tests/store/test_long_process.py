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

import pytest

import gitml
from tests.conftest import ROOT, git

pytestmark = pytest.mark.timeout(600)

LONG_PROCESS = """
import sys, gitml
import gitml.store.packs as packs, gitml.tracking.index as index, gitml.tracking.tracker as tracker
import gitml.store.git as store_git
import gitml.tracking.committer as committer

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
"""


def _start(repo, runs: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(
        [sys.executable, "-c", LONG_PROCESS, str(runs)],
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


def test_a_long_process_that_exits_normally_keeps_every_run(repo):
    runs = 1500
    proc = _start(repo, runs)
    out, err = proc.communicate(timeout=540)
    assert proc.returncode == 0, err[-3000:]
    assert "could not" not in err, err[-3000:]
    lines = out.splitlines()
    assert len(lines) == runs
    _thresholds_crossed(lines[-1])
    assert git(repo, "for-each-ref", "--count=1", "refs/gitml/runs/") and (repo / ".git" / "packed-refs").exists()
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

"""The stress lane (marker ``stress``, part of the default ``python -m pytest``): the
durability and concurrency tests again, while the machine is made busy on purpose: a
CPU hog on every core and a process that keeps filling the page cache with dirty
pages (so every fsync waits for writeback). The assertions are the same: every
acknowledged point, tag, param, run end and artifact is in git afterwards, ``git fsck
--strict`` is clean, no journal is left that the next command does not fold in, and a
run its process ended is never marked KILLED (issue 27).

Timing bugs hide on a quiet machine: the journal deleted under 129 runs waiting for
the committer showed at any load, but a journal deleted between its creation and its
lock showed only when processes were slow to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import gitml
from tests.conftest import git, run_python
from tests.runlog import test_commit_process
from tests.store import test_concurrency, test_durability, test_long_process, test_recovery

pytestmark = [pytest.mark.stress, pytest.mark.timeout(600)]

# Each stops by itself when the test's process is gone, or after 15 minutes at most.
HOG = """
import os, time
parent, end = os.getppid(), time.monotonic() + 900
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(100_000):
        pass
"""
# Dirty pages, rewritten in a loop: writeback keeps the disk busy and the page cache
# full; the file is the hog's own (under the test's tmp), bounded to 256 MB.
PAGE_CACHE_FILLER = """
import os, sys, time
path, chunk = sys.argv[1], b"x" * (8 << 20)
parent, end = os.getppid(), time.monotonic() + 900
while os.getppid() == parent and time.monotonic() < end:
    with open(path, "wb") as f:
        for _ in range(32):
            f.write(chunk)
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass
os.unlink(path)
"""


@pytest.fixture
def busy_machine(tmp_path_factory):
    """CPU hogs on every core and a page-cache filler, for the test's duration."""
    scratch = tmp_path_factory.mktemp("filler")
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 2)]
    procs.append(subprocess.Popen([sys.executable, "-c", PAGE_CACHE_FILLER, str(scratch / "fill")]))
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
        (scratch / "fill").unlink(missing_ok=True)


def test_journal_rotation_under_load(repo, busy_machine):
    test_recovery.test_journal_rotation_keeps_the_runs_that_wait_for_the_committer(repo)


def test_killed_run_recovered_under_load(repo, busy_machine):
    test_recovery.test_killed_run_is_recovered_by_next_command(repo)


def test_failed_commit_at_exit_recovered_under_load(repo, busy_machine):
    test_recovery.test_a_run_whose_commit_fails_at_exit_is_recovered_with_its_real_status(repo)
    test_recovery.test_recovery_keeps_a_journal_whose_runs_it_could_not_commit(repo)


def test_many_processes_logging_to_one_run_under_load(repo, busy_machine):
    test_durability.test_many_processes_logging_to_one_run_lose_nothing(repo, 16, 10)


def test_processes_creating_runs_under_load(repo, busy_machine):
    test_concurrency.test_four_processes_create_runs_concurrently(repo)


def test_sixteen_writers_of_one_run_under_load(repo, busy_machine):
    test_concurrency.resumers_lose_nothing(repo, writers=16, points=40)


def test_long_process_stopped_by_sigterm_under_load(repo, busy_machine):
    test_long_process.test_a_long_process_stopped_by_sigterm_keeps_every_run_it_ended(repo)


def test_sweep_killed_beside_its_commit_process_under_load(repo, busy_machine):
    test_commit_process.test_a_killed_sweep_loses_no_ended_run_and_its_journal_waits_for_the_commit_process(repo)


def test_commit_process_killed_mid_sweep_under_load(repo, busy_machine, tmp_path):
    test_commit_process.test_a_commit_process_that_dies_gives_its_runs_back(repo, tmp_path)


ARTIFACTS_THEN_KILLED = """
import os, signal, gitml
gitml.set_experiment("art")
for i in range(3):
    with gitml.start_run(run_name=f"done{i}"):
        with open("model.bin", "wb") as f:
            f.write(os.urandom(3000) + bytes([i]))
        gitml.log_artifact("model.bin")
        gitml.log_param("i", i)
run = gitml.start_run(run_name="open")
with open("notes.txt", "w") as f:
    f.write("written before the kill")
gitml.log_artifact("notes.txt")
print(run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_artifacts_of_ended_and_killed_runs_under_load(repo, busy_machine):
    """Artifacts logged by runs that ended, and by the run open when the process was
    killed, are all in git after the next command (the ended runs FINISHED)."""
    result = run_python(ARTIFACTS_THEN_KILLED, cwd=repo, env={"GITML_FLUSH_INTERVAL": "3600"}, check=False)
    assert result.returncode == -9, result.stderr
    killed = result.stdout.strip()
    with gitml.Client(repo) as client:
        experiment = client.get_experiment_by_name("art").experiment_id
        runs = {r.info.run_name: r for r in client.search_runs([experiment])}
        assert sorted(runs) == ["done0", "done1", "done2", "open"]
        for i in range(3):
            run = runs[f"done{i}"]
            assert run.info.status == "FINISHED" and run.data.params == {"i": str(i)}
            [entry] = client.list_artifacts(run.info.run_id)
            assert entry.path == "model.bin" and entry.file_size == 3001
        assert runs["open"].info.run_id == killed and runs["open"].info.status == "KILLED"
        path = client.download_artifacts(killed, "notes.txt")
        assert open(path).read() == "written before the kill"
    assert os.listdir(repo / ".git" / "gitml" / "journal") == []
    git(repo, "fsck", "--strict")

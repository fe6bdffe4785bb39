"""Crash safety: a SIGKILLed writer loses nothing that reached its journal."""

import os

import pytest

import gitml
from tests.conftest import git, run_python

KILLED_SCRIPT = """
import os, signal, gitml
gitml.set_experiment("crash")
run = gitml.start_run(run_name="doomed")
gitml.log_param("lr", "0.1")
for i in range({points}):
    gitml.log_metric("loss", 1.0 / (i + 1), step=i)
gitml.set_tag("phase", "train")
{before_kill}
print(run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_run(repo, points=500, before_kill="", env=None):
    script = KILLED_SCRIPT.format(points=points, before_kill=before_kill)
    result = run_python(script, cwd=repo, env={"GITML_FLUSH_INTERVAL": "3600", **(env or {})}, check=False)
    assert result.returncode == -9, result.stderr
    return result.stdout.strip()


def test_killed_run_is_recovered_by_next_command(repo):
    run_id = _killed_run(repo)
    journals = os.listdir(repo / ".git" / "gitml" / "journal")
    assert journals  # the process died with its journal
    client = gitml.Client(repo)  # any next gitml command recovers
    assert client.tracker.recovered == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time
    assert run.data.params == {"lr": "0.1"} and run.data.tags["phase"] == "train"
    assert len(client.get_metric_history(run_id, "loss")) == 500
    assert os.listdir(repo / ".git" / "gitml" / "journal") == []
    client.close()
    git(repo, "fsck", "--strict")


def test_killed_after_a_flush_replays_only_the_rest(repo):
    run_id = _killed_run(
        repo, points=300, before_kill="gitml.flush()\nfor i in range(300, 450): gitml.log_metric('loss', 0.0, step=i)"
    )
    out = run_python("import gitml.cli.main as m; m.main()", cwd=repo, env={}, check=False)
    assert out.returncode != 0  # no command given: usage, but recovery is the Client's job
    client = gitml.Client(repo)
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(450))  # no duplicates, nothing lost
    assert client.get_run(run_id).info.status == "KILLED"
    client.close()


def test_torn_last_journal_line_is_ignored(repo):
    run_id = _killed_run(repo, points=10)
    journal_dir = repo / ".git" / "gitml" / "journal"
    (name,) = os.listdir(journal_dir)
    with open(journal_dir / name, "ab") as f:
        f.write(b"M\tloss\t0.5\t99")  # a write cut short by the kill
    client = gitml.Client(repo)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(10))
    client.close()


def test_live_writer_is_not_recovered(repo):
    with gitml.start_run() as run:
        gitml.log_metric("m", 1.0)
        other = gitml.Client(repo)  # another "command" while the run is live
        assert other.tracker.recovered == []
        other.close()
        gitml.log_metric("m", 2.0, step=1)
    assert gitml.get_run(run.info.run_id).info.status == "FINISHED"


def test_recover_command(repo):
    run_id = _killed_run(repo, points=5)
    from click.testing import CliRunner

    from gitml.cli.main import cli

    result = CliRunner().invoke(cli, ["-C", str(repo), "recover"])
    assert result.exit_code == 0 and run_id in result.output


def test_journal_rotation_keeps_open_runs_recoverable(repo):
    client = gitml.Client(repo)
    tracker = client.tracker
    writer = tracker.create_run("0", run_name="long")
    for step in range(100):
        writer.log_metric("loss", step, step, 1)
    old = tracker.journal.path
    tracker.rotate_journal()
    assert not os.path.exists(old) and os.path.exists(tracker.journal.path)
    for step in range(100, 150):
        writer.log_metric("loss", step, step, 1)
    # the process dies now (its journal lock is released, the file stays)
    tracker.journal.close(remove=False)
    tracker.journal, tracker.writers = None, {}  # (this "dead" process writes nothing more)
    other = gitml.Client(repo)  # recovers what the new journal holds
    assert other.tracker.recovered == [writer.run_id]
    assert [m.step for m in other.get_metric_history(writer.run_id, "loss")] == list(range(150))
    assert other.get_run(writer.run_id).info.status == "KILLED"
    other.close()


def test_a_ref_lock_left_by_a_killed_writer_does_not_stall_the_repository(repo, caplog):
    """SIGKILL between taking a ref's lock and renaming it leaves the .lock file: the
    next command sees that the gitml process that took it is dead and removes it,
    instead of waiting 30 s and failing. (A lock of a process gitml does not know is
    never removed: tests/store/test_refs_scale.py.)"""
    script = KILLED_SCRIPT.format(
        points=3,
        before_kill="""
from gitml.store import locks
gitml.flush()
locks.LockFile.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock
gitml.log_metric("loss", 0.5, step=3)
gitml.flush()
""",
    )
    result = run_python(script, cwd=repo, env={"GITML_FLUSH_INTERVAL": "3600"}, check=False)
    assert result.returncode == -9, result.stderr
    locks = list((repo / ".git" / "refs" / "gitml" / "runs").glob("*/*.lock"))
    assert len(locks) == 1
    client = gitml.Client(repo)  # recovery commits the killed run: the ref's lock is in its way
    try:
        assert not locks[0].exists() and "which died holding it" in caplog.text
        run_id = locks[0].name[: -len(".lock")]
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2, 3]
        assert client.get_run(run_id).info.status == "KILLED"
    finally:
        client.close()


KILL_AT = {
    # the run ref's lock is taken (linked from this process's witness) and still empty
    "lock taken": """
real = os.link
def link(src, dst, *a, **k):
    real(src, dst, *a, **k)
    if "refs/gitml/runs" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
os.link = link
""",
    # the witness exists, the lock is not taken yet
    "witness made": """
def link(src, dst, *a, **k):
    if "refs/gitml/runs" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
os.link = link
""",
    # the lock is renamed into place, its witness not removed yet
    "ref written": """
real = os.replace
def replace(src, dst, *a, **k):
    real(src, dst, *a, **k)
    if "refs/gitml/runs" in str(src) and str(src).endswith(".lock"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
""",
}


@pytest.mark.parametrize("moment", sorted(KILL_AT))
def test_a_writer_killed_at_any_moment_of_taking_a_ref_lock_stalls_nothing(repo, moment):
    """A lock exists only as the hard link of a witness its owner recorded first, so a
    gitml killed at any moment of taking, writing or renaming a ref's lock leaves
    nothing the next command cannot prove dead: it commits the run from the journal
    at once, and the dead process's owner file and witnesses are gone. (A lock created
    with O_EXCL and recorded after was unprovable when the process died in between: a
    SIGTERM in a 100,000-run loop left one, and the next command waited 30 s and kept
    the run in its journal.)"""
    script = KILLED_SCRIPT.format(points=3, before_kill=KILL_AT[moment] + "gitml.flush()\n")
    result = run_python(script, cwd=repo, env={"GITML_FLUSH_INTERVAL": "3600"}, check=False)
    assert result.returncode == -9, result.stderr
    owners = repo / ".git" / "gitml" / "locks"
    dead = set(os.listdir(owners))
    assert len(dead) == 2  # the dead process's owner file and its witness folder
    client = gitml.Client(repo)
    try:
        (run,) = client.search_runs([client.get_experiment_by_name("crash").experiment_id])
        assert run.info.status == "KILLED" and run.data.params == {"lr": "0.1"}
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2]
        assert not list((repo / ".git" / "refs").rglob("*.lock"))
    finally:
        client.close()
    assert not dead & set(os.listdir(owners))
    git(repo, "fsck", "--strict")


ROTATING_LOOP = """
import sys, gitml
import gitml.runlog.tracker as tracker
tracker.JOURNAL_ROTATE_BYTES = {rotate}  # the 64 MB of a long process, reached in a short test
gitml.set_experiment("loop")
for i in range({runs}):
    with gitml.start_run(run_name=f"r{{i}}"):
        gitml.log_params({{f"p{{j}}": j for j in range(10)}})
        gitml.log_metrics({{f"m{{j}}": float(j) for j in range(10)}})
        gitml.set_tags({{f"t{{j}}": str(j) for j in range(5)}})
"""


def _assert_every_run_finished(repo, runs: int):
    client = gitml.Client(repo)
    try:
        found = client.search_runs([client.get_experiment_by_name("loop").experiment_id], max_results=runs + 10)
        assert sorted(r.info.run_name for r in found) == sorted(f"r{i}" for i in range(runs))
        assert {r.info.status for r in found} == {"FINISHED"}
        assert all(len(r.data.params) == 10 and len(r.data.metrics) == 10 for r in found)
        assert all(r.data.tags.get(f"t{j}") == str(j) for r in found for j in range(5))
    finally:
        client.close()
    assert os.listdir(repo / ".git" / "gitml" / "journal") == []
    git(repo, "fsck", "--strict")


def test_journal_rotation_keeps_the_runs_that_wait_for_the_committer(repo):
    """A long process moves to a fresh journal past 64 MB, on the committer thread, while
    up to 128 ended runs wait in its queue with their lines in the old journal only. The
    old journal was closed and deleted at once: each waiting run then failed with "Bad
    file descriptor" and its lines were gone (258 of 3,000 runs at a 1 MB threshold, 129
    of 50,000 at 64 MB). It is kept open now until its last run has committed."""
    result = run_python(ROTATING_LOOP.format(rotate=64 << 10, runs=600), cwd=repo)
    assert "could not be committed" not in result.stderr, result.stderr
    _assert_every_run_finished(repo, 600)


def test_recovery_keeps_a_journal_whose_runs_it_could_not_commit(repo):
    """Recovery deletes a journal only once every run in it is committed: a run whose
    commit fails (here its experiment's ref folder is blocked by a file) keeps the
    journal, and the next command, with the obstacle gone, commits it in full."""
    run_id = _killed_run(repo, points=50)
    journal_dir = repo / ".git" / "gitml" / "journal"
    (name,) = os.listdir(journal_dir)
    registered = [line.split("\t") for line in (journal_dir / name).read_text().splitlines() if line.startswith("R\t")]
    assert [r[3] for r in registered] == [run_id]
    experiment_id = registered[0][2]
    blocker = repo / ".git" / "refs" / "gitml" / "runs" / experiment_id
    assert not blocker.exists()  # killed before its first commit: its ref is to be made
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way\n")  # the ref's folder cannot be made: the commit fails
    result = run_python(
        "import gitml.cli.main as m, sys; sys.argv = ['gitml', 'recover']; m.main()", cwd=repo, check=False
    )
    assert run_id in result.stderr and "is kept" in result.stderr, result.stderr
    assert os.listdir(journal_dir) == [name]  # not deleted: the run is in no ref
    blocker.unlink()
    client = gitml.Client(repo)  # the next command folds it in
    try:
        assert client.tracker.recovered == [run_id]
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.params == {"lr": "0.1"}
        assert len(client.get_metric_history(run_id, "loss")) == 50
    finally:
        client.close()
    assert os.listdir(journal_dir) == []
    git(repo, "fsck", "--strict")


def test_a_run_whose_commit_fails_at_exit_is_recovered_with_its_real_status(repo):
    """The process ends its run (FINISHED) and exits normally, but the commit fails (the
    run's ref folder is blocked): the journal stays, and the next command commits the run
    with its data and the status its process gave it, not KILLED."""
    script = """
import os, gitml
experiment_id = gitml.create_experiment("blocked")
os.makedirs(".git/refs/gitml/runs", exist_ok=True)
open(f".git/refs/gitml/runs/{experiment_id}", "w").write("in the way\\n")
with gitml.start_run(experiment_id=experiment_id) as run:
    gitml.log_param("lr", "0.1")
    for i in range(20):
        gitml.log_metric("loss", 1.0 / (i + 1), step=i)
print(experiment_id, run.info.run_id, flush=True)
"""
    result = run_python(script, cwd=repo, check=False)
    experiment_id, run_id = result.stdout.split()
    assert f"run {run_id} could not be committed" in result.stderr, result.stderr
    journal_dir = repo / ".git" / "gitml" / "journal"
    assert len(os.listdir(journal_dir)) == 1
    (repo / ".git" / "refs" / "gitml" / "runs" / experiment_id).unlink()
    client = gitml.Client(repo)
    try:
        assert client.tracker.recovered == [run_id]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.end_time
        assert run.data.params == {"lr": "0.1"}
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(20))
    finally:
        client.close()
    assert os.listdir(journal_dir) == []
    git(repo, "fsck", "--strict")


def test_a_group_writer_killed_while_waiting_for_its_commit_is_recovered(repo):
    """A process logging to a run it did not start journals its point, then waits for a
    group commit (here the run's group lock is held by the test, so none comes) and is
    killed: the next command commits the point, and the run, which that process did not
    own, stays RUNNING."""
    import fcntl
    import hashlib
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    with gitml.Client(repo) as client:
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "loss", 1.0, step=0)
    lock_path = repo / ".git" / "gitml" / "group" / hashlib.sha1(run_id.encode()).hexdigest()[:2]
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a leader would, for as long as the test needs
    script = f"import gitml\nc = gitml.Client()\nc.log_metric({run_id!r}, 'loss', 2.0, step=1)\nprint('returned')"
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.PIPE,
        text=True,
    )
    journal_dir = repo / ".git" / "gitml" / "journal"
    deadline = time.monotonic() + 120
    while not any(
        b"\tloss\t2.0\t1\t" in (journal_dir / n).read_bytes() for n in os.listdir(journal_dir) if n.startswith("g-")
    ):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -9 and proc.stdout.read() == ""  # the call never returned
    os.close(fd)
    with gitml.Client(repo) as client:
        assert client.tracker.recovered == [run_id]
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 1.0), (1, 2.0)]
        assert client.get_run(run_id).info.status == "RUNNING"
    assert os.listdir(journal_dir) == []
    git(repo, "fsck", "--strict")

"""Crash safety: a SIGKILLed writer loses nothing that reached its journal."""

import os

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
    never removed: tests/test_refs_scale.py.)"""
    script = KILLED_SCRIPT.format(points=3, before_kill="""
from gitml.store import locks
gitml.flush()
locks.LockFile.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock
gitml.log_metric("loss", 0.5, step=3)
gitml.flush()
""")
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

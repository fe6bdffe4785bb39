"""A process that makes runs faster than one thread commits them hands its ended runs to a
commit process (gitml.runlog.commitprocess): real processes, killed for real.

Each sweep prints a line for every run whose ``end_run`` returned; whatever is killed,
every such run must be in git afterwards, FINISHED, with every param, point and tag, and
no point twice."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

import gitml
from gitml.runlog import journal as jr
from tests.conftest import ROOT, git

pytestmark = pytest.mark.timeout(300)

SWEEP = """
import os, sys, gitml

def commit_children():
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if comm == "gitml-commit" and int(rest[1]) == me:
                found.append(int(pid))
    return found

if os.environ.get("SWEEP_EXECUTABLE"):  # what the commit process is started with
    sys.executable = os.environ["SWEEP_EXECUTABLE"]
if os.environ.get("SWEEP_ROTATE"):  # a new journal every few runs
    import gitml.runlog.tracker
    gitml.runlog.tracker.JOURNAL_ROTATE_BYTES = int(os.environ["SWEEP_ROTATE"])
runs, check_reads = int(sys.argv[1]), sys.argv[2] == "check-reads"
stop = sys.argv[3] if len(sys.argv) > 3 else None  # a file that ends the sweep
client = gitml.Client()
gitml.set_experiment("sweep")
seen = set()
for i in range(runs):
    if stop and os.path.exists(stop):
        break
    with gitml.start_run(run_name=f"r{i}") as run:
        gitml.log_params({f"p{j}": f"{i}-{j}" for j in range(5)})
        for step in range(3):
            gitml.log_metrics({"loss": 1.0 / (i + step + 1), "acc": step / 3}, step=step)
        gitml.set_tags({"i": str(i)})
    print("ended", i, run.info.run_id, flush=True)
    if check_reads and i % 7 == 0:  # read at once, in this process: waits for its commit wherever it is made
        got = client.get_run(run.info.run_id)
        data = got.data
        if got.info.status != "FINISHED" or data.params.get("p4") != f"{i}-4" or data.metrics.get("acc") != 2 / 3:
            print("stale", i, got.info.status, got.data.params, got.data.metrics, flush=True)
    if i % 10 == 0:
        for pid in commit_children():
            if pid not in seen:
                seen.add(pid)
                print("child", pid, flush=True)
                if os.environ.get("SWEEP_FORK"):  # a forked worker that outlives this process
                    worker = os.fork()
                    if worker == 0:
                        import time
                        time.sleep(120)
                        os._exit(0)
                    print("worker", worker, flush=True)
print("done", flush=True)
"""


def _sweep(
    repo, runs: int, *, check_reads: bool = False, env: dict | None = None, stop: str = "", one_core: bool = False
) -> subprocess.Popen:
    first_core = min(os.sched_getaffinity(0))
    return subprocess.Popen(
        [sys.executable, "-c", SWEEP, str(runs), "check-reads" if check_reads else "-", *([stop] if stop else [])],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {first_core})) if one_core else None,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read_until(proc: subprocess.Popen, done) -> tuple[list[tuple[int, str]], list[int]]:
    """Lines of the sweep until ``done(ended, children)``: ended runs and commit processes seen."""
    ended, children = [], []
    for line in proc.stdout:
        kind, *rest = line.split()
        if kind == "ended":
            ended.append((int(rest[0]), rest[1]))
        elif kind == "child":
            children.append(int(rest[0]))
        if done(ended, children):
            break
    return ended, children


def _check(repo, ended: list[tuple[int, str]], *, killed_at_most: int = 0) -> None:
    """Every ended run FINISHED with all its data and each point once; others KILLED; git clean."""
    with gitml.Client(repo) as client:
        experiment = client.get_experiment_by_name("sweep").experiment_id
        found = {r.info.run_id: r for r in client.search_runs([experiment], max_results=100_000)}
        for i, run_id in ended:
            run = found.pop(run_id)
            assert run.info.status == "FINISHED", (i, run.info.status)
            assert run.info.run_name == f"r{i}"
            assert run.data.params == {f"p{j}": f"{i}-{j}" for j in range(5)}
            assert run.data.tags["i"] == str(i)
            assert run.data.metrics == {"loss": 1.0 / (i + 3), "acc": 2 / 3}
            if i % 50 == 0:
                history = client.get_metric_history(run_id, "loss")
                assert [(m.step, m.value) for m in history] == [(s, 1.0 / (i + s + 1)) for s in range(3)]
        leftover = [r for r in found.values() if r.info.status != "FINISHED"]
        assert len(leftover) <= killed_at_most and all(r.info.status == "KILLED" for r in leftover)
    # (a journal a killed process left half made holds no line: recovery deletes it once a minute old)
    assert [n for n in os.listdir(repo / ".git" / "gitml" / "journal") if not n.endswith(".log.new")] == []
    git(repo, "fsck", "--strict")


def test_a_sweep_commits_its_runs_on_a_commit_process(repo):
    proc = _sweep(repo, 600, check_reads=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    lines = out.split("\n")
    assert "done" in lines
    assert not [line for line in lines if line.startswith("stale")], out[-2000:]
    children = [int(line.split()[1]) for line in lines if line.startswith("child")]
    assert children, "no commit process was started"
    assert not any(_alive(pid) for pid in children)  # it ends with its parent
    ended = [(int(i), run_id) for kind, i, run_id in (line.split() for line in lines if line.startswith("ended"))]
    assert len(ended) == 600
    _check(repo, ended)


@pytest.mark.parametrize("how", ["told", "one core"])
def test_without_a_commit_process_when_told_or_on_one_core(repo, how):
    if how == "one core":
        proc = _sweep(repo, 300, one_core=True)
    else:
        proc = _sweep(repo, 300, env={"GITML_COMMIT_PROCESS": "0"})
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert not [line for line in out.split("\n") if line.startswith("child")]
    ended = [(int(i), r) for kind, i, r in (line.split() for line in out.split("\n") if line.startswith("ended"))]
    _check(repo, ended)


def test_a_killed_sweep_loses_no_ended_run_and_its_journal_waits_for_the_commit_process(repo):
    proc = _sweep(repo, 1_000_000)
    ended, children = _read_until(proc, lambda ended, children: children and len(ended) >= 400)
    child = children[0]
    os.kill(child, signal.SIGSTOP)  # runs handed over and not committed yet, held by a stopped process
    try:
        time.sleep(0.5)  # the sweep goes on until its runs in flight fill what it may hand over
        proc.kill()
        proc.wait()
        ended += [(int(i), r) for kind, i, r in (line.split() for line in proc.stdout if line.startswith("ended"))]
        journals = os.listdir(repo / ".git" / "gitml" / "journal")
        assert journals
        for name in journals:  # the parent is dead, but its journal's lock lives on in the commit process
            assert jr.try_lock(str(repo / ".git" / "gitml" / "journal" / name)) is None, name
        with gitml.Client(repo):  # a command now: its recovery leaves a journal a commit process holds
            pass
        assert set(os.listdir(repo / ".git" / "gitml" / "journal")) >= set(journals)
    finally:
        os.kill(child, signal.SIGCONT)
    deadline = time.monotonic() + 120
    while _alive(child):  # it commits what it was given, and ends
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _check(repo, ended, killed_at_most=1)


def test_a_commit_process_that_dies_gives_its_runs_back(repo, tmp_path):
    stop = str(tmp_path / "stop")
    proc = _sweep(repo, 1_000_000, stop=stop)
    ended, children = _read_until(proc, lambda ended, children: bool(children) and len(ended) >= 300)
    os.kill(children[0], signal.SIGKILL)
    ended += _read_until(proc, lambda e, c: len(e) >= 300)[0]  # the sweep goes on without it
    open(stop, "w").close()
    out, err = proc.stdout.read(), proc.stderr.read()  # the lines read ahead: not communicate(), which skips them
    assert proc.wait(timeout=240) == 0, err[-3000:]
    # seen as its end, or as a batch it could no longer take (a broken pipe), whichever comes first
    assert "committing in this process again" in err
    ended += [(int(i), r) for kind, i, r in (line.split() for line in out.split("\n") if line.startswith("ended"))]
    assert len(ended) >= 600 and len({r for _, r in ended}) == len(ended)
    _check(repo, ended)


def test_a_forked_worker_does_not_keep_the_commit_process_of_a_dead_parent(repo):
    """A worker forked from the sweep holds no end of the commit process: when the sweep is
    killed, the commit process sees it at once, commits what it has and ends (releasing the
    journal), however long the worker lives."""
    proc = _sweep(repo, 1_000_000, env={"SWEEP_FORK": "1"})
    ended, worker, child = [], 0, 0
    for line in proc.stdout:
        kind, *rest = line.split()
        if kind == "ended":
            ended.append((int(rest[0]), rest[1]))
        elif kind == "child":
            child = int(rest[0])
        elif kind == "worker":
            worker = int(rest[0])
        if worker and len(ended) >= 300:
            break
    try:
        proc.kill()
        proc.wait()
        ended += [(int(i), r) for kind, i, r in (line.split() for line in proc.stdout if line.startswith("ended"))]
        deadline = time.monotonic() + 60  # the worker sleeps 120 s
        while _alive(child):
            assert time.monotonic() < deadline, "the commit process waits for the forked worker"
            time.sleep(0.05)
    finally:
        os.kill(worker, signal.SIGKILL)
    _check(repo, ended, killed_at_most=1)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _slow_python(tmp_path) -> str:
    """An interpreter that takes 1,000 s to start (a loaded machine, a slow disk, at worst)."""
    path = tmp_path / "slow-python"
    path.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import os, sys, time; time.sleep(1000); "
        'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\' "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def test_a_sweep_that_ends_while_its_commit_process_starts_commits_its_runs_here(repo, tmp_path):
    """Batches held for a commit process that is not ready yet are committed by the thread once
    it holds as many as it may (not waited on: the sweep went on), and at exit (no waiting for
    the start); the never-ready process is ended. Before: the sweep hung until it was ready."""
    proc = _sweep(repo, 400, env={"SWEEP_EXECUTABLE": _slow_python(tmp_path)})
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert len([line for line in err.splitlines() if line.strip()]) <= 1, err  # at most: it did not start in 30 s
    ended = [(int(i), r) for kind, i, r in (line.split() for line in out.split("\n") if line.startswith("ended"))]
    assert len(ended) == 400
    assert not _children(proc.pid)
    _check(repo, ended)


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python"])
def test_a_commit_process_that_cannot_start_leaves_the_commits_to_the_thread(repo, executable):
    proc = _sweep(repo, 300, env={"SWEEP_EXECUTABLE": executable})
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    ended = [(int(i), r) for kind, i, r in (line.split() for line in out.split("\n") if line.startswith("ended"))]
    assert len(ended) == 300
    _check(repo, ended)


def test_a_sweep_terminated_while_its_commit_process_starts_is_recovered(repo, tmp_path):
    proc = _sweep(repo, 1_000_000, env={"SWEEP_EXECUTABLE": _slow_python(tmp_path)})
    ended: list[tuple[int, str]] = []
    starting: list[int] = []
    for line in proc.stdout:
        kind, *rest = line.split()
        if kind == "ended":
            ended.append((int(rest[0]), rest[1]))
            if len(ended) % 20 == 0 and not starting:
                starting = _children(proc.pid)
        if starting and len(ended) >= 200:
            break
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        ended += [(int(i), r) for kind, i, r in (line.split() for line in proc.stdout if line.startswith("ended"))]
        with gitml.Client(repo):  # the next command recovers what did not commit
            pass
    finally:
        for pid in starting:
            os.kill(pid, signal.SIGKILL)
    _check(repo, ended, killed_at_most=1)


def test_journals_rotated_while_batches_are_at_a_killed_commit_process_lose_nothing(repo):
    """A new journal every ~10 runs while batches are away at the commit process; the child is
    killed, then the parent: the next command's recovery commits every ended run once."""
    proc = _sweep(repo, 1_000_000, env={"SWEEP_ROTATE": "30000"})
    ended, children = _read_until(proc, lambda ended, children: bool(children) and len(ended) >= 300)
    os.kill(children[0], signal.SIGKILL)
    ended += _read_until(proc, lambda e, c: len(e) >= 500)[0]
    proc.kill()
    proc.wait()
    ended += [(int(i), r) for kind, i, r in (line.split() for line in proc.stdout if line.startswith("ended"))]
    with gitml.Client(repo):  # recovery
        pass
    _check(repo, ended, killed_at_most=1)


def test_journals_rotated_while_batches_are_at_the_commit_process_of_a_killed_sweep_lose_nothing(repo):
    proc = _sweep(repo, 1_000_000, env={"SWEEP_ROTATE": "30000"})
    ended, children = _read_until(proc, lambda ended, children: bool(children) and len(ended) >= 400)
    proc.kill()
    proc.wait()
    ended += [(int(i), r) for kind, i, r in (line.split() for line in proc.stdout if line.startswith("ended"))]
    deadline = time.monotonic() + 120
    while _alive(children[0]):  # it commits what it was given, and ends
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with gitml.Client(repo):  # recovery
        pass
    _check(repo, ended, killed_at_most=1)


def test_a_journal_left_half_made_by_a_killed_process_is_deleted_by_recovery(repo):
    """A process killed between creating a journal and renaming it into place (rotation makes
    them often) left ``.NAME.log.new`` for ever; recovery deletes an unlocked one a minute old,
    and keeps one that may be in the making."""
    journal_dir = repo / ".git" / "gitml" / "journal"
    journal_dir.mkdir(parents=True, exist_ok=True)
    old, young = journal_dir / ".1-aaaaaaaaaaaa.log.new", journal_dir / ".2-bbbbbbbbbbbb.log.new"
    for path in (old, young):
        path.write_bytes(jr.MAGIC.encode() + b"\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    held = journal_dir / ".3-cccccccccccc.log.new"  # old, but locked: its process lives
    held.write_bytes(b"")
    os.utime(held, (time.time() - 3600, time.time() - 3600))
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with gitml.Client(repo):
            pass
        assert sorted(os.listdir(journal_dir)) == sorted([young.name, held.name])
    finally:
        os.close(fd)

"""Many writers at once, in processes and threads, lose nothing."""

import subprocess
import sys
import threading

import gitml
from tests.conftest import ROOT, git

WORKER = """
import sys, gitml
gitml.set_experiment("shared")
worker = int(sys.argv[1])
for i in range(15):
    with gitml.start_run(run_name=f"w{worker}-{i}"):
        gitml.log_param("worker", worker)
        for step in range(20):
            gitml.log_metric("m", step, step=step)
"""


def test_four_processes_create_runs_concurrently(repo):
    env = {"PYTHONPATH": ROOT, "HOME": str(repo.parent), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(w)], cwd=repo, env=env, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    frame = gitml.search_runs(experiment_names=["shared"])
    assert len(frame) == 60
    assert sorted(frame["params.worker"].value_counts().tolist()) == [15, 15, 15, 15]
    for run_id in frame["run_id"][:5]:
        assert len(gitml.get_metric_history(run_id, "m")) == 20
    git(repo, "fsck", "--strict")


def test_threads_and_processes_logging_to_one_run(repo):
    client = gitml.Client(repo, flush_interval=0.01)
    run = client.create_run("0")
    run_id = run.info.run_id

    def log(thread):
        for step in range(200):
            client.log_metric(run_id, f"t{thread}", step, step=step)

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    code = (
        "import gitml\n"
        f"c = gitml.Client(flush_interval=0.0)\n"
        f"for s in range(50): c.log_metric('{run_id}', 'proc', s, step=s)\n"
    )
    import os

    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, env={**os.environ, "PYTHONPATH": ROOT})
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=120) == 0
    client.set_terminated(run_id)
    for key in ("t0", "t1", "t2", "t3"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(200))
    assert len(client.get_metric_history(run_id, "proc")) == 50
    client.close()
    git(repo, "fsck", "--strict")


def test_forked_children_log_to_the_parents_run(repo):
    import os

    with gitml.start_run() as run:
        gitml.log_metric("parent", 1.0)
        pids = []
        for child in range(3):
            pid = os.fork()
            if pid == 0:  # the child logs to the run it inherited, then leaves
                try:
                    for step in range(10):
                        gitml.log_metric(f"child{child}", step, step=step)
                    gitml.flush()
                finally:
                    os._exit(0)
            pids.append(pid)
        for pid in pids:
            assert os.waitpid(pid, 0)[1] == 0
        gitml.log_metric("parent", 2.0, step=1)
        # a later command recovers nothing that would end the run: this process still writes it
        assert gitml.Client(repo).tracker.recovered in ([], [run.info.run_id])
        assert gitml.Client(repo).get_run(run.info.run_id).info.status == "RUNNING"
    got = gitml.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    for child in range(3):
        assert [m.step for m in gitml.get_metric_history(run.info.run_id, f"child{child}")] == list(range(10))
    assert got.data.metrics["parent"] == 2.0
    git(repo, "fsck", "--strict")


RESUMER = """
import sys, gitml
run_id, worker, points = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = gitml.Client(flush_interval=0)  # every call returns once its point is committed
for step in range(points):
    client.log_metric(run_id, "shared", float(worker), step=step)
    client.log_metric(run_id, f"w{worker}", float(step), step=step)
client.close()
"""


def test_sixteen_processes_resuming_one_run_commit_as_a_group(repo):
    """16 processes log to one run they did not start, each point acknowledged on its
    own: 11 points/s when each point was its own compare-and-swap commit, lost to the
    others and rebuilt again and again. A writer now folds in what the others journaled
    meanwhile (tracking.group): every point is there, in fewer commits than points."""
    resumers_lose_nothing(repo, writers=16, points=200)


def resumers_lose_nothing(repo, *, writers: int, points: int) -> None:
    """``writers`` processes each log ``points`` points to a shared key and as many to
    their own, to one run none of them started; every point is there afterwards."""
    import os

    with gitml.Client(repo) as client:
        run_id = client.create_run("0").info.run_id
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESUMER, run_id, str(w), str(points)], cwd=repo, env=env, stderr=subprocess.PIPE
        )
        for w in range(writers)
    ]
    errors = [p.stderr.read().decode() for p in procs if p.wait(timeout=280) != 0]
    assert not errors, errors[0][-2000:]
    with gitml.Client(repo) as client:
        shared = client.get_metric_history(run_id, "shared")
        assert sorted((m.step, m.value) for m in shared) == sorted(
            (s, float(w)) for s in range(points) for w in range(writers)
        )
        for w in range(writers):
            assert [(m.step, m.value) for m in client.get_metric_history(run_id, f"w{w}")] == [
                (s, float(s)) for s in range(points)
            ]
        assert client.get_run(run_id).info.status == "RUNNING"  # written to, not owned: not ended by anyone
    ref = git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs/").split()[0]
    commits = int(git(repo, "rev-list", "--count", ref))
    assert commits < writers * points * 2  # points were folded into others' commits
    assert os.listdir(repo / ".git" / "gitml" / "journal") == []  # every group journal was committed and removed
    git(repo, "fsck", "--strict")

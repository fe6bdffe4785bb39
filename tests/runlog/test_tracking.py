"""The fluent API and the Client against real git repositories."""

import math
import os
import subprocess
import sys
import time

import pytest

import gitml
from gitml.errors import CorruptRecordError, InvalidInputError, ParamConflictError, RunNotFoundError
from tests.conftest import ROOT, git, run_python


def test_run_records_params_metrics_tags_and_source(repo):
    (repo / "train.py").write_text("print('changed')\n")  # uncommitted change to a tracked file
    gitml.set_experiment("demo")
    with gitml.start_run(run_name="first", tags={"team": "core"}) as run:
        gitml.log_param("lr", 0.01)
        gitml.log_params({"layers": 3, "opt": "adam"})
        for step in range(5):
            gitml.log_metric("loss", 1.0 / (step + 1), step=step)
        gitml.log_metrics({"acc": 0.9, "f1": 0.8})
        gitml.set_tag("note", "hello")
        assert gitml.active_run().info.run_id == run.info.run_id
    assert gitml.active_run() is None
    got = gitml.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "first"
    assert got.info.end_time >= got.info.start_time
    assert got.data.params == {"lr": "0.01", "layers": "3", "opt": "adam"}
    assert got.data.metrics == {"loss": 0.2, "acc": 0.9, "f1": 0.8}
    assert got.data.tags["team"] == "core" and got.data.tags["note"] == "hello"
    assert got.data.tags["mlflow.runName"] == "first"
    head = git(repo, "rev-parse", "HEAD").strip()
    assert got.source.commit == head and got.source.dirty is True and got.source.branch == "main"
    history = gitml.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert all(isinstance(m.timestamp, int) for m in history)


def test_git_sees_valid_objects_code_and_record(repo, tmp_path):
    (repo / "train.py").write_text("print('dirty edit')\n")
    with gitml.start_run() as run:
        gitml.log_metric("m", 1.5)
    gitml.flush()
    experiment_id = run.info.experiment_id
    ref = f"refs/gitml/runs/{experiment_id}/{run.info.run_id}"
    git(repo, "fsck", "--strict")
    assert git(repo, "rev-parse", f"{ref}^").strip() == git(repo, "rev-parse", "HEAD").strip()
    assert "dirty edit" in git(repo, "show", f"{ref}:train.py")
    assert "m:" in git(repo, "show", f"{ref}:.gitml/run/metrics.yaml")
    changed = git(repo, "diff", "--name-only", "HEAD", ref).split()
    assert "train.py" in changed and ".gitml/run/meta.yaml" in changed
    assert "gitml: run" in git(repo, "log", "--format=%s", ref)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    assert run.info.run_id in git(bare, "for-each-ref", "refs/gitml/runs")
    git(bare, "fsck", "--strict")


def test_exception_ends_run_failed_and_interrupt_killed(repo):
    with pytest.raises(RuntimeError):
        with gitml.start_run() as run:
            raise RuntimeError("boom")
    assert gitml.get_run(run.info.run_id).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt):
        with gitml.start_run() as run2:
            raise KeyboardInterrupt
    assert gitml.get_run(run2.info.run_id).info.status == "KILLED"


def test_nested_runs_and_active_run_rules(repo):
    with gitml.start_run() as parent:
        with pytest.raises(InvalidInputError, match="already active"):
            gitml.start_run()
        with gitml.start_run(nested=True) as child:
            assert gitml.active_run().info.run_id == child.info.run_id
        assert gitml.active_run().info.run_id == parent.info.run_id
    assert gitml.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_run_id_in_environment_attaches(repo, monkeypatch):
    with gitml.start_run() as run:
        gitml.log_param("a", "1")
    monkeypatch.setenv("GITML_RUN_ID", run.info.run_id)
    with gitml.start_run() as again:
        gitml.log_metric("later", 2.0)
    assert again.info.run_id == run.info.run_id
    got = gitml.get_run(run.info.run_id)
    assert got.data.params == {"a": "1"} and got.data.metrics == {"later": 2.0}


def test_params_are_immutable(repo):
    with gitml.start_run() as run:
        gitml.log_param("lr", "0.1")
        gitml.log_param("lr", "0.1")  # same value: fine
        with pytest.raises(ParamConflictError, match="lr"):
            gitml.log_param("lr", "0.2")
    assert gitml.get_run(run.info.run_id).data.params == {"lr": "0.1"}
    c = gitml.Client(repo)
    with pytest.raises(ParamConflictError):
        c.log_param(run.info.run_id, "lr", "0.3")
    c.close()


def test_nan_and_inf_round_trip(repo):
    with gitml.start_run() as run:
        gitml.log_metric("nan", float("nan"))
        gitml.log_metric("inf", float("inf"))
        gitml.log_metric("ninf", float("-inf"))
    got = gitml.get_run(run.info.run_id).data.metrics
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf
    assert math.isnan(gitml.get_metric_history(run.info.run_id, "nan")[0].value)


@pytest.mark.parametrize("key", ["../escape", "/abs", "a\x00b", "ctl\x07", "", "x" * 300, "a/../b", "k@0.tsv"])
def test_hostile_keys_refused_and_nothing_harmed(repo, key):
    with gitml.start_run() as run:
        gitml.log_param("safe", "1")
        gitml.log_metric("ok", 1.0)
        for call in (
            lambda: gitml.log_metric(key, 1.0),
            lambda: gitml.log_param(key, "v"),
            lambda: gitml.set_tag(key, "v"),
            lambda: gitml.log_metrics({"fine": 1.0, key: 2.0}),
        ):
            with pytest.raises(InvalidInputError):
                call()
    got = gitml.get_run(run.info.run_id)
    assert got.data.params == {"safe": "1"} and got.data.metrics == {"ok": 1.0}
    git(repo, "fsck", "--strict")


def test_key_named_like_record_files_is_harmless(repo):
    with gitml.start_run() as run:
        gitml.log_metric("meta.yaml", 1.0)
        gitml.log_param("metrics.yaml", "p")
        gitml.set_tag("params.yaml", "t")
    got = gitml.get_run(run.info.run_id)
    assert got.data.metrics == {"meta.yaml": 1.0} and got.data.params == {"metrics.yaml": "p"}
    assert got.info.status == "FINISHED"


def test_reserved_tags_and_long_values_refused(repo, monkeypatch):
    with gitml.start_run():
        with pytest.raises(InvalidInputError, match="reserved"):
            gitml.set_tag("gitml.source.dirty", "false")
        monkeypatch.setenv(
            "GITML_TRUNCATE_LONG_VALUES", "false"
        )  # MLflow's default cuts them (tests/compat/test_mlflow_api.py)
        with pytest.raises(InvalidInputError, match="longer"):
            gitml.log_param("p", "x" * 7000)


def test_run_name_via_tag_and_update(repo):
    with gitml.start_run() as run:
        gitml.set_tag("mlflow.runName", "renamed")
    assert gitml.get_run(run.info.run_id).info.run_name == "renamed"


def test_delete_and_restore_run(repo):
    with gitml.start_run() as run:
        pass
    gitml.delete_run(run.info.run_id)
    assert gitml.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert run.info.run_id not in set(gitml.search_runs()["run_id"])
    deleted = gitml.search_runs(run_view_type=gitml.ViewType.DELETED_ONLY)
    assert list(deleted["run_id"]) == [run.info.run_id]
    gitml.restore_run(run.info.run_id)
    assert run.info.run_id in set(gitml.search_runs()["run_id"])


def test_experiments_lifecycle(repo):
    c = gitml.Client(repo)
    assert [e.name for e in c.search_experiments()] == ["Default"]
    eid = c.create_experiment("churn", tags={"owner": "ana"})
    with pytest.raises(InvalidInputError, match="already exists"):
        c.create_experiment("churn")
    assert c.get_experiment(eid).name == "churn" and c.get_experiment(eid).tags == {"owner": "ana"}
    assert c.get_experiment_by_name("churn").experiment_id == eid
    c.rename_experiment(eid, "churn-v2")
    assert c.get_experiment_by_name("churn") is None
    assert c.get_experiment_by_name("churn-v2").experiment_id == eid
    eid2 = c.create_experiment("churn")  # the old name is free again: a new id
    assert eid2 != eid
    c.set_experiment_tag(eid, "stage", "dev")
    assert c.get_experiment(eid).tags == {"owner": "ana", "stage": "dev"}
    c.delete_experiment(eid)
    assert eid not in {e.experiment_id for e in c.search_experiments()}
    assert eid in {e.experiment_id for e in c.search_experiments(view_type=gitml.ViewType.DELETED_ONLY)}
    with pytest.raises(InvalidInputError, match="deleted"):
        c.create_run(eid)
    c.restore_experiment(eid)
    found = c.search_experiments(filter_string="name LIKE 'churn%'", order_by=["name"])
    assert [e.name for e in found] == ["churn", "churn-v2"]
    with pytest.raises(InvalidInputError):
        c.delete_experiment("0")
    c.close()


def test_set_experiment_creates_and_runs_land_there(repo):
    experiment = gitml.set_experiment("fresh")
    with gitml.start_run() as run:
        pass
    assert run.info.experiment_id == experiment.experiment_id
    assert gitml.get_experiment_by_name("fresh").experiment_id == experiment.experiment_id
    git(repo, "fsck", "--strict")


def test_same_experiment_name_in_two_clones_gets_the_same_id(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for p in (a, b):
        p.mkdir()
        git(p, "init", "-q")
    ca, cb = gitml.Client(a), gitml.Client(b)
    assert ca.create_experiment("shared") == cb.create_experiment("shared")
    ca.close()
    cb.close()


def test_corrupt_run_record_fails_alone(repo):
    with gitml.start_run() as good:
        gitml.log_metric("m", 1.0)
    with gitml.start_run() as bad:
        gitml.log_metric("m", 2.0)
    gitml.flush()  # wait for the background commit before using git directly
    ref = f"refs/gitml/runs/{bad.info.experiment_id}/{bad.info.run_id}"
    # Point the bad run at a commit whose meta.yaml is not YAML, made with real git.
    tree = git(repo, "rev-parse", f"{ref}^{{tree}}").strip()
    broken = repo / "broken.yaml"
    broken.write_text("run_id: [unclosed\n")
    blob = git(repo, "hash-object", "-w", str(broken)).strip()
    run_tree = git(repo, "rev-parse", f"{ref}:.gitml/run").strip()
    entries = git(repo, "ls-tree", run_tree).replace(
        git(repo, "rev-parse", f"{ref}:.gitml/run/meta.yaml").strip(), blob
    )
    new_run_tree = _mktree(repo, entries)
    gitml_entries = git(repo, "ls-tree", git(repo, "rev-parse", f"{ref}:.gitml").strip())
    gitml_entries = gitml_entries.replace(run_tree, new_run_tree)
    new_gitml = _mktree(repo, gitml_entries)
    root = git(repo, "ls-tree", tree).replace(git(repo, "rev-parse", f"{ref}:.gitml").strip(), new_gitml)
    new_root = _mktree(repo, root)
    commit = git(repo, "commit-tree", new_root, "-p", ref, "-m", "corrupt").strip()
    git(repo, "update-ref", ref, commit)
    c = gitml.Client(repo)
    with pytest.raises(CorruptRecordError, match=bad.info.run_id):
        c.get_run(bad.info.run_id)
    assert c.get_run(good.info.run_id).data.metrics == {"m": 1.0}
    runs = c.search_runs(experiment_ids=[good.info.experiment_id])
    assert [r.info.run_id for r in runs] == [good.info.run_id]
    c.close()


def _mktree(repo, listing: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", "mktree"], cwd=repo, input=listing, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_repository_without_commits(tmp_path, monkeypatch):
    path = tmp_path / "empty"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.py").write_text("x = 1\n")
    git(path, "add", "a.py")
    monkeypatch.chdir(path)
    with gitml.start_run() as run:
        gitml.log_metric("m", 1.0)
    got = gitml.get_run(run.info.run_id)  # waits for the run's commit
    assert got.source.commit is None and got.data.metrics == {"m": 1.0}
    ref = f"refs/gitml/runs/0/{run.info.run_id}"
    assert "x = 1" in git(path, "show", f"{ref}:a.py")  # the staged file is the source
    git(path, "fsck", "--strict")


def test_outside_a_repository_uses_a_bare_store(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with gitml.start_run() as run:
        gitml.log_metric("m", 3.0)
    assert (tmp_path / "gitml-runs").is_dir()
    assert "not in a git repository" in caplog.text
    assert gitml.get_run(run.info.run_id).data.metrics == {"m": 3.0}
    git(tmp_path / "gitml-runs", "fsck", "--strict")


def test_runs_from_a_linked_worktree_land_in_the_common_repository(repo, tmp_path):
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    (worktree / "train.py").write_text("print('feature')\n")
    git(worktree, "commit", "-qam", "feature")
    out = run_python(
        "import gitml\nwith gitml.start_run() as r:\n    gitml.log_param('a', 1)\n"
        "    gitml.log_text('x' * 10, 'n.txt')\nprint(r.info.run_id)",
        cwd=worktree,
    )
    run_id = out.stdout.split()[-1]
    git(repo, "fsck", "--strict")
    git(repo, "gc", "-q")  # git reads every object the run references
    with gitml.Client(repo) as c:  # the main work tree sees it
        run = c.get_run(run_id)
        assert run.data.params == {"a": "1"} and run.source.branch == "feature"
    assert git(repo, "show", f"refs/gitml/runs/0/{run_id}:train.py") == "print('feature')\n"


def test_client_create_run_and_log(client):
    eid = client.create_experiment("c")
    run = client.create_run(eid, run_name="explicit")
    rid = run.info.run_id
    client.log_param(rid, "p", 1)
    client.log_metric(rid, "m", 0.5, step=3)
    client.log_batch(
        rid, metrics=[gitml.Metric("n", 1.0, 0, 1)], params=[gitml.Param("q", "2")], tags=[gitml.RunTag("t", "v")]
    )
    client.set_tag(rid, "x", "y")
    client.delete_tag(rid, "x")
    with pytest.raises(InvalidInputError):
        client.delete_tag(rid, "never-set")
    client.set_terminated(rid, "FINISHED")
    got = client.get_run(rid)
    assert got.info.status == "FINISHED" and got.info.run_name == "explicit"
    assert got.data.params == {"p": "1", "q": "2"} and got.data.metrics == {"m": 0.5, "n": 1.0}
    assert "x" not in got.data.tags and got.data.tags["t"] == "v"
    assert [m.step for m in client.get_metric_history(rid, "m")] == [3]
    with pytest.raises(RunNotFoundError):
        client.get_run("f" * 32)


def test_client_create_run_records_the_user_it_is_given(client):
    """A server (the MLflow plugin's) creates runs for remote callers: their user, not its own."""
    eid = client.create_experiment("users")
    given = client.create_run(eid, user_id="ana")
    assert client.get_run(given.info.run_id).info.user_id == "ana"
    assert client.get_run(given.info.run_id).data.tags["mlflow.user"] == "ana"
    assert client.create_run(eid).info.user_id  # none given: this process's user
    with pytest.raises(InvalidInputError, match="user_id"):
        client.create_run(eid, user_id="two\nlines")  # refused before anything is written
    assert len(client.search_runs([eid])) == 2


def test_long_run_history_grows_with_points_not_flushes(repo, monkeypatch):
    from gitml.runlog import record

    monkeypatch.setattr(record, "CHUNK_POINTS", 200)
    with gitml.start_run() as run:
        for i in range(2000):
            gitml.log_metric("loss", i * 0.5, step=i)
            if i % 50 == 49:
                gitml.flush()  # 40 flushes
    gitml.flush()
    ref = f"refs/gitml/runs/0/{run.info.run_id}"
    commits = git(repo, "rev-list", ref).split()
    assert len(commits) >= 40
    # Sum the sizes of every distinct history blob ever written for the run.
    blobs = set()
    for commit in commits:
        for line in git(repo, "ls-tree", "-r", commit, ".gitml/run/metrics").splitlines():
            blobs.add(line.split()[2])
    total = sum(int(git(repo, "cat-file", "-s", b)) for b in blobs)
    final = sum(
        int(git(repo, "cat-file", "-s", line.split()[2]))
        for line in git(repo, "ls-tree", "-r", ref, ".gitml/run/metrics").splitlines()
    )
    assert total < 3 * final  # rewriting the whole history per flush would be ~20x
    history = gitml.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(2000))


def test_writes_go_to_packs_not_loose_objects(repo):
    for i in range(60):
        with gitml.start_run():
            gitml.log_metric("m", i)
    loose = [
        os.path.join(d, f)
        for d, _, files in os.walk(repo / ".git" / "objects")
        if os.path.basename(d) not in ("pack", "info")
        for f in files
    ]
    assert len(loose) <= 10  # only what the test's own `git commit` wrote
    packs = [f for f in os.listdir(repo / ".git" / "objects" / "pack") if f.endswith(".pack")]
    assert len(packs) < 40
    git(repo, "fsck", "--strict")
    assert len(gitml.search_runs()) == 60


def test_flush_interval_commits_while_running(repo):
    c = gitml.Client(repo, flush_interval=0.0)
    run = c.create_run("0")
    writer = c.tracker.open_writer(run.info.run_id)
    writer.log_metric("m", 1.0, 0, 1)  # interval 0: committed on the call
    out = run_python(f"import gitml; print(gitml.Client().get_run('{run.info.run_id}').data.metrics)", cwd=repo)
    assert "'m': 1.0" in out.stdout
    c.close()


def test_a_new_run_reaches_the_repository_long_before_the_flush_interval(repo):
    """README: the run ref advances every GITML_FLUSH_INTERVAL seconds, but a new run's first
    commit comes a second after it starts, so other processes see it while it runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_RUN],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": ROOT, "GITML_FLUSH_INTERVAL": "3600"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = holder.stdout.readline().strip()
        ref = f"refs/gitml/runs/0/{run_id}"
        deadline = time.monotonic() + 120  # a bound for a loaded machine, not a measurement
        while not git(repo, "for-each-ref", ref) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert git(repo, "for-each-ref", ref), "the new run's ref never came"
        assert holder.poll() is None  # still running, its interval an hour away
        out = run_python(f"import gitml; r = gitml.get_run('{run_id}'); print(r.info.status, r.data.metrics)", repo)
        assert out.stdout.split(" ", 1) == ["RUNNING", "{'loss': 0.5}\n"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert gitml.get_run(run_id).info.status == "FINISHED"


HOLD_A_RUN = """import sys
import gitml
with gitml.start_run() as run:
    gitml.log_metric("loss", 0.5)
    print(run.info.run_id, flush=True)
    sys.stdin.read()
"""


def test_last_active_run(repo):
    with gitml.start_run() as run:
        gitml.log_metric("m", 1.0)
    assert gitml.last_active_run().info.run_id == run.info.run_id


def test_dot_git_components_refused(repo):
    with gitml.start_run():
        for bad in (".git/config", "a/.GIT/b"):
            with pytest.raises(InvalidInputError, match=".git"):
                gitml.log_metric(bad, 1.0)
            with pytest.raises(InvalidInputError, match=".git"):
                gitml.log_text("x", bad)


def test_run_resolution_by_prefix_and_name(repo):
    c = gitml.Client(repo)
    a = c.create_run("0", run_name="alpha").info.run_id
    clash = c.create_run("0", run_name=a[:6]).info.run_id  # a name that is also a's id prefix
    assert c.tracker.resolve(a[:8].upper()) == a
    assert c.tracker.resolve("alpha") == a
    with pytest.raises(gitml.AmbiguousRunError):
        c.tracker.resolve(a[:6])
    with pytest.raises(InvalidInputError, match="too short"):
        c.tracker.resolve(a[:2])
    assert c.tracker.resolve(clash) == clash
    c.close()


def test_set_experiment_empty_name_and_resume_status(repo, monkeypatch):
    with pytest.raises(InvalidInputError):
        gitml.set_experiment("")
    with gitml.start_run() as run:
        pass
    monkeypatch.setenv("GITML_RUN_ID", run.info.run_id)
    with gitml.start_run() as again:
        assert again.info.status == "RUNNING" and again.info.end_time is None
    assert gitml.get_run(run.info.run_id).info.status == "FINISHED"
    assert run.info.artifact_uri == f"runs:/{run.info.run_id}"


def test_untracked_entry_script_is_named_and_warned(repo, caplog):
    script = repo / "new_script.py"
    script.write_text(
        "import gitml\nwith gitml.start_run() as r:\n    gitml.log_metric('m', 1)\nprint(r.info.run_id)\n"
    )
    out = run_python(open(script).read(), cwd=repo)  # as -c: no script name
    run_id = out.stdout.strip()
    assert gitml.get_run(run_id).data.tags["mlflow.source.name"] == "-c"  # sys.argv[0], as MLflow records it
    import subprocess
    import sys

    from tests.conftest import ROOT

    script.write_text(
        "import gitml\nfor i in range(3):\n    with gitml.start_run() as r:\n"
        "        gitml.log_metric('m', i)\nprint(r.info.run_id)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=repo, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}
    )
    assert result.stderr.count("not tracked by git") == 1  # once per process, not once per run of a sweep
    tags = gitml.get_run(result.stdout.strip()).data.tags
    assert tags["mlflow.source.name"] == "new_script.py" and tags["mlflow.source.type"] == "LOCAL"


def test_a_damaged_pack_gives_a_plain_error_naming_the_object(repo):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    with gitml.start_run() as run:
        gitml.log_param("p", "x" * 5000)
    gitml.flush()
    git(repo, "repack", "-adq")
    (pack,) = (repo / ".git" / "objects" / "pack").glob("*.pack")
    ref = f"refs/gitml/runs/0/{run.info.run_id}"
    params = git(repo, "rev-parse", f"{ref}:.gitml/run/params.yaml").strip()
    listing = git(repo, "verify-pack", "-v", str(pack.with_suffix(".idx"))).splitlines()
    fields = next(line.split() for line in listing if line.startswith(params))
    data = bytearray(pack.read_bytes())
    data[int(fields[4]) + int(fields[3]) // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):  # the search index's row of the
        (repo / ".git" / "gitml" / name).unlink(missing_ok=True)  # run would spare reading its record
    result = CliRunner().invoke(cli, ["-C", str(repo), "show", run.info.run_id])
    assert result.exit_code == 1
    assert "unexpected" not in result.output and params in result.output and "damaged" in result.output


def test_client_on_a_subfolder_or_relative_path_uses_the_enclosing_repository(repo, tmp_path, monkeypatch):
    (repo / "sub").mkdir()
    with gitml.start_run() as run:
        gitml.log_param("p", 1)
    with gitml.Client(str(repo / "sub")) as c:  # not a new repository in sub/
        assert c.get_run(run.info.run_id).data.params == {"p": "1"}
    assert not (repo / "sub" / ".git").exists()
    monkeypatch.setenv("GITML_REPO", str(repo / "sub"))
    with gitml.Client() as c:
        assert c.get_run(run.info.run_id).data.params == {"p": "1"}
    monkeypatch.delenv("GITML_REPO")
    c = gitml.Client(".")  # relative: resolved now, so a chdir later changes nothing
    made = c.create_run("0")
    monkeypatch.chdir(tmp_path)
    c.log_metric(made.info.run_id, "m", 1.0)
    c.set_terminated(made.info.run_id)
    assert c.get_run(made.info.run_id).data.metrics == {"m": 1.0}
    c.close()

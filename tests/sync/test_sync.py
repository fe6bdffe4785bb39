"""push / fetch / pull with artifacts: real git remotes, a real S3 server on loopback, faults."""

import os
import socket

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.errors import IntegrityError, RemoteError
from tests.conftest import git, run_python


def gitml_cli(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture
def team(tmp_path, repo, monkeypatch):
    """A bare 'origin', a shared artifact folder, and a project with two runs with artifacts."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    store = tmp_path / "artifact-store"
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(store))
    gitml.set_experiment("team")
    ids = []
    for i in range(2):
        with gitml.start_run(run_name=f"run{i}") as run:
            gitml.log_metric("auc", 0.8 + i / 10)
            gitml.log_text(f"small {i}", "notes.txt")
            gitml.log_text("x" * 100_000 + str(i), "model/weights.bin")
        ids.append(run.info.run_id)
    gitml.flush()
    return {"origin": origin, "store": store, "ids": ids, "tmp": tmp_path}


def point_at_a_dead_s3_endpoint(repo, monkeypatch) -> None:
    """An s3:// artifact remote whose endpoint is a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "s3://bucket/x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    options = (
        f"{{endpoint_url: 'http://127.0.0.1:{port}', "
        "config_kwargs: {retries: {max_attempts: 1}, connect_timeout: 1}}"
    )
    gitml_cli(repo, "config", "artifacts.storage_options", options)


def objects_in(folder) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs)


def test_push_then_clone_and_pull_gives_runs_with_artifacts(repo, team):
    out = gitml_cli(repo, "push")
    assert "4 artifact object(s) uploaded" in out
    assert len(objects_in(team["store"])) == 4
    refs = git(team["origin"], "for-each-ref", "--format=%(refname)", "refs/gitml")
    assert all(run_id in refs for run_id in team["ids"]) and "refs/gitml/experiments/" in refs
    git(team["origin"], "fsck", "--strict")
    assert "0 artifact object(s) uploaded" in gitml_cli(repo, "push")  # nothing re-sent

    clone = team["tmp"] / "clone"
    git(team["tmp"], "clone", "-q", str(team["origin"]), str(clone))
    out = gitml_cli(clone, "pull")
    assert "3 new" in out and "2 artifact object(s) downloaded" in out  # the small ones are in git
    c = gitml.ops.Operations(clone)
    run = c.get_run(team["ids"][1])
    assert run.info.run_name == "run1" and run.data.metrics == {"auc": 0.9}
    assert c.artifacts.read_bytes(run.info.run_id, "model/weights.bin").endswith(b"1")
    assert len(gitml.ops.Operations(clone).search_runs(experiment_names=["team"])) == 2
    c.close()


def test_fetch_is_lazy_and_downloads_on_first_access(repo, team, tmp_path):
    gitml_cli(repo, "push")
    clone = tmp_path / "lazy"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    gitml_cli(clone, "fetch")
    c = gitml.ops.Operations(clone)
    assert objects_in(clone / ".git" / "gitml" / "cache") == []
    path = c.download_artifacts(team["ids"][0], "model", str(tmp_path / "out"))
    assert open(os.path.join(path, "weights.bin")).read().endswith("0")
    c.close()


def test_selective_push(repo, team):
    gitml_cli(repo, "push", "--run", "run0")
    refs = git(team["origin"], "for-each-ref", "--format=%(refname)", "refs/gitml/runs")
    assert team["ids"][0] in refs and team["ids"][1] not in refs
    assert len(objects_in(team["store"])) == 2
    gitml_cli(repo, "push", "-e", "team")
    assert team["ids"][1] in git(team["origin"], "for-each-ref", "refs/gitml/runs")


def test_push_and_fetch_take_a_plain_client(repo, team):
    """gitml.sync works on a public gitml.Client too (the facade's view of it shares its state)."""
    from gitml import sync

    with gitml.Client(repo) as c:
        assert not isinstance(c, gitml.ops.Operations)
        result = sync.push(c, "origin", runs=[team["ids"][0]])
        assert not result.rejected and len(objects_in(team["store"])) == 2
        view = gitml.ops.Operations.of(c)
        assert view.tracker is c.tracker and gitml.ops.Operations.of(view) is view
        sync.fetch(c, "origin")
    refs = git(team["origin"], "for-each-ref", "--format=%(refname)", "refs/gitml/runs")
    assert team["ids"][0] in refs and team["ids"][1] not in refs


def test_push_sends_only_what_the_remote_lacks(repo, team):
    from gitml import sync

    assert "3 ref(s) pushed, 0 already there" in gitml_cli(repo, "push")  # 2 runs and their experiment
    with gitml.start_run(run_id=team["ids"][0]):  # a run goes on: one more artifact
        gitml.log_text("y" * 100_000, "model/extra.bin")
    with gitml.start_run(run_name="run2") as run:
        gitml.log_metric("auc", 0.5)
    gitml.flush()
    c = gitml.ops.Operations(repo)
    result = sync.push(c)
    c.close()
    assert sorted(ref.rsplit("/", 1)[1] for ref in result.pushed) == sorted([team["ids"][0], run.info.run_id])
    assert result.rejected == {} and len(result.refs) == 4
    assert result.artifacts_referenced == 3  # the run's manifest now; run1's objects are not looked at
    assert result.uploaded == 1  # the new object only
    local = git(repo, "for-each-ref", "refs/gitml")
    assert git(team["origin"], "for-each-ref", "refs/gitml") == local
    assert "0 ref(s) pushed, 4 already there" in gitml_cli(repo, "push")
    git(team["origin"], "fsck", "--strict")


def test_interrupted_push_resumes_without_resending(repo, team):
    c = gitml.ops.Operations(repo)
    shas = sorted({e["sha256"] for rid in team["ids"] for e in c.artifacts.manifest(rid).values()})
    c.close()
    team["store"].mkdir()
    blocker = team["store"] / shas[-1][:2]
    blocker.write_text("not a folder")  # the upload of one object fails halfway through the push
    out = gitml_cli(repo, "push", code=1)
    assert "upload" in out
    assert git(team["origin"], "for-each-ref", "refs/gitml/runs") == ""  # no ref before its objects
    before = {p: os.stat(p).st_mtime_ns for p in objects_in(team["store"]) if p != str(blocker)}
    assert before  # some objects arrived before the failure
    blocker.unlink()
    out = gitml_cli(repo, "push")
    sent = int(out.split(" artifact object")[0].rsplit(" ", 1)[1])
    assert 1 <= sent < len(shas)  # only what had not arrived
    for path, mtime in before.items():
        assert os.stat(path).st_mtime_ns == mtime  # not re-sent
    assert all(rid in git(team["origin"], "for-each-ref", "refs/gitml/runs") for rid in team["ids"])


def test_tampered_remote_object_is_refused(repo, team, tmp_path):
    gitml_cli(repo, "push")
    c = gitml.ops.Operations(repo)
    sha = c.artifacts.manifest(team["ids"][0])["model/weights.bin"]["sha256"]
    c.close()
    remote_object = team["store"] / sha[:2] / sha[2:]
    remote_object.write_bytes(b"tampered")
    clone = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    gitml_cli(clone, "fetch")
    v = gitml.ops.Operations(clone)
    with pytest.raises(IntegrityError) as info:
        v.download_artifacts(team["ids"][0], "model/weights.bin", str(tmp_path / "o"))
    assert team["ids"][0] in str(info.value) and "model/weights.bin" in str(info.value) and sha in str(info.value)
    assert not v.artifacts.content.has_local(sha)  # never kept in the cache
    v.close()
    out = gitml_cli(repo, "fsck", code=1)
    assert "corrupt on remote (intact here; `gitml push` uploads it)" in out
    assert "1 artifact object(s) uploaded" in gitml_cli(repo, "push")  # as fsck said: repaired
    assert remote_object.read_bytes() != b"tampered"
    assert "0 problem(s)" in gitml_cli(repo, "fsck")


def test_artifacts_of_runs_pushed_by_plain_git_are_uploaded(repo, team):
    git(repo, "push", "-q", "origin", "refs/gitml/*:refs/gitml/*")  # refs there, artifacts not
    out = gitml_cli(repo, "push")
    assert "0 ref(s) pushed, 3 already there" in out and "4 artifact object(s) uploaded" in out
    assert "0 artifact object(s) uploaded" in gitml_cli(repo, "push")


def test_a_new_artifact_remote_gets_every_object(repo, team, tmp_path, monkeypatch):
    gitml_cli(repo, "push")
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "bucket"))  # the team moves to another store
    assert "4 artifact object(s) uploaded" in gitml_cli(repo, "push")
    assert len(objects_in(tmp_path / "bucket")) == 4


def test_a_run_whose_object_is_lost_here_is_held_back_and_the_others_go(repo, team):
    c = gitml.ops.Operations(repo)
    sha = c.artifacts.manifest(team["ids"][0])["model/weights.bin"]["sha256"]
    c.close()
    (repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]).write_bytes(b"changed since it was logged")
    result = CliRunner().invoke(cli, ["-C", str(repo), "push"])
    assert result.exit_code == 1
    assert "model/weights.bin" in result.output and "is lost here" in result.output
    refs = git(team["origin"], "for-each-ref", "--format=%(refname)", "refs/gitml/runs")
    assert team["ids"][1] in refs and team["ids"][0] not in refs  # no ref before all its objects


def test_unreachable_remotes(repo, team, tmp_path, monkeypatch):
    with pytest.raises(RemoteError):
        from gitml import sync

        c = gitml.ops.Operations(repo)
        try:
            sync.push(c, str(tmp_path / "missing.git"))
        finally:
            c.close()
    out = gitml_cli(repo, "push", "nowhere", code=1)
    assert out.count("\n") <= 2 and "nowhere" in out
    point_at_a_dead_s3_endpoint(repo, monkeypatch)
    out = gitml_cli(repo, "push", code=1)
    assert "artifact remote" in out or "s3://bucket/x" in out
    assert git(team["origin"], "for-each-ref", "refs/gitml/runs") == ""


@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="gitml-test")
    yield endpoint
    server.stop()


def test_s3_remote_round_trip(repo, team, s3, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "s3://gitml-test/artifacts")
    gitml_cli(repo, "config", "artifacts.storage_options", f"{{endpoint_url: '{s3}'}}")
    out = gitml_cli(repo, "push")
    assert "4 artifact object(s) uploaded" in out
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="gitml-test")["Contents"]]
    assert len(keys) == 4 and all(k.startswith("artifacts/") and len(k.split("/")[-1]) == 62 for k in keys)
    assert "0 artifact object(s) uploaded" in gitml_cli(repo, "push")
    clone = tmp_path / "s3clone"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    gitml_cli(clone, "config", "artifacts.storage_options", f"{{endpoint_url: '{s3}'}}")
    assert "2 artifact object(s) downloaded" in gitml_cli(clone, "pull")
    assert "0 problem(s)" in gitml_cli(clone, "fsck")
    # a tampered S3 object is refused
    c = gitml.ops.Operations(repo)
    sha = c.artifacts.manifest(team["ids"][1])["model/weights.bin"]["sha256"]
    c.close()
    boto3.client("s3", endpoint_url=s3).put_object(
        Bucket="gitml-test", Key=f"artifacts/{sha[:2]}/{sha[2:]}", Body=b"bad"
    )
    fresh = tmp_path / "s3fresh"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(fresh))
    gitml_cli(fresh, "config", "artifacts.storage_options", f"{{endpoint_url: '{s3}'}}")
    out = gitml_cli(fresh, "pull", code=1)
    assert sha in out and "does not match" in out


def test_gc_drops_unreferenced_cache_and_lists_remote_before_deleting(repo, team):
    gitml_cli(repo, "push")
    c = gitml.ops.Operations(repo)
    orphan, _ = c.artifacts.content.add_bytes(b"nobody references me")
    c.close()
    remote_orphan = team["store"] / orphan[:2] / orphan[2:]
    remote_orphan.parent.mkdir(parents=True, exist_ok=True)
    remote_orphan.write_bytes(b"nobody references me")
    out = gitml_cli(repo, "gc", "--keep-recent", "0")
    assert "dropped 1 cached object" in out
    out = gitml_cli(repo, "gc", "--remote", "--keep-recent", "0")
    assert "would delete" in out and orphan[2:] in out and remote_orphan.exists()
    out = gitml_cli(repo, "gc", "--remote", "--delete", "--keep-recent", "0")
    assert not remote_orphan.exists()
    assert len(objects_in(team["store"])) == 4  # referenced objects stay
    assert "0 problem(s)" in gitml_cli(repo, "fsck")


def test_remote_gc_never_deletes_what_others_may_reference(repo, team, tmp_path, monkeypatch):
    gitml_cli(repo, "push")
    # a teammate's clone, not fetched since, would see the team's objects as unreferenced
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(other))
    out = gitml_cli(other, "gc", "--remote", "--delete", "--keep-recent", "0", code=1)
    assert "lacks" in out and "gitml fetch" in out
    git(other, "remote", "rename", "origin", "upstream")  # every configured remote counts, whatever its name
    out = gitml_cli(other, "gc", "--remote", "--delete", "--keep-recent", "0", code=1)
    assert "lacks" in out
    git(other, "remote", "rename", "upstream", "origin")
    assert len(objects_in(team["store"])) == 4
    gitml_cli(other, "fetch")
    out = gitml_cli(other, "gc", "--remote", "--delete", "--keep-recent", "0")
    assert len(objects_in(team["store"])) == 4  # all referenced by the fetched runs
    # an object pushed a moment ago (its run's refs may not have arrived yet) is kept
    fresh = team["store"] / "ab" / ("c" * 62)
    fresh.parent.mkdir(exist_ok=True)
    fresh.write_bytes(b"just uploaded")
    assert "would delete" not in gitml_cli(other, "gc", "--remote")
    # the default store is shared by every repository of the user: never collected
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    out = gitml_cli(repo, "gc", "--remote", "--keep-recent", "0", code=1)
    assert "shared by every repository" in out
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "file://" + str(tmp_path / "xdg" / "gitml" / "artifacts"))
    assert "shared by every repository" in gitml_cli(repo, "gc", "--remote", "--keep-recent", "0", code=1)


def test_local_transfer_handles_git_gc_packs_and_increments(repo, team, tmp_path):
    """The local fast path copies stored entries; packs git wrote (with deltas) still work."""
    git(repo, "gc", "-q", "--aggressive")  # git repacks everything, with deltas
    gitml_cli(repo, "push")
    git(team["origin"], "fsck", "--strict")
    with gitml.start_run(run_name="later"):
        gitml.log_metric("auc", 0.99)
    gitml.flush()
    gitml_cli(repo, "push")  # only the new run's objects travel
    git(team["origin"], "fsck", "--strict")
    git(team["origin"], "gc", "-q")  # and the remote packs with deltas too
    clone = tmp_path / "after-gc"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    assert "4 new" in gitml_cli(clone, "fetch")  # three runs and their experiment
    git(clone, "fsck", "--strict")
    c = gitml.ops.Operations(clone)
    assert sorted(r.info.run_name for r in c.search_runs(experiment_names=["team"])) == [
        "later",
        "run0",
        "run1",
    ]
    c.close()


@pytest.fixture
def http_folder(tmp_path):
    """A read-only HTTP server on loopback serving a folder (as a static artifact mirror)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_remote_is_read_only_and_verified(repo, team, http_folder, tmp_path, monkeypatch):
    pytest.importorskip("aiohttp")
    root, url = http_folder
    gitml_cli(repo, "push")
    import shutil

    shutil.copytree(team["store"], root, dirs_exist_ok=True)  # publish the objects over HTTP
    clone = tmp_path / "reader"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", url)
    assert "2 artifact object(s) downloaded" in gitml_cli(clone, "pull")
    c = gitml.ops.Operations(clone)
    assert c.artifacts.read_bytes(team["ids"][0], "model/weights.bin").endswith(b"0")
    c.close()
    with gitml.start_run():
        gitml.log_text("new", "n.txt")
    gitml.flush()
    out = gitml_cli(repo, "push", code=1)  # an HTTP remote cannot take uploads
    last = out.strip().splitlines()[-1]  # (the test server may log a dropped connection before)
    assert last.startswith("gitml: ") and url in last and "read-only" in last


def test_memory_remote(repo, team, monkeypatch, tmp_path):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "memory://gitml-test-remote")
    gitml_cli(repo, "push")
    c = gitml.ops.Operations(repo)
    sha = c.artifacts.manifest(team["ids"][0])["model/weights.bin"]["sha256"]
    c.artifacts.content.drop_local(sha)  # gone from the cache: read back from the remote
    assert c.artifacts.read_bytes(team["ids"][0], "model/weights.bin").endswith(b"0")
    c.close()


def test_push_shows_progress_on_a_terminal(repo, team):
    """On a terminal, push draws a progress line (files and bytes); piped, it stays quiet."""
    import pty
    import subprocess
    import sys

    from tests.conftest import ROOT

    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", "push"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=secondary
    )
    os.close(secondary)
    shown = b""
    try:
        while chunk := os.read(primary, 4096):
            shown += chunk
    except OSError:
        pass
    os.close(primary)
    assert proc.returncode == 0, shown
    assert b"uploading artifacts: 4/4 files" in shown and b"MiB" in shown
    assert b"uploading" not in proc.stdout


def test_experiment_created_in_two_clones_is_joined_not_stuck(repo, team, tmp_path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(other))  # before anything was pushed
    with gitml.ops.Operations(other) as c:
        experiment_id = c.create_experiment("team")  # the same name, in another clone
        assert experiment_id == gitml.ops.Operations(repo).get_experiment_by_name("team").experiment_id
        run = c.create_run(experiment_id, run_name="theirs")
        c.set_terminated(run.info.run_id)
    gitml_cli(repo, "push")
    result = CliRunner().invoke(cli, ["-C", str(other), "push"])
    assert result.exit_code == 0, result.output  # not an error: the runs went
    assert "joins them" in result.output
    assert run.info.run_id in git(team["origin"], "for-each-ref", "refs/gitml/runs")
    out = gitml_cli(other, "fetch")
    assert "diverged" not in out
    ref = f"refs/gitml/experiments/{experiment_id}"
    assert "joins them" not in gitml_cli(other, "push")  # the joined record goes by fast-forward
    gitml_cli(repo, "fetch")
    assert git(repo, "rev-parse", ref) == git(team["origin"], "rev-parse", ref) == git(other, "rev-parse", ref)
    assert len(git(repo, "rev-list", "--parents", "-1", ref).split()) == 3  # a join of both records
    with gitml.ops.Operations(repo) as c:
        assert c.get_experiment(experiment_id).name == "team"
        assert len(c.search_runs(experiment_ids=[experiment_id])) == 3
    git(team["origin"], "fsck", "--strict")


def test_malformed_refs_from_the_remote_do_not_break_the_others(repo, team, tmp_path):
    gitml_cli(repo, "push")
    origin = team["origin"]
    blob = git(origin, "hash-object", "-w", "--stdin", input_text="not a commit\n").strip()
    empty_tree = git(origin, "hash-object", "-t", "tree", "-w", "--stdin", input_text="").strip()
    bare_commit = git(origin, "commit-tree", empty_tree, "-m", "no experiment.yaml").strip()
    bad_run = f"refs/gitml/runs/0/{'e' * 32}"
    git(origin, "update-ref", bad_run, blob)
    git(origin, "update-ref", "refs/gitml/experiments/123456789012345", bare_commit)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    result = CliRunner().invoke(cli, ["-C", str(clone), "pull"])
    assert result.exit_code == 1 and f"{bad_run}: refused: points at a blob, not a commit" in result.output
    assert "refs/gitml/experiments/123456789012345: refused:" in result.output
    assert "2 artifact object(s) downloaded" in result.output  # the good runs' objects all came
    assert git(clone, "for-each-ref", bad_run, "refs/gitml/experiments/123456789012345") == ""  # never taken
    out = gitml_cli(clone, "experiments")
    assert "team" in out
    gitml_cli(clone, "fsck")
    gitml_cli(clone, "gc")


def test_push_selection_errors_are_plain(repo, team):
    assert "no experiment named 'nosuchexp'" in gitml_cli(repo, "push", "-e", "nosuchexp", code=1)
    out = gitml_cli(repo, "push", "--all", "-r", "run0", code=2)
    assert "--all" in out and "--run" in out


def test_push_from_a_shallow_clone_to_an_empty_remote_says_why(repo, team, tmp_path):
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    shallow = tmp_path / "ci-checkout"
    git(tmp_path, "clone", "-q", "--depth", "1", team["origin"].as_uri(), str(shallow))
    run_python("import gitml\nwith gitml.start_run():\n    gitml.log_metric('m', 1.0)", cwd=shallow)
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    out = gitml_cli(shallow, "push", str(empty), code=1)
    assert "shallow" in out and "unexpected" not in out
    assert git(empty, "for-each-ref", "refs/gitml") == ""
    gitml_cli(shallow, "push")  # origin has the history: the push goes
    git(team["origin"], "fsck", "--strict")


def test_a_damaged_cached_copy_is_fetched_again_on_first_read(repo, team, tmp_path):
    gitml_cli(repo, "push")
    c = gitml.ops.Operations(repo)
    run_id = team["ids"][1]
    sha = c.artifacts.manifest(run_id)["model/weights.bin"]["sha256"]
    cached = repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    cached.write_bytes(b"bit rot")
    assert c.artifacts.read_bytes(run_id, "model/weights.bin").endswith(b"1")  # from the remote, verified
    assert cached.read_bytes() != b"bit rot"
    cached.write_bytes(b"bit rot")
    path = c.download_artifacts(run_id, "model", str(tmp_path / "out"))
    assert open(os.path.join(path, "weights.bin"), "rb").read().endswith(b"1")
    c.close()


def test_gc_removes_what_killed_processes_half_wrote(repo, team):
    gitml_cli(repo, "push")
    old = 1_000_000_000  # long ago
    leftovers = [
        repo / ".git" / "gitml" / "cache" / "incoming.gitml-tmp-1-0123456789ab",
        team["store"] / "ab" / ("c" * 62 + ".gitml-tmp-1-0123456789ab"),
        repo / ".git" / "objects" / "pack" / "tmp_gitml_1_2_abc_pack",
    ]
    fresh = repo / ".git" / "gitml" / "cache" / "incoming.gitml-tmp-2-0123456789ab"
    for path in [*leftovers, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    for path in leftovers:
        os.utime(path, (old, old))
    out = gitml_cli(repo, "gc")
    assert "removed 3 half-written file(s)" in out
    assert not any(p.exists() for p in leftovers) and fresh.exists()
    assert "0 problem(s)" in gitml_cli(repo, "fsck")


def test_objects_of_a_push_whose_refs_never_arrived_are_uploaded_again(repo, team, monkeypatch):
    """The push dies after its upload, before its refs; a teammate's remote gc then
    deletes the objects no ref names. The next push must upload them again."""
    import gitml.sync as sync_module
    from gitml.errors import RemoteError

    def refs_never_arrive(*args, **kwargs):
        raise RemoteError("origin", "connection lost")

    monkeypatch.setattr(sync_module, "push_refs", refs_never_arrive)
    gitml_cli(repo, "push", code=1)
    uploaded = objects_in(team["store"])
    assert len(uploaded) == 4
    for path in uploaded:  # what `gc --remote --delete` elsewhere does to unreferenced objects
        os.unlink(path)
    monkeypatch.undo()
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(team["store"]))
    assert "4 artifact object(s) uploaded" in gitml_cli(repo, "push")
    assert len(objects_in(team["store"])) == 4
    assert "0 problem(s)" in gitml_cli(repo, "fsck")


def test_pull_from_an_unreachable_artifact_remote_says_it_once(repo, team, tmp_path, monkeypatch):
    gitml_cli(repo, "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(team["origin"]), str(clone))
    point_at_a_dead_s3_endpoint(clone, monkeypatch)
    result = CliRunner().invoke(cli, ["-C", str(clone), "pull"])
    assert result.exit_code == 1
    assert "3 new" in result.output  # the runs came; their artifacts could not
    assert result.output.count("failed") <= 8  # not one line per object after the remote is known broken


def test_fsck_tells_unpushed_objects_from_missing_ones(repo, team):
    out = gitml_cli(repo, "fsck")  # nothing pushed yet: not a problem
    assert "0 intact on the remote; 4 only here (`gitml push` uploads them); 0 problem(s)" in out
    gitml_cli(repo, "push")
    out = gitml_cli(repo, "fsck")
    assert "4 intact on the remote" in out and "only here" not in out and "0 problem(s)" in out

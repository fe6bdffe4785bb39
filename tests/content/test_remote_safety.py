"""Artifact-remote safety: gc touches only gitml's own names, a committed remote needs
confirming before gitml writes or deletes there, a hostile run holds back only itself,
a frozen remote times out, and settings are checked when set and when read."""

from __future__ import annotations

import os
import socket

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from tests.conftest import git

HEX62 = "c" * 62
OLD = 1_000_000_000  # long ago: past any grace period


def gitml_cli(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def one_line_error(result, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("gitml: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def commit_config(repo, text: str) -> None:
    """What a teammate's commit does: a .gitml/config.yaml arrives in the work tree."""
    (repo / ".gitml").mkdir(exist_ok=True)
    (repo / ".gitml" / "config.yaml").write_text(text)
    git(repo, "add", ".gitml/config.yaml")
    git(repo, "commit", "-qm", "team config")


def plant(path, *, old: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"mine")
    if old:
        os.utime(path, (OLD, OLD))
    return path


def files_in(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def log_runs(texts: dict[str, str]) -> dict[str, str]:
    """One run per name, each with a large (cached) and a small (inline) artifact."""
    ids = {}
    gitml.set_experiment("safety")
    for name, text in texts.items():
        with gitml.start_run(run_name=name) as run:
            gitml.log_text(text, "notes.txt")
            gitml.log_text("x" * 100_000 + name, "model.bin")
        ids[name] = run.info.run_id
    gitml.flush()
    return ids


@pytest.fixture
def origin(tmp_path, repo):
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    return bare


# -- 1. gc touches only gitml's own names -------------------------------------------
def test_gc_never_deletes_files_of_a_folder_a_committed_config_names(repo, tmp_path, monkeypatch):
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE", raising=False)
    victim = tmp_path / "home"
    users = [
        plant(victim / "draft.tmp"),
        plant(victim / "ab" / "cdef.tmp"),
        plant(victim / "ab" / f"{HEX62}.1234abcd.tmp"),
        plant(victim / "ab" / f"{HEX62}.gitml-tmp-12-abc.tmp"),
        plant(victim / "notes" / "ab" / f"{HEX62}.gitml-tmp-1-0123456789ab"),  # not right under the root
    ]
    ours = plant(victim / "ab" / f"{HEX62}.gitml-tmp-1-0123456789ab")
    commit_config(repo, "artifacts:\n  remote: ../home\n")
    gitml_cli(repo, "gc")
    assert all(p.exists() for p in [*users, ours])  # not confirmed: gitml deletes nothing there
    assert "--trust-committed" in one_line_error(gitml_cli(repo, "gc", "--remote", "--delete", code=1))

    gitml_cli(repo, "config", "--trust-committed")
    assert "removed 1 half-written file(s)" in gitml_cli(repo, "gc").output
    assert all(p.exists() for p in users) and not ours.exists()


def test_gc_in_the_cache_removes_only_its_own_temporaries(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    cache = repo / ".git" / "gitml" / "cache"
    ours = [
        plant(cache / "incoming.gitml-tmp-7-0123456789ab"),
        plant(cache / "ab" / f"{HEX62}.gitml-tmp-7-0123456789ab"),
    ]
    fresh = plant(cache / "ab" / f"{HEX62}.gitml-tmp-8-0123456789ab", old=False)  # a live writer's
    others = [
        plant(cache / "notes.tmp"),
        plant(cache / "ab" / "zz.tmp"),
        plant(cache / "zz" / f"{HEX62}.gitml-tmp-7-0123456789ab"),
    ]
    assert "removed 2 half-written file(s)" in gitml_cli(repo, "gc").output
    assert not any(p.exists() for p in ours) and fresh.exists() and all(p.exists() for p in others)


def test_remote_listing_is_only_the_object_layout(repo, tmp_path):
    from gitml.content.cas import ContentStore

    root = tmp_path / "remote"
    real = "ab" + HEX62
    plant(root / "ab" / HEX62)
    plant(root / "zz" / HEX62)  # not hex
    plant(root / "ab" / ("g" * 62))
    plant(root / "deep" / "ab" / ("d" * 62))  # below the root's own folders
    plant(root / "ab" / f"{HEX62}.gitml-tmp-1-0123456789ab")
    plant(tmp_path / "elsewhere" / ("e" * 62))
    os.symlink(tmp_path / "elsewhere", root / "cd")  # a link out of the remote is not followed
    content = ContentStore(str(tmp_path / "cache"), str(root), state_dir=str(tmp_path / "state"))
    assert content.remote_objects() == {real}


def test_s3_listing_is_only_the_object_layout(repo, s3, tmp_path):
    import boto3

    from gitml.content.cas import ContentStore

    s3_client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    bucket = "gitml-listing"  # its own: moto keeps every bucket for the whole process
    s3_client.create_bucket(Bucket=bucket)
    keys = [
        f"art/ab/{HEX62}",
        f"art/deep/ab/{'d' * 62}",
        f"art/zz/{HEX62}",
        f"art-other/ab/{'e' * 62}",
        f"ab/{'f' * 62}",
    ]
    try:
        for key in keys:
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
        content = ContentStore(
            str(tmp_path / "cache"), f"s3://{bucket}/art", {"endpoint_url": s3}, state_dir=str(tmp_path / "state")
        )
        assert content.remote_objects() == {"ab" + HEX62}
    finally:
        for key in keys:
            s3_client.delete_object(Bucket=bucket, Key=key)
        s3_client.delete_bucket(Bucket=bucket)


# -- 2. a committed remote is read as it is, written only once confirmed ------------------
def test_a_committed_remote_needs_confirming_before_a_push_writes_there(repo, origin, tmp_path, monkeypatch):
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE", raising=False)
    ids = log_runs({"a": "alpha"})
    commit_config(repo, "artifacts:\n  remote: ../team-store\n")
    refused = one_line_error(
        gitml_cli(repo, "push", code=1), str(tmp_path / "team-store"), "gitml config --trust-committed"
    )
    assert "committed .gitml/config.yaml" in refused
    assert not (tmp_path / "team-store").exists() or files_in(tmp_path / "team-store") == []
    assert git(origin, "for-each-ref", "refs/gitml") == ""  # no ref without its objects

    gitml_cli(repo, "config", "--trust-committed")
    assert "2 artifact object(s) uploaded" in gitml_cli(repo, "push").output

    # a teammate's commit moves the store: confirming again is needed
    commit_config(repo, "artifacts:\n  remote: ../elsewhere\n")
    with gitml.start_run(run_id=ids["a"]):
        gitml.log_text("y" * 100_000, "more.bin")
    gitml.flush()
    one_line_error(gitml_cli(repo, "push", code=1), "changed since this clone confirmed it", "--trust-committed")
    assert not (tmp_path / "elsewhere").exists() or files_in(tmp_path / "elsewhere") == []


def test_reads_from_an_unconfirmed_committed_remote_work(repo, origin, tmp_path, monkeypatch):
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE", raising=False)
    ids = log_runs({"a": "alpha"})
    gitml_cli(repo, "config", "--committed", "artifacts.remote", "../team-store")  # written here: confirmed here
    git(repo, "add", ".gitml/config.yaml")
    git(repo, "commit", "-qm", "team store")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    gitml_cli(repo, "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert "1 artifact object(s) downloaded" in gitml_cli(clone, "pull").output  # reading needs no confirming
    with gitml.ops.Operations(clone) as c:
        assert c.artifacts.read_bytes(ids["a"], "model.bin").endswith(b"a")
    one_line_error(gitml_cli(clone, "gc", "--remote", "--delete", code=1), "--trust-committed")


def test_committed_storage_options_need_confirming_too(repo, origin, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "mine"))  # the URL is the user's own ...
    log_runs({"a": "alpha"})
    commit_config(repo, "artifacts:\n  storage_options: {auto_mkdir: true}\n")  # ... its options are not
    one_line_error(gitml_cli(repo, "push", code=1), "--trust-committed")
    gitml_cli(repo, "config", "--trust-committed")
    gitml_cli(repo, "push")
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "other"))
    (repo / ".gitml" / "config.yaml").unlink()  # nothing committed decides: nothing to confirm
    gitml_cli(repo, "push")


# -- 3. a hostile run holds back only itself -----------------------------------------------
def forge_manifest(repo, ref: str, edit) -> None:
    """A new commit on ``ref`` whose artifacts.yaml is ``edit(text)``, as a hostile clone could push."""
    env_index = repo / ".git" / "forge-index"
    environment = {**os.environ, "GIT_INDEX_FILE": str(env_index)}
    import subprocess

    def run(*args, stdin=None):
        return subprocess.run(
            ["git", *args], cwd=repo, env=environment, input=stdin, capture_output=True, text=True, check=True
        ).stdout.strip()

    manifest = edit(run("cat-file", "-p", f"{ref}:.gitml/run/artifacts.yaml"))
    blob = run("hash-object", "-w", "--stdin", stdin=manifest)
    run("read-tree", ref)
    run("update-index", "--cacheinfo", f"100644,{blob},.gitml/run/artifacts.yaml")
    tree = run("write-tree")
    message = run("log", "-1", "--format=%B", ref)
    commit = run("commit-tree", tree, "-p", ref, stdin=message + "\n")
    run("update-ref", ref, commit)
    env_index.unlink()


def test_a_run_claiming_another_runs_hash_does_not_hold_it_back(repo, origin, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    ids = log_runs({"one": "first notes", "two": "second notes"})
    with gitml.ops.Operations(repo) as c:
        order = [ref.decode() for ref in c.tracker.run_refs()]
        notes = {ids[n]: c.artifacts.manifest(ids[n])["notes.txt"]["sha256"] for n in ids}
    hostile = order[0]  # looked at first: the objects' first claimant
    legit = next(run_id for run_id in ids.values() if run_id not in hostile)
    forge_manifest(repo, hostile, lambda text: text.replace(notes[hostile.rsplit("/", 1)[1]], notes[legit]))

    result = gitml_cli(repo, "push")  # the legit small file comes from the legit run's inline copy
    pushed = git(origin, "for-each-ref", "--format=%(refname)", "refs/gitml/runs")
    assert legit in pushed and hostile in pushed  # the hostile run's claim holds the true bytes now
    assert "0 problem(s)" in gitml_cli(repo, "fsck").output, result.output
    texts = {ids["one"]: b"first notes", ids["two"]: b"second notes"}
    with gitml.ops.Operations(repo) as c:  # the file the hostile run claims reads as the true one, verified
        assert c.artifacts.read_bytes(hostile.rsplit("/", 1)[1], "notes.txt") == texts[legit]


def test_a_run_naming_no_sha256_is_held_back_alone(repo, origin, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    ids = log_runs({"one": "first notes", "two": "second notes"})
    with gitml.ops.Operations(repo) as c:
        hostile = [ref.decode() for ref in c.tracker.run_refs()][0]
        sha = c.artifacts.manifest(hostile.rsplit("/", 1)[1])["model.bin"]["sha256"]
    forge_manifest(repo, hostile, lambda text: text.replace(sha, "../../../../outside"))
    result = gitml_cli(repo, "push", code=1)
    assert f"{hostile}: rejected" in result.stderr and "outside" in result.stderr
    pushed = git(origin, "for-each-ref", "--format=%(refname)", "refs/gitml/runs")
    assert hostile not in pushed and sum(run_id in pushed for run_id in ids.values()) == 1
    assert not (tmp_path / "outside").exists()


# -- 4. a frozen remote times out -------------------------------------------------------
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


@pytest.fixture
def frozen_endpoint():
    """An S3 endpoint on loopback that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)  # the kernel completes the handshakes; nobody ever reads or replies
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.timeout(120)  # the bound: artifacts.timeout is 1 s, a hang would take forever
def test_push_to_a_frozen_s3_server_fails_in_bounded_time(repo, origin, frozen_endpoint, monkeypatch):
    pytest.importorskip("s3fs")
    log_runs({"a": "alpha"})
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "s3://bucket/x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    gitml_cli(repo, "config", "artifacts.storage_options", f"{{endpoint_url: '{frozen_endpoint}'}}")
    gitml_cli(repo, "config", "artifacts.timeout", "1")
    result = gitml_cli(repo, "push", code=1)  # bounded by artifacts.timeout
    line = one_line_error(result, "s3://bucket/x")
    assert "did not answer" in line or "timed out" in line
    assert git(origin, "for-each-ref", "refs/gitml") == ""

    for folder, _, names in os.walk(repo / ".git" / "gitml" / "cache"):  # reads must come from the remote
        for name in names:
            os.unlink(os.path.join(folder, name))
    result = gitml_cli(repo, "artifacts", "get", "a", "model.bin", "-o", repo / "out", code=1)
    assert "timed out" in one_line_error(result, "s3://bucket/x", "model.bin")


# -- 5. settings are checked when set and when read --------------------------------------------
def test_bad_values_are_refused_when_set(repo):
    for key, value in [
        ("artifacts.inline_max_bytes", "abc"),
        ("artifacts.inline_max_bytes", "-5"),
        ("artifacts.inline_max_bytes", "true"),
        ("artifacts.timeout", "0"),
        ("artifacts.timeout", "soon"),
        ("artifacts.storage_options", "5"),
        ("artifacts.remote", "s3://bucket/\nx"),
    ]:
        one_line_error(gitml_cli(repo, "config", "--", key, value, code=1), key)
    assert not (repo / ".git" / "gitml" / "config.yaml").exists()
    assert "unknown setting" in gitml_cli(repo, "config", "artifacts.remot", "x", code=2).output
    gitml_cli(repo, "config", "artifacts.inline_max_bytes", "1000")
    gitml_cli(repo, "config", "artifacts.timeout", "2.5")
    assert gitml_cli(repo, "config", "artifacts.inline_max_bytes").output.strip() == "1000"
    assert gitml_cli(repo, "config", "artifacts.timeout").output.strip() == "2.5"


def test_a_broken_settings_file_names_itself_and_stays_repairable(repo, caplog):
    local = repo / ".git" / "gitml" / "config.yaml"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("artifacts:\n  inline_max_bytes: abc\n  remote: /tmp/kept\n  colour: blue\n")
    line = one_line_error(gitml_cli(repo, "config", "--list", code=1), str(local), "artifacts.inline_max_bytes")
    assert "gitml config artifacts.inline_max_bytes VALUE" in line
    one_line_error(gitml_cli(repo, "gc", code=1), "inline_max_bytes")
    gitml_cli(repo, "config", "artifacts.inline_max_bytes", "4096")  # the repair
    listing = gitml_cli(repo, "config", "--list").output
    assert "artifacts.inline_max_bytes=4096" in listing and "artifacts.remote=/tmp/kept" in listing
    assert "colour" in caplog.text  # an unknown key is said, not fatal

    committed = repo / ".gitml" / "config.yaml"
    committed.parent.mkdir()
    committed.write_text("artifacts:\n  timeout: never\n")
    assert "gitml config --committed artifacts.timeout VALUE" in one_line_error(gitml_cli(repo, "config", code=1))
    gitml_cli(repo, "config", "--committed", "artifacts.timeout", "10")
    assert gitml_cli(repo, "config", "artifacts.timeout").output.strip() == "10.0"

    local.write_text("artifacts: [unclosed\n")
    one_line_error(gitml_cli(repo, "config", "--list", code=1), str(local), "not valid YAML")


@pytest.mark.timeout(60)
def test_a_yaml_bomb_in_the_committed_config_is_refused_quickly(repo):
    """The committed settings file comes from teammates: an alias bomb is one clear error."""
    import gitml
    from gitml.errors import InvalidInputError

    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    (repo / ".gitml").mkdir(exist_ok=True)
    (repo / ".gitml" / "config.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match="config.yaml is not valid YAML or is unsafe .*aliases"):
        with gitml.ops.Operations(repo) as c:
            _ = c.artifacts

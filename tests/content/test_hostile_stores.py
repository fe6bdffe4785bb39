"""Artifact stores are untrusted too: a committed remote that can reach a network service
is not contacted before the clone confirms it (no SSRF through a teammate's commit); a
download stops at the size the run's manifest records, and a folder store's symbolic
links and special files are refused unread.

A teammate commits a ``.gitml/config.yaml`` naming a store; the victim clones the
real bare remote and pulls, reads and loads a model. A real HTTP server on loopback
records every request it gets, so "not contacted" is observed, not assumed.
"""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.errors import UnconfirmedRemoteError
from tests.conftest import git

pytestmark = pytest.mark.timeout(120)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (gitml stops reading what it does not need) is no error
    of the test's server: socketserver would print its traceback into the captured CLI output."""

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Loopback:
    """An HTTP server on loopback (``self.server``) served on a thread for a ``with`` block."""

    server: ThreadingHTTPServer

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Recorder(_Loopback):
    """A real HTTP server on loopback that notes each request (method and path) and
    serves the files of ``objects`` (path after the first ``/`` → bytes), 404 otherwise."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.objects: dict[str, bytes] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                recorder.requests.append(f"{self.command} {self.path}")
                data = recorder.objects.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._answer(True)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def do_PUT(self):  # noqa: N802
                self._answer(False)

            def do_POST(self):  # noqa: N802
                self._answer(False)

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def gitml_cli(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)])
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture
def fresh_s3fs(monkeypatch):
    """s3fs keeps one filesystem per set of arguments for the whole process, and that one
    took its endpoint from AWS_ENDPOINT_URL when it was made: each test makes its own."""
    s3fs = pytest.importorskip("s3fs")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def teammate_pushes(repo: Path, tmp_path: Path, config: str, monkeypatch) -> tuple[Path, str, str]:
    """The teammate logs a run with a large artifact and a model (both in the cache, not
    in git), pushes them to a folder store of their own, commits ``config`` as the team's
    ``.gitml/config.yaml`` and pushes code and runs to a bare remote; returns the bare
    remote, the run id and the model's URI."""
    from tests.models.test_models import Doubler

    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "teammate-store"))
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    (tmp_path / "offset.txt").write_text("1")
    with gitml.start_run() as run:
        gitml.log_text("w" * 200_000, "weights.bin")
        info = gitml.pyfunc.log_model(
            name="m", python_model=Doubler(200_000), artifacts={"offset": str(tmp_path / "offset.txt")}
        )
    gitml.flush()
    gitml_cli(repo, "push")
    (repo / ".gitml").mkdir(exist_ok=True)
    (repo / ".gitml" / "config.yaml").write_text(config)
    git(repo, "add", ".gitml/config.yaml")
    git(repo, "commit", "-qm", "team store")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE")
    return bare, run.info.run_id, info.model_uri


def victim_of(bare: Path, tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(bare), str(victim))
    return victim


def test_a_committed_http_remote_is_not_contacted_before_the_clone_trusts_it(repo, tmp_path, monkeypatch):
    with Recorder() as server:
        ssrf = f"{server.url}/admin?action=drop-everything&x="
        bare, run_id, model_uri = teammate_pushes(repo, tmp_path, f"artifacts:\n  remote: '{ssrf}'\n", monkeypatch)
        victim = victim_of(bare, tmp_path)
        monkeypatch.chdir(victim)

        pulled = gitml_cli(victim, "pull", code=1)  # the runs arrive; their large artifacts cannot
        assert "--trust-committed" in pulled.output and "network service" in pulled.output
        with gitml.ops.Operations(victim) as c:
            assert c.get_run(run_id).info.run_id == run_id  # the run itself is here
            with pytest.raises(UnconfirmedRemoteError, match="trust-committed"):
                c.artifacts.read_bytes(run_id, "weights.bin")
        gitml.set_tracking_uri(str(victim))
        with pytest.raises(UnconfirmedRemoteError, match="not even to read"):
            gitml.pyfunc.load_model(model_uri)
        got = gitml_cli(victim, "artifacts", "get", run_id, "weights.bin", "-o", tmp_path / "out", code=1)
        assert got.stderr.count("\n") == 1 and "--trust-committed" in got.stderr
        push = gitml_cli(victim, "push", code=1)
        assert "--trust-committed" in push.stderr
        assert server.requests == []  # nothing reached the server: no request of the victim's was sent

        # the same clone, once its user confirms the store: now gitml goes there (so the check above could fail)
        gitml_cli(victim, "config", "--trust-committed")
        with gitml.ops.Operations(victim) as c, pytest.raises(gitml.exceptions.MlflowException):
            c.artifacts.read_bytes(run_id, "weights.bin")  # the recorder has no such object
        assert server.requests and all("/admin?action=drop-everything" in r for r in server.requests)


def test_committed_storage_options_on_the_users_own_scheme_are_not_contacted_either(
    repo, tmp_path, monkeypatch, fresh_s3fs
):
    """The victim's own remote is S3; a teammate's commit adds an ``endpoint_url`` that
    would send the victim's S3 requests (signed with the victim's keys) to any service."""
    with Recorder() as server:
        config = f"artifacts:\n  storage_options: {{endpoint_url: '{server.url}/internal'}}\n"
        bare, run_id, _ = teammate_pushes(repo, tmp_path, config, monkeypatch)
        victim = victim_of(bare, tmp_path)
        gitml_cli(victim, "config", "artifacts.remote", "s3://victims-bucket/art")  # the victim's own store
        assert "storage options" in gitml_cli(victim, "pull", code=1).output
        with gitml.ops.Operations(victim) as c, pytest.raises(UnconfirmedRemoteError, match="storage options"):
            c.artifacts.read_bytes(run_id, "weights.bin")
        assert server.requests == []
        gitml_cli(victim, "config", "--trust-committed")
        gitml_cli(victim, "pull", code=1)  # the recorder is no S3: the download fails, after contact
        assert server.requests


def test_a_committed_remote_of_a_scheme_the_clone_never_used_is_not_contacted(repo, tmp_path, monkeypatch, fresh_s3fs):
    """``s3://`` (or any fsspec scheme) goes wherever the environment's endpoint says:
    a fresh clone confirms it before anything is sent; AWS_ENDPOINT_URL points at the
    recorder here, so a request would be seen."""
    with Recorder() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        bare, run_id, _ = teammate_pushes(repo, tmp_path, "artifacts:\n  remote: s3://team-bucket/art\n", monkeypatch)
        victim = victim_of(bare, tmp_path)
        for chained in (False, True):
            if chained:  # an fsspec chain hides a second scheme: never read before confirming
                (victim / ".gitml" / "config.yaml").write_text(f"artifacts:\n  remote: 'simplecache::{server.url}/x'\n")
            out = gitml_cli(victim, "pull", code=1).output
            assert "--trust-committed" in out
            assert server.requests == []
        (victim / ".gitml" / "config.yaml").write_text("artifacts:\n  remote: s3://team-bucket/art\n")
        gitml_cli(victim, "config", "--trust-committed")
        gitml_cli(victim, "pull", code=1)  # contacted now (the recorder answers 404 to S3's questions)
        assert server.requests


def test_a_moved_bucket_of_the_scheme_the_clone_uses_is_still_read(repo, tmp_path, monkeypatch, fresh_s3fs):
    """Nothing that worked breaks for the team that moves its store within S3: a clone
    that confirmed ``s3://`` reads from the new bucket (every object checked against its
    hash) and waits for a new confirmation to write there; a real S3 API (moto)."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in ("team-old", "team-new"):
            s3.create_bucket(Bucket=bucket)
        bare, run_id, _ = teammate_pushes(repo, tmp_path, "artifacts:\n  remote: s3://team-old/art\n", monkeypatch)
        victim = victim_of(bare, tmp_path)
        gitml_cli(victim, "config", "--trust-committed")
        gitml_cli(victim, "pull", code=1)  # the teammate's objects are in their folder store, not in S3
        # the team moves its store to another bucket, and uploads the objects there
        store = tmp_path / "teammate-store"
        for path in store.rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="team-new", Key=f"art/{path.parent.name}/{path.name}", Body=path.read_bytes())
        (victim / ".gitml" / "config.yaml").write_text("artifacts:\n  remote: s3://team-new/art\n")
        assert "downloaded" in gitml_cli(victim, "pull").output
        with gitml.ops.Operations(victim) as c:
            assert c.artifacts.read_bytes(run_id, "weights.bin") == b"w" * 200_000
            assert c.artifacts.content.unconfirmed is not None  # writes there wait for a new confirmation
    finally:
        server.stop()


# -- a download stops at the size the manifest records; a folder store's links and special files are refused --
SIZE = 200_000  # each large artifact's size as the manifest records it
HUGE = 1 << 40  # what a replaced object claims to be: a tebibyte, never read whole


def team_store(repo: Path, tmp_path: Path, names: list[str], monkeypatch) -> tuple[Path, Path, str, dict[str, str]]:
    """The teammate logs one run with a large artifact per name and pushes it, with its
    objects, to a folder store; a victim clones the bare remote. Returns the victim, the
    store, the run id and each name's object id."""
    store = tmp_path / "team-store"
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(store))
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    with gitml.start_run() as run:
        for i, name in enumerate(names):
            gitml.log_text(chr(ord("a") + i) * SIZE, name)
    gitml.flush()
    gitml_cli(repo, "push")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    with gitml.ops.Operations(repo) as c:
        shas = {name: c.artifacts.manifest(run.info.run_id)[name]["sha256"] for name in names}
        assert all(c.artifacts.manifest(run.info.run_id)[name]["size"] == SIZE for name in names)
    monkeypatch.delenv("GITML_ARTIFACT_REMOTE")
    return victim_of(bare, tmp_path), store, run.info.run_id, shas


def object_path(store: Path, sha: str) -> Path:
    return store / sha[:2] / sha[2:]


def bytes_read_by_this_process() -> int:
    """What the kernel counts as read by this process (``rchar``, every read system call)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_a_folder_store_s_links_and_special_files_are_refused_unread(repo, tmp_path, monkeypatch):
    names = ["zero.bin", "fifo.bin", "linked-folder.bin", "good.bin"]
    victim, store, run_id, shas = team_store(repo, tmp_path, names, monkeypatch)
    # someone who can write the shared folder replaces objects
    object_path(store, shas["zero.bin"]).unlink()
    object_path(store, shas["zero.bin"]).symlink_to("/dev/zero")
    object_path(store, shas["fifo.bin"]).unlink()
    os.mkfifo(object_path(store, shas["fifo.bin"]))  # opened as a file, a FIFO blocks forever
    folder = object_path(store, shas["linked-folder.bin"]).parent
    assert len({shas[n][:2] for n in names}) == len(names)  # the contents are fixed: so are their folders
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)  # the right bytes, behind a link: refused all the same
    folder.symlink_to(elsewhere)
    gitml_cli(victim, "config", "artifacts.remote", str(store))  # the victim's own store, shared with the team

    out = gitml_cli(victim, "pull", code=1).output
    assert f"{shas['zero.bin']} is a symbolic link; refused" in out
    assert f"{shas['fifo.bin']} is a special file" in out
    assert f"folder {shas['linked-folder.bin'][:2]}/ is a symbolic link" in out
    cache = victim / ".git" / "gitml" / "cache"
    cached = {p.parent.name + p.name for p in cache.rglob("*") if p.is_file()}
    bad = {shas[n] for n in names if n != "good.bin"}
    assert shas["good.bin"] in cached and not cached & bad  # nothing refused was kept
    with gitml.ops.Operations(victim) as c:
        assert c.artifacts.read_bytes(run_id, "good.bin") == b"d" * SIZE
        with pytest.raises(gitml.exceptions.MlflowException, match="zero.bin.*symbolic link"):
            c.artifacts.read_bytes(run_id, "zero.bin")
    fsck = gitml_cli(victim, "fsck", code=1).output
    assert f"zero.bin {shas['zero.bin']}" in fsck


def test_a_huge_file_in_a_folder_store_costs_at_most_the_recorded_size(repo, tmp_path, monkeypatch):
    victim, store, run_id, shas = team_store(repo, tmp_path, ["model.bin"], monkeypatch)
    sha = shas["model.bin"]
    os.truncate(object_path(store, sha), HUGE)  # a sparse tebibyte where 200 kB were
    gitml_cli(victim, "config", "artifacts.remote", str(store))
    gitml_cli(victim, "fetch")  # the runs; their artifacts on first read
    with gitml.ops.Operations(victim) as c:
        before = bytes_read_by_this_process()
        with pytest.raises(gitml.errors.IntegrityError, match=f"larger than the {SIZE} bytes its manifest records"):
            c.artifacts.read_bytes(run_id, "model.bin")
        read = bytes_read_by_this_process() - before
    assert SIZE < read < SIZE + (4 << 20)  # the object's recorded size, plus at most a few MiB of anything else
    assert not (victim / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]).exists()
    assert "larger than" in gitml_cli(victim, "pull", code=1).output


class StoreServer(_Loopback):
    """A real HTTP artifact store on loopback serving a folder's objects, with ranges as
    S3 and every static server do; an object named in ``huge`` is served as a tebibyte of
    zeros, generated as it is sent. ``sent`` counts the body bytes sent for each path."""

    def __init__(self, root: Path) -> None:
        self.root, self.huge, self.sent = root, set(), {}
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, body: bool) -> None:
                rel = self.path.lstrip("/")
                path = store.root / rel
                if rel in store.huge:
                    size, read = HUGE, (lambda start, n: b"\0" * n)
                elif path.is_file():
                    data = path.read_bytes()
                    size, read = len(data), (lambda start, n: data[start : start + n])
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = 0, size
                asked = self.headers.get("Range")
                if asked and body:
                    first, _, last = asked.removeprefix("bytes=").partition("-")
                    start, end = int(first), min(size, int(last) + 1 if last else size)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                try:
                    while start < end:
                        n = min(1 << 16, end - start)
                        self.wfile.write(read(start, n))
                        store.sent[rel] = store.sent.get(rel, 0) + n
                        start += n
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):  # noqa: N802
                self._answer(True)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def test_a_huge_object_on_an_http_store_costs_at_most_the_recorded_size(repo, tmp_path, monkeypatch):
    victim, store, run_id, shas = team_store(repo, tmp_path, ["model.bin", "good.bin"], monkeypatch)
    sha = shas["model.bin"]
    with StoreServer(store) as server:
        server.huge.add(f"{sha[:2]}/{sha[2:]}")
        gitml_cli(victim, "config", "artifacts.remote", server.url)
        out = gitml_cli(victim, "pull", code=1).output
        assert f"{sha} is larger than the {SIZE} bytes its manifest records" in out
        assert "1 artifact object(s) downloaded" in out  # the good one came
        sent = server.sent[f"{sha[:2]}/{sha[2:]}"]
        assert SIZE < sent <= SIZE + (4 << 20)  # a few block reads past the size, not a tebibyte
    assert not (victim / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]).exists()


def test_a_larger_object_on_s3_is_refused_past_the_recorded_size(repo, tmp_path, monkeypatch, fresh_s3fs):
    """A real S3 API (moto): the object under the key is replaced by one of 24 MiB."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    victim, store, run_id, shas = team_store(repo, tmp_path, ["model.bin"], monkeypatch)
    sha = shas["model.bin"]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="team")
        s3.put_object(Bucket="team", Key=f"art/{sha[:2]}/{sha[2:]}", Body=b"\0" * (24 << 20))
        gitml_cli(victim, "config", "artifacts.remote", "s3://team/art")
        gitml_cli(victim, "config", "artifacts.storage_options", f"{{endpoint_url: '{endpoint}'}}")
        gitml_cli(victim, "fetch")
        with (
            gitml.ops.Operations(victim) as c,
            pytest.raises(gitml.errors.IntegrityError, match=f"larger than the {SIZE} bytes"),
        ):
            c.artifacts.read_bytes(run_id, "model.bin")
        assert not (victim / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]).exists()
    finally:
        server.stop()


def test_a_push_writes_over_a_planted_link_and_never_through_a_linked_folder(repo, tmp_path, monkeypatch):
    """The owner of the true bytes repairs the store: fsck finds the link, the next push
    replaces it by the object (a rename replaces the link itself, not what it points to);
    a linked ``<2 hex>/`` folder is never written through."""
    victim, store, run_id, shas = team_store(repo, tmp_path, ["zero.bin", "linked.bin"], monkeypatch)
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(store))  # the teammate again
    target = tmp_path / "target"
    target.write_bytes(b"kept")
    planted = object_path(store, shas["zero.bin"])
    planted.unlink()
    planted.symlink_to(target)
    assert "corrupt on remote" in gitml_cli(repo, "fsck", code=1).output
    gitml_cli(repo, "push")
    assert planted.is_file() and not planted.is_symlink() and target.read_bytes() == b"kept"
    assert planted.read_bytes() == b"a" * SIZE

    folder = object_path(store, shas["linked.bin"]).parent
    assert folder != planted.parent  # the contents are fixed: so are their folders
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.symlink_to(elsewhere)
    assert (
        f"linked.bin {shas['linked.bin']}" in gitml_cli(repo, "fsck", code=1).output
    )  # what the link leads to is not read
    out = gitml_cli(repo, "push", code=1).output
    assert "is a symbolic link; nothing is written there" in out
    assert list(elsewhere.iterdir()) == []


def test_an_http_store_is_read_and_a_push_to_it_stops_before_any_ref_moves(repo, tmp_path, monkeypatch):
    """README: an `http(s)://` artifact remote is read-only. A clone reads a teammate's
    artifacts through it; a push of a run whose objects would have to go there stops with
    one line naming the store, and no ref of that run reaches the git remote."""
    victim, store, run_id, shas = team_store(repo, tmp_path, ["weights.bin"], monkeypatch)
    with StoreServer(store) as server:
        gitml_cli(victim, "config", "artifacts.remote", server.url)
        assert "1 artifact object(s) downloaded" in gitml_cli(victim, "pull").output
        assert (victim / ".git" / "gitml" / "cache" / shas["weights.bin"][:2] / shas["weights.bin"][2:]).exists()
        monkeypatch.chdir(victim)
        gitml.set_tracking_uri(str(victim))
        with gitml.start_run() as mine:
            gitml.log_text("z" * SIZE, "mine.bin")
        gitml.flush()
        out = gitml_cli(victim, "push", code=1).output
        assert out.count("\n") == 1 and f"artifact remote {server.url} is read-only (http)" in out, out
        assert mine.info.run_id not in git(tmp_path / "origin.git", "for-each-ref", "refs/gitml")
        assert run_id in git(tmp_path / "origin.git", "for-each-ref", "refs/gitml")

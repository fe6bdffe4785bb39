"""Push, fetch and ls-remote of gitml refs against real servers on loopback.

Every remote kind is real: a bare repository by path and by ``file://`` URL,
``git daemon`` (git://) and dulwich's own smart-HTTP WSGI server. The real git
binary checks what arrived (``for-each-ref``, ``fsck --strict``, ``clone``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import gitml
from gitml.errors import RemoteError
from gitml.store import remote as remote_module
from gitml.store.git import open_store
from gitml.store.remote import (
    NON_FAST_FORWARD,
    REJECTED_BEHIND,
    fetch_refs,
    list_remote_refs,
    push_refs,
    resolve_remote,
)
from tests.conftest import git

pytestmark = pytest.mark.timeout(60)

KINDS = ["path", "file", "git", "http"]


@dataclass
class Remote:
    kind: str
    url: str
    bare: Path  # the served bare repository, for the real git to inspect


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()!r}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing accepted connections on 127.0.0.1:{port} within {timeout} s")


@contextlib.contextmanager
def git_daemon(base: Path):
    """``git daemon`` serving every repository under ``base``, push enabled."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stderr.close()


@contextlib.contextmanager
def dulwich_http(base: Path):
    """dulwich's smart-HTTP server (``dulwich.web``) for the repositories now in ``base``.

    Push needs nothing switched on: ``make_wsgi_chain`` serves ``git-receive-pack``
    by default (``DEFAULT_HANDLERS``), with no authentication. A ``DictBackend``,
    because ``FileSystemBackend`` refuses every path dulwich.web hands it (they
    start with "/", and ``os.path.join(root, "/x")`` drops the root).
    """
    from wsgiref.simple_server import make_server

    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_wsgi_chain

    repos = {f"/{p.name}": Repo(str(p)) for p in base.iterdir() if (p / "HEAD").exists()}
    app = make_wsgi_chain(DictBackend(repos))
    server = make_server("127.0.0.1", 0, app, server_class=WSGIServerLogger, handler_class=WSGIRequestHandlerLogger)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_for_port(server.server_port)
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for served in repos.values():
            served.close()


@contextlib.contextmanager
def serve(kind: str, base: Path, name: str):
    """The URL of ``base/name`` over ``kind``, with its server running."""
    bare = base / name
    if kind == "path":
        yield str(bare)
    elif kind == "file":
        yield bare.as_uri()
    elif kind == "git":
        with git_daemon(base) as port:
            yield f"git://127.0.0.1:{port}/{name}"
    else:
        with dulwich_http(base) as port:
            yield f"http://127.0.0.1:{port}/{name}"


@pytest.fixture(params=KINDS)
def remote(request, repo, tmp_path):
    """A bare repository holding the project's main branch, served as ``kind``."""
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    git(repo, "push", "-q", str(base / "remote.git"), "main")
    with serve(request.param, base, "remote.git") as url:
        yield Remote(request.param, url, base / "remote.git")


def make_runs(n: int = 2, experiment: str = "remote-test") -> list[str]:
    gitml.set_experiment(experiment)
    ids = []
    for i in range(n):
        with gitml.start_run() as run:
            gitml.log_param("i", i)
            gitml.log_metric("loss", 1.0 / (i + 1), step=0)
        ids.append(run.info.run_id)
    gitml.flush()
    return ids


def for_each_ref(path, prefix="refs/gitml") -> dict[bytes, bytes]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(tuple(line.encode().split()) for line in out.splitlines())


def clone(source: str, target: Path) -> Path:
    git(target.parent, "clone", "-q", source, str(target))
    return target


# -- push, then the real git reads it ----------------------------------------


def test_push_runs_and_git_reads_them(repo, remote, tmp_path):
    run_ids = make_runs(2)
    with open_store(repo) as store:
        local = store.refs_under("refs/gitml/")
        assert len([r for r in local if r.startswith(b"refs/gitml/runs/")]) == 2
        messages: list[bytes] = []
        assert push_refs(store, remote.url, local, progress=messages.append) == {ref: "ok" for ref in local}
        assert messages and all(isinstance(m, bytes) for m in messages)
        assert list_remote_refs(store, remote.url) == local
        assert push_refs(store, remote.url, local) == {ref: "ok" for ref in local}  # up to date
    assert for_each_ref(remote.bare) == local
    git(remote.bare, "fsck", "--strict")
    # the real git, over the same transport, clones and fetches the runs
    copy = clone(remote.url, tmp_path / "git-clone")
    git(copy, "fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    assert for_each_ref(copy) == local
    assert all(run_id in git(copy, "for-each-ref", "refs/gitml/runs") for run_id in run_ids)


@pytest.mark.parametrize("few", [64, 0], ids=["packs-searched-in-their-index", "packs-read-whole"])
@pytest.mark.parametrize("gc", [False, True], ids=["packs-of-gitml", "after-git-gc"])
def test_push_sends_what_git_would_send(repo, remote, gc, few, monkeypatch):
    """A push sends the objects ``git rev-list --objects NEW --not REMOTE`` names:
    those of the new commits, short of what the remote's commits hold; whether the
    packs are searched in their indexes (a push of a few refs) or read into a dict."""
    monkeypatch.setattr(remote_module, "FEW_REFS", few)
    for step in range(2):
        make_runs(3)
        (repo / "train.py").write_text(f"print('changed {step}')\n")  # a dirty run: new blobs and trees
        make_runs(1)
        if gc:
            git(repo, "gc", "-q")  # deltas and one pack, as git leaves them
        theirs = set(for_each_ref(remote.bare, "refs").values())
        with open_store(repo) as store:
            local = store.refs_under("refs/gitml/")
            messages: list[bytes] = []
            assert set(push_refs(store, remote.url, local, progress=messages.append).values()) == {"ok"}
        new = {sha.decode() for sha in local.values()} - theirs
        expected = git(repo, "rev-list", "--objects", *sorted(new), "--not", *sorted(theirs)).splitlines()
        sent = [int(m.split()[1]) for m in messages if m.startswith((b"sending ", b"copied "))]
        assert len(sent) == 1, messages
        if remote.kind in ("path", "file"):  # the copy looks up every object the remote holds: no repeats
            assert 0 < sent[0] <= len(expected), step
        else:
            assert sent[0] == len(expected), step
        git(remote.bare, "fsck", "--strict")
        assert for_each_ref(remote.bare) == local


def test_fetch_into_fresh_clone_and_read_runs(repo, remote, tmp_path):
    run_ids = make_runs(2)
    git(repo, "push", "-q", str(remote.bare), "refs/gitml/*:refs/gitml/*")  # pushed by the real git
    copy = clone(str(remote.bare), tmp_path / "clone")
    assert for_each_ref(copy) == {}
    with open_store(copy) as store:
        messages: list[bytes] = []
        result = fetch_refs(store, remote.url, progress=messages.append)
        assert all(isinstance(m, bytes) for m in messages)
        assert sorted(result.created) == sorted(for_each_ref(remote.bare))
        assert result.updated == result.diverged == result.ahead == []
        again = fetch_refs(store, remote.url)
        assert again.created == [] and sorted(again.unchanged) == sorted(result.created)
    git(copy, "fsck", "--strict")
    with gitml.Client(copy) as client:
        for i, run_id in enumerate(run_ids):
            run = client.get_run(run_id)
            assert run.data.params == {"i": str(i)} and run.data.metrics == {"loss": 1.0 / (i + 1)}


def test_fetch_of_runs_on_top_from_a_gc_packed_remote(repo, remote, tmp_path):
    """The remote packed by ``git gc --aggressive`` (deltas): the fetch of a run
    that went on, on top of what the clone has, may come as a thin pack."""
    (run_id,) = make_runs(1)
    git(repo, "push", "-q", str(remote.bare), "refs/gitml/*:refs/gitml/*")
    copy = clone(str(remote.bare), tmp_path / "clone")
    with open_store(copy) as store:
        assert len(fetch_refs(store, remote.url).created) == 2
    with gitml.start_run(run_id=run_id):
        for step in range(1, 200):
            gitml.log_metric("loss", 1.0 / step, step=step)  # a history file that grows: delta material
    gitml.flush()
    git(repo, "push", "-q", "-f", str(remote.bare), "refs/gitml/*:refs/gitml/*")
    git(remote.bare, "gc", "-q", "--aggressive")
    with open_store(copy) as store:
        result = fetch_refs(store, remote.url)
    assert len(result.updated) == 1 and run_id in result.updated[0].decode()
    git(copy, "fsck", "--strict")
    assert for_each_ref(copy) == for_each_ref(remote.bare)
    with gitml.Client(copy) as client:
        assert len(client.get_metric_history(run_id, "loss")) == 200


def test_non_fast_forward_push_refused_unless_forced_and_delete(repo, remote, tmp_path):
    (run_id,) = make_runs(1)
    with open_store(repo) as store:
        (ref,) = store.refs_under("refs/gitml/runs/")
        first = store.ref(ref)
        assert push_refs(store, remote.url, {ref: first}) == {ref: "ok"}
    # another clone continues the run and pushes first
    other = clone(str(remote.bare), tmp_path / "other")
    git(other, "fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    with gitml.Client(other) as client:
        client.log_metric(run_id, "loss", 0.1, step=5)
    with open_store(other) as store:
        theirs = store.ref(ref)
        assert push_refs(store, remote.url, {ref: theirs}) == {ref: "ok"}
    # here the run moves on too: the histories have diverged
    with gitml.Client(repo) as client:
        client.log_metric(run_id, "loss", 0.2, step=5)
    with open_store(repo) as store:
        ours = store.ref(ref)
        assert ours not in (first, theirs)
        assert push_refs(store, remote.url, {ref: ours}) == {ref: REJECTED_BEHIND}  # theirs is not here
        assert for_each_ref(remote.bare)[ref] == theirs
    git(repo, "fetch", "-q", str(remote.bare), f"+{ref.decode()}:refs/their-run")  # now it is
    with open_store(repo) as store:
        assert push_refs(store, remote.url, {ref: ours}) == {ref: NON_FAST_FORWARD}  # written in two places
        assert push_refs(store, remote.url, {ref: first}) == {ref: "ok"}  # behind the remote: nothing to send
        assert for_each_ref(remote.bare)[ref] == theirs
        assert push_refs(store, remote.url, {ref: ours}, force=True) == {ref: "ok"}
        assert for_each_ref(remote.bare)[ref] == ours
        assert push_refs(store, remote.url, {ref: None}) == {ref: "ok"}
    assert ref not in for_each_ref(remote.bare)
    git(remote.bare, "fsck", "--strict")


def test_a_ref_moved_during_a_local_push_is_not_clobbered(repo, tmp_path, monkeypatch):
    """A teammate pushes a diverging update of the run while the objects are copied."""

    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    (run_id,) = make_runs(1)
    with open_store(repo) as store:
        (ref,) = store.refs_under("refs/gitml/runs/")
        first = store.ref(ref)
        assert push_refs(store, str(bare), {ref: first}) == {ref: "ok"}
    with gitml.Client(repo) as client:
        client.log_metric(run_id, "loss", 0.2, step=5)
    tree = git(bare, "rev-parse", f"{first.decode()}^{{tree}}").strip()
    theirs = git(bare, "commit-tree", tree, "-p", first.decode(), "-m", "teammate").strip()
    copy = remote_module.copy_objects

    def copy_while_a_teammate_pushes(*args):
        copied = copy(*args)
        git(bare, "update-ref", ref.decode(), theirs)
        return copied

    monkeypatch.setattr(remote_module, "copy_objects", copy_while_a_teammate_pushes)
    with open_store(repo) as store:
        assert push_refs(store, str(bare), {ref: store.ref(ref)}) == {ref: "rejected: the remote ref moved meanwhile"}
    assert for_each_ref(bare)[ref] == theirs.encode()


def test_refusal_by_the_server_is_reported_per_ref(repo, tmp_path):
    make_runs(2)
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    hook = base / "remote.git" / "hooks" / "update"  # refuses deletions (denyDeletes covers branches only)
    hook.write_text('#!/bin/sh\ntest "$3" != 0000000000000000000000000000000000000000\n')
    hook.chmod(0o755)
    with open_store(repo) as store:
        kept, other = sorted(store.refs_under("refs/gitml/runs/"))
        with serve("git", base, "remote.git") as url:
            assert push_refs(store, url, {kept: store.ref(kept)}) == {kept: "ok"}
            status = push_refs(store, url, {kept: None, other: store.ref(other)})
        assert status[other] == "ok" and status[kept] == "rejected: hook declined"
        assert set(for_each_ref(base / "remote.git")) == {kept, other}


# -- fetch: fast-forward, ahead, diverged ---------------------------------------


@pytest.mark.parametrize("kind", ["path", "http"])
def test_fetch_fast_forwards_and_leaves_diverged_runs(repo, tmp_path, kind):
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    git(repo, "push", "-q", str(base / "remote.git"), "main")
    run_a, run_b, run_c = make_runs(3)
    with open_store(repo) as store:
        runs = store.refs_under("refs/gitml/runs/")
        refs = {r.rsplit(b"/", 1)[1].decode(): r for r in runs}
    git(repo, "push", "-q", str(base / "remote.git"), "refs/gitml/*:refs/gitml/*")
    other = clone(str(base / "remote.git"), tmp_path / "other")
    git(other, "fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    with gitml.Client(repo) as client:  # a: moves on upstream only -> fast-forward
        client.log_metric(run_a, "loss", 0.01, step=9)
        client.log_metric(run_c, "loss", 0.03, step=9)  # c: moves on in both -> diverged
    with gitml.Client(other) as client:
        client.log_metric(run_b, "loss", 0.02, step=9)  # b: moves on in the clone only -> ahead
        client.log_metric(run_c, "loss", 0.04, step=9)
    git(repo, "push", "-q", "-f", str(base / "remote.git"), "refs/gitml/*:refs/gitml/*")
    before = for_each_ref(other)
    with serve(kind, base, "remote.git") as url, open_store(other) as store:
        result = fetch_refs(store, url)
    after = for_each_ref(other)
    upstream = for_each_ref(base / "remote.git")
    assert result.updated == [refs[run_a]] and after[refs[run_a]] == upstream[refs[run_a]]
    assert result.ahead == [refs[run_b]] and after[refs[run_b]] == before[refs[run_b]]
    assert result.diverged == [refs[run_c]] and after[refs[run_c]] == before[refs[run_c]]
    assert result.remote[refs[run_c]] == upstream[refs[run_c]] != after[refs[run_c]]
    assert result.created == []
    with gitml.Client(other) as client:
        assert client.get_run(run_a).data.metrics["loss"] == 0.01
        assert client.get_run(run_c).data.metrics["loss"] == 0.04  # ours kept
    with serve(kind, base, "remote.git") as url, open_store(other) as store:
        forced = fetch_refs(store, url, force=True)  # the remote's history of c wins; b stays ahead
    assert forced.updated == [refs[run_c]] and forced.ahead == [refs[run_b]] and forced.diverged == []
    assert for_each_ref(other)[refs[run_c]] == upstream[refs[run_c]]
    with gitml.Client(other) as client:
        assert client.get_run(run_c).data.metrics["loss"] == 0.03


def test_existing_tag_is_not_moved_without_force(repo, tmp_path):
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "tag", "model@v1")
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "v2")
    head = git(repo, "rev-parse", "HEAD").strip().encode()
    with open_store(repo) as store:
        tag = b"refs/tags/model@v1"
        assert push_refs(store, str(bare), {tag: store.ref(tag)}) == {tag: "ok"}
        assert push_refs(store, str(bare), {tag: head}) == {tag: "rejected: tag already exists"}
        assert push_refs(store, str(bare), {tag: head}, force=True) == {tag: "ok"}
    assert git(bare, "rev-parse", "model@v1").strip().encode() == head


# -- unreachable remotes, unknown names -----------------------------------------


def unreachable_urls(tmp_path: Path) -> list[str]:
    closed = free_port()
    return [
        f"git://127.0.0.1:{closed}/remote.git",
        f"http://127.0.0.1:{closed}/remote.git",
        str(tmp_path / "missing.git"),
        (tmp_path / "missing.git").as_uri(),
        str(tmp_path),  # a directory that is no repository
    ]


def check_remote_error(url: str, call) -> RemoteError:
    with pytest.raises(RemoteError) as info:  # in bounded time: the module timeout mark
        call()
    message = str(info.value)
    assert "\n" not in message and url in message and len(message) < 400
    return info.value


def test_unreachable_remote_raises_one_line_and_changes_nothing(repo, tmp_path):
    make_runs(1)
    with open_store(repo) as store:
        local = store.refs_under("refs/gitml/")
        before = for_each_ref(repo, "refs")
        for url in unreachable_urls(tmp_path):
            check_remote_error(url, lambda url=url: list_remote_refs(store, url))
            check_remote_error(url, lambda url=url: push_refs(store, url, local))
            check_remote_error(url, lambda url=url: fetch_refs(store, url))
        assert for_each_ref(repo, "refs") == before
    git(repo, "fsck", "--strict")


def test_refused_connection_names_the_cause(repo, tmp_path):
    url = f"git://127.0.0.1:{free_port()}/remote.git"
    with open_store(repo) as store:
        error = check_remote_error(url, lambda url=url: list_remote_refs(store, url))
    assert error.url == url and "refused" in error.cause.lower()


@pytest.mark.parametrize("kind", ["git", "http"])
def test_server_without_that_repository(repo, tmp_path, kind):
    base = tmp_path / "served"
    base.mkdir()
    with serve(kind, base, "absent.git") as url, open_store(repo) as store:
        check_remote_error(url, lambda url=url: list_remote_refs(store, url))
        check_remote_error(url, lambda url=url: fetch_refs(store, url))


def test_resolve_remote(repo, tmp_path):
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    with open_store(repo) as store:
        with pytest.raises(RemoteError, match="origin") as info:
            resolve_remote(store, None)
        assert "\n" not in str(info.value)
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "remote", "add", "backup", "git://127.0.0.1:9/backup.git")
        assert resolve_remote(store, None) == str(bare)
        assert resolve_remote(store, "origin") == str(bare)
        assert resolve_remote(store, "backup") == "git://127.0.0.1:9/backup.git"
        for url in ("https://example.com/a/b.git", "ssh://git@example.com/a.git", "git@example.com:team/a.git"):
            assert resolve_remote(store, url) == url
        assert resolve_remote(store, bare.as_uri()) == bare.as_uri()
        assert resolve_remote(store, str(bare)) == str(bare)
        assert resolve_remote(store, "../remote.git") == str(bare)  # relative to the cwd (the repo)
        git(repo, "remote", "add", "near", "../remote.git")  # in .git/config: from the top of the work tree
        (repo / "sub").mkdir()
        os.chdir(repo / "sub")
        assert resolve_remote(store, "near") == str(bare)
        os.chdir(repo)
        with pytest.raises(RemoteError, match="'?upstream'?.*no such remote"):
            resolve_remote(store, "upstream")
        make_runs(1)
        refs = store.refs_under("refs/gitml/")
        assert set(push_refs(store, resolve_remote(store, None), refs).values()) == {"ok"}
    assert for_each_ref(bare) == refs


def test_local_remote_with_receive_hooks_or_policies_is_not_bypassed(repo, tmp_path):
    bare = tmp_path / "guarded.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))  # holds hooks/*.sample: those are not hooks
    (run_id,) = make_runs(1)
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
        assert set(push_refs(store, str(bare), refs).values()) == {"ok"}
        hook = bare / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'frozen today' >&2\nexit 1\n")
        hook.chmod(0o755)
        with pytest.raises(RemoteError, match="pre-receive hook") as info:
            push_refs(store, bare.as_uri(), refs)
        assert "\n" not in str(info.value)
        hook.unlink()
        (ref,) = [r for r in refs if run_id.encode() in r]
        git(bare, "config", "receive.denyDeletes", "true")
        assert push_refs(store, str(bare), {ref: None}) == {
            ref: "rejected: the remote denies deleting refs (receive.denyDeletes)"
        }
        git(bare, "config", "receive.denyNonFastForwards", "true")
    tree = git(repo, "rev-parse", f"{ref.decode()}^{{tree}}").strip()
    other = git(repo, "commit-tree", tree, "-m", "rewritten").strip()  # not a descendant
    git(repo, "update-ref", ref.decode(), other)
    with open_store(repo) as store:
        status = push_refs(store, str(bare), {ref: other.encode()}, force=True)
    assert status == {ref: "rejected: the remote denies non-fast-forward updates (receive.denyNonFastForwards)"}
    assert for_each_ref(bare) == refs


def test_push_of_several_mebibytes_over_every_transport(repo, remote):
    """Incompressible inline files make a pack of ~2 MiB: smart-HTTP servers cap the
    size of one HTTP chunk (dulwich's at 1 MiB), so the pack must go in smaller pieces."""
    gitml.set_experiment("big")
    for i in range(32):
        with gitml.start_run():
            gitml.log_text(os.urandom(30_000).hex(), f"blob{i}.txt")  # 60 KB, inline in git
    gitml.flush()
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
        assert set(push_refs(store, remote.url, refs).values()) == {"ok"}
    assert for_each_ref(remote.bare) == refs
    git(remote.bare, "fsck", "--strict")


def test_a_server_hook_refusal_is_shown_once_with_its_message(repo, tmp_path):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    hook = base / "remote.git" / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: refs/gitml is frozen today' >&2\nexit 1\n")
    hook.chmod(0o755)
    make_runs(6)
    with serve("git", base, "remote.git") as url:
        result = CliRunner().invoke(cli, ["-C", str(repo), "push", url])
    assert result.exit_code == 1
    # one line: the host's refusal with its hook's message (a batch tried again hears it again)
    assert result.output.count("policy: refs/gitml is frozen today") == 1
    assert (
        "error: the remote refused the push: pre-receive hook declined (policy: refs/gitml is frozen today); "
        "0 ref(s) went"
    ) in result.output
    assert for_each_ref(base / "remote.git") == {}


def test_fetch_of_an_updated_run_brings_only_its_new_commit(repo, remote, tmp_path):
    (run_id,) = make_runs(1)
    with gitml.start_run(run_id=run_id):
        for i in range(30):
            gitml.log_text(f"file {i}\n" * 100, f"files/f{i}.txt")  # inline: 30 blobs in the run's tree
    gitml.flush()
    git(repo, "push", "-q", str(remote.bare), "refs/gitml/*:refs/gitml/*")
    copy = clone(str(remote.bare), tmp_path / "clone")
    with open_store(copy) as store:
        fetch_refs(store, remote.url)
    with gitml.start_run(run_id=run_id):
        gitml.log_param("late", 1)
    gitml.flush()
    git(repo, "push", "-q", str(remote.bare), "refs/gitml/*:refs/gitml/*")
    before = set((copy / ".git" / "objects" / "pack").glob("*.pack"))
    with open_store(copy) as store:
        assert len(fetch_refs(store, remote.url).updated) == 1
    (new_pack,) = set((copy / ".git" / "objects" / "pack").glob("*.pack")) - before
    listing = git(copy, "verify-pack", "-v", str(new_pack.with_suffix(".idx")))
    received = [line for line in listing.splitlines() if len(line.split()) >= 5 and len(line.split()[0]) == 40]
    assert len(received) <= 8, listing  # the commit, its trees down to params.yaml, that blob
    git(copy, "fsck", "--strict")


def test_push_over_the_network_does_not_walk_a_long_shared_history(repo, tmp_path, monkeypatch):
    import gitml.store.transfer as transfer

    stream = "".join(
        f"commit refs/heads/main\ncommitter a <a@b> {1_700_000_000 + i} +0000\ndata 2\nc\n"
        + ("from refs/heads/main^0\n" if i else "")
        + f"M 100644 inline f{i % 20}.txt\ndata {len(str(i)) + 1}\n{i}\n\n"
        for i in range(3000)
    )
    subprocess.run(["git", "fast-import", "--quiet", "--force"], cwd=repo, input=stream.encode(), check=True)
    git(repo, "checkout", "-q", "-f", "main")
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    git(repo, "push", "-q", str(base / "remote.git"), "main")  # the remote has the long history
    make_runs(2)
    looked_at = []
    info = transfer._commit_info
    monkeypatch.setattr(transfer, "_commit_info", lambda e, sha: looked_at.append(sha) or info(e, sha))
    with serve("git", base, "remote.git") as url, open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
        assert set(push_refs(store, url, refs).values()) == {"ok"}
    assert len(looked_at) < 200  # not the 3,000 commits of main
    git(base / "remote.git", "fsck", "--strict")
    assert for_each_ref(base / "remote.git") == refs


@pytest.mark.parametrize("bound", ["BIG_PACK", "DICT_OBJECTS"])
@pytest.mark.parametrize("kind", ["path", "git"])
def test_large_packs_are_searched_in_their_index(repo, tmp_path, monkeypatch, kind, bound):
    """Packs over BIG_PACK objects, and every pack of a repository of over DICT_OBJECTS,
    are not held in a dict but searched in their index (here every pack is, by setting
    the bound to 0): pushes and fetches are the same."""
    import gitml.store.entries as entries

    monkeypatch.setattr(entries, bound, 0)
    make_runs(5)
    git(repo, "gc", "-q")  # one pack, with deltas (read through dulwich)
    make_runs(5)  # and gitml's own small packs
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    with serve(kind, base, "remote.git") as url, open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
        assert set(push_refs(store, url, refs).values()) == {"ok"}
    git(base / "remote.git", "fsck", "--strict")
    copy = tmp_path / "copy"
    git(tmp_path, "init", "-q", str(copy))
    with open_store(copy) as store:
        assert len(fetch_refs(store, str(base / "remote.git")).created) == len(refs)
    git(copy, "fsck", "--strict")
    assert for_each_ref(copy) == refs

"""A zlib bomb in a teammate's push: a few hundred kilobytes of git objects whose blob, a
run's ``tags.yaml`` and a metric's history chunk, inflates to hundreds of megabytes. Git
keeps a small push loose, so a clone fetching from that bare repository by path copies a
loose object; over ``git daemon`` it comes in a pack; a partial clone fetches it lazily
when it is read. Each way the clone's memory stays
bounded: the loose object is streamed into the clone's pack, and a record file is refused
by the size its object header gives, before it is inflated, with one line naming it.
The other runs stay readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import gitml
import gitml.ops
from tests.conftest import ROOT, git
from tests.store.test_remote import git_daemon

BOMB = 256 << 20  # bytes the blob inflates to (about 260 KB stored)
MAX_RSS = 160 << 20  # the victim's whole process (about 60 MB): well under one bomb
pytestmark = pytest.mark.timeout(300)


def _bomb(repo) -> str:
    """A blob of BOMB bytes (a YAML comment), written by git from a stream: its id."""
    writer = subprocess.Popen(
        ["git", "hash-object", "-w", "--stdin"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert writer.stdin is not None
    writer.stdin.write(b"#")
    block = b"x" * (1 << 20)
    for _ in range(BOMB >> 20):
        writer.stdin.write(block)
    writer.stdin.write(b"\n")
    out, _ = writer.communicate()
    assert writer.returncode == 0
    return out.decode().strip()


def _replace(repo, ref: str, path: str, blob: str) -> None:
    """A later commit of the run at ``ref`` whose ``path`` is ``blob`` (git plumbing)."""
    env = {"GIT_INDEX_FILE": str(repo / ".git" / "bomb-index")}
    base = git(repo, "rev-parse", ref).strip()
    for args in (["read-tree", base], ["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env={**os.environ, **env})
    tree = subprocess.run(
        ["git", "write-tree"], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **env}
    ).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-p", base, "-m", "later").strip()
    git(repo, "update-ref", ref, commit, base)


@pytest.fixture
def bombed(tmp_path, repo, monkeypatch):
    """Three runs pushed to a bare origin; then a teammate's push gives the first a bomb as
    its tags.yaml and the second one as its metric's history chunk."""
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    ids = []
    for i in range(3):
        with gitml.start_run() as run:
            gitml.log_param("i", i)
            gitml.log_metric("loss", 1.0 / (i + 1), step=0)
            gitml.log_metric("loss", 0.5 / (i + 1), step=1)
        ids.append(run.info.run_id)
    gitml.flush()
    listed = git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs").split()
    refs = {ref.rsplit("/", 1)[1]: ref for ref in listed}
    blob = _bomb(repo)
    _replace(repo, refs[ids[0]], ".gitml/run/tags.yaml", blob)
    _replace(repo, refs[ids[1]], ".gitml/run/metrics/loss@0.tsv", blob)
    base = tmp_path / "served"
    base.mkdir()
    origin = base / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "push", "-q", str(origin), *[f"{r}:{r}" for r in refs.values()])
    assert git(origin, "count-objects").startswith(("1", "2", "3", "4", "5", "6", "7", "8", "9"))  # kept loose
    return {"ids": ids, "origin": origin, "base": base}


VICTIM = """
import json, sys
import gitml.ops
from gitml import sync
from gitml.errors import CorruptRecordError
url, ids = sys.argv[1], json.loads(sys.argv[2])
out = {}
with gitml.ops.Operations(".") as c:
    if url:
        sync.fetch(c, url)
    out["listed"] = sorted(r.info.run_id for r in c.search_runs(["0"]))
    for name, call in (("tags", lambda: c.get_run(ids[0])), ("history", lambda: c.get_metric_history(ids[1], "loss"))):
        try:
            call()
            out[name] = "read"
        except CorruptRecordError as e:
            out[name] = str(e)
    out["good"] = [m.value for m in c.get_metric_history(ids[2], "loss")]
# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across exec into ru_maxrss,
# so under a big pytest process (an xdist worker late in its run) it measured the parent
out["rss"] = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(json.dumps(out))
"""


def _victim(tmp_path, name: str, url: str, ids: list[str], *, partial: str = "") -> dict:
    """The victim's process (a fetch from ``url``, then reads), or, with ``partial``, a
    partial clone of that URL whose run refs git fetched without their blobs (read lazily)."""
    clone = tmp_path / name
    git(tmp_path, "init", "-q", str(clone))
    if partial:
        git(clone, "remote", "add", "origin", partial)
        git(clone, "config", "remote.origin.promisor", "true")
        git(clone, "config", "remote.origin.partialclonefilter", "blob:none")
        git(clone, "fetch", "-q", "--filter=blob:none", "origin", "refs/gitml/*:refs/gitml/*")
    done = subprocess.run(
        [sys.executable, "-c", VICTIM, url, json.dumps(ids)],
        cwd=clone,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_zlib_bomb_in_a_pushed_run_costs_the_fetching_clone_no_memory(tmp_path, bombed):
    ids = bombed["ids"]
    path = _victim(tmp_path, "by-path", str(bombed["origin"]), ids)  # git kept the push loose: copied as such
    git(bombed["origin"], "config", "uploadpack.allowFilter", "true")
    with git_daemon(bombed["base"]) as port:  # in a pack
        url = f"git://127.0.0.1:{port}/origin.git"
        daemon = _victim(tmp_path, "by-daemon", url, ids)
        partial = _victim(tmp_path, "partial", "", ids, partial=url)  # the bomb comes lazily, when read
    for out in (path, daemon, partial):
        assert out["rss"] < MAX_RSS, out
        assert out["listed"] == sorted(ids[1:])  # the bombed record is skipped by name, the others listed
        for name, file in (("tags", "tags.yaml"), ("history", "history chunk of metric 'loss'")):
            assert file in out[name] and f"{BOMB + 2} bytes, over the limit" in out[name], out
            assert "(not read)" in out[name] and "\n" not in out[name]
        assert out["good"] == [1.0 / 3, 0.5 / 3]
    fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=tmp_path / "by-path", capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr  # the streamed copy is the object


COMMIT_BOMB = 96 << 20  # a commit message over MAX_WALKED_BYTES (64 MiB)


@pytest.mark.slow
def test_a_commit_bomb_is_refused_by_name_at_fetch_and_skipped_when_read(tmp_path, repo, monkeypatch):
    """A run's ref moved to a later commit whose message inflates to 96 MiB: a fetch (by
    path or over ``git daemon``) refuses that ref by name, before inflating it, and the
    other run arrives; taken by a plain ``git fetch``, the run is skipped by name."""
    from gitml.store.entries import MAX_WALKED_BYTES

    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    ids = []
    for i in range(2):
        with gitml.start_run() as run:
            gitml.log_param("i", i)
        ids.append(run.info.run_id)
    gitml.flush()
    ref = git(repo, "for-each-ref", "--format=%(refname)", f"refs/gitml/runs/*/{ids[0]}").strip()
    tree, parent = git(repo, "rev-parse", f"{ref}^{{tree}}", ref).split()
    writer = subprocess.Popen(
        ["git", "hash-object", "-t", "commit", "--literally", "-w", "--stdin"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdin is not None
    who = b"Mallory <m@example.com> 1700000000 +0000"
    writer.stdin.write(b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\n" % (tree.encode(), parent.encode(), who, who))
    for _ in range(COMMIT_BOMB >> 20):
        writer.stdin.write(b"x" * (1 << 20))
    bomb = writer.communicate()[0].decode().strip()
    git(repo, "update-ref", ref, bomb, parent)
    base = tmp_path / "served"
    base.mkdir()
    origin = base / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "push", "-q", str(origin), "refs/gitml/*:refs/gitml/*")
    script = (
        "import json, sys\nimport gitml.ops\nfrom gitml import sync\n"
        "with gitml.ops.Operations('.') as c:\n"
        "    if sys.argv[1]:\n"
        "        for ref, why in sync.fetch(c, sys.argv[1]).result.refused.items():\n"
        "            print(ref.decode(), 'refused:', why, file=sys.stderr)\n"
        "    listed = sorted(r.info.run_id for r in c.search_runs(['0']))\n"
        "rss = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')) * 1024\n"
        "print(json.dumps({'listed': listed, 'rss': rss}))\n"
    )
    with git_daemon(base) as port:
        for name, url in (("by-path", str(origin)), ("by-daemon", f"git://127.0.0.1:{port}/origin.git"), ("git", "")):
            clone = tmp_path / name
            git(tmp_path, "init", "-q", str(clone))
            if not url:  # a plain git fetch takes the ref as it is
                git(clone, "fetch", "-q", str(origin), "refs/gitml/*:refs/gitml/*")
            done = subprocess.run(
                [sys.executable, "-c", script, url],
                cwd=clone,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": ROOT},
            )
            assert done.returncode == 0, done.stderr[-2000:]
            out = json.loads(done.stdout.strip().splitlines()[-1])
            assert out["rss"] < MAX_RSS and out["listed"] == [ids[1]], (name, out)
            said = " ".join(done.stderr.split())
            assert bomb in said and f"over the limit of {MAX_WALKED_BYTES}" in said, (name, said[-1000:])
            if url:
                assert f"{ref} refused" in said and git(clone, "for-each-ref", ref) == "", (name, said[-1000:])

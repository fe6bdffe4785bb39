"""A tag-object bomb in a teammate's push: registry tags (annotated tags, the stages'
events) whose object is a few hundred kilobytes stored but whose message inflates to
96 MiB, and one of 2 MiB (over what a registry tag holds, under what a fetch walks).
Pushed with the real ``git`` to a bare origin, they reach a clone three ways: ``gitml
fetch`` by path and over ``git daemon`` refuse each by name, before inflating it; a plain
``git clone`` takes them, and then every gitml command that meets them (fetch, push, the
registry's commands, the CI check, export, gc) stays bounded and names the tag it skips in
one line. The victim's memory is its own VmHWM, read as it exits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import gitml
import gitml.ops
from tests.conftest import ROOT, git
from tests.registry.test_registry import _run
from tests.store.test_remote import git_daemon

BOMB = 96 << 20  # the big tag's message: over a fetch's 64 MiB walk limit
LARGE = 2 << 20  # the other's: under it, over the registry's 1 MiB
MAX_RSS = 160 << 20  # the victim's whole process (about 35 MB): under two bombs' worth
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

# the gitml command, its peak memory written to stderr as it exits (VmHWM: the process's own,
# not ru_maxrss, which Linux carries over exec from a big parent)
CLI = """
import atexit, sys
def peak():
    with open("/proc/self/status") as f:
        print("VmHWM", next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024, file=sys.stderr)
atexit.register(peak)
sys.argv = ["gitml", *sys.argv[1:]]
from gitml.cli.main import main
main()
"""


def _tag(repo, name: str, target: str, size: int) -> str:
    """An annotated tag ``name`` of ``target`` whose message is ``size`` bytes, written by
    git from a stream: its object id (the ref is made too)."""
    writer = subprocess.Popen(
        ["git", "hash-object", "-t", "tag", "-w", "--stdin"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert writer.stdin is not None
    writer.stdin.write(b"object %s\ntype commit\ntag %s\n" % (target.encode(), name.encode()))
    writer.stdin.write(b"tagger Mallory <m@example.com> 1800000000 +0000\n\n")
    for _ in range(size >> 20):
        writer.stdin.write(b"x" * (1 << 20))
    sha = writer.communicate()[0].decode().strip()
    git(repo, "update-ref", f"refs/tags/{name}", sha)
    return sha


def gitml_peak(cwd, *args: str, code: int | None = 0) -> tuple[str, int]:
    """``(stdout and stderr, peak bytes)`` of ``gitml ARGS`` in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    if code is not None:
        assert done.returncode == code, (args, done.stdout[-1000:], done.stderr[-2000:])
    lines = done.stderr.splitlines()
    peak = int(lines[-1].split()[1])
    return "\n".join([*done.stdout.splitlines(), *lines[:-1]]), peak


@pytest.fixture
def bombed(tmp_path, repo, monkeypatch):
    """churn v1 in production, pushed to a bare origin; then a teammate's push of two tag
    bombs to it: ``churn#production#2`` (96 MiB) and ``churn#staging#3`` (2 MiB)."""
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    with gitml.ops.Operations(repo) as c:
        c.registry.register("churn", _run(c, 1))
        c.registry.assign("churn", "1", "production")
    base = tmp_path / "served"
    base.mkdir()
    origin = base / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    gitml_peak(repo, "push")
    target = git(repo, "rev-parse", "refs/tags/churn@v1.0.0^{commit}").strip()
    shas = {"churn#production#2": _tag(repo, "churn#production#2", target, BOMB)}
    shas["churn#staging#3"] = _tag(repo, "churn#staging#3", target, LARGE)
    git(repo, "push", "-q", "origin", *[f"refs/tags/{name}" for name in shas])
    return {"origin": origin, "base": base, "shas": shas, "maintainer": repo}


def test_a_tag_bomb_is_refused_by_name_at_fetch_and_skipped_by_every_reader(tmp_path, bombed):
    origin, shas = bombed["origin"], bombed["shas"]
    with git_daemon(bombed["base"]) as port:
        url = f"git://127.0.0.1:{port}/origin.git"
        for name, source in (("by-path", str(origin)), ("by-daemon", url)):
            clone = tmp_path / name
            git(tmp_path, "init", "-q", str(clone))
            said, peak = gitml_peak(clone, "fetch", source, code=1)  # a ref refused: exit 1, the rest taken
            assert peak < MAX_RSS, (name, peak)
            for tag, sha in shas.items():
                line = next(line for line in said.splitlines() if f"refs/tags/{tag}" in line)
                assert "refused" in line and sha in line and "over the limit" in line, (name, said)
            assert git(clone, "tag", "-l").split() == ["churn#production#1", "churn@v1.0.0"], name

        # a plain git clone takes the tags as they are; the maintainer then logs one more run
        victim = tmp_path / "victim"
        git(tmp_path, "clone", "-q", str(origin), str(victim))
        assert set(shas) <= set(git(victim, "tag", "-l").split())
        gitml.set_tracking_uri(str(bombed["maintainer"]))
        with gitml.start_run():
            gitml.log_param("later", 1)
        gitml.flush()
        gitml_peak(bombed["maintainer"], "push")
        commands = [
            ("fetch", url),  # the clone's own tags are among the heads a fetch meets
            ("registry", "list"),
            ("registry", "show", "churn"),
            ("registry", "verify"),
            ("registry", "check", "--no-load"),
            ("models", "export", "models:/churn@production", str(tmp_path / "exported")),
            ("gc", "--purge"),
        ]
        for args in commands:
            said, peak = gitml_peak(victim, *args, code=None)
            assert peak < MAX_RSS, (args, peak, said[-2000:])
            assert "Traceback" not in said and "unexpected error" not in said, (args, said[-2000:])
            for line in said.splitlines():
                if "churn#production#2" in line:  # named in one line, never read
                    assert "churn#staging#3" not in line, (args, said)
            if args[0] == "registry" and args[1] in ("list", "show", "verify"):  # the readers of every tag
                assert "churn#production#2" in said and "churn#staging#3" in said, (args, said)
        with gitml.ops.Operations(victim) as c:
            assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
        gitml.set_tracking_uri(str(victim))
        with gitml.start_run():  # and the victim's own push, whose remote advertises the bombs
            gitml.log_param("mine", 1)
        gitml.flush()
        said, peak = gitml_peak(victim, "push", url)
        assert peak < MAX_RSS, ("push", peak, said[-2000:])

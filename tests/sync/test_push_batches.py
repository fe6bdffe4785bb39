"""``gitml push`` against hosts that cap the refs one push may update (GitHub's push policy,
GitLab's ``max_refs_per_push``): a real ``git daemon`` and ``git http-backend`` behind an HTTP
server on loopback, each running a pre-receive hook that refuses a push over its limit. The push
goes in batches (``push.batch_refs``), halves a batch the host refuses, stops with one clear line
when the host refuses everything, and a later push sends only what did not arrive."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gitml.cli.main import cli
from tests.conftest import git
from tests.store.test_http_backend import http_backend
from tests.store.test_remote import for_each_ref, git_daemon, make_runs

pytestmark = pytest.mark.timeout(120)

HOOK = """#!/bin/sh
# a host's cap on refs per push, and a switch that freezes every push (as a host in maintenance)
n=$(wc -l)
if [ -f "{base}/frozen" ]; then
  echo "pushes to this repository are frozen for maintenance" >&2
  echo "refused $n" >> "{base}/pushes.log"
  exit 1
fi
if [ "$n" -gt {limit} ]; then
  echo "this push updates $n refs; the host takes at most {limit} per push" >&2
  echo "refused $n" >> "{base}/pushes.log"
  exit 1
fi
echo "accepted $n" >> "{base}/pushes.log"
if [ -f "{base}/freeze-after" ] &&
   [ "$(grep -c accepted "{base}/pushes.log")" -ge "$(cat "{base}/freeze-after")" ]; then
  touch "{base}/frozen"
fi
"""


def _host(repo: Path, tmp_path: Path, limit: int) -> tuple[Path, Path]:
    base = tmp_path / "served"
    base.mkdir()
    bare = base / "team.git"
    git(base, "init", "-q", "--bare", bare.name)
    git(bare, "config", "http.receivepack", "true")
    git(repo, "push", "-q", str(bare), "main")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(HOOK.format(base=base, limit=limit))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return base, bare


@contextlib.contextmanager
def _served(kind: str, base: Path, name: str):
    if kind == "git":
        with git_daemon(base) as port:
            yield f"git://127.0.0.1:{port}/{name}"
    else:
        with http_backend(base) as (root, _handler):
            yield f"{root}/{name}"


def _log(base: Path) -> list[tuple[str, int]]:
    path = base / "pushes.log"
    if not path.exists():
        return []
    return [(kind, int(n)) for kind, n in (line.split() for line in path.read_text().splitlines())]


def _push(repo: Path, url: str):
    return CliRunner().invoke(cli, ["-C", str(repo), "push", url])


@pytest.mark.parametrize("kind", ["git", "http"])
def test_a_push_over_the_hosts_limit_is_halved_until_the_host_takes_it(repo, tmp_path, kind):
    make_runs(12)
    local = for_each_ref(repo)
    assert len(local) == 13  # 12 runs and their experiment
    base, bare = _host(repo, tmp_path, limit=5)
    with _served(kind, base, bare.name) as url:
        result = _push(repo, url)
        assert result.exit_code == 0, result.output
        assert "13 ref(s) pushed" in result.output
        assert for_each_ref(bare) == local
        log = _log(base)
        assert log[:2] == [("refused", 13), ("refused", 6)]  # 1000 a push by default: halved twice
        assert [n for kind_, n in log[2:] if kind_ == "accepted"] == [3, 3, 3, 3, 1] and len(log) == 7
        assert _push(repo, url).exit_code == 0  # up to date: nothing sent
        assert len(_log(base)) == 7
    git(bare, "fsck", "--strict")


@pytest.mark.parametrize("kind", ["git", "http"])
def test_push_batch_refs_keeps_every_push_within_the_limit(repo, tmp_path, kind):
    make_runs(9)
    base, bare = _host(repo, tmp_path, limit=4)
    result = CliRunner().invoke(cli, ["-C", str(repo), "config", "push.batch_refs", "4"])
    assert result.exit_code == 0, result.output
    with _served(kind, base, bare.name) as url:
        result = _push(repo, url)
        assert result.exit_code == 0, result.output
    assert _log(base) == [("accepted", 4), ("accepted", 4), ("accepted", 2)]
    assert for_each_ref(bare) == for_each_ref(repo)
    git(bare, "fsck", "--strict")


@pytest.mark.parametrize("kind", ["git", "http"])
def test_a_host_that_refuses_says_so_in_one_line_and_the_next_push_resumes(repo, tmp_path, kind):
    make_runs(12)
    local = for_each_ref(repo)
    base, bare = _host(repo, tmp_path, limit=5)
    (base / "freeze-after").write_text("2\n")  # the host takes two pushes, then freezes
    CliRunner().invoke(cli, ["-C", str(repo), "config", "push.batch_refs", "3"])
    with _served(kind, base, bare.name) as url:
        result = _push(repo, url)
        assert result.exit_code == 1, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output
        assert "the remote refused the push: pre-receive hook declined" in errors[0]
        assert "pushes to this repository are frozen for maintenance" in errors[0]
        assert "6 ref(s) went in pushes of up to 3 refs before it, 7 did not" in errors[0]
        there = for_each_ref(bare)
        assert len(there) == 6 and all(local[ref] == sha for ref, sha in there.items())
        # two batches of one ref were tried and refused, then it stopped: not one try per ref
        assert _log(base) == [("accepted", 3), ("accepted", 3), ("refused", 3), ("refused", 1), ("refused", 1)]
        os.remove(base / "frozen")
        os.remove(base / "freeze-after")
        result = _push(repo, url)
        assert result.exit_code == 0, result.output
        assert "7 ref(s) pushed, 6 already there" in result.output
    assert sum(n for kind_, n in _log(base)[5:] if kind_ == "accepted") == 7  # only what had not arrived
    assert for_each_ref(bare) == local
    git(bare, "fsck", "--strict")


def test_push_batch_refs_is_checked_when_set(repo):
    for bad in ("0", "1000001", "many", "2.5"):
        result = CliRunner().invoke(cli, ["-C", str(repo), "config", "push.batch_refs", bad])
        assert result.exit_code == 1 and "push.batch_refs must be a whole number of refs" in result.output, (
            result.output
        )

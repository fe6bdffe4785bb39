"""A push of a few runs costs in proportion to those runs, not to the remote's size.

The remote's pack is searched in its index by id, with no table built per object
when it is opened; the remote's refs are read by name; and a few new refs are
written as loose files, leaving a large packed-refs as it is. Measured by what is
looked up and written, not by time: the same ten runs pushed to a remote of 200
runs and to one of 12,000 look up the remote's pack the same number of times.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from gitml.store import entries as entries_module
from gitml.store import transfer as transfer_module
from gitml.store.git import open_store
from gitml.store.remote import push_refs
from tests.conftest import git
from tests.store import test_transfer as packed_cases
from tests.store.test_remote import for_each_ref, make_runs

pytestmark = pytest.mark.timeout(120)


def remote_with_runs(project, path, count: int) -> None:
    """A bare clone of ``project`` that also holds ``count`` runs of another clone
    (a commit of one file each), in one pack, their refs packed."""
    git(path.parent, "clone", "-q", "--bare", str(project), str(path))
    lines = []
    for i in range(count):
        content = f"another clone's run {i}\n"
        lines += [
            f"commit refs/gitml/runs/0/{i:032x}",
            f"committer a <a@b> {1700000000 + i} +0000",
            "data 0",
            f"M 100644 inline r\ndata {len(content)}\n{content}",
        ]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input="\n".join(lines) + "\n", text=True, check=True)
    git(path, "repack", "-a", "-d", "-q")
    git(path, "pack-refs", "--all")


def test_ten_runs_to_a_big_remote_cost_what_they_cost_to_a_small_one(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(entries_module, "BIG_PACK", 100)  # the remotes' packs: searched in their index
    make_runs(10)
    small, big = tmp_path / "small.git", tmp_path / "big.git"
    remote_with_runs(repo, small, 200)
    remote_with_runs(repo, big, 12_000)  # packed-refs over LOOSE_WHEN_PACKED
    assert os.path.getsize(big / "packed-refs") >= transfer_module.LOOSE_WHEN_PACKED
    lookups: list[str] = []
    remotes = (str(small), str(big))

    def counted(name: str, original):
        def method(self, *args):
            if self.base.startswith(remotes):  # the remotes' packs (this clone's are searched in their index too)
                lookups.append(name)
            return original(self, *args)

        return method

    for name in ("_position", "_build_heads", "_build_stops"):
        monkeypatch.setattr(
            entries_module._IndexedPack, name, counted(name, getattr(entries_module._IndexedPack, name))
        )
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
    reachable = [
        line.split()[0] for line in git(repo, "rev-list", "--objects", *[r.decode() for r in refs]).splitlines()
    ]

    def push(remote) -> tuple[list[str], list[bytes]]:
        lacking = git(remote, "cat-file", "--batch-check", input_text="\n".join(reachable) + "\n").count(" missing")
        lookups.clear()
        said: list[bytes] = []
        with open_store(repo) as store:
            assert set(push_refs(store, str(remote), refs, progress=said.append).values()) == {"ok"}
        git(remote, "fsck", "--strict")
        assert {r: s for r, s in for_each_ref(remote).items() if r in refs} == refs
        assert said == [f"copied {lacking} objects\n".encode()]  # what the remote lacked, and only that
        return list(lookups), said

    packed = (big / "packed-refs").read_bytes()
    inode = os.stat(big / "packed-refs").st_ino
    in_small, said_small = push(small)
    in_big, said_big = push(big)
    assert said_small == said_big
    assert "_build_heads" not in in_big and "_build_stops" not in in_big  # no table of the remote's 36,000 objects
    assert len(in_big) == len(in_small) < 40 * len(refs)  # lookups of the ten runs' objects only
    # the ten new refs are loose files; the 12,000 lines of packed-refs are not rewritten
    assert (big / "packed-refs").read_bytes() == packed and os.stat(big / "packed-refs").st_ino == inode
    loose = [os.path.join(d, f) for d, _, files in os.walk(big / "refs" / "gitml") for f in files]
    assert len(loose) == len(refs)


# -- a few refs created as loose files refuse what the packed-refs write refuses --


bare = packed_cases.bare  # the fixture: a bare repository holding two commits


@pytest.fixture
def loose(monkeypatch):
    """create_refs takes its loose-file path whatever the sizes."""
    monkeypatch.setattr(transfer_module, "LOOSE_WHEN_PACKED", 0)
    monkeypatch.setattr(transfer_module, "LOOSE_AT_MOST", 1000)


def test_loose_creation_refuses_existing_locked_and_clashing_refs(bare, loose):
    packed_cases.test_existing_locked_and_clashing_refs_are_not_created(bare)
    assert (bare[0] / "refs" / "gitml" / "new").is_file()  # the loose path was taken


def test_loose_creators_racing_with_git_never_both_win(bare, loose):
    # (dulwich's writer does not wait for a ref's lock: it is for the packed-refs path)
    packed_cases.test_racing_creators_never_both_win(bare, "git")

"""A ref's compare-and-swap against what git leaves: a packed ref where a folder would be, and
ref folders ``git pack-refs`` removed (made again only when missing). Judged by git."""

from __future__ import annotations

import os

import pytest

from gitml.errors import RepositoryError
from gitml.store.git import open_store
from tests.conftest import git

RUN = "0123456789abcdef0123456789abcdef"


def test_a_packed_ref_where_a_folder_would_be_is_refused_by_name(repo):
    head = git(repo, "rev-parse", "HEAD").strip().encode()
    git(repo, "update-ref", "refs/gitml/runs/5", head.decode())
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git/refs/gitml/runs/5").exists()
    with open_store(repo) as store:
        with pytest.raises(RepositoryError, match="refs/gitml/runs/5 is a ref"):
            store.cas(f"refs/gitml/runs/5/{RUN}".encode(), None, head)
        assert store.cas(f"refs/gitml/runs/6/{RUN}".encode(), None, head)  # its neighbour is fine
    assert git(repo, "rev-parse", f"refs/gitml/runs/6/{RUN}").strip() == head.decode()


def test_ref_folders_git_removed_are_made_again(repo):
    head = git(repo, "rev-parse", "HEAD").strip()
    with open_store(repo) as store:
        first = f"refs/gitml/runs/7/{RUN}".encode()
        assert store.cas(first, None, head.encode())
        git(repo, "pack-refs", "--all", "--prune")  # packs the ref and removes its empty folders
        assert not (repo / ".git/refs/gitml/runs/7").exists()
        second = f"refs/gitml/runs/7/{RUN[::-1]}".encode()
        assert store.cas(second, None, head.encode())
        assert not store.cas(first, None, head.encode())  # packed now: it exists, the swap from None fails
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs/7/").split() == sorted(
        [first.decode(), second.decode()]
    )
    git(repo, "fsck", "--strict")


def test_after_exit_began_a_pinned_lock_owner_keeps_one_file_for_many_locks(repo, monkeypatch):
    """A tracker's close takes many locks at exit (its last commits, packing the run refs): the
    owner file is kept for all of them while pinned (it was dropped after each lock and made
    again for the next, a third of the exit), and dropped once unpinned with no lock held."""
    from gitml.store import locks

    commondir = str(repo / ".git")
    head = git(repo, "rev-parse", "HEAD").strip().encode()
    monkeypatch.setattr(locks, "_exiting", True)  # as the interpreter's exit handler sets it
    owner = locks.owner(commondir)

    def take(name: str) -> str:
        with locks.LockFile(str(repo / ".git/refs/heads" / name), commondir) as f:
            f.write(head + b"\n")
            return owner.path

    unpinned = take("a")
    assert not os.path.exists(unpinned)  # not pinned: dropped as soon as no lock is held
    owner.pin()
    paths = {take(f"b{i}") for i in range(5)}
    assert len(paths) == 1 and os.path.exists(next(iter(paths)))
    owner.unpin()
    assert not os.path.exists(next(iter(paths))) and not os.path.exists(next(iter(paths)) + locks.WITNESSES)
    assert sorted(git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/").split())[:6] == [
        "refs/heads/a",
        *[f"refs/heads/b{i}" for i in range(5)],
    ]

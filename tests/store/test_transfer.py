"""Creating many refs in one packed-refs write, against real repositories and
concurrent writers of loose refs (dulwich's and the real git's)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from dulwich.file import GitFile
from dulwich.repo import Repo

from gitml.store.transfer import create_refs
from tests.conftest import ROOT, git


@pytest.fixture
def bare(tmp_path):
    """A bare repository holding two commits, A and B (as hex bytes)."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "f").write_text("a\n")
    git(work, "add", "f")
    git(work, "commit", "-qm", "a")
    (work / "f").write_text("b\n")
    git(work, "commit", "-qam", "b")
    a, b = git(work, "rev-parse", "HEAD~1", "HEAD").split()
    path = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(path))
    return path, a.encode(), b.encode()


def refs_of(path) -> dict[bytes, bytes]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/gitml")
    return {name.encode(): sha.encode() for name, sha in (line.split() for line in out.splitlines())}


def test_creates_new_refs_that_git_reads(bare):
    path, a, b = bare
    refs = {f"refs/gitml/runs/1/{i:032x}".encode(): (a if i % 2 else b) for i in range(300)}
    with Repo(str(path)) as repo:
        assert create_refs(repo, refs) == {ref: True for ref in refs}
    assert refs_of(path) == refs
    git(path, "fsck", "--strict")
    assert git(path, "rev-parse", "refs/heads/main").strip()  # refs packed before are kept


def test_existing_locked_and_clashing_refs_are_not_created(bare):
    path, a, b = bare
    git(path, "update-ref", "refs/gitml/loose", b.decode())
    git(path, "update-ref", "refs/gitml/packed", b.decode())
    git(path, "pack-refs", "--all")
    git(path, "update-ref", "refs/gitml/dir/child", b.decode())
    with Repo(str(path)) as repo:
        held = GitFile(repo.refs.refpath(b"refs/gitml/locked"), "wb")
        try:
            done = create_refs(
                repo,
                {
                    b"refs/gitml/loose": a,  # exists, loose
                    b"refs/gitml/packed": a,  # exists, packed
                    b"refs/gitml/locked": a,  # another writer holds its lock
                    b"refs/gitml/loose/under": a,  # its parent is a ref
                    b"refs/gitml/packed/under": a,
                    b"refs/gitml/dir": a,  # a folder of refs
                    b"refs/gitml/new/x": a,
                    b"refs/gitml/new": a,  # clashes with the one just created
                },
            )
        finally:
            held.abort()
    assert done == {
        b"refs/gitml/loose": False,
        b"refs/gitml/packed": False,
        b"refs/gitml/locked": False,
        b"refs/gitml/loose/under": False,
        b"refs/gitml/packed/under": False,
        b"refs/gitml/dir": False,
        b"refs/gitml/new": True,  # sorted first, so it wins; new/x then clashes
        b"refs/gitml/new/x": False,
    }
    assert refs_of(path) == {
        b"refs/gitml/dir/child": b,
        b"refs/gitml/loose": b,
        b"refs/gitml/new": a,
        b"refs/gitml/packed": b,
    }
    git(path, "fsck", "--strict")


@pytest.mark.parametrize("writer", ["dulwich", "git"])
def test_racing_creators_never_both_win(bare, writer):
    """Another writer creates the same refs meanwhile: for every ref exactly one
    side reports the creation, and the ref holds that side's value."""
    path, a, b = bare
    names = [f"refs/gitml/runs/1/{i:032x}".encode() for i in range(400)]
    theirs: dict[bytes, bool] = {}

    def dulwich_writer():
        with Repo(str(path)) as repo:
            for name in reversed(names):
                theirs[name] = repo.refs.add_if_new(name, b)

    def git_writer():
        # one ref per transaction; "create" fails when the ref exists (packed or
        # loose), and git then stops: the refs it made are those holding B
        lines = "".join(f"start\ncreate {n.decode()} {b.decode()}\ncommit\n" for n in reversed(names))
        subprocess.run(["git", "update-ref", "--stdin"], cwd=path, input=lines, capture_output=True, text=True)

    thread = threading.Thread(target=dulwich_writer if writer == "dulwich" else git_writer)
    thread.start()
    with Repo(str(path)) as repo:
        ours = create_refs(repo, {n: a for n in names})
    thread.join()
    final = refs_of(path)
    assert set(final) == set(names)
    for name in names:
        if ours[name]:
            assert final[name] == a, name
            assert not theirs.get(name), name
        else:
            assert final[name] == b, name
            if writer == "dulwich":
                assert theirs[name], name
    git(path, "fsck", "--strict")


def test_a_held_packed_refs_lock_is_waited_for_then_named(bare, monkeypatch):
    import time

    import gitml.store.refs as refs_module
    from gitml.errors import RepositoryError

    path, a, _ = bare
    lock = path / "packed-refs.lock"
    lock.write_text("")  # another writer at work

    def release():
        time.sleep(0.3)
        lock.unlink()

    thread = threading.Thread(target=release)
    thread.start()
    with Repo(str(path)) as repo:
        assert create_refs(repo, {b"refs/gitml/a": a}) == {b"refs/gitml/a": True}
    thread.join()
    lock.write_text("")  # a writer killed while it held the lock
    monkeypatch.setattr(refs_module, "PACKED_REFS_TIMEOUT", 0.2)
    with (
        Repo(str(path)) as repo,
        pytest.raises(RepositoryError, match=r"packed-refs.lock has existed .* remove that file"),
    ):
        create_refs(repo, {b"refs/gitml/b": a})
    assert refs_of(path) == {b"refs/gitml/a": a}


def test_concurrent_local_pushes_both_land(repo, tmp_path):
    """Two processes push different runs to one bare repository at the same time."""
    from tests.conftest import run_python

    remote = tmp_path / "shared.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    clones = []
    for name in ("a", "b"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(repo), str(clone))
        run_python(
            "import gitml\nfor i in range(150):\n    with gitml.start_run():\n        gitml.log_param('i', i)",
            cwd=clone,
        )
        clones.append(clone)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gitml.cli.main", "push", str(remote)],
            cwd=clone,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for clone in clones
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len([r for r in refs_of(remote) if r.startswith(b"refs/gitml/runs/")]) == 300
    git(remote, "fsck", "--strict")


@pytest.mark.parametrize("direction", ["fetch", "push"])
def test_a_damaged_pack_is_never_copied_to_a_local_remote(repo, tmp_path, direction):
    """One flipped byte in a pack: the copy between local repositories refuses it,
    names the object, and leaves no ref behind (git fetch / push refuse it too)."""
    import gitml
    from gitml.errors import RepositoryError
    from gitml.store.git import open_store
    from gitml.store.remote import fetch_refs, push_refs

    gitml.set_experiment("damage")
    for i in range(20):
        with gitml.start_run():
            gitml.log_text(f"{i} " * 2000, "notes.txt")
    gitml.flush()
    source = tmp_path / "source.git"
    git(tmp_path, "init", "-q", "--bare", str(source))
    git(repo, "push", "-q", str(source), "refs/gitml/*:refs/gitml/*", "HEAD:refs/heads/main")
    git(source, "repack", "-adq")  # one pack holding everything
    (pack,) = (source / "objects" / "pack").glob("*.pack")
    # a blob stored whole (not as a delta), copied as stored: flip a byte inside it
    listing = git(source, "verify-pack", "-v", str(pack.with_suffix(".idx"))).splitlines()
    whole = [line.split() for line in listing if " blob " in line and len(line.split()) == 5]
    _sha, _type, _size, stored, offset = max(whole, key=lambda fields: int(fields[3]))
    data = bytearray(pack.read_bytes())
    data[int(offset) + int(stored) // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    target = tmp_path / "target.git"
    git(tmp_path, "init", "-q", "--bare", str(target))
    if direction == "fetch":
        with open_store(target) as store, pytest.raises(RepositoryError, match="damaged"):
            fetch_refs(store, str(source))
    else:
        with open_store(source) as store, pytest.raises(RepositoryError, match="damaged"):
            push_refs(store, str(target), store.refs_under("refs/gitml/"))
    assert refs_of(target) == {}
    assert list((target / "objects" / "pack").glob("*.pack")) == []


def test_ref_listing_sees_an_update_made_right_after_it(bare):
    """The listing cache trusts a folder's time only once that time is safely in the
    past: an update a moment after a listing is seen by the next one."""
    import time

    from gitml.store.refs import RefLister

    path, a, b = bare
    with Repo(str(path)) as repo:
        for i in range(50):
            repo.refs[f"refs/gitml/runs/1/{i:032x}".encode()] = a
        time.sleep(0.2)  # the folder's time is now trusted
        lister = RefLister(str(path))
        ref = f"refs/gitml/runs/1/{7:032x}".encode()
        for value in (b, a, b, a):
            assert lister.under("refs/gitml/")[ref] != value
            repo.refs.set_if_equals(ref, None, value)  # right after the listing
            assert lister.under("refs/gitml/")[ref] == value

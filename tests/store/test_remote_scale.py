"""Push and fetch as they run at 100,000 runs, on small repositories made to take that path.

Past ``DICT_OBJECTS`` objects every pack is searched in its index (:class:`_IndexedPack`):
a walk marks each object by its position there (:class:`Marks`), the copy reads the
chosen entries in pack order, a block at a time (:class:`Picked`), and a big pack's
entry ends are sorted by numpy. Here those limits are lowered so that a few runs take
that path, and git checks what arrives; the refusals of hostile and damaged data hold on it.
"""

from __future__ import annotations

import os
import subprocess
import zlib

import pytest

from gitml.errors import RepositoryError
from gitml.store import entries as entries_module
from gitml.store.entries import Marks, PackEntries, Picked
from gitml.store.git import open_store
from gitml.store.remote import fetch_refs, push_refs
from tests.conftest import git
from tests.store.test_fetch_verify import NOWHERE, check_refusals, commit_object, hostile_remote
from tests.store.test_remote import for_each_ref, make_runs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def indexed(monkeypatch):
    """Every pack searched in its index, its entry ends sorted by numpy, its heads table built at once."""
    monkeypatch.setattr(entries_module, "DICT_OBJECTS", 0)
    monkeypatch.setattr(entries_module, "BIG_PACK", 0)
    monkeypatch.setattr(entries_module, "_SORT_IN_PYTHON", 0)
    monkeypatch.setattr(entries_module, "_TABLES_AFTER", 0)
    monkeypatch.setattr(entries_module, "_BLOCK", 64)  # entries read across many blocks
    monkeypatch.setattr(entries_module, "_SLICE", 3)


def pack_listing(idx) -> list[tuple[int, str]]:
    """``(offset, id)`` of every entry of a pack, as git's show-index reads its index."""
    out = subprocess.run(["git", "show-index"], input=idx.read_bytes(), capture_output=True, check=True).stdout
    return [(int(line.split()[0]), line.split()[1].decode()) for line in out.splitlines()]


def objects_of(path, refs) -> set[str]:
    out = git(path, "rev-list", "--objects", *[r.decode() for r in refs])
    return {line.split()[0] for line in out.splitlines()}


def test_push_then_fetch_through_indexed_packs_gives_git_every_object_once(repo, tmp_path, indexed):
    make_runs(6)
    git(repo, "repack", "-a", "-d", "-q")  # one pack, as at scale (and loose objects beside it)
    make_runs(2, experiment="later")
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    with open_store(repo) as store:
        assert set(push_refs(store, str(bare), refs).values()) == {"ok"}
    git(bare, "fsck", "--strict")
    assert for_each_ref(bare) == refs
    (pack,) = [name for name in os.listdir(bare / "objects" / "pack") if name.endswith(".idx")]
    ids = [sha for _, sha in pack_listing(bare / "objects" / "pack" / pack)]
    assert len(ids) == len(set(ids)) == len(objects_of(repo, refs))  # what they reach, each once
    clone = tmp_path / "clone"
    git(tmp_path, "init", "-q", str(clone))
    with open_store(clone) as store:
        assert sorted(fetch_refs(store, str(bare)).created) == sorted(refs)
    git(clone, "fsck", "--strict")
    assert objects_of(clone, refs) == objects_of(repo, refs)


def test_hostile_refs_are_refused_and_blamed_alone_through_indexed_packs(repo, tmp_path, indexed):
    base = tmp_path / "served"
    base.mkdir()
    bare, good = hostile_remote(repo, base)
    (bare / "shallow").unlink()
    victim = tmp_path / "victim"
    git(tmp_path, "init", "-q", str(victim))
    with open_store(victim) as store:
        result = fetch_refs(store, str(bare))
    check_refusals(result.refused)
    assert sorted(result.created) == sorted(good)
    git(victim, "fsck", "--strict")


def test_a_run_reaching_a_missing_blob_is_refused_and_its_sibling_taken(repo, tmp_path, indexed):
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    make_runs(2)
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    runs = sorted(r for r in for_each_ref(bare) if r.startswith(b"refs/gitml/runs/"))
    listing = git(bare, "ls-tree", runs[0].decode()) + f"100644 blob {NOWHERE}\tlost.bin\n"
    tree = git(bare, "mktree", "--missing", input_text=listing).strip()
    git(bare, "update-ref", runs[0].decode(), commit_object(bare, tree, for_each_ref(bare)[runs[0]].decode()))
    victim = tmp_path / "victim"
    git(tmp_path, "init", "-q", str(victim))
    with open_store(victim) as store:
        result = fetch_refs(store, str(bare))
    assert (
        set(result.refused) == {runs[0]}
        and f"object {NOWHERE}, which it reaches, is missing" in result.refused[runs[0]]
    )
    assert runs[1] in result.created
    git(victim, "fsck", "--strict")


def test_a_damaged_entry_of_a_big_pack_stops_the_push_and_names_its_object(repo, tmp_path, indexed):
    make_runs(3)
    pack_dir = repo / ".git" / "objects" / "pack"
    for keep in [name for name in os.listdir(pack_dir) if name.endswith(".keep")]:
        os.unlink(pack_dir / keep)  # gitml's packs kept while their refs were written: into git's one
    git(repo, "repack", "-a", "-d", "-q", "--depth=0", "--window=0")  # whole entries only
    (pack,) = [pack_dir / name for name in os.listdir(pack_dir) if name.endswith(".pack")]
    listing = pack_listing(pack.with_suffix(".idx"))
    types = git(
        repo,
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        input_text="\n".join(s for _, s in listing) + "\n",
    )
    blobs = {line.split()[0] for line in types.splitlines() if line.endswith(" blob")}
    offset, victim = max((offset, sha) for offset, sha in listing if sha in blobs)  # read first by the copy
    data = bytearray(pack.read_bytes())
    data[offset + 4] ^= 0xFF  # inside the last entry's compressed bytes
    os.chmod(pack, 0o644)
    pack.write_bytes(bytes(data))
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    with open_store(repo) as store, pytest.raises(RepositoryError) as raised:
        push_refs(store, str(bare), store.refs_under("refs/gitml/"))
    assert victim in str(raised.value) and "fail the pack index's CRC" in str(raised.value)
    assert not [name for name in os.listdir(bare / "objects" / "pack") if name.endswith(".pack")]  # nothing written


def test_marks_and_picked_take_each_object_once_wherever_it_lies(repo, indexed):
    make_runs(2)
    git(repo, "repack", "-a", "-d", "-q")
    (blob,) = [git(repo, "rev-parse", "HEAD:train.py").strip().encode()]
    loose = git(repo, "hash-object", "-w", "--stdin", input_text="a loose one\n").strip().encode()
    with open_store(repo) as store, PackEntries(store.repo) as entries:
        at = entries.locate(blob)
        assert at and entries.raw_at(at, blob) == entries.raw(blob)
        assert entries.locate(loose) == 0 and entries.raw_at(0, loose) == (3, b"a loose one\n")
        marks = Marks(entries)
        assert marks.add(at, blob) and not marks.add(at, blob)
        assert marks.add(0, loose) and not marks.add(0, loose)
        picked = Picked(entries)
        for _ in range(2):
            picked.add(at, blob)
            picked.add(0, loose)
        assert len(picked) == 2 and sorted(picked.ids()) == sorted([blob, loose])
        stored = {raw.hex().encode(): (bytes(chunk), crc) for raw, chunk, crc in picked.stored()}
        assert set(stored) == {blob, loose}
        assert all(zlib.crc32(chunk) == crc for chunk, crc in stored.values())


def test_unchanged_refs_reads_a_local_remote_as_git_lists_it(repo, tmp_path):
    """Packed lines, loose refs shadowing them with another value, refs only loose, absent
    refs: what the push need not send is what git's listing of the remote agrees with."""
    from gitml.store.remote import unchanged_refs

    make_runs(4)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    git(bare, "pack-refs", "--all")
    ours = for_each_ref(repo)
    runs = sorted(r for r in ours if r.startswith(b"refs/gitml/runs/"))
    head = git(repo, "rev-parse", "HEAD").strip()
    git(bare, "update-ref", runs[0].decode(), head)  # loose, over its packed line of our value
    git(bare, "update-ref", "-d", runs[1].decode())  # gone
    make_runs(1, experiment="after")
    with open_store(repo) as store:
        ours = store.refs_under("refs/gitml/")
    git(bare, "update-ref", "refs/gitml/runs/9/" + "e" * 32, head)  # only theirs
    theirs = for_each_ref(bare)
    expected = {r for r, s in ours.items() if theirs.get(r) == s}
    assert runs[0] not in expected and runs[1] not in expected and runs[2] in expected
    with open_store(repo) as store:
        assert unchanged_refs(store, str(bare), ours) == unchanged_refs(store, bare.as_uri(), ours) == expected
        assert unchanged_refs(store, str(repo), ours) == set(ours)  # a work tree's repository: all there


def test_a_pack_pushed_or_fetched_whole_is_copied_as_it_is_and_checked(repo, tmp_path, indexed, monkeypatch):
    """Everything to an empty side: a source pack whose every object goes is copied as a
    file, not rewritten entry by entry; a byte changed anywhere in it stops the copy."""
    from gitml.store import transfer as transfer_module

    monkeypatch.setattr(transfer_module, "WHOLE_PACK_BYTES", 0)
    make_runs(3)
    pack_dir = repo / ".git" / "objects" / "pack"
    for keep in [name for name in os.listdir(pack_dir) if name.endswith(".keep")]:
        os.unlink(pack_dir / keep)
    git(repo, "repack", "-a", "-d", "-q")  # git's pack, deltas and all
    make_runs(1, experiment="after")  # and objects elsewhere
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
    (source,) = [
        name for name in os.listdir(pack_dir) if name.endswith(".pack") and os.path.getsize(pack_dir / name) > 2000
    ]
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    with open_store(repo) as store:
        assert set(push_refs(store, str(bare), refs).values()) == {"ok"}
    assert (bare / "objects" / "pack" / source).read_bytes() == (pack_dir / source).read_bytes()
    git(bare, "fsck", "--strict")
    clone = tmp_path / "clone"
    git(tmp_path, "init", "-q", str(clone))
    with open_store(clone) as store:
        assert sorted(fetch_refs(store, str(bare)).created) == sorted(refs)
    assert (clone / ".git" / "objects" / "pack" / source).read_bytes() == (pack_dir / source).read_bytes()
    git(clone, "fsck", "--strict")
    assert objects_of(clone, refs) == objects_of(repo, refs)

    listing = pack_listing((pack_dir / source).with_suffix(".idx"))
    types = git(
        repo,
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        input_text="\n".join(s for _, s in listing) + "\n",
    )
    blobs = {line.split()[0] for line in types.splitlines() if line.endswith(" blob")}
    offset = max(offset for offset, sha in listing if sha in blobs)  # an entry no walk inflates
    data = bytearray((pack_dir / source).read_bytes())
    data[offset + 3] ^= 0x01
    os.chmod(pack_dir / source, 0o644)
    (pack_dir / source).write_bytes(bytes(data))
    other = tmp_path / "other.git"
    git(tmp_path, "init", "-q", "--bare", str(other))
    with open_store(repo) as store, pytest.raises(RepositoryError) as raised:
        push_refs(store, str(other), refs)
    assert "its checksum does not match" in str(raised.value)
    assert not [name for name in os.listdir(other / "objects" / "pack") if name.endswith(".pack")]
    assert not for_each_ref(other)


def test_unchanged_refs_of_two_identical_packed_refs_looks_only_at_the_loose_ones(repo, tmp_path):
    """Both sides packed alike (a remote pushed to before): the refs loose on either side
    since are the ones compared, and the answer is git's listing's."""
    from gitml.store.remote import unchanged_refs

    make_runs(5)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "pack-refs", "--all")
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    git(bare, "pack-refs", "--all")
    runs = sorted(r for r in for_each_ref(repo) if r.startswith(b"refs/gitml/runs/"))
    from gitml.store.refspans import same_lines

    assert same_lines((repo / ".git" / "packed-refs").read_bytes(), (bare / "packed-refs").read_bytes(), b"refs/gitml/")
    head = git(repo, "rev-parse", "HEAD").strip()
    git(bare, "update-ref", runs[0].decode(), head)  # loose there, another value
    git(repo, "update-ref", runs[1].decode(), head)  # loose here, another value
    git(repo, "update-ref", runs[2].decode(), head)  # loose on both sides, the same value
    git(bare, "update-ref", runs[2].decode(), head)
    make_runs(1, experiment="after")  # new here: loose, absent there
    with open_store(repo) as store:
        ours = store.refs_under("refs/gitml/")
    theirs = for_each_ref(bare)
    expected = {r for r, s in ours.items() if theirs.get(r) == s}
    assert runs[0] not in expected and runs[1] not in expected and runs[2] in expected and runs[3] in expected
    with open_store(repo) as store:
        assert unchanged_refs(store, str(bare), ours) == expected


def test_one_table_of_many_packs_locates_each_object_where_the_search_in_turn_does(
    repo, tmp_path, indexed, monkeypatch
):
    """A sweep leaves dozens of packs: past ``_MERGE_AFTER`` lookups their ids are searched
    in one table. It must give each object the entry the search of each pack in turn gives
    (the first pack holding it, so a walk marks an object held twice once), and a push
    through it gives git every object once."""
    make_runs(4)
    git(repo, "repack", "-a", "-q")  # no -d: every object so far in two packs
    make_runs(3, experiment="later")  # and gitml's own packs beside
    objects = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").split()
    with open_store(repo) as store:
        with PackEntries(store.repo) as entries:
            assert len(entries._big) > 2
        monkeypatch.setattr(entries_module, "_MERGE_AFTER", 10**9)
        with PackEntries(store.repo) as in_turn:
            expected = {sha: in_turn.locate(sha.encode()) for sha in objects}
        monkeypatch.setattr(entries_module, "_MERGE_AFTER", 0)
        with PackEntries(store.repo) as merged:
            assert {sha: merged.locate(sha.encode()) for sha in objects} == expected
            assert merged._merged is not None
            assert merged.locate(b"0" * 40) == 0
        refs = store.refs_under("refs/gitml/")
        bare = tmp_path / "remote.git"
        git(tmp_path, "init", "-q", "--bare", str(bare))
        assert set(push_refs(store, str(bare), refs).values()) == {"ok"}
    git(bare, "fsck", "--strict")
    assert for_each_ref(bare) == refs
    ids = [sha for idx in (bare / "objects" / "pack").glob("*.idx") for _, sha in pack_listing(idx)]
    assert len(ids) == len(set(ids)) == len(objects_of(repo, refs))

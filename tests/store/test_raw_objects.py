"""Objects made without dulwich (a run commit's blobs and trees, hashed once) and the
small objects a pack stores uncompressed: the same ids as dulwich's, read back by git."""

from __future__ import annotations

import hashlib
import random
import zlib

from dulwich.objects import Blob

from gitml.store import packs
from gitml.store.git import FILE_MODE, TREE_MODE, make_tree, open_store, raw_tree
from tests.conftest import git

NAMES = [b"a", b"a.b", b"a-b", b"a0", b"ab", b"b", b"metrics", b"metrics.yaml", b"m@1.tsv", b"run", b".gitml"]
MODES = [TREE_MODE, FILE_MODE, 0o100755, 0o120000]


def test_raw_tree_is_dulwich_tree_for_random_entries():
    """Git sorts a folder as ``name/``: ``a`` (folder) after ``a.b`` and ``a-b``, a file ``a`` before them."""
    rng = random.Random(28)
    for _ in range(500):
        entries = {}
        for i in range(rng.randint(0, 12)):
            name = rng.choice([*NAMES, b"x" * rng.randint(1, 5)])
            entries[name] = (rng.choice(MODES), hashlib.sha1(name + bytes([i])).hexdigest().encode())
        made, expected = raw_tree(entries), make_tree(entries)
        assert (made.id, made.as_raw_string()) == (expected.id, expected.as_raw_string()), entries


def test_raw_blob_ids_are_dulwich_ids():
    for data in (b"", b"x", b"step\ttimestamp\tvalue\n0\t1\t0.5\n", bytes(range(256)) * 40):
        assert packs.RawObject(3, data).id == Blob.from_string(data).id


def test_small_objects_are_stored_and_git_reads_every_object(repo):
    """Objects under STORE_BELOW_BYTES go in with zlib level 0; git verifies the pack and reads them all."""
    store = open_store(repo)
    small = packs.RawObject(3, b"p: 1\n")
    large = packs.RawObject(3, b"metric: 0.5\n" * 100)
    tree = raw_tree({b"small.yaml": (FILE_MODE, small.id), b"large.yaml": (FILE_MODE, large.id)})
    store.write([small, large, tree])
    (pack,) = (repo / ".git" / "objects" / "pack").glob("pack-*.pack")
    data = pack.read_bytes()
    stored = b"\x78\x01" + b"\x01"  # zlib header of level 0, then a final stored block
    assert stored + b"\x05\x00\xfa\xff" + b"p: 1\n" in data
    assert zlib.compress(large.as_raw_string(), 1) in data  # compressed as before
    git(repo, "verify-pack", str(pack.with_suffix(".idx")))
    assert git(repo, "cat-file", "-p", small.id.decode()) == "p: 1\n"
    assert git(repo, "cat-file", "-p", large.id.decode()) == "metric: 0.5\n" * 100
    listing = git(repo, "ls-tree", tree.id.decode())
    assert f"{small.id.decode()}\tsmall.yaml" in listing and f"{large.id.decode()}\tlarge.yaml" in listing


def test_run_commits_are_dulwich_commits_and_pass_git_fsck(repo):
    """``make_commit`` writes what dulwich's ``Commit`` serializes for the same fields."""
    from dulwich.objects import Commit

    from gitml.runlog.writer import make_commit

    store = open_store(repo)
    blob = packs.RawObject(3, b"meta\n")
    tree = raw_tree({b"meta.yaml": (FILE_MODE, blob.id)})
    store.write([blob, tree])
    head = git(repo, "rev-parse", "HEAD").strip().encode()
    made = []
    for parents, message in (([], "gitml: run a RUNNING\n\nGitml-Run: a\n"), ([head], "é\n"), ([head, head], "two\n")):
        commit = make_commit(store, tree.id, parents, message)
        parsed = Commit.from_raw_string(1, commit.as_raw_string())
        expected = Commit()
        expected.tree, expected.parents, expected.message = tree.id, parents, message.encode()
        expected.author = expected.committer = store.identity().as_bytes()
        expected.author_time = expected.commit_time = parsed.author_time
        expected.author_timezone = expected.commit_timezone = 0
        expected.encoding = b"UTF-8"
        assert (commit.id, commit.as_raw_string()) == (expected.id, expected.as_raw_string())
        made.append(commit)
    store.write(made)
    git(repo, "update-ref", "refs/heads/raw", made[-1].id.decode())
    git(repo, "fsck", "--strict")
    assert git(repo, "log", "-1", "--format=%s", "refs/heads/raw") == "two\n"


def test_a_stored_zlib_stream_is_zlibs_own_level_0():
    """Small objects are stored without calling zlib (which lets go of the GIL on each call): the
    same bytes as ``zlib.compress(data, 0)``, for every size a small object has and beyond."""
    rng = random.Random(0)
    for size in [*range(0, 300), 1000, 4096]:
        data = bytes(rng.getrandbits(8) for _ in range(size))
        assert packs.stored_zlib(data) == zlib.compress(data, 0), size
        assert zlib.decompress(packs.stored_zlib(data)) == data

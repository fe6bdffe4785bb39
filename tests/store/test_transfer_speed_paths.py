"""The paths that keep push and fetch fast, and bounded on hostile input.

A local fetch reads each pack index once: the source's entries serve both the
check of what arrives and the copy, the clone is asked only for ids. Objects
read from what a remote sent are inflated no further than their header's size
(a few kilobytes of zlib can inflate to gigabytes), and a delta whose result
would be larger than gitml resolves is refused before it is applied.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import pytest
from dulwich.repo import Repo

from gitml.errors import PackError
from gitml.store import entries as entries_module
from gitml.store.entries import PackEntries
from gitml.store.git import open_store
from gitml.store.packs import _entry_header, _write_entries, object_id
from gitml.store.remote import fetch_refs
from gitml.store.unpack import MAX_RESOLVED_BYTES, store_received_pack
from tests.conftest import git
from tests.store.test_remote import for_each_ref, make_runs

pytestmark = pytest.mark.timeout(60)

BOMB_BYTES = 64 << 20  # what the hostile stream inflates to
BOUND = 8 << 20  # what reading it may allocate at most


def bomb_stream() -> bytes:
    """About 64 KB of zlib that inflates to 64 MiB of zeros."""
    return zlib.compress(bytes(BOMB_BYTES), 9)


def peak_while(call) -> tuple[BaseException | None, int]:
    """``(what call raised, peak bytes Python allocated meanwhile)``."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as e:  # noqa: BLE001 - the test looks at what was raised
        raised = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return raised, peak


def received_pack(tmp_path, entries: list[bytes]) -> str:
    """A pack file of these encoded entries, with a valid checksum."""
    import hashlib

    data = b"PACK" + struct.pack(">II", 2, len(entries)) + b"".join(entries)
    path = tmp_path / "received.pack"
    path.write_bytes(data + hashlib.sha1(data).digest())
    return str(path)


@pytest.fixture
def target(tmp_path):
    git(tmp_path, "init", "-q", "--bare", "target.git")
    with Repo(str(tmp_path / "target.git")) as repo:
        yield repo


def test_a_received_object_that_inflates_beyond_its_header_is_refused_in_bounded_memory(tmp_path, target):
    path = received_pack(tmp_path, [_entry_header(3, 10) + bomb_stream()])
    pack_dir = os.path.join(target.object_store.path, "pack")
    raised, peak = peak_while(lambda: store_received_pack(pack_dir, path, lambda sha: None))
    assert isinstance(raised, PackError) and "more than the 10 bytes its header says" in str(raised)
    assert peak < BOUND
    assert not [name for name in os.listdir(pack_dir) if name.endswith(".pack")]  # nothing stored


def test_a_large_received_blob_is_hashed_as_it_inflates_not_held_whole(tmp_path, target):
    content = bytes(BOMB_BYTES)  # honest this time: its header gives its size
    path = received_pack(tmp_path, [_entry_header(3, len(content)) + zlib.compress(content, 9)])
    del content
    pack_dir = os.path.join(target.object_store.path, "pack")
    raised, peak = peak_while(lambda: store_received_pack(pack_dir, path, lambda sha: None))
    assert raised is None and peak < BOUND
    sizes = git(tmp_path / "target.git", "cat-file", "--batch-all-objects", "--batch-check")
    assert sizes.split()[1:] == ["blob", str(BOMB_BYTES)]


def test_a_delta_to_more_than_gitml_resolves_is_refused_before_it_is_applied(tmp_path, target):
    base = b"x" * 1000

    def varint(n):
        return bytes(
            [(n >> 7 * i & 0x7F) | (0x80 if n >> 7 * (i + 1) else 0) for i in range((n.bit_length() + 6) // 7 or 1)]
        )

    copy_all = bytes([0x80 | 0x10 | 0x20, 1000 & 0xFF, 1000 >> 8])  # copy the 1000 bytes of the base
    instructions = varint(len(base)) + varint(MAX_RESOLVED_BYTES + 1000) + copy_all * 64
    first = _entry_header(3, len(base)) + zlib.compress(base)
    offset = 12 + len(first)
    delta = _entry_header(6, len(instructions)) + bytes([offset - 12]) + zlib.compress(instructions)
    path = received_pack(tmp_path, [first, delta])
    raised, _ = peak_while(
        lambda: store_received_pack(os.path.join(target.object_store.path, "pack"), path, lambda s: None)
    )
    assert isinstance(raised, PackError) and "more than gitml resolves" in str(raised)


def test_a_stored_entry_that_inflates_beyond_its_header_is_damaged_not_read_whole(tmp_path, target):
    sha = bytes(range(20))
    chunk = _entry_header(2, 10) + bomb_stream()
    _write_entries(os.path.join(target.object_store.path, "pack"), [(sha, chunk, zlib.crc32(chunk))], 1)
    with PackEntries(target) as entries:
        raised, peak = peak_while(lambda: entries.raw(sha.hex().encode()))
    assert "damaged" in str(raised) and "10 bytes its header gives" in str(raised)
    assert peak < BOUND


def test_a_loose_object_that_inflates_beyond_its_header_is_damaged_not_read_whole(tmp_path, target):
    hexsha = "ab" * 20
    folder = os.path.join(target.object_store.path, hexsha[:2])
    os.makedirs(folder)
    with open(os.path.join(folder, hexsha[2:]), "wb") as f:
        f.write(zlib.compress(b"blob 10\0" + bytes(BOMB_BYTES), 9))
    with PackEntries(target) as entries:
        assert entries.has(hexsha.encode())
        raised, peak = peak_while(lambda: entries.raw(hexsha.encode()))
        assert "damaged" in str(raised) and peak < BOUND
        raised, peak = peak_while(lambda: entries.entry(hexsha.encode()))
        assert "damaged" in str(raised) and peak < BOUND


def test_a_loose_object_is_read_whole_when_its_header_is_true(target):
    hexsha = git(target.path, "hash-object", "-w", "--stdin", input_text="hello\n").strip().encode()
    with PackEntries(target) as entries:
        assert entries.raw(hexsha) == (3, b"hello\n")
        assert entries.entry(hexsha)[0] == bytes.fromhex(hexsha.decode())


def test_a_local_fetch_reads_each_pack_index_once_and_the_clone_for_ids_only(repo, tmp_path, monkeypatch):
    make_runs(3)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    git(tmp_path, "init", "-q", "clone")
    git(tmp_path / "clone", "commit", "-q", "--allow-empty", "-m", "the clone's own history")
    git(tmp_path / "clone", "gc", "-q")  # a pack in the clone too
    loads: list[tuple[str, bool]] = []
    load = PackEntries._load

    def counted(self, idx_path):
        loads.append((os.path.realpath(idx_path), self.ids_only))
        return load(self, idx_path)

    monkeypatch.setattr(entries_module.PackEntries, "_load", counted)
    with open_store(tmp_path / "clone") as store:
        result = fetch_refs(store, str(bare))
    assert len(result.created) == 4 and not result.refused
    assert len(loads) == len(set(loads)) and len({path for path, _ in loads}) == len(loads)  # each index once
    clone_packs = os.path.realpath(tmp_path / "clone" / ".git" / "objects" / "pack")
    assert all(ids_only for path, ids_only in loads if path.startswith(clone_packs))
    git(tmp_path / "clone", "fsck", "--strict")
    assert for_each_ref(tmp_path / "clone") == for_each_ref(bare)
    loads.clear()
    with open_store(tmp_path / "clone") as store:
        again = fetch_refs(store, str(bare))
    assert len(again.unchanged) == 4 and loads == []  # nothing new: no pack read at all


def test_a_hostile_commit_already_here_is_refused_again(repo, tmp_path):
    """A refused ref's objects may have been copied; the next fetch still refuses it."""
    make_runs(1)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "main", "refs/gitml/*:refs/gitml/*")
    tree = git(bare, "rev-parse", "main^{tree}").strip()
    text = f"tree {tree}\nparent {'1234567890' * 4}\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nhostile\n"
    orphan = git(bare, "hash-object", "-t", "commit", "-w", "--literally", "--stdin", input_text=text).strip()
    ref = b"refs/gitml/runs/123/0123456789abcdef0123456789abcdef"
    git(bare, "update-ref", ref.decode(), orphan)
    git(tmp_path, "init", "-q", "clone")
    for _ in range(2):
        with open_store(tmp_path / "clone") as store:
            result = fetch_refs(store, str(bare))
        assert "incomplete" in result.refused[ref] and ref not in for_each_ref(tmp_path / "clone")
    assert len(for_each_ref(tmp_path / "clone")) == 2  # the good run and its experiment


def test_the_index_writer_keeps_offsets_past_2_gib_in_the_large_offset_table(tmp_path):
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import load_pack_index_file

    from gitml.store.packs import _index_v2

    rows = sorted(
        bytes([k]) * 20 + struct.pack(">QL", offset, 7) for k, offset in ((1, 12), (2, 3 << 30), (3, 5 << 32))
    )
    path = tmp_path / "x.idx"
    path.write_bytes(_index_v2(rows, b"\0" * 20))
    with open(path, "rb") as f:
        index = load_pack_index_file(str(path), f, DEFAULT_OBJECT_FORMAT)
        assert [index.object_offset(bytes([k]) * 20) for k in (1, 2, 3)] == [12, 3 << 30, 5 << 32]


def _mapped_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RssFile of /proc/self/status")
@pytest.mark.parametrize("bound", ["BIG_PACK", "none"])
def test_entries_read_from_a_pack_are_not_counted_in_the_processs_memory(tmp_path, target, monkeypatch, bound):
    """Entries are read from the pack file, not through a map: a mapped page read stays
    counted in the process's memory, and the kernel maps 64 KiB around each (a walk of a
    100,000-run repository's trees had mapped its whole 240 MB pack). Reading every entry
    of a 24 MB pack, in a big pack's index or a small pack's dict, maps next to nothing."""
    if bound == "BIG_PACK":
        monkeypatch.setattr(entries_module, "BIG_PACK", 0)
    blobs = [os.urandom(100_000) + bytes([i]) for i in range(240)]  # incompressible
    rows = []
    for content in blobs:
        chunk = _entry_header(3, len(content)) + zlib.compress(content, 1)
        rows.append((object_id(3, content), chunk, zlib.crc32(chunk)))
    _write_entries(os.path.join(target.object_store.path, "pack"), iter(rows), len(rows))
    with PackEntries(target) as entries:
        before = _mapped_file_kib()
        for (raw_id, chunk, _crc), content in zip(rows, blobs, strict=False):
            assert entries.entry(raw_id.hex().encode())[1] == chunk
            assert entries.raw(raw_id.hex().encode()) == (3, content)
        assert _mapped_file_kib() - before < 4096  # KiB: not the 24 MB read

"""Delta bombs in a pack a teammate left in a bare repository (as ``git receive-pack``
keeps a pushed pack: ``git index-pack --stdin``, then the refs moved), fetched by path,
the fetch that copies stored entries and reads no pack sent over the wire:

- a run's new tree stored as a delta of a 256 MiB "tree" of zeros (250 KB stored, a
  delta's base has its kind, and nothing reaches it): its own size is a few hundred bytes,
  but resolving it inflates the base whole;
- a run's new blob stored as a delta to 520 MiB (copies of an 8 MiB base), over what
  gitml resolves (``MAX_RESOLVED_BYTES``, as for a pack received over the wire).

Each ref is refused by name before anything is inflated past the limits, the other run
arrives, and the victim's memory (its own VmHWM) stays far under one bomb."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

import gitml
from gitml.store.packs import _entry_header
from gitml.store.unpack import MAX_RESOLVED_BYTES
from tests.conftest import ROOT, git
from tests.store.test_remote import for_each_ref, make_runs

BASE = 256 << 20  # the tree's delta base
PIECE = 8 << 20  # the blob's delta base, copied ...
COPIES = MAX_RESOLVED_BYTES // PIECE + 1  # ... this many times: past what gitml resolves
MAX_RSS = 160 << 20  # the victim's whole process (about 40 MB)
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _varint(n: int) -> bytes:
    """A delta header's size (little-endian base-128)."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _ofs(distance: int) -> bytes:
    """An OFS_DELTA's distance back to its base, as git encodes it."""
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


def _inserts(data: bytes) -> bytes:
    """Delta instructions that insert ``data`` (127 bytes at most each)."""
    return b"".join(bytes([len(data[i : i + 127])]) + data[i : i + 127] for i in range(0, len(data), 127))


def _copy(size: int) -> bytes:
    """A delta instruction copying ``size`` bytes (under 16 MiB) from the base's start."""
    size_bytes = [(size >> 8 * i) & 0xFF for i in range(3)]
    flags = 0x80 | sum(0x10 << i for i, b in enumerate(size_bytes) if b)
    return bytes([flags, *[b for b in size_bytes if b]])


def _id(kind: bytes, content: bytes) -> bytes:
    return hashlib.sha1(kind + b" %d\0" % len(content) + content).digest()


def _zeros_id(size: int) -> bytes:
    digest = hashlib.sha1(b"blob %d\0" % size)
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(block)
    return digest.digest()


def _tree(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A tree's content from ``(mode, name, raw id)``, in git's order."""
    entries = sorted(entries, key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
    return b"".join(mode + b" " + name + b"\0" + sha for mode, name, sha in entries)


def _tree_entries(repo, tree: str) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for line in git(repo, "ls-tree", tree).splitlines():
        meta, name = line.split("\t", 1)
        mode, _kind, sha = meta.split()
        out.append((mode.lstrip("0").encode(), name.encode(), bytes.fromhex(sha)))
    return out


def _commit(tree: bytes, parent: str, run_id: str) -> bytes:
    who = b"Mallory <m@example.com> 1800000000 +0000"
    return b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\nlater\n\nGitml-Run: %s\n" % (
        tree.hex().encode(),
        parent.encode(),
        who,
        who,
        run_id.encode(),
    )


@pytest.fixture
def bombed(tmp_path, repo, monkeypatch):
    """Three runs pushed to a bare origin; then a pack left there (``git index-pack
    --stdin``) moving the first run to a commit whose tree is a delta of a 256 MiB one,
    and the second to one holding a blob that is a delta to 520 MiB."""
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    ids = make_runs(3)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "push", "-q", str(origin), "refs/gitml/*:refs/gitml/*")
    refs = {ref.decode().rsplit("/", 1)[1]: ref.decode() for ref in for_each_ref(origin, "refs/gitml/runs")}
    tips = {run: git(origin, "rev-parse", refs[run]).strip() for run in ids}

    entries: list[bytes] = []
    offsets: list[int] = []

    def add(chunk: bytes) -> int:
        offsets.append(12 + sum(map(len, entries)))
        entries.append(chunk)
        return offsets[-1]

    def whole(kind: int, name: bytes, content: bytes) -> bytes:
        add(_entry_header(kind, len(content)) + zlib.compress(content, 9))
        return _id(name, content)

    def delta(base_at: int, instructions: bytes) -> None:
        at = 12 + sum(map(len, entries))
        add(_entry_header(6, len(instructions)) + _ofs(at - base_at) + zlib.compress(instructions, 9))

    # the first run: its tree (the old one and a note) stored as a delta of 256 MiB of zeros
    note = whole(3, b"blob", b"a note\n")
    tree_a = _tree([*_tree_entries(origin, tips[ids[0]] + "^{tree}"), (b"100644", b"note.txt", note)])
    base_at = add(_entry_header(2, BASE) + zlib.compress(bytes(BASE), 9))  # a tree: a delta's kind is its base's
    delta(base_at, _varint(BASE) + _varint(len(tree_a)) + _inserts(tree_a))
    commit_a = whole(1, b"commit", _commit(_id(b"tree", tree_a), tips[ids[0]], ids[0]))
    # the second run: a blob that is a delta to COPIES x 8 MiB
    piece_at = add(_entry_header(3, PIECE) + zlib.compress(bytes(PIECE), 9))
    delta(piece_at, _varint(PIECE) + _varint(COPIES * PIECE) + _copy(PIECE) * COPIES)
    big = _zeros_id(COPIES * PIECE)
    tree_b = _tree([*_tree_entries(origin, tips[ids[1]] + "^{tree}"), (b"100644", b"big.bin", big)])
    commit_b = whole(1, b"commit", _commit(whole(2, b"tree", tree_b), tips[ids[1]], ids[1]))

    data = b"PACK" + struct.pack(">II", 2, len(entries)) + b"".join(entries)
    subprocess.run(
        ["git", "index-pack", "--stdin"],
        cwd=origin,
        input=data + hashlib.sha1(data).digest(),
        check=True,
        capture_output=True,
    )
    for run, commit in ((ids[0], commit_a), (ids[1], commit_b)):
        git(origin, "update-ref", refs[run], commit.hex(), tips[run])
    assert git(origin, "cat-file", "-s", f"{refs[ids[1]]}:big.bin").strip() == str(COPIES * PIECE)  # git reads it
    return {"ids": ids, "origin": origin, "refs": refs}


VICTIM = """
import json, sys
import gitml.ops
from gitml import sync
from gitml.errors import RepositoryError
from gitml.store import entries
if sys.argv[2] == "indexed":
    entries.DICT_OBJECTS = 0  # as in a source of over 400,000 objects: every pack searched in its index
out = {"refused": {}, "error": ""}
with gitml.ops.Operations(".") as c:
    try:
        result = sync.fetch(c, sys.argv[1]).result
        out["refused"] = {ref.decode(): why for ref, why in result.refused.items()}
    except RepositoryError as e:
        out["error"] = str(e)
    out["listed"] = sorted(r.info.run_id for r in c.search_runs([e.experiment_id for e in c.search_experiments()]))
out["rss"] = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(json.dumps(out))
"""


def test_delta_bombs_in_a_local_bare_repository_are_refused_by_name_without_inflating(tmp_path, bombed):
    ids, refs = bombed["ids"], bombed["refs"]
    for mode in ("dict", "indexed"):
        clone = tmp_path / mode
        git(tmp_path, "init", "-q", str(clone))
        done = subprocess.run(
            [sys.executable, "-c", VICTIM, str(bombed["origin"]), mode],
            cwd=clone,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["rss"] < MAX_RSS, (mode, out)
        if mode == "dict":  # each ref reaching a bomb refused by name, the other run taken
            assert sorted(out["refused"]) == sorted([refs[ids[0]], refs[ids[1]]]), out
            assert all("over the limit" in why and "\n" not in why for why in out["refused"].values()), out
            assert out["listed"] == [ids[2]]
        else:  # the tree's ref refused by name; the blob, not looked at per ref there, stops the copy, named
            big = git(bombed["origin"], "rev-parse", f"{refs[ids[1]]}:big.bin").strip()
            assert big in out["error"] and "over the limit" in out["error"] and "\n" not in out["error"], out
            assert out["listed"] == []
        fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=clone, capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stderr

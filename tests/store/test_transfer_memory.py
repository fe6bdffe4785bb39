"""The memory of a push or fetch of many objects: a pack index written from compact
columns, and pack pages let go as they are read."""

from __future__ import annotations

import os
import shutil
import zlib

import pytest

from gitml.store import packs
from gitml.store.packs import _entry_header, _write_entries, object_id
from tests.conftest import git

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("sort_in_python", [10**9, 10])
def test_the_index_of_a_written_pack_is_the_one_git_writes(tmp_path, monkeypatch, sort_in_python):
    """Past ``_SORT_IN_PYTHON`` entries the index is sorted by numpy as columns; either
    way it is byte for byte the index `git index-pack` makes of the same pack."""
    monkeypatch.setattr(packs, "_SORT_IN_PYTHON", sort_in_python)
    git(tmp_path, "init", "-q", "--bare", "r.git")
    entries = []
    for i in range(3000):
        content = f"blob {i}\n".encode() * (i % 7 + 1)
        chunk = _entry_header(3, len(content)) + zlib.compress(content, 1)
        entries.append((object_id(3, content), chunk, zlib.crc32(chunk)))
    base = _write_entries(str(tmp_path / "r.git" / "objects" / "pack"), iter(entries), len(entries))
    assert base is not None
    ours = open(base + ".idx", "rb").read()
    shutil.copy(base + ".pack", tmp_path / "copy.pack")
    git(tmp_path, "index-pack", "-o", str(tmp_path / "theirs.idx"), str(tmp_path / "copy.pack"))
    assert ours == (tmp_path / "theirs.idx").read_bytes()
    git(tmp_path / "r.git", "verify-pack", base + ".idx")
    assert os.path.getsize(base + ".idx") == 8 + 1024 + 28 * 3000 + 40

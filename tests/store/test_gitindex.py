"""git's index read as columns, against ``git ls-files -s`` for entries git's own
writers make: long paths, extended flags in version 3 and 4, and damaged files."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from gitml.errors import IndexFormatError
from gitml.store.gitindex import GitIndex, read_index
from tests.conftest import git, run_python


def ls_files(repo) -> list[tuple[int, str, int, str]]:
    out = []
    for line in git(repo, "ls-files", "-s").splitlines():
        info, path = line.split("\t", 1)
        mode, sha, stage = info.split()
        out.append((int(mode, 8), sha, int(stage), path))
    return out


def entries(index: GitIndex) -> list[tuple[int, str, int, str]]:
    return [
        (m, s.hex(), (f >> 12) & 3, p.decode())
        for p, m, s, f in zip(index.paths, index.modes, index.shas, index.flags, strict=False)
    ]


@pytest.mark.parametrize("version", ["2", "3", "4"])
def test_long_paths_and_extended_flags_read_as_git_lists_them(repo, version):
    blob = git(repo, "hash-object", "-w", "train.py").strip()
    long_path = "/".join(["d" * 200] * 21)[:4095]  # 0xFFF: the length is found by its NUL
    longer = long_path[:4000] + "/" + "x" * 200
    for path in (long_path, longer):
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    if version != "2":
        git(repo, "update-index", "--skip-worktree", "README.md")  # an extended flag
    git(repo, "update-index", "--index-version", version)
    index = read_index(str(repo / ".git/index"))
    assert index is not None and index.version == int(version)
    assert entries(index) == ls_files(repo)
    assert {len(p) for p in index.paths} >= {4095, 4201}
    skip = index.flags[index.paths.index(b"README.md")] >> 16 & 0x4000
    assert skip == (0 if version == "2" else 0x4000)


def test_an_index_claiming_more_entries_than_it_holds_is_refused(repo):
    path = repo / ".git/index"
    data = path.read_bytes()[:-20]
    signature, version, count = struct.unpack_from(">4sII", data)
    body = struct.pack(">4sII", signature, version, count + 1) + data[12:]
    path.write_bytes(body + hashlib.sha1(body).digest())  # a valid checksum over a lie
    with pytest.raises(IndexFormatError, match="malformed"):
        read_index(str(path))


def _fresh_process() -> None:
    """Forget what this process parsed, as a new process starts."""
    from gitml.store import gitindex

    gitindex._cache.clear()


def test_columns_file_spares_the_next_process_the_parse(repo, tmp_path, monkeypatch):
    from gitml.store import gitindex

    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    parsed = read_index(index_path, columns=columns)
    _fresh_process()

    def no_parse(data, path):
        raise AssertionError("parsed again")

    monkeypatch.setattr(gitindex, "parse_index", no_parse)
    loaded = read_index(index_path, columns=columns)
    assert loaded is not None and parsed is not None and loaded is not parsed
    assert entries(loaded) == entries(parsed) == ls_files(repo)
    assert loaded.cached_trees == parsed.cached_trees and loaded.mtimes == parsed.mtimes
    assert list(loaded.sizes) == list(parsed.sizes) and loaded.version == parsed.version


def test_columns_of_an_older_index_or_damaged_are_not_used(repo, tmp_path):
    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    read_index(index_path, columns=columns)
    (repo / "new.py").write_text("new\n")
    git(repo, "add", "new.py")  # git renames a new index over the old one
    _fresh_process()
    index = read_index(index_path, columns=columns)
    assert index is not None and entries(index) == ls_files(repo) and b"new.py" in index.paths
    with open(columns, "r+b") as f:  # one flipped byte in a blob id
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x01
        f.seek(0)
        f.write(data)
    _fresh_process()
    index = read_index(index_path, columns=columns)
    assert index is not None and entries(index) == ls_files(repo)
    _fresh_process()
    with open(columns, "wb") as f:
        f.write(b"gitml-columns-1\n")  # short
    assert entries(read_index(index_path, columns=columns)) == ls_files(repo)


def test_a_killed_writers_columns_temporary_is_removed_on_the_next_save(repo, tmp_path):
    import subprocess
    import sys

    from gitml.store import gitindex

    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    killed = tmp_path / f"columns.{dead_pid}.1.tmp"
    old = tmp_path / f"columns.{os.getppid()}.2.tmp"  # a live pid, but an hour old: a recycled pid
    writing = tmp_path / f"columns.{os.getppid()}.3.tmp"  # a live writer, now
    other = tmp_path / f"other.{dead_pid}.1.tmp"  # another work tree's: not ours to judge
    mine = tmp_path / "columns.notes.tmp"
    for path in (killed, old, writing, other, mine):
        path.write_bytes(b"half")
    os.utime(old, (1, 1))
    read_index(index_path, columns=columns)
    gitindex.flush_columns()
    assert os.path.exists(columns)
    assert not killed.exists() and not old.exists()
    assert writing.exists() and other.exists() and mine.exists()


def test_columns_of_an_index_about_to_be_replaced_are_not_written(repo, tmp_path):
    from gitml.store import gitindex

    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    assert entries(read_index(index_path, columns=columns, keep=False)) == ls_files(repo)
    assert not os.path.exists(columns)  # gitml checkout writes the new index's instead
    _fresh_process()
    read_index(index_path, columns=columns)
    gitindex.flush_columns()
    assert os.path.exists(columns)


def test_the_columns_are_saved_off_the_readers_path(repo, tmp_path, monkeypatch):
    """read_index returns the parsed index while its columns file is still being
    written (the snapshot's lstat of every entry runs meanwhile)."""
    import threading

    from gitml.store import gitindex

    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    release = threading.Event()
    save = gitindex._save_columns

    def held(path, index):
        release.wait(5)
        save(path, index)

    monkeypatch.setattr(gitindex, "_save_columns", held)
    try:
        index = read_index(index_path, columns=columns)
        assert index is not None and entries(index) == ls_files(repo)
        assert not os.path.exists(columns)  # the writer is still held
    finally:
        release.set()
    gitindex.flush_columns()
    _fresh_process()
    loaded = gitindex._load_columns(columns, index.checksum)
    assert loaded is not None and entries(loaded) == entries(index)


def test_a_process_that_exits_at_once_still_leaves_its_columns(repo, tmp_path):
    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    run_python(
        f"""
import threading
from gitml.store import gitindex
save = gitindex._save_columns
def at_exit(path, index):  # written only once the main thread is done: the exit must wait for it
    threading.main_thread().join()
    save(path, index)
gitindex._save_columns = at_exit
gitindex.read_index({index_path!r}, columns={columns!r})
""",
        cwd=repo,
    )
    parsed = read_index(index_path)
    _fresh_process()
    from gitml.store import gitindex

    loaded = gitindex._load_columns(columns, parsed.checksum)
    assert loaded is not None and entries(loaded) == entries(parsed) == ls_files(repo)


def test_a_stale_columns_file_is_refused_by_its_header_unread(repo, tmp_path, monkeypatch):
    """After git rewrote the index, the columns file of the old one is not read and
    hashed whole (17 MB at 200,000 entries) to be thrown away."""
    from gitml.store import gitindex

    index_path, columns = str(repo / ".git/index"), str(tmp_path / "columns")
    read_index(index_path, columns=columns)
    gitindex.flush_columns()
    (repo / "new.py").write_text("new\n")
    git(repo, "add", "new.py")
    _fresh_process()
    stale = os.path.getsize(columns)
    hashed: list[int] = []
    sha1 = hashlib.sha1
    monkeypatch.setattr(gitindex.hashlib, "sha1", lambda data=b"": hashed.append(len(data)) or sha1(data))
    index = read_index(index_path, columns=columns, keep=False)
    assert index is not None and entries(index) == ls_files(repo)
    assert hashed == [os.path.getsize(index_path) - 20]  # the index's own trailer, nothing else
    assert os.path.getsize(columns) == stale

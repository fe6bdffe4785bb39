"""Storing received packs: packs made by the real git (deltas, thin packs), and
damaged ones refused without storing anything."""

from __future__ import annotations

import os
import subprocess

import pytest
from dulwich.repo import Repo

from gitml.errors import PackError
from gitml.store.unpack import store_received_pack
from tests.conftest import git


def make_history(path, versions: int = 3):
    """A repository whose file changes a little in each commit (good delta material)."""
    path.mkdir()
    git(path, "init", "-q")
    lines = [f"line {i} of a file that compresses into deltas\n" for i in range(400)]
    shas = []
    for v in range(versions):
        lines[v * 7] = f"changed in version {v}\n"
        (path / "data.txt").write_text("".join(lines))
        (path / f"v{v}.txt").write_text(f"{v}\n")
        git(path, "add", ".")
        git(path, "commit", "-qm", f"v{v}")
        shas.append(git(path, "rev-parse", "HEAD").strip())
    git(path, "gc", "-q", "--aggressive")  # deltas between the versions
    return shas


def pack_of(source, revs: list[str], *, thin: bool = False) -> bytes:
    args = ["git", "pack-objects", "--stdout", "--revs", "--delta-base-offset"] + (["--thin"] if thin else [])
    result = subprocess.run(args, cwd=source, input=("\n".join(revs) + "\n").encode(), capture_output=True, check=True)
    return result.stdout


def receive(tmp_path, target: Repo, data: bytes) -> int:
    path = tmp_path / "received.pack"
    path.write_bytes(data)

    def local_raw(sha: bytes):
        try:
            return target.object_store.get_raw(sha)
        except KeyError:
            return None

    return store_received_pack(os.path.join(target.object_store.path, "pack"), str(path), local_raw)


def test_pack_with_deltas_is_stored_whole_and_git_reads_it(tmp_path):
    shas = make_history(tmp_path / "source")
    data = pack_of(tmp_path / "source", [shas[-1]])
    assert b"PACK" == data[:4]
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    with Repo(str(target)) as repo:
        count = receive(tmp_path, repo, data)
    assert count == int.from_bytes(data[8:12], "big")
    git(target, "update-ref", "refs/heads/main", shas[-1])
    git(target, "fsck", "--strict", "--full")
    assert git(target, "show", f"{shas[-1]}:data.txt") == git(tmp_path / "source", "show", f"{shas[-1]}:data.txt")
    assert len(git(target, "rev-list", "--objects", "main").splitlines()) == count


def test_thin_pack_takes_its_bases_from_the_repository(tmp_path):
    shas = make_history(tmp_path / "source", versions=4)
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    with Repo(str(target)) as repo:
        receive(tmp_path, repo, pack_of(tmp_path / "source", [shas[1]]))
    git(target, "update-ref", "refs/heads/main", shas[1])
    thin = pack_of(tmp_path / "source", [shas[3], f"^{shas[1]}"], thin=True)
    verify = subprocess.run(["git", "index-pack", "--stdin"], cwd=target, input=thin, capture_output=True)
    assert verify.returncode != 0 and b"unresolved deltas" in verify.stderr  # git needs --fix-thin: it is thin
    with Repo(str(target)) as repo:  # opened after the first pack arrived
        receive(tmp_path, repo, thin)
    git(target, "update-ref", "refs/heads/main", shas[3])
    git(target, "fsck", "--strict", "--full")
    assert git(target, "show", f"{shas[3]}:data.txt").startswith("changed in version 0")


def test_thin_pack_without_its_bases_is_refused(tmp_path):
    shas = make_history(tmp_path / "source", versions=4)
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    thin = pack_of(tmp_path / "source", [shas[3], f"^{shas[1]}"], thin=True)
    with Repo(str(target)) as repo, pytest.raises(PackError, match="neither the pack nor the repository holds"):
        receive(tmp_path, repo, thin)
    assert os.listdir(target / "objects" / "pack") == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:-40] + bytes(20) + d[-20:], "checksum"),
        (lambda d: d[: len(d) // 2], "checksum"),
        (lambda d: b"NOPE" + d[4:], "not a git pack"),
        (lambda d: b"", None),  # nothing received: nothing stored
    ],
    ids=["flipped", "truncated", "not-a-pack", "empty"],
)
def test_damaged_packs_are_refused_and_nothing_is_stored(tmp_path, damage, message):
    shas = make_history(tmp_path / "source", versions=2)
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    data = damage(pack_of(tmp_path / "source", [shas[-1]]))
    with Repo(str(target)) as repo:
        if message is None:
            assert receive(tmp_path, repo, data) == 0
        else:
            with pytest.raises(PackError, match=message):
                receive(tmp_path, repo, data)
    assert os.listdir(target / "objects" / "pack") == []


def test_forged_object_inside_a_well_checksummed_pack_is_refused(tmp_path):
    """A pack whose trailer matches but whose entry header lies about the size."""
    import hashlib
    import zlib

    content = b"hello\n"
    entry = bytes([(3 << 4) | 9]) + zlib.compress(content)  # a blob claiming 9 bytes, holding 6
    body = b"PACK" + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + entry
    data = body + hashlib.sha1(body).digest()
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    with Repo(str(target)) as repo, pytest.raises(PackError, match="header says 9"):
        receive(tmp_path, repo, data)


def test_deltas_whose_bases_come_later_in_the_pack(tmp_path):
    """Y (a delta of Z, by id), X (a delta of Y, by offset), Z (a delta of W, by id), W:
    an order git's index-pack accepts; every id is worked out, whatever the order."""
    import hashlib
    import zlib

    from dulwich._pack import create_delta

    from gitml.store.packs import _entry_header, object_id

    w = b"".join(b"line %d of the base\n" % i for i in range(200))
    z, y, x = w + b"z\n", w + b"z\ny\n", w + b"z\ny\nx\n"
    ids = {name: object_id(3, data) for name, data in (("w", w), ("z", z), ("y", y), ("x", x))}

    def delta(base: bytes, target: bytes) -> bytes:
        return bytes(create_delta(base, target))

    def ofs(distance: int) -> bytes:
        out = [distance & 0x7F]
        distance >>= 7
        while distance:
            distance -= 1
            out.append(0x80 | (distance & 0x7F))
            distance >>= 7
        return bytes(reversed(out))

    body = bytearray()
    y_at = 12 + len(body)
    d = delta(z, y)
    body += _entry_header(7, len(d)) + ids["z"] + zlib.compress(d)
    x_at = 12 + len(body)
    d = delta(y, x)
    body += _entry_header(6, len(d)) + ofs(x_at - y_at) + zlib.compress(d)
    d = delta(w, z)
    body += _entry_header(7, len(d)) + ids["w"] + zlib.compress(d)
    body += _entry_header(3, len(w)) + zlib.compress(w)
    data = b"PACK" + (2).to_bytes(4, "big") + (4).to_bytes(4, "big") + bytes(body)
    data += hashlib.sha1(data).digest()
    target = tmp_path / "target"
    git(tmp_path, "init", "-q", "--bare", str(target))
    verify = subprocess.run(["git", "index-pack", "--stdin"], cwd=target, input=data, capture_output=True)
    assert verify.returncode == 0, verify.stderr  # git takes this order
    for pack in (target / "objects" / "pack").iterdir():
        pack.unlink()
    with Repo(str(target)) as repo:
        assert receive(tmp_path, repo, data) == 4
    for name, blob in (("w", w), ("z", z), ("y", y), ("x", x)):
        assert git(target, "cat-file", "blob", ids[name].hex()).encode() == blob

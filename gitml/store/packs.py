"""Writing objects into packs, and keeping the number of small packs bounded.

A flush writes its objects as one pack (two files) instead of one loose file
per object. When more than ``MAX_SMALL_PACKS`` small packs accumulate, they are
merged into one, as ``git gc --auto`` would, under a lock file.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib
from collections.abc import Iterable

from dulwich.objects import ShaFile
from dulwich.pack import Pack, write_pack_index_v2

MAX_SMALL_PACKS = 32
SMALL_PACK_BYTES = 8 << 20
_LOCK_STALE_SECONDS = 120


def _entry_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def write_pack(pack_dir: str, objects: Iterable[tuple[bytes, int, bytes]], *, level: int = 1) -> str | None:
    """Write ``(hex sha, type number, raw content)`` objects as a new pack.

    Returns the pack's base path, or None when there was nothing to write. The
    ``.pack`` file lands before its ``.idx``, so no reader (git or dulwich) sees
    an index whose pack is missing.
    """
    seen: set[bytes] = set()
    entries = []
    body = bytearray()
    for hexsha, type_num, raw in objects:
        if hexsha in seen:
            continue
        seen.add(hexsha)
        chunk = _entry_header(type_num, len(raw)) + zlib.compress(raw, level)
        entries.append((bytes.fromhex(hexsha.decode("ascii")), 12 + len(body), zlib.crc32(chunk)))
        body += chunk
    if not entries:
        return None
    header = b"PACK" + struct.pack(">II", 2, len(entries))
    digest = hashlib.sha1(header)
    digest.update(body)
    checksum = digest.digest()
    os.makedirs(pack_dir, exist_ok=True)
    base = os.path.join(pack_dir, f"pack-{checksum.hex()}")
    if os.path.exists(base + ".idx"):
        return base
    tmp = os.path.join(pack_dir, f"tmp_gitml_{os.getpid()}_{checksum.hex()[:12]}")
    with open(tmp + ".pack", "wb") as f:
        f.write(header)
        f.write(body)
        f.write(checksum)
    entries.sort()
    with open(tmp + ".idx", "wb") as f:
        write_pack_index_v2(f, entries, checksum)
    os.replace(tmp + ".pack", base + ".pack")
    os.replace(tmp + ".idx", base + ".idx")
    return base


def _small_packs(pack_dir: str) -> list[str]:
    try:
        names = os.listdir(pack_dir)
    except FileNotFoundError:
        return []
    small = []
    for name in names:
        if name.endswith(".pack") and name[:-5] + ".idx" in names and not os.path.exists(
            os.path.join(pack_dir, name[:-5] + ".keep")
        ):
            path = os.path.join(pack_dir, name)
            try:
                if os.path.getsize(path) < SMALL_PACK_BYTES:
                    small.append(path[:-5])
            except FileNotFoundError:
                continue
    return small


def maybe_merge_small_packs(pack_dir: str, lock_path: str) -> bool:
    """Merge the small packs into one when there are too many. Returns True if merged."""
    small = _small_packs(pack_dir)
    if len(small) <= MAX_SMALL_PACKS:
        return False
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(lock_path) > _LOCK_STALE_SECONDS:
                os.unlink(lock_path)
        except FileNotFoundError:
            pass
        return False
    try:
        os.close(fd)
        small = _small_packs(pack_dir)
        if len(small) <= MAX_SMALL_PACKS:
            return False
        objects = []
        for base in small:
            pack = Pack(base)
            try:
                objects.extend(sha_of(obj) for obj in pack.iterobjects())
            finally:
                pack.close()
        merged = write_pack(pack_dir, objects)
        for base in small:
            if base == merged:
                continue
            for ext in (".idx", ".pack"):
                try:
                    os.unlink(base + ext)
                except FileNotFoundError:
                    pass
        return True
    finally:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass


def sha_of(obj: ShaFile) -> tuple[bytes, int, bytes]:
    """The ``(hex sha, type number, raw content)`` triple of a dulwich object."""
    return obj.id, obj.type_num, obj.as_raw_string()

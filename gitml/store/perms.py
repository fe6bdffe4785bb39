"""File modes as git gives them: the umask, then ``core.sharedRepository``.

git reads ``core.sharedRepository`` from the repository's own config file and
adjusts every file it creates (``adjust_shared_perm`` in git's ``path.c``):

- ``umask`` / ``false`` / ``0``: the umask alone;
- ``group`` / ``true`` / ``1``: add group read (and write, for writable files);
- ``all`` / ``world`` / ``everybody`` / ``2``: as group, and others may read;
- ``0xxx`` (octal): exactly that mode (write bits only for writable files).

Pack and index files are read-only (0444 before the adjustment), as git
writes them; refs, ``packed-refs`` and ``.keep`` files are 0666 before it.
"""

from __future__ import annotations

import os
import threading

from dulwich.config import ConfigFile

from gitml.errors import RepositoryError

_PERM_GROUP = 0o660
_PERM_EVERYBODY = 0o664
_cache: dict[str, tuple[tuple[int, int], int]] = {}
_guard = threading.Lock()
_umask: int | None = None


def parse_shared(value: str) -> int:
    """git's ``git_config_perm``: 0 for the umask, a positive mode to add, a
    negative one (``-mode``) for an exact mode."""
    word = value.strip().lower()
    if word in ("", "umask", "false", "no", "off"):
        return 0
    if word in ("group", "true", "yes", "on"):
        return _PERM_GROUP
    if word in ("all", "world", "everybody"):
        return _PERM_EVERYBODY
    try:
        number = int(word, 8)
    except ValueError:
        raise RepositoryError(f"core.sharedRepository = {value!r} is not a value git knows") from None
    if number in (0, 1, 2):  # git's PERM_UMASK, OLD_PERM_GROUP, OLD_PERM_EVERYBODY
        return (0, _PERM_GROUP, _PERM_EVERYBODY)[number]
    if number & 0o600 != 0o600:
        raise RepositoryError(f"core.sharedRepository = {value}: the owner could not read and write the files")
    return -(number & 0o666)


def shared_setting(commondir: str) -> int:
    """The repository's ``core.sharedRepository`` as :func:`parse_shared` gives it
    (re-read when the config file changes)."""
    path = os.path.join(commondir, "config")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0
    stamp = (st.st_mtime_ns, st.st_size)
    with _guard:
        hit = _cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        raw = ConfigFile.from_path(path).get((b"core",), b"sharedRepository")
        setting = parse_shared(raw.decode("utf-8", "replace"))
    except KeyError:
        setting = 0
    with _guard:
        _cache[path] = (stamp, setting)
    return setting


def umask() -> int:
    """The process's umask (read once; os.umask would change it for other threads)."""
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status") as f:
                _umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError):
            _umask = os.umask(0o022)
            os.umask(_umask)
    return _umask


def shared_file_mode(commondir: str, mode: int) -> int:
    """The mode git gives a file it creates with ``mode`` (0444 for packs, 0666 otherwise)."""
    mode &= ~umask()
    shared = shared_setting(commondir)
    if shared == 0:
        return mode
    tweak = -shared if shared < 0 else shared
    if not mode & 0o200:
        tweak &= ~0o222
    return (mode & ~0o777) | tweak if shared < 0 else mode | tweak

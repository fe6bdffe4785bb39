"""What this clone knows of one artifact remote, kept beside the cache
(``.git/gitml/remotes/<hash of its URL>.*``), so that a push asks the remote only about
what is new: the objects known to be there (``.known``), the run commits whose objects
all are (``.commits``, and a line per packed-refs whose every run commit is), and the
objects found missing or damaged there (``.damaged``: uploaded again, over what is there).

The files are appended to (a torn last line, from a killed process, is no line) or
replaced at once; none is ever needed: without them a push asks the remote again.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet


def _read_ids(path: str, length: int) -> set[str]:
    """The lines of a state file that are ids of this length (a torn last line is not)."""
    try:
        with open(path) as f:
            return {line.strip() for line in f if len(line.strip()) == length}
    except FileNotFoundError:
        return set()


_PACKED_MARK = b"packed-refs:"  # a line of the confirmed commits: every commit of that packed-refs is


class _Lines(AbstractSet[bytes]):
    """The lines of a state file that are ``length`` long, as a set: questions are first
    answered by searching the file's bytes from the end, where the recent lines a push
    asks about are (10 new runs among 100,000: a few searches, not a set of 100,000
    made); once the searches have read as much as making the set costs, by that set."""

    SEARCHED_BEFORE_SET = 32  # the file's size read this many times costs what making the set costs

    def __init__(self, data: bytes, length: int):
        self._data = b"\n" + data  # every whole line is then "\n<line>\n" (a torn last one is not)
        self._length = length
        self._budget = self.SEARCHED_BEFORE_SET * len(self._data)
        self._set: frozenset[bytes] | None = None

    def _lines(self) -> frozenset[bytes]:
        if self._set is None:
            self._set = frozenset(self._data.split(b"\n")[:-1])  # lines of other lengths are never asked for
        return self._set

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, bytes) or len(line) != self._length:
            return False
        if self._set is None and self._budget > 0:
            at = self._data.rfind(b"\n%s\n" % line)
            self._budget -= len(self._data) - at if at >= 0 else len(self._data)
            return at >= 0
        return line in self._lines()

    def __iter__(self) -> Iterator[bytes]:
        return (line for line in self._lines() if len(line) == self._length)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _append_lines(path: str, lines: Iterable[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write("".join(f"{line}\n" for line in lines))


def _write_lines(path: str, lines: list[str]) -> None:
    """Replace a small state file at once (a reader never sees half of it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


class PushState:
    """The three files of one remote, under the path prefix ``prefix``."""

    def __init__(self, prefix: str):
        self._known_path = prefix + ".known"  # objects known to be on the remote
        self._confirmed_path = prefix + ".commits"  # run commits whose objects all are
        self._damaged_path = prefix + ".damaged"  # objects found missing or damaged there
        self._lock = threading.Lock()

    def known(self) -> set[str]:
        return _read_ids(self._known_path, 64)

    def remember(self, shas: Iterable[str]) -> None:
        with self._lock:
            _append_lines(self._known_path, shas)

    def confirmed_commits(self) -> AbstractSet[bytes]:
        """Run commits whose artifact objects (their own and their ancestors') are all
        known to be on this remote: a push need not look at them again."""
        return _Lines(self._confirmed_data(), 40)

    def confirm_commits(self, commits: Iterable[bytes]) -> None:
        with self._lock:
            _append_lines(self._confirmed_path, (c.decode() for c in commits))

    def all_confirmed(self, packed_refs_digest: bytes) -> bool:
        """Whether every run commit the packed-refs of this sha256 names was confirmed
        (:meth:`confirm_packed_refs`): a push then looks at the loose refs alone."""
        return _PACKED_MARK + packed_refs_digest.hex().encode() in _Lines(
            self._confirmed_data(), len(_PACKED_MARK) + 64
        )

    def confirm_packed_refs(self, packed_refs_digest: bytes) -> None:
        """Mark every run commit of the packed-refs of this sha256 confirmed (each was)."""
        with self._lock:
            _append_lines(self._confirmed_path, [(_PACKED_MARK + packed_refs_digest.hex().encode()).decode()])

    def _confirmed_data(self) -> bytes:
        try:
            with open(self._confirmed_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def forget(self, shas: Iterable[str]) -> None:
        """Objects found missing or damaged on the remote: the next push uploads them
        again, over what is there (and looks at every run commit again)."""
        gone = set(shas)
        if not gone:
            return
        with self._lock:
            _write_lines(self._known_path, sorted(self.known() - gone))
            _write_lines(self._damaged_path, sorted(self.damaged() | gone))
            if os.path.exists(self._confirmed_path):
                os.unlink(self._confirmed_path)

    def damaged(self) -> set[str]:
        return _read_ids(self._damaged_path, 64)

    def repaired(self, shas: set[str]) -> None:
        """Objects uploaded again: no longer damaged there."""
        repaired = self.damaged() & shas
        if repaired:
            with self._lock:
                _write_lines(self._damaged_path, sorted(self.damaged() - repaired))

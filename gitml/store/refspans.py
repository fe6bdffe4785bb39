"""What a repository on this machine holds of this clone's refs, read from its files.

Both sides keep most refs in a sorted ``packed-refs``. A folder of refs
(``refs/gitml/runs/<experiment>/``) whose lines are the same bytes in both files is
held by the other side as it is here, but for the refs either side shadows with a
loose one: its refs are counted, not listed. A folder that differs (one side packed
its refs at another time) is compared as two sets of lines, and only the lines found
here alone, and loose refs, are looked at one by one: ten new runs pushed to a remote
that holds 100,000 cost a comparison of two files and ten lookups, not three dicts of
100,000 refs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitml.store.refs import _HEX40, _SORTED, _lower_bound, _name_at, _read_ref, _search_sorted

if TYPE_CHECKING:
    from gitml.store.git import GitStore

MOST_LOOKED_AT = 4096  # refs to look at one by one, at most; more and the caller lists them all


@dataclass
class Comparison:
    """This clone's refs under some prefixes against another repository's on this machine."""

    changed: dict[bytes, bytes]  # refs the other may not hold at these values: each to be looked at
    there: set[bytes]  # those of them it holds at these values after all
    held: int  # refs it holds at these values, counted from the packed lines alike on both sides
    digest: bytes  # the sha256 of this clone's packed-refs, as compared
    data: bytes = field(repr=False)  # that packed-refs
    alike: list[tuple[int, int, re.Pattern[bytes] | None]] = field(default_factory=list, repr=False)  # spans of it
    common: list[tuple[set[bytes], re.Pattern[bytes] | None]] = field(default_factory=list, repr=False)  # more lines

    def held_refs(self) -> dict[bytes, bytes]:
        """The refs :attr:`held` counts, listed (names checked as a listing checks them)."""
        spans = [(_lines(self.data, start, end), names) for start, end, names in self.alike]
        out: dict[bytes, bytes] = {}
        for lines, names in [*spans, *self.common]:
            out.update(_parsed(lines, names))
        return {name: sha for name, sha in out.items() if name not in self.changed}


def packed_refs_of(controldir: str) -> bytes:
    try:
        with open(os.path.join(controldir, "packed-refs"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def controldir_of(folder: str) -> str:
    """A repository's git folder: itself when bare, else its ``.git``."""
    return folder if os.path.isdir(os.path.join(folder, "objects")) else os.path.join(folder, ".git")


def same_lines(a: bytes, b: bytes, prefix: bytes) -> bool:
    """Whether two sorted packed-refs files hold the same lines under ``prefix`` (False
    when either is not sorted, or neither has any)."""
    if not (_SORTED.match(a) and _SORTED.match(b)):
        return False
    span_a = _span(a, prefix)
    return span_a[1] > span_a[0] and _alike(a, span_a, b, _span(b, prefix))


def loose_names(controldir: str, prefixes: tuple[str, ...]) -> set[bytes]:
    """The names of the loose refs under ``prefixes`` (whatever they hold)."""
    names: set[bytes] = set()
    for prefix in prefixes:
        for dirpath, _dirnames, filenames in os.walk(os.path.join(controldir, *prefix.rstrip("/").split("/"))):
            rel = os.path.relpath(dirpath, controldir).replace(os.sep, "/")
            names.update(f"{rel}/{name}".encode() for name in filenames)
    return names


def compare(
    store: GitStore, folder: str, wanted: list[tuple[str, re.Pattern[bytes] | None]], *, most: int = MOST_LOOKED_AT
) -> Comparison | None:
    """This clone's refs under each ``(prefix, names)`` of ``wanted`` (only whole names
    ``names`` matches; every well-formed one when None) against the repository at
    ``folder``. None when it cannot be told this way: either packed-refs is not sorted,
    packed-refs here changed between two readings, or more than ``most`` refs would be
    looked at one by one."""
    controldir = controldir_of(folder)
    theirs = packed_refs_of(controldir)
    if theirs and not _SORTED.match(theirs):
        return None
    their_loose = loose_names(controldir, tuple(prefix for prefix, _ in wanted))
    changed: dict[bytes, bytes] = {}
    held = 0
    digest: bytes | None = None
    data = b""
    alike: list[tuple[int, int, re.Pattern[bytes] | None]] = []
    common: list[tuple[set[bytes], re.Pattern[bytes] | None]] = []
    for prefix, names in wanted:
        data, read_digest, loose = store.refs_parts(prefix, names)
        if digest not in (None, read_digest) or (data and not _SORTED.match(data)):
            return None
        digest = read_digest
        bprefix = prefix.encode()
        alike_keys: set[bytes] = set()
        kept_lines: set[bytes] = set()  # lines alike in folders that are not
        for key, start, end, same in _folders(data, theirs, bprefix):
            if same:
                alike.append((start, end, names))
                alike_keys.add(key)
                held += _line_count(data, start, end)
                continue
            ours = _lines(data, start, end)
            if key.endswith(b"/"):  # a folder: the lines of both sides compared as sets
                kept = set(ours).intersection(_lines(theirs, *_span(theirs, key)))
            else:  # a ref directly under the prefix: its line
                value = _search_sorted(theirs, key) if theirs else None
                kept = {line for line in ours if value is not None and line[:40] == value}
            kept_lines |= kept
            held += len(kept)
            changed.update(_parsed([line for line in ours if line not in kept], names))
            if len(changed) > most:
                return None
        common.append((kept_lines, names))

        def alike_here(name: bytes, data=data, bprefix=bprefix, alike_keys=alike_keys, kept_lines=kept_lines) -> bool:
            """Whether ``name``'s packed line here is one the other side has too."""
            value = _search_sorted(data, name)
            if value is None:
                return False
            slash = name.find(b"/", len(bprefix))
            folder = name[: slash + 1] if slash >= 0 else b""
            return bprefix in alike_keys or folder in alike_keys or b"%s %s" % (value, name) in kept_lines

        for name in loose:  # each shadows its packed line here, if it has one
            if alike_here(name):
                held -= 1
        changed.update(loose)
        for name in their_loose:  # each shadows its packed line there: looked at
            if (
                name.startswith(bprefix)
                and name not in changed
                and (names is None or names.fullmatch(name))
                and alike_here(name)
            ):
                value = _search_sorted(data, name)
                if value is not None:
                    changed[name] = value
                    held -= 1
        if len(changed) > most:
            return None
    there = {name for name, sha in changed.items() if _value(controldir, theirs, their_loose, name) == sha}
    return Comparison(changed, there, held, digest or b"", data, alike, common)


def _value(controldir: str, packed: bytes, loose: set[bytes], name: bytes) -> bytes | None:
    """The id a repository gives ``name``: its loose file's, else its sorted packed-refs'."""
    if name in loose:
        return _read_ref(os.path.join(controldir, *os.fsdecode(name).split("/")))
    return _search_sorted(packed, name) if packed else None


def _span(data: bytes, prefix: bytes) -> tuple[int, int]:
    """The offsets of the lines of sorted ``data`` under ``prefix``."""
    start = _lower_bound(data, prefix)
    return start, _lower_bound(data, _past(prefix), start)


def _alike(a: bytes, span_a: tuple[int, int], b: bytes, span_b: tuple[int, int]) -> bool:
    """Whether two spans hold the same bytes (compared in place: slicing 10 MB spans to
    compare them took 20 times as long)."""
    return span_a[1] - span_a[0] == span_b[1] - span_b[0] and a.startswith(
        memoryview(b)[span_b[0] : span_b[1]], span_a[0]
    )


def _past(prefix: bytes) -> bytes:
    """The first name after every name under ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _folders(ours: bytes, theirs: bytes, prefix: bytes) -> Iterator[tuple[bytes, int, int, bool]]:
    """``(folder, start, end, same)`` for each folder of refs under ``prefix`` in sorted
    ``ours``: its lines' span, and whether ``theirs`` holds the same lines; a ref
    directly under ``prefix`` is a folder of its own, never the same. The whole prefix
    alike is one folder."""
    start, end = _span(ours, prefix)
    if start == end:
        return
    if _alike(ours, (start, end), theirs, _span(theirs, prefix)):
        yield prefix, start, end, True
        return
    pos = start
    while pos < end:
        name = _name_at(ours, pos)
        slash = name.find(b"/", len(prefix))
        if slash < 0:
            stop = ours.find(b"\n", pos, end)
            stop = end if stop < 0 else stop + 1
            yield name, pos, stop, False
        else:
            folder = name[: slash + 1]
            stop = _lower_bound(ours, _past(folder), pos)
            yield folder, pos, stop, _alike(ours, (pos, stop), theirs, _span(theirs, folder))
        pos = max(stop, pos + 1)


def _line_count(data: bytes, start: int, end: int) -> int:
    return data.count(b"\n", start, end) + (end > start and data[end - 1 : end] != b"\n")


def _lines(data: bytes, start: int, end: int) -> list[bytes]:
    """The lines of ``data[start:end]`` (peeled ones left out)."""
    return [line for line in data[start:end].split(b"\n") if line and line[:1] != b"^"]


def _well_formed(line: bytes) -> bool:
    return line[40:41] == b" " and bool(_HEX40.fullmatch(line[:40])) and b".." not in line[41:]


def _parsed(lines: Iterable[bytes], names: re.Pattern[bytes] | None) -> dict[bytes, bytes]:
    """``{name: id}`` of the well-formed lines whose name ``names`` matches."""
    return {
        line[41:]: line[:40] for line in lines if _well_formed(line) and (names is None or names.fullmatch(line[41:]))
    }

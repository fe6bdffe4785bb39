"""Search rows held by column: what search filters, orders and turns into a frame.

A :class:`RunTable` holds many runs' rows as one list per field (attributes,
each metric, param and tag key, the dataset inputs), ``None`` where a run lacks
the field. Filters are evaluated a column at a time (``Predicate.mask``), orders
sort row positions, and the DataFrame is built from column slices: no dict per
run is made unless a caller asks for rows.

The index keeps a *snapshot* of a table on disk (``snapshot`` in the index's
sqlite file, one JSON array per column, decoded only when a search names the
column), keyed like every row by ``(ref, commit)``: a run whose ref moved since,
or that is new, is read from the row table instead (see :mod:`gitml.runlog.index`).
"""

from __future__ import annotations

import itertools
import json
import struct
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

ATTRIBUTES = (
    "run_id",
    "experiment_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "user_id",
    "lifecycle_stage",
    "artifact_uri",
)
SECTIONS = ("metrics", "params", "tags")
FORMAT = b"gitml-columns 4"  # each snapshot segment's first entry: another value is ignored (rebuilt); 4: segments


class RunTable:
    """Rows of ``len(refs)`` runs by column. ``load(name)`` gives a column not yet held
    (``attributes.<name>``, ``<section>.<key>``, ``datasets``), or None for a key no run has."""

    def __init__(
        self,
        refs: list[bytes],
        commits: list[bytes],
        keys: dict[str, list[str]],
        load: Callable[[str], list | None],
        load_array: Callable[[str, bool], tuple[Any, bool] | None] | None = None,
        load_take: Callable[[str, Any, bool], tuple[Any, Any] | None] | None = None,
    ):
        self.refs = refs
        self.commits = commits
        self.keys = keys
        self._load = load
        self._load_array = load_array  # (numpy array, whether some value is missing), or None: from the list
        self._load_take = load_take  # (values at some positions, their presence), or None: from the array
        self._columns: dict[str, list] = {}
        self._arrays: dict[tuple[str, str, bool], Any] = {}  # numpy arrays of columns (the frame's)
        self._missing: dict[tuple[str, str], bool] = {}

    def __len__(self) -> int:
        return len(self.refs)

    @classmethod
    def from_rows(cls, entries: Sequence[tuple[bytes, bytes, dict]]) -> RunTable:
        rows = [row for _, _, row in entries]
        keys = {s: sorted({k for r in rows for k in r[s]}) for s in SECTIONS}
        columns: dict[str, list] = {f"attributes.{a}": [r.get(a) for r in rows] for a in ATTRIBUTES}
        columns["datasets"] = [r.get("datasets") or [] for r in rows]
        for section in SECTIONS:
            for key in keys[section]:
                columns[f"{section}.{key}"] = [r[section].get(key) for r in rows]
        table = cls([e[0] for e in entries], [e[1] for e in entries], keys, columns.get)
        table._columns = columns
        return table

    @classmethod
    def concat(cls, parts: Sequence[RunTable]) -> RunTable:
        """One table of the rows of ``parts``, in order (each column joined once)."""
        keys = {s: sorted({k for t in parts for k in t.keys[s]}) for s in SECTIONS}

        def load(name: str) -> list | None:
            section, _, key = name.partition(".")
            return list(itertools.chain.from_iterable(t.column(section, key) for t in parts))

        def load_array(name: str, floats: bool) -> tuple[Any, bool]:
            import numpy as np

            section, _, key = name.partition(".")
            arrays = [t.array(section, key, floats=floats) for t in parts]
            return np.concatenate(arrays), any(t.has_missing(section, key) for t in parts)

        starts = list(itertools.accumulate([len(t) for t in parts], initial=0))

        def load_take(name: str, index: Any, floats: bool) -> tuple[Any, Any]:
            import numpy as np

            section, _, key = name.partition(".")
            part_of = np.searchsorted(np.array(starts[1:-1], dtype=np.intp), index, side="right")
            values = np.empty(len(index), dtype="float64" if floats else object)
            present = np.ones(len(index), dtype=bool)
            missing = False
            for p in np.unique(part_of).tolist():
                at = np.nonzero(part_of == p)[0]
                got, here = parts[p].take(section, key, index[at] - starts[p], floats=floats)
                values[at] = got
                if here is not None:
                    present[at] = here
                    missing = True
            return values, (present if missing else None)

        refs = [r for t in parts for r in t.refs]
        return cls(refs, [c for t in parts for c in t.commits], keys, load, load_array, load_take)

    def column(self, section: str, key: str = "") -> list:
        """The values of one field for every row (``None`` where missing)."""
        name = "datasets" if section == "datasets" else f"{section}.{key}"
        column = self._columns.get(name)
        if column is None:
            column = self._load(name)
            if column is None:
                column = [None] * len(self.refs)
            self._columns[name] = column
        return column

    def array(self, section: str, key: str = "", *, floats: bool = False) -> Any:
        """The column as a numpy array, kept for the next search: float64 with NaN where a
        value is missing (``floats``), else objects (None where missing). A snapshot's
        column is decoded into it directly, without a list."""
        found = self._arrays.get((section, key, floats))
        if found is None:
            name = "datasets" if section == "datasets" else f"{section}.{key}"
            got = self._load_array(name, floats) if self._load_array is not None else None
            if got is not None:
                found, self._missing[(section, key)] = got
            else:
                found = to_array(self.column(section, key), floats=floats)
            self._arrays[(section, key, floats)] = found
        return found

    def take(self, section: str, key: str, index: Any, *, floats: bool = False) -> tuple[Any, Any]:
        """The values at the positions ``index`` (a numpy array) as :meth:`array` gives them,
        and whether each is present (None: every one is). A snapshot's column is decoded
        for those positions alone (a search's frame of 12,000 runs among 100,000 decoded
        every column of every run), unless the whole column is decoded already."""
        import numpy as np

        name = "datasets" if section == "datasets" else f"{section}.{key}"
        if self._load_take is not None and (section, key, floats) not in self._arrays and name not in self._columns:
            got = self._load_take(name, index, floats)
            if got is not None:
                return got
        values = self.array(section, key, floats=floats)[index]
        if not self.has_missing(section, key):
            return values, None
        column = self.column(section, key)
        return values, np.fromiter((column[i] is not None for i in index), dtype=bool, count=len(index))

    def has_missing(self, section: str, key: str = "") -> bool:
        """Whether some run may lack the field (False: every run has it)."""
        found = self._missing.get((section, key))
        if found is None:
            found = self._missing[(section, key)] = None in self.column(section, key)
        return found

    def has_column(self, section: str, key: str = "") -> bool:
        """Whether the column is decoded already (as a list)."""
        return ("datasets" if section == "datasets" else f"{section}.{key}") in self._columns

    def getter(self, section: str, key: str) -> Callable[[int], Any]:
        """``position -> value`` for one field (what :func:`~gitml.runlog.filter.sort_rows` takes)."""
        return self.column(section, key).__getitem__

    def row(self, i: int) -> dict:
        """The search row (dict) of the run at position ``i``."""
        row: dict[str, Any] = {a: self.column("attributes", a)[i] for a in ATTRIBUTES}
        for section in SECTIONS:
            values = {}
            for key in self.keys[section]:
                value = self.column(section, key)[i]
                if value is not None:
                    values[key] = value
            row[section] = values
        row["datasets"] = self.column("datasets")[i]
        return row

    def names(self) -> list[str]:
        """Every column's name."""
        return [
            *(f"attributes.{a}" for a in ATTRIBUTES),
            "datasets",
            *(f"{s}.{k}" for s in SECTIONS for k in self.keys[s]),
        ]

    def select(self, positions: list[int]) -> RunTable:
        """A table of the rows at ``positions`` (columns taken as they are needed)."""
        parent = self

        def load(name: str) -> list | None:
            section, _, key = name.partition(".")
            source = parent.column(section, key)
            return [source[i] for i in positions]

        def load_array(name: str, floats: bool) -> tuple[Any, bool]:
            import numpy as np

            section, _, key = name.partition(".")
            source = parent.array(section, key, floats=floats)
            return source[np.array(positions, dtype=np.intp)], parent.has_missing(section, key)

        at: list = []

        def load_take(name: str, index: Any, floats: bool) -> tuple[Any, Any]:
            import numpy as np

            if not at:
                at.append(np.array(positions, dtype=np.intp))
            section, _, key = name.partition(".")
            return parent.take(section, key, at[0][index], floats=floats)  # the parent's columns at those alone

        return RunTable(
            [self.refs[i] for i in positions],
            [self.commits[i] for i in positions],
            self.keys,
            load,
            load_array,
            load_take,
        )

    def __add__(self, other: RunTable) -> RunTable:
        if not len(other):
            return self
        if not len(self):
            return other
        keys = {s: sorted(set(self.keys[s]) | set(other.keys[s])) for s in SECTIONS}
        left, right = self, other

        def load(name: str) -> list | None:
            section, _, key = name.partition(".")
            return left.column(section, key) + right.column(section, key)

        def load_array(name: str, floats: bool) -> tuple[Any, bool]:
            import numpy as np

            section, _, key = name.partition(".")
            parts = [t.array(section, key, floats=floats) for t in (left, right)]
            return np.concatenate(parts), left.has_missing(section, key) or right.has_missing(section, key)

        return RunTable(self.refs + other.refs, self.commits + other.commits, keys, load, load_array)

    # -- the snapshot's encoding ------------------------------------------
    def encode(self) -> Iterable[tuple[str, bytes]]:
        """``(name, data)`` for every column, the refs, commits and keys (JSON; NaN as NaN)."""
        yield "format", FORMAT
        yield "refs", b"\n".join(self.refs)  # a ref name holds no line break
        yield "commits", b"\n".join(self.commits)  # split again in one call
        yield "keys", json.dumps(self.keys).encode()
        for name in self.names():
            section, _, key = name.partition(".")
            yield name, encode_column(self.column(section, key))


def decode_head(refs: bytes, commits: bytes, keys: bytes) -> tuple[list[bytes], list[bytes], dict[str, list[str]]]:
    """The refs, commits and keys of a snapshot (raises ValueError when malformed)."""
    names = refs.split(b"\n") if refs else []
    ids = commits.split(b"\n") if commits else []
    if len(ids) != len(names) or len(commits) != 41 * len(names) - 1 + (not names):
        raise ValueError("snapshot commits do not match its refs")
    sections = json.loads(keys)
    if not isinstance(sections, dict) or any(not isinstance(sections.get(s), list) for s in SECTIONS):
        raise ValueError("snapshot keys malformed")
    return names, ids, {s: [str(k) for k in sections[s]] for s in SECTIONS}


# A column is stored by its kind, so that decoding costs about a list's making:
# b"f" floats: a presence byte per value, then float64s; b"i" the same with int64s;
# b"s" text: the distinct values (JSON), then a uint32 code per value; b"j" anything
# else (the datasets): one JSON array.


def encode_column(values: list) -> bytes:
    present = bytes(v is not None for v in values)
    given = [v for v in values if v is not None]
    if all(type(v) is float for v in given):
        return b"f" + present + array("d", [0.0 if v is None else v for v in values]).tobytes()
    if all(type(v) is int and -(1 << 63) <= v < 1 << 63 for v in given):
        return b"i" + present + array("q", [0 if v is None else v for v in values]).tobytes()
    if all(type(v) is str for v in given):
        distinct = list(dict.fromkeys(values))
        codes = {v: i for i, v in enumerate(distinct)}
        head = json.dumps(distinct).encode()
        return b"s" + struct.pack("<Q", len(head)) + head + array("I", [codes[v] for v in values]).tobytes()
    return b"j" + json.dumps(values).encode()


def to_array(values: list, *, floats: bool) -> Any:
    """A column as a numpy array: float64 with NaN for None (``floats``), else objects."""
    import numpy as np

    if floats:
        return np.array([np.nan if v is None else v for v in values] if None in values else values, dtype="float64")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def decode_array(data: bytes, n: int, *, floats: bool) -> tuple[Any, bool] | None:
    """A column :func:`encode_column` wrote, of ``n`` values, as :meth:`RunTable.array` holds
    it, and whether some value is missing; None for a kind best read as a list
    (ValueError when malformed)."""
    import numpy as np

    kind = data[:1]
    if kind in (b"f", b"i") and floats:
        present, values = _numbers(data, n)
        present = present.astype(bool)
        values = values.astype("float64")
        missing = not present.all()
        if missing:
            values[~present] = np.nan
        return values, missing
    if kind == b"s" and not floats:
        distinct, codes = _texts(data, n)
        return distinct[codes], None in distinct
    return None


def decode_array_at(data: bytes, n: int, index: Any, *, floats: bool) -> tuple[Any, Any] | None:
    """:func:`decode_array` at the positions ``index`` alone, and their presence (None: all
    present); None for a kind best read whole (ValueError when malformed)."""
    import numpy as np

    kind = data[:1]
    if kind in (b"f", b"i") and floats:
        present, values = _numbers(data, n)
        present = present[index].astype(bool)
        values = values[index].astype("float64")
        if present.all():
            return values, None
        values[~present] = np.nan
        return values, present
    if kind == b"s" and not floats:
        distinct, codes = _texts(data, n)
        taken = distinct[codes[index]]
        if None not in distinct:
            return taken, None
        return taken, np.fromiter((v is not None for v in taken), dtype=bool, count=len(taken))
    return None


def _numbers(data: bytes, n: int) -> tuple[Any, Any]:
    """A number column's presence bytes and values, as numpy views of ``data``."""
    import numpy as np

    if len(data) != 1 + n * 9:
        raise ValueError("snapshot column malformed")
    present = np.frombuffer(data, dtype=np.uint8, count=n, offset=1)
    return present, np.frombuffer(data, dtype="<f8" if data[:1] == b"f" else "<i8", count=n, offset=1 + n)


def _texts(data: bytes, n: int) -> tuple[Any, Any]:
    """A text column's distinct values (an object array) and each run's code into them."""
    import numpy as np

    (size,) = struct.unpack_from("<Q", data, 1)
    distinct = json.loads(data[9 : 9 + size])
    codes = np.frombuffer(data, dtype="<u4", offset=9 + size)
    if not isinstance(distinct, list) or len(codes) != n or (n and int(codes.max()) >= len(distinct)):
        raise ValueError("snapshot column malformed")
    values = np.empty(len(distinct), dtype=object)
    values[:] = distinct
    return values, codes


def decode_column(data: bytes, n: int) -> list:
    """A column :func:`encode_column` wrote, of ``n`` values (ValueError when malformed)."""
    kind, body = data[:1], data[1:]
    if kind in (b"f", b"i"):
        numbers = array("d" if kind == b"f" else "q")
        if len(body) != n * (1 + numbers.itemsize):
            raise ValueError("snapshot column malformed")
        present = body[:n]
        numbers.frombytes(body[n:])
        column: list[Any] = numbers.tolist()
        if present.count(0):
            column = [v if p else None for v, p in zip(column, present, strict=False)]
        return column
    if kind == b"s":
        (size,) = struct.unpack_from("<Q", body)
        distinct = json.loads(body[8 : 8 + size])
        codes = array("I")
        codes.frombytes(body[8 + size :])
        if not isinstance(distinct, list) or len(codes) != n or (n and max(codes) >= len(distinct)):
            raise ValueError("snapshot column malformed")
        return list(map(distinct.__getitem__, codes))
    column = json.loads(body)
    if kind != b"j" or not isinstance(column, list) or len(column) != n:
        raise ValueError("snapshot column malformed")
    return column

"""The search index: one row per run ref, keyed by the commit it was read from.

Commits never change, so a row stays valid while its ref points at the same
commit. Writers put the row of every commit they make; search re-reads from git
only the refs whose commit differs from the row's. The index is a cache in
``.git/gitml/index.sqlite3``: deleting it only costs one slower search.

Beside the rows (one JSON document each, table ``runs``) it keeps a columnar
snapshot of many runs (table ``snapshot``, see :mod:`gitml.tracking.columns`),
also keyed by ``(ref, commit)``: a search takes from it every run whose ref still
holds the snapshot's commit, and only the others from the rows. Decoding one JSON
document per run was most of a first search at 20,000 runs. The snapshot is
rewritten once the runs outside it pass ``SNAPSHOT_SLACK`` and 2 % of all.

The snapshot is *stamped* with the refs it agrees with (entry ``state``): the sha256
of ``packed-refs`` and the names of the refs where it may differ from that file (the
loose refs then, the runs it left out or holds at another commit). A process that
finds the same ``packed-refs`` looks only at those names and the loose refs now,
bisecting packed-refs for each, instead of listing every run ref and matching it
(0.1 s at 100,000 runs); the snapshot's refs are sorted so that a name is found by
bisection too. A stamp holds whatever the refs did since: ``packed-refs`` is
compared by content, and every ref that can differ from it is looked at.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import operator
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import Any

from gitml.errors import CorruptRecordError
from gitml.errors import RepositoryError
from gitml.tracking.columns import FORMAT, RunTable, decode_array, decode_array_at, decode_column, decode_head

log = logging.getLogger("gitml")
SNAPSHOT_SLACK = 256  # runs read from rows before a snapshot is (re)written, at least
_CHUNK = 500  # refs per sqlite query
_TABLE_CHUNK = 5000  # rows made into columns at a time, when many runs are outside the snapshot
_KEEP_ROWS = 1000  # rows read at once up to which they stay in memory


class RunIndex:
    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._mem: dict[bytes, tuple[bytes, dict]] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None  # the snapshot's, in its own read transactions
        self._snapshot: tuple[int, RunTable, tuple[bytes, frozenset[bytes]] | None] | None = None  # gen, table, stamp
        self._table_memo: tuple[Any, RunTable | None, RunTable, list] | None = None  # refs or state, snapshot, table, errors
        self._by_name = False  # whether the snapshot read last has its table of names

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError:
                log.warning("gitml: search index %s was unreadable; rebuilding it", self.path)
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(self.path + suffix)
                    except FileNotFoundError:
                        pass
                self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS runs (ref TEXT PRIMARY KEY, commit_id TEXT, row TEXT)")
        conn.execute("CREATE TABLE IF NOT EXISTS snapshot (gen INTEGER, name TEXT, data BLOB, PRIMARY KEY (gen, name))")
        conn.execute("CREATE TABLE IF NOT EXISTS snapshot_names (gen INTEGER, run_name TEXT, ref BLOB, commit_id BLOB)")
        conn.execute("CREATE INDEX IF NOT EXISTS snapshot_names_by_name ON snapshot_names (gen, run_name)")
        return conn

    def close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = None
        self._snapshot = self._table_memo = None

    def put(self, ref: bytes, commit: bytes, row: dict) -> None:
        with self._lock:
            self._mem[ref] = (commit, row)
            try:
                self._db().execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (ref.decode(), commit.decode(), json.dumps(row))
                )
            except sqlite3.Error as e:  # the index is a cache: never fail a write for it
                log.warning("gitml: could not update the search index: %s", e)

    def put_many(self, entries: list[tuple[bytes, bytes, dict]]) -> None:
        """:meth:`put` for many ``(ref, commit, row)`` in one transaction."""
        with self._lock:
            for ref, commit, row in entries:
                self._mem[ref] = (commit, row)
            try:
                db = self._db()
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)",
                    [(ref.decode(), commit.decode(), json.dumps(row)) for ref, commit, row in entries],
                )
                db.execute("COMMIT")
            except sqlite3.Error as e:
                log.warning("gitml: could not update the search index: %s", e)

    def rows(
        self, refs: dict[bytes, bytes], load: Callable[[bytes, bytes], dict]
    ) -> tuple[list[dict], list[CorruptRecordError]]:
        """Rows for ``{ref: commit}``, reading from git (``load``) what the index lacks.

        Runs whose record is corrupt are left out and their errors returned.
        """
        with self._lock:
            mem = self._mem
            out: list[dict] = []
            missing: list[tuple[bytes, bytes]] = []
            errors: list[CorruptRecordError] = []
            for ref, commit in refs.items():
                hit = mem.get(ref)
                if hit is not None and hit[0] == commit:
                    out.append(hit[1])
                else:
                    missing.append((ref, commit))
            if missing and not self._loaded:
                self._load_all()
                still = []
                for ref, commit in missing:
                    hit = mem.get(ref)
                    if hit is not None and hit[0] == commit:
                        out.append(hit[1])
                    else:
                        still.append((ref, commit))
                missing = still
        out += [row for _, _, row in self._read_missing(missing, load, errors)]
        return out, errors

    def rows_at(self, refs: dict[bytes, bytes], load: Callable[[bytes, bytes], dict]) -> dict[bytes, dict]:
        """``{ref: row}`` for a few ``{ref: commit}`` (a search's page): from memory, the
        rows table, or git (``load``); a corrupt record is left out."""
        entries, _ = self._entries(refs, load)
        return {ref: row for ref, _, row in entries}

    def table(
        self, refs: dict[bytes, bytes], load: Callable[[bytes, bytes], dict],
        made_of: tuple[bytes, AbstractSet[bytes]] | None = None,
    ) -> tuple[RunTable, list[CorruptRecordError]]:
        """The rows of ``{ref: commit}`` as a :class:`RunTable`: the snapshot's runs whose
        ref still holds its commit, then the others from the rows (or git, ``load``).
        Use inside :meth:`reading`. Corrupt runs are left out and their errors returned.
        Given the same dict again (a tracker's listing while no ref changed) and the same
        snapshot, it returns the same table, with the columns it decoded already.
        ``made_of``: what ``refs`` was listed from (packed-refs' sha256, the loose refs'
        names), to stamp the snapshot with, so that the next process can use
        :meth:`table_at` instead of listing every ref."""
        snapshot = self._read_snapshot()
        memo = self._table_memo
        if memo is not None and memo[0] is refs and memo[1] is snapshot:
            return memo[2], memo[3]
        base: RunTable | None = None
        rest = refs
        held: list[bool] = []
        if snapshot is not None:
            held = list(map(operator.eq, map(refs.get, snapshot.refs), snapshot.commits))
            base = snapshot if all(held) else snapshot.select(list(itertools.compress(range(len(held)), held)))
            if len(base) < len(refs):
                rest = {r: refs[r] for r in refs.keys() - set(base.refs)}
            else:
                rest = {}
        table, errors, failed = self._with_rest(base, rest, load)
        mark = None if made_of is None else (made_of[0], set(made_of[1]) | failed)
        if not self._write_if_behind(table, len(table) - len(base or ()), mark) and made_of is not None:
            digest, loose = made_of
            stamp = self._snapshot[2] if self._snapshot is not None and self._snapshot[1] is snapshot else None
            if snapshot is not None and (stamp is None or stamp[0] != digest):
                differ = {r for r, h in zip(snapshot.refs, held) if not h}
                self._restamp(snapshot, table, digest, set(loose) | differ | set(rest), stamp is not None)
        self._table_memo = (refs, snapshot, table, errors)
        return table, errors

    def table_at(
        self, state: tuple[bytes, dict[bytes, bytes]], packed_ref: Callable[[bytes], bytes | None],
        load: Callable[[bytes, bytes], dict],
    ) -> tuple[RunTable, list[CorruptRecordError]] | None:
        """:meth:`table` of the refs a state describes (packed-refs' sha256, the loose refs
        ``{ref: commit}``), without their listing: from a snapshot stamped with the same
        packed-refs, looking only at the refs the stamp names and the loose ones, each
        found in packed-refs by ``packed_ref``. None when no snapshot is stamped so (the
        caller lists the refs and calls :meth:`table`, which stamps it)."""
        snapshot = self._read_snapshot()
        if snapshot is None or self._snapshot is None or self._snapshot[2] is None:
            return None
        digest, loose = state
        stamp = self._snapshot[2]
        if stamp[0] != digest:
            return None
        key = (digest, frozenset(loose.items()))
        memo = self._table_memo
        if memo is not None and memo[0] == key and memo[1] is snapshot:
            return memo[2], memo[3]
        refs, commits = snapshot.refs, snapshot.commits
        dropped: set[int] = set()
        rest: dict[bytes, bytes] = {}
        for name in stamp[1] | loose.keys():
            current = loose.get(name) or packed_ref(name)
            at = bisect.bisect_left(refs, name)
            if at < len(refs) and refs[at] == name:
                if commits[at] == current:
                    continue
                dropped.add(at)
            if current is not None:
                rest[name] = current
        base = snapshot
        if dropped:
            base = snapshot.select([i for i in range(len(refs)) if i not in dropped])
        table, errors, failed = self._with_rest(base, rest, load)
        if not self._write_if_behind(table, len(table) - len(base), (digest, set(loose) | failed)) and not self._by_name:
            self._write_names(self._snapshot[0], snapshot)  # a snapshot stamped before names were kept
        self._table_memo = (key, snapshot, table, errors)
        return table, errors

    def named(
        self, name: str, state: tuple[bytes, dict[bytes, bytes]], packed_ref: Callable[[bytes], bytes | None],
        load: Callable[[bytes, bytes], dict],
    ) -> list[tuple[bytes, bytes]] | None:
        """``(ref, commit)`` of the runs named ``name`` now, as :meth:`table_at` would find
        them, without reading the snapshot's columns: the snapshot's runs of that name
        (from its table of names) whose refs the stamp does not name and are not loose,
        and, of those it names and the loose ones, the runs whose row has that name.
        None when no snapshot is stamped with this ``packed-refs``. Inside :meth:`reading`."""
        reader = self._reader
        if reader is None:
            return None
        digest, loose = state
        try:
            found = reader.execute("SELECT max(gen) FROM snapshot").fetchone()
            gen = found[0] if found else None
            stamp, by_name = _marks(reader, gen)
            if stamp is None or not by_name or stamp[0] != digest:
                return None
            held = reader.execute(
                "SELECT ref, commit_id FROM snapshot_names WHERE gen = ? AND run_name = ?", (gen, name)).fetchall()
        except (sqlite3.Error, ValueError, TypeError) as e:
            log.warning("gitml: search index snapshot unreadable (%s); reading rows", e)
            return None
        look = stamp[1] | loose.keys()
        out = [(ref, commit) for ref, commit in held if ref not in look]
        current = {ref: commit for ref in look if (commit := loose.get(ref) or packed_ref(ref)) is not None}
        entries, _ = self._entries(current, load)
        out += [(ref, commit) for ref, commit, row in entries if row.get("run_name") == name]
        return out

    def _write_names(self, gen: int, snapshot: RunTable) -> None:
        """The table of names of a stamped snapshot written by a gitml that kept none."""
        try:
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    if db.execute("SELECT max(gen) FROM snapshot").fetchone()[0] == gen and not db.execute(
                        "SELECT 1 FROM snapshot WHERE gen = ? AND name = 'by-name'", (gen,)
                    ).fetchone():
                        _insert_names(db, gen, snapshot)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            self._by_name = True
        except sqlite3.Error as e:  # a cache: names are found in the columns meanwhile
            log.warning("gitml: could not write the search index's names: %s", e)

    def _with_rest(
        self, base: RunTable | None, rest: dict[bytes, bytes], load: Callable[[bytes, bytes], dict]
    ) -> tuple[RunTable, list[CorruptRecordError], set[bytes]]:
        """``base`` and the rows of ``rest`` (from memory, the rows table or git), the errors
        of the runs that could not be read, and their refs."""
        parts, errors, failed = [], [], set()
        names = list(rest)
        for i in range(0, len(names), _TABLE_CHUNK):  # the rows of one chunk at a time in memory
            chunk = {r: rest[r] for r in names[i:i + _TABLE_CHUNK]}
            entries, errs = self._entries(chunk, load, keep=len(rest) <= _KEEP_ROWS)
            parts.append(RunTable.from_rows(entries))
            errors += errs
            if errs:
                failed.update(set(chunk) - {ref for ref, _, _ in entries})
        extra = RunTable.concat(parts) if len(parts) > 1 else parts[0] if parts else RunTable.from_rows([])
        return (extra if base is None else base + extra), errors, failed

    def _write_if_behind(
        self, table: RunTable, outside: int, stamp: tuple[bytes, AbstractSet[bytes]] | None
    ) -> bool:
        """Write ``table`` as the snapshot (with ``stamp``, see :meth:`table_at`) when
        ``outside`` of its runs came from rows, not the snapshot, and they pass
        ``SNAPSHOT_SLACK`` and 2 % of all."""
        if outside >= SNAPSHOT_SLACK and outside * 50 >= len(table):
            self._write_snapshot(table, stamp)
            return True
        return False

    def _restamp(self, snapshot: RunTable, table: RunTable, digest: bytes, names: set[bytes], sorted_: bool) -> None:
        """Stamp the snapshot with another packed-refs (refs were packed, fetched, deleted):
        ``names`` are where it differs from the refs now or may differ from that file. An
        unstamped snapshot (unsorted: an older gitml's), or one that would name too many
        refs to look at, is written again instead."""
        if not sorted_ or len(names) > SNAPSHOT_SLACK + len(snapshot) // 20:
            self._write_snapshot(table, (digest, names))
            return
        gen = self._snapshot[0] if self._snapshot is not None else None
        data = _encode_stamp(digest, names)
        try:
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    if db.execute("SELECT max(gen) FROM snapshot").fetchone()[0] == gen:
                        db.execute("INSERT OR REPLACE INTO snapshot VALUES (?, 'state', ?)", (gen, data))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as e:  # a cache: the next search lists the refs again
            log.warning("gitml: could not stamp the search index snapshot: %s", e)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the snapshot while a search reads its columns."""
        with self._lock:
            reader = self._reader
            if reader is None:
                self._db()  # creates the tables
                reader = self._reader = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            reader.execute("BEGIN")
        except sqlite3.Error:
            yield
            return
        try:
            yield
        finally:
            try:
                reader.execute("COMMIT")
            except sqlite3.Error:
                pass

    def _read_snapshot(self) -> RunTable | None:
        reader = self._reader
        if reader is None:
            return None
        try:
            found = reader.execute("SELECT max(gen) FROM snapshot").fetchone()
            gen = found[0] if found else None
            if gen is None:
                return None
            stamp, self._by_name = _marks(reader, gen)  # read each time: another process may stamp it
            if self._snapshot is not None and self._snapshot[0] == gen:
                self._snapshot = (gen, self._snapshot[1], stamp)
                return self._snapshot[1]
            head = dict(reader.execute(
                "SELECT name, data FROM snapshot WHERE gen = ? AND name IN ('format', 'refs', 'commits', 'keys')", (gen,)
            ).fetchall())
            if head.get("format") != FORMAT:
                return None  # an older gitml's: rewritten by this search
            refs, commits, keys = decode_head(head["refs"], head["commits"], head["keys"])
            if stamp is not None and any(map(operator.ge, refs, refs[1:])):
                raise ValueError("a stamped snapshot's refs are not sorted")
        except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
            log.warning("gitml: search index snapshot unreadable (%s); reading rows", e)
            return None

        def read(name: str, decode: Callable[[bytes], Any]) -> Any:
            try:
                found = reader.execute("SELECT data FROM snapshot WHERE gen = ? AND name = ?", (gen, name)).fetchone()
                return None if found is None else decode(found[0])
            except (sqlite3.Error, ValueError, TypeError) as e:
                self._snapshot = None
                self._drop_snapshot()
                raise RepositoryError(
                    f"search index {self.path}: column {name} of its snapshot is damaged ({e}); "
                    "it was dropped, search again"
                ) from None

        def column(name: str) -> list | None:
            return read(name, lambda data: decode_column(data, len(refs)))

        def array(name: str, floats: bool) -> tuple[Any, bool] | None:
            return read(name, lambda data: decode_array(data, len(refs), floats=floats))

        def take(name: str, index: Any, floats: bool) -> tuple[Any, Any] | None:
            return read(name, lambda data: decode_array_at(data, len(refs), index, floats=floats))

        table = RunTable(refs, commits, keys, column, array, take)
        self._snapshot = (gen, table, stamp)
        return table

    def known(self, refs: dict[bytes, bytes]) -> set[bytes]:
        """The refs of ``{ref: commit}`` whose commit's record the index holds a row of: rows
        are made only from records that loaded (every field checked) or that a writer made.
        A few refs (a push of new runs) are looked up in the rows alone, not the snapshot of
        every run."""
        found: set[bytes] = set()
        rest = refs
        if len(refs) > _KEEP_ROWS:
            with self.reading():
                snapshot = self._read_snapshot()
                if snapshot is not None:
                    found = {r for r, c in zip(snapshot.refs, snapshot.commits) if refs.get(r) == c}
                rest = {r: c for r, c in refs.items() if r not in found}
        rest = dict(rest)
        with self._lock:
            for ref, commit in list(rest.items()):
                hit = self._mem.get(ref)
                if hit is not None and hit[0] == commit:
                    found.add(ref)
                    del rest[ref]
            rows = self._select(list(rest)) if rest else {}
        found.update(r for r, c in rest.items() if r in rows and rows[r][0] == c)
        return found

    def _drop_snapshot(self) -> None:
        try:
            with self._lock:
                self._db().execute("DELETE FROM snapshot")
                self._db().execute("DELETE FROM snapshot_names")
        except sqlite3.Error as e:
            log.warning("gitml: could not drop the search index snapshot: %s", e)

    def _write_snapshot(self, table: RunTable, stamp: tuple[bytes, AbstractSet[bytes]] | None = None) -> None:
        """``table`` as the new snapshot, its runs sorted by ref, with its stamp (see
        :meth:`table_at`) if given."""
        try:
            order = sorted(range(len(table)), key=table.refs.__getitem__)
            if any(map(operator.ne, order, range(len(order)))):
                table = table.select(order)
            data = list(table.encode())
            if stamp is not None:
                data.append(("state", _encode_stamp(*stamp)))
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    gen = (db.execute("SELECT max(gen) FROM snapshot").fetchone()[0] or 0) + 1
                    db.executemany("INSERT INTO snapshot VALUES (?, ?, ?)", [(gen, n, d) for n, d in data])
                    db.execute("DELETE FROM snapshot WHERE gen < ?", (gen,))
                    db.execute("DELETE FROM snapshot_names WHERE gen < ?", (gen,))
                    if stamp is not None:
                        _insert_names(db, gen, table)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, ValueError) as e:  # a cache: the next search tries again
            log.warning("gitml: could not write the search index snapshot: %s", e)

    def _entries(
        self, refs: dict[bytes, bytes], load: Callable[[bytes, bytes], dict], *, keep: bool = True
    ) -> tuple[list[tuple[bytes, bytes, dict]], list[CorruptRecordError]]:
        """``(ref, commit, row)`` for ``{ref: commit}``: from memory, the rows table, or git.
        ``keep``: rows read from the table stay in memory (not for a table of many runs,
        made into columns: 100,000 row dicts took 1 GB)."""
        out: list[tuple[bytes, bytes, dict]] = []
        errors: list[CorruptRecordError] = []
        with self._lock:
            missing = []
            for ref, commit in refs.items():
                hit = self._mem.get(ref)
                if hit is not None and hit[0] == commit:
                    out.append((ref, commit, hit[1]))
                else:
                    missing.append((ref, commit))
            if missing:
                found = self._select([r for r, _ in missing])
                still = []
                for ref, commit in missing:
                    hit = found.get(ref)
                    if hit is not None and hit[0] == commit:
                        if keep:
                            self._mem[ref] = hit
                        out.append((ref, commit, hit[1]))
                    else:
                        still.append((ref, commit))
                missing = still
        out += self._read_missing(missing, load, errors)
        return out, errors

    def _read_missing(
        self, missing: list[tuple[bytes, bytes]], load: Callable[[bytes, bytes], dict], errors: list[CorruptRecordError]
    ) -> list[tuple[bytes, bytes, dict]]:
        """Read from git (``load``) the rows the index lacks, and keep them; a corrupt
        record goes to ``errors``."""
        read = []
        for ref, commit in missing:
            try:
                row = load(ref, commit)
            except CorruptRecordError as e:
                errors.append(e)
                continue
            self.put(ref, commit, row)
            read.append((ref, commit, row))
        return read

    def _select(self, refs: list[bytes]) -> dict[bytes, tuple[bytes, dict]]:
        found: dict[bytes, tuple[bytes, dict]] = {}
        try:
            db = self._db()
            for i in range(0, len(refs), _CHUNK):
                names = [r.decode() for r in refs[i:i + _CHUNK]]
                query = f"SELECT ref, commit_id, row FROM runs WHERE ref IN ({','.join('?' * len(names))})"
                for ref, commit, row in db.execute(query, names):
                    found[ref.encode()] = (commit.encode(), json.loads(row))
        except (sqlite3.Error, ValueError) as e:
            log.warning("gitml: search index unreadable (%s); reading runs from git", e)
        return found

    def _load_all(self) -> None:
        self._loaded = True
        try:
            cursor = self._db().execute("SELECT ref, commit_id, row FROM runs")
            for ref, commit, row in cursor:
                self._mem[ref.encode()] = (commit.encode(), json.loads(row))
        except (sqlite3.Error, ValueError) as e:
            log.warning("gitml: search index unreadable (%s); reading runs from git", e)


def _marks(reader: sqlite3.Connection, gen: int | None) -> tuple[tuple[bytes, frozenset[bytes]] | None, bool]:
    """A snapshot generation's stamp (None: unstamped) and whether it has its table of names."""
    marks = dict(reader.execute(
        "SELECT name, data FROM snapshot WHERE gen = ? AND name IN ('state', 'by-name')", (gen,)).fetchall())
    return (_decode_stamp(marks["state"]) if "state" in marks else None), "by-name" in marks


def _encode_stamp(digest: bytes, names: AbstractSet[bytes]) -> bytes:
    """A snapshot's stamp: packed-refs' sha256, then the names to look at, one a line."""
    return digest + b"\n".join(sorted(names))


def _decode_stamp(data: bytes) -> tuple[bytes, frozenset[bytes]]:
    if not isinstance(data, bytes) or len(data) < 32:
        raise ValueError("snapshot stamp malformed")
    return data[:32], frozenset(data[32:].split(b"\n")) if len(data) > 32 else frozenset()


def _insert_names(db: sqlite3.Connection, gen: int, table: RunTable) -> None:
    """The runs of snapshot ``gen`` by name (for :meth:`RunIndex.named`), and its mark."""
    db.executemany("INSERT INTO snapshot_names VALUES (?, ?, ?, ?)", zip(
        itertools.repeat(gen), table.column("attributes", "run_name"), table.refs, table.commits))
    db.execute("INSERT INTO snapshot VALUES (?, 'by-name', x'31')", (gen,))

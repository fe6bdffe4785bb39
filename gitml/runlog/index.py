"""The search index: one row per run ref, keyed by the commit it was read from.

Commits never change, so a row stays valid while its ref points at the same
commit. Writers put the row of every commit they make; search re-reads from git
only the refs whose commit differs from the row's. The index is a cache in
``.git/gitml/index.sqlite3``: deleting it only costs one slower search.

Beside the rows (one JSON document each, table ``runs``) it keeps a columnar
snapshot of many runs (table ``snapshot``, see :mod:`gitml.runlog.columns`),
also keyed by ``(ref, commit)``: a search takes from it every run whose ref still
holds the snapshot's commit, and only the others from the rows. Decoding one JSON
document per run was most of a first search at 20,000 runs. The snapshot is written
by generations: once the runs outside it pass ``SNAPSHOT_SLACK``, their columns are
added as a new *segment* (a generation of rows in ``snapshot``), merged with the
newest segments as packs are (each segment at least twice the next newer one), so
that a search's write costs about what its new runs cost, not what every run does.
A run whose ref moved since its segment was written has an entry there and one in
a newer segment; only the entry of its commit now is taken.

The snapshot is *stamped* with the refs it agrees with (entry ``stamp`` of the newest
segment): the sha256 of ``packed-refs`` and the names of the refs where it may differ
from that file (the loose refs then, the runs it left out, holds at another commit or
holds twice). A process that finds the same ``packed-refs`` looks only at those names
and the loose refs now, bisecting packed-refs for each, instead of listing every run
ref and matching it (0.1 s at 100,000 runs); each segment's refs are sorted so that a
name is found by bisection too. A stamp holds whatever the refs did since:
``packed-refs`` is compared by content, and every ref that can differ from it is
looked at.
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

from gitml.errors import CorruptRecordError, RepositoryError
from gitml.runlog.columns import FORMAT, RunTable, decode_array, decode_array_at, decode_column, decode_head

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
        self._snapshot: Snapshot | None = None
        self._written: tuple[int, RunTable] | None = None  # the segment this process wrote last, its columns decoded
        self._table_memo: tuple[Any, Snapshot | None, RunTable, list] | None = (
            None  # refs or state, snapshot, table, errors
        )
        self._by_name = False  # whether every segment of the snapshot read last has its table of names
        self._fresh: dict[bytes, bytes] = {}  # {ref: commit} of the rows put since this process wrote a segment of them
        self._adding = threading.Lock()  # one add_fresh at a time
        self._own_reader: sqlite3.Connection | None = None  # add_fresh's, in whichever thread calls it
        self._batch: tuple[int, list[tuple[bytes, bytes, dict]]] | None = None  # (thread, rows) of batch()

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
        for conn in (self._conn, self._reader, self._own_reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = self._own_reader = None
        self._snapshot = self._table_memo = self._written = None

    def put(self, ref: bytes, commit: bytes, row: dict) -> None:
        with self._lock:
            self._mem[ref] = (commit, row)
            self._fresh[ref] = commit
            if self._batch is not None and self._batch[0] == threading.get_ident():
                self._batch[1].append((ref, commit, row))
                return
            try:
                self._db().execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (ref.decode(), commit.decode(), json.dumps(row))
                )
            except sqlite3.Error as e:  # the index is a cache: never fail a write for it
                log.warning("gitml: could not update the search index: %s", e)

    def warm(self) -> None:
        """Open the database now (the committer does, as it starts): its first commit
        then does not wait for it (0.03-0.07 s, W1's end_run)."""
        with self._lock:
            self._db()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The rows this thread puts meanwhile are written in one transaction at the end
        (they are in memory at once): the committer's batch of ended runs, whose one
        transaction per run was a fifth of its time in W2. A cache: a row not written
        costs the next process one record read."""
        with self._lock:
            self._batch = (threading.get_ident(), [])
        try:
            yield
        finally:
            with self._lock:
                entries, self._batch = (self._batch[1] if self._batch else []), None
            if entries:
                self.put_many(entries)

    def put_many(self, entries: list[tuple[bytes, bytes, dict]]) -> None:
        """:meth:`put` for many ``(ref, commit, row)`` in one transaction."""
        with self._lock:
            for ref, commit, row in entries:
                self._mem[ref] = (commit, row)
                self._fresh[ref] = commit
            try:
                db = self._db()
                db.execute("BEGIN")
                try:
                    db.executemany(
                        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)",
                        [(ref.decode(), commit.decode(), json.dumps(row)) for ref, commit, row in entries],
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")  # not left open: the next put would fail in it
                    raise
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
        self,
        refs: dict[bytes, bytes],
        load: Callable[[bytes, bytes], dict],
        made_of: tuple[bytes, AbstractSet[bytes]] | None = None,
    ) -> tuple[RunTable, list[CorruptRecordError]]:
        """The rows of ``{ref: commit}`` as a :class:`RunTable`: the snapshot's runs whose
        ref still holds its commit, then the others from the rows (or git, ``load``).
        Use inside :meth:`reading`. Corrupt runs are left out and their errors returned.
        Given the same dict again (a tracker's listing while no ref changed) and the same
        snapshot, it returns the same table, with the columns it decoded already.
        ``made_of``: what ``refs`` was listed from (packed-refs' sha256, the loose refs'
        names) when it holds every run ref, to stamp the snapshot with, so that the next
        process can use :meth:`table_at` instead of listing every ref; None when ``refs``
        holds some experiments' runs alone."""
        snap = self._read_snapshot()
        memo = self._table_memo
        if memo is not None and memo[0] is refs and memo[1] is snap:
            return memo[2], memo[3]
        base: RunTable | None = None
        rest = refs
        keep: list[bool] = []
        if snap is not None:
            whole = snap.table
            keep = list(map(operator.eq, map(refs.get, whole.refs), whole.commits))
            base = whole if all(keep) else whole.select(list(itertools.compress(range(len(keep)), keep)))
            if len(base) < len(refs):
                rest = {r: refs[r] for r in refs.keys() - set(base.refs)}
            else:
                rest = {}
            if made_of is None:  # runs of other experiments (or deleted ones): not this listing's to judge
                keep = [k or r not in refs for k, r in zip(keep, whole.refs, strict=False)]
        extra, errors, failed = self._rows_table(rest, load)
        table = extra if base is None else base + extra
        if made_of is not None:
            digest, loose = made_of
            exact = lambda unkept: (digest, set(loose) | failed | unkept)  # noqa: E731
            if len(extra) >= SNAPSHOT_SLACK:
                self._write(snap, keep, extra, exact)
            elif snap is not None and (snap.stamp is None or snap.stamp[0] != digest):
                unkept = {r for r, k in zip(snap.table.refs, keep, strict=False) if not k}
                names = set(loose) | unkept | set(rest)
                if len(names) > SNAPSHOT_SLACK + len(snap.table) // 20:  # too many to look at: merge all
                    self._write(snap, keep, extra, exact, merge_all=True)
                else:
                    self._restamp(snap, (digest, names))
        elif len(extra) >= SNAPSHOT_SLACK:
            self._write(snap, keep, extra, lambda unkept: self._widened(snap, set(extra.refs) | failed))
        self._table_memo = (refs, snap, table, errors)
        return table, errors

    def _widened(self, snap: Snapshot | None, names: set[bytes]) -> tuple[bytes, set[bytes]] | None:
        """The snapshot's stamp with ``names`` looked at too (after a segment of those runs
        is added by a search of some experiments), or None when that names too many."""
        if snap is None or snap.stamp is None:
            return None
        names |= snap.stamp[1]
        return (snap.stamp[0], names) if len(names) <= SNAPSHOT_SLACK + len(snap.table) // 20 else None

    def table_at(
        self,
        state: tuple[bytes, dict[bytes, bytes]],
        packed_ref: Callable[[bytes], bytes | None],
        load: Callable[[bytes, bytes], dict],
    ) -> tuple[RunTable, list[CorruptRecordError]] | None:
        """:meth:`table` of the refs a state describes (packed-refs' sha256, the loose refs
        ``{ref: commit}``), without their listing: from a snapshot stamped with the same
        packed-refs, looking only at the refs the stamp names and the loose ones, each
        found in packed-refs by ``packed_ref``. None when no snapshot is stamped so (the
        caller lists the refs and calls :meth:`table`, which stamps it)."""
        snap = self._read_snapshot()
        if snap is None or snap.stamp is None:
            return None
        digest, loose = state
        stamp = snap.stamp
        if stamp[0] != digest:
            return None
        key = (digest, frozenset(loose.items()))
        memo = self._table_memo
        if memo is not None and memo[0] == key and memo[1] is snap:
            return memo[2], memo[3]
        commits = snap.table.commits
        dropped: set[int] = set()
        rest: dict[bytes, bytes] = {}
        for name in stamp[1] | loose.keys():
            current = loose.get(name) or packed_ref(name)
            found = False
            for at in snap.find(name):  # a ref moved since a segment was written has an entry per segment
                if not found and commits[at] == current:
                    found = True
                else:
                    dropped.add(at)
            if not found and current is not None:
                rest[name] = current
        base = snap.table
        if dropped:
            base = base.select([i for i in range(len(base)) if i not in dropped])
        extra, errors, failed = self._rows_table(rest, load)
        table = base + extra
        if len(extra) >= SNAPSHOT_SLACK:
            keep = [True] * len(snap.table)
            for at in dropped:
                keep[at] = False
            self._write(snap, keep, extra, lambda unkept: (digest, set(loose) | failed | unkept))
        elif not self._by_name:
            self._write_names(snap)  # segments written before names were kept
        self._table_memo = (key, snap, table, errors)
        return table, errors

    def named(
        self,
        name: str,
        state: tuple[bytes, dict[bytes, bytes]],
        packed_ref: Callable[[bytes], bytes | None],
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
            gens, stamp, by_name = _live(reader)
            if not gens or stamp is None or not by_name or stamp[0] != digest:
                return None
            held = reader.execute(
                "SELECT ref, commit_id FROM snapshot_names "
                f"WHERE gen IN ({','.join('?' * len(gens))}) AND run_name = ?",
                (*gens, name),
            ).fetchall()
        except (sqlite3.Error, ValueError, TypeError) as e:
            log.warning("gitml: search index snapshot unreadable (%s); reading rows", e)
            return None
        look = stamp[1] | loose.keys()
        out = [(ref, commit) for ref, commit in held if ref not in look]
        current = {ref: commit for ref in look if (commit := loose.get(ref) or packed_ref(ref)) is not None}
        entries, _ = self._entries(current, load)
        out += [(ref, commit) for ref, commit, row in entries if row.get("run_name") == name]
        return out

    def _write_names(self, snap: Snapshot) -> None:
        """The table of names of the segments written by a gitml that kept none."""
        try:
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    named = {g for (g,) in db.execute("SELECT gen FROM snapshot WHERE name = 'by-name'")}
                    if _gens(db) == snap.gens:
                        for gen, segment in snap.segments:
                            if gen not in named:
                                _insert_names(db, gen, segment)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            self._by_name = True
        except sqlite3.Error as e:  # a cache: names are found in the columns meanwhile
            log.warning("gitml: could not write the search index's names: %s", e)

    def _rows_table(
        self, rest: dict[bytes, bytes], load: Callable[[bytes, bytes], dict]
    ) -> tuple[RunTable, list[CorruptRecordError], set[bytes]]:
        """The rows of ``rest`` (from memory, the rows table or git) as a table, the errors
        of the runs that could not be read, and their refs."""
        parts, errors, failed = [], [], set()
        names = list(rest)
        for i in range(0, len(names), _TABLE_CHUNK):  # the rows of one chunk at a time in memory
            chunk = {r: rest[r] for r in names[i : i + _TABLE_CHUNK]}
            entries, errs = self._entries(chunk, load, keep=len(rest) <= _KEEP_ROWS)
            parts.append(RunTable.from_rows(entries))
            errors += errs
            if errs:
                failed.update(set(chunk) - {ref for ref, _, _ in entries})
        extra = RunTable.concat(parts) if len(parts) > 1 else parts[0] if parts else RunTable.from_rows([])
        return extra, errors, failed

    def _restamp(self, snap: Snapshot, stamp: tuple[bytes, AbstractSet[bytes]]) -> None:
        """Stamp the snapshot with another packed-refs (refs were packed, fetched, deleted):
        the stamp's names are where it differs from the refs now or may differ from that file."""
        data = _encode_stamp(*stamp)
        try:
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    if _gens(db) == snap.gens:
                        db.execute("DELETE FROM snapshot WHERE name = 'stamp'")
                        db.execute("INSERT INTO snapshot VALUES (?, 'stamp', ?)", (snap.gens[-1], data))
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
                reader = self._reader = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
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

    def _read_snapshot(self) -> Snapshot | None:
        """The snapshot's segments as the read transaction sees them (the segments read
        before are kept, with the columns they decoded: a segment never changes), or None."""
        reader = self._reader
        if reader is None:
            return None
        try:
            gens, stamp, self._by_name = _live(reader)  # read each time: another process may stamp it
            if not gens:
                self._snapshot = None
                return None
            snap = self._snapshot
            if snap is not None and snap.gens == gens:
                snap.stamp = stamp
                return snap
            known = {} if snap is None else dict(snap.segments)
            if self._written is not None:
                known.setdefault(*self._written)
            segments = []
            for gen in gens:
                segment = known.get(gen)
                if segment is None:
                    segment = self._read_segment(reader, gen)
                    if segment is None:
                        self._snapshot = None
                        return None  # an older gitml's: rewritten by this search
                segments.append((gen, segment))
        except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
            log.warning("gitml: search index snapshot unreadable (%s); reading rows", e)
            return None
        self._snapshot = Snapshot(segments, stamp)
        return self._snapshot

    def _read_segment(self, reader: sqlite3.Connection, gen: int) -> RunTable | None:
        head = dict(
            reader.execute(
                "SELECT name, data FROM snapshot WHERE gen = ? AND name IN ('format', 'refs', 'commits', 'keys')",
                (gen,),
            ).fetchall()
        )
        if head.get("format") != FORMAT:
            return None
        refs, commits, keys = decode_head(head["refs"], head["commits"], head["keys"])
        if any(map(operator.gt, refs, refs[1:])):
            raise ValueError("a snapshot segment's refs are not sorted")

        def read(name: str, decode: Callable[[bytes], Any]) -> Any:
            try:
                found = reader.execute("SELECT data FROM snapshot WHERE gen = ? AND name = ?", (gen, name)).fetchone()
                return None if found is None else decode(found[0])
            except (sqlite3.Error, ValueError, TypeError) as e:
                self._snapshot = None
                self._drop_segment(gen)
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

        return RunTable(refs, commits, keys, column, array, take)

    def known(self, refs: dict[bytes, bytes]) -> set[bytes]:
        """The refs of ``{ref: commit}`` whose commit's record the index holds a row of: rows
        are made only from records that loaded (every field checked) or that a writer made.
        A few refs (a push of new runs) are looked up in the rows alone, not the snapshot of
        every run."""
        found: set[bytes] = set()
        rest = refs
        if len(refs) > _KEEP_ROWS:
            with self.reading():
                snap = self._read_snapshot()
                if snap is not None:
                    found = {r for r, c in zip(snap.table.refs, snap.table.commits, strict=False) if refs.get(r) == c}
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

    def _drop_segment(self, gen: int) -> None:
        """A damaged segment goes, and the stamp with it (its runs are no longer in the
        snapshot: the next search lists the refs, and writes them again)."""
        try:
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("DELETE FROM snapshot WHERE gen = ? OR name = 'stamp'", (gen,))
                    db.execute("DELETE FROM snapshot_names WHERE gen = ?", (gen,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as e:
            log.warning("gitml: could not drop the search index snapshot: %s", e)

    def _write(
        self,
        snap: Snapshot | None,
        keep: list[bool],
        extra: RunTable,
        stamp_of: Callable[[set[bytes]], tuple[bytes, AbstractSet[bytes]] | None],
        *,
        merge_all: bool = False,
    ) -> None:
        """Add ``extra`` (the runs outside the snapshot) to the snapshot as a new segment,
        merged with the newest segments as packs are: each segment at least twice the
        size of the next newer one, so that a run is rewritten about log2(runs / 256)
        times in all, and a write costs about what the new runs do. A merged segment
        keeps only the entries ``keep`` marks (the others moved or went); ``merge_all``
        (or no snapshot) writes one segment of every entry kept. ``stamp_of`` gives the
        stamp from the refs of the entries not kept that remain in older segments.
        Nothing is written when another process changed the segments meanwhile."""
        segments = snap.segments if snap is not None else []
        starts = list(itertools.accumulate([len(t) for _, t in segments], initial=0))
        live = [sum(keep[starts[i] : starts[i + 1]]) for i in range(len(segments))]
        total, first = len(extra), len(segments)
        while first > 0 and (
            merge_all or live[first - 1] < 2 * total or live[first - 1] * 2 < len(segments[first - 1][1])
        ):
            first -= 1
            total += live[first]
        try:
            parts = []
            for i in range(first, len(segments)):
                positions = [p - starts[i] for p in range(starts[i], starts[i + 1]) if keep[p]]
                segment = segments[i][1]
                parts.append(segment if len(positions) == len(segment) else segment.select(positions))
            parts.append(extra)
            table = RunTable.concat(parts) if len(parts) > 1 else extra
            order = sorted(range(len(table)), key=table.refs.__getitem__)
            if any(map(operator.ne, order, range(len(order)))):
                table = table.select(order)
            data = list(table.encode())
            unkept = {snap.table.refs[p] for p in range(starts[first]) if not keep[p]} if snap is not None else set()
            stamp = stamp_of(unkept)
            if stamp is not None:
                data.append(("stamp", _encode_stamp(*stamp)))
            gone = [g for g, _ in segments[first:]]
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    present = _gens(db)
                    if present == (snap.gens if snap is not None else present):
                        gen = (present[-1] if present else 0) + 1
                        if snap is None:
                            gone = list(present)  # an older gitml's, or unreadable
                        if gone:
                            marks = ",".join("?" * len(gone))
                            db.execute(f"DELETE FROM snapshot WHERE gen IN ({marks})", gone)
                            db.execute(f"DELETE FROM snapshot_names WHERE gen IN ({marks})", gone)
                        db.execute("DELETE FROM snapshot WHERE name = 'stamp'")
                        db.executemany("INSERT INTO snapshot VALUES (?, ?, ?)", [(gen, n, d) for n, d in data])
                        db.execute("DELETE FROM snapshot_names WHERE gen = ?", (gen,))
                        _insert_names(db, gen, table)
                        columns = {name: table.column(*name.partition(".")[::2]) for name in table.names()}
                        self._written = (gen, RunTable(table.refs, table.commits, table.keys, columns.get))
                        fresh = self._fresh
                        for ref, commit in zip(table.refs, table.commits, strict=False):
                            if fresh.get(ref) == commit:
                                del fresh[ref]
                    db.execute("COMMIT")
                except BaseException:
                    self._written = None
                    db.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, ValueError) as e:  # a cache: the next search tries again
            log.warning("gitml: could not write the search index snapshot: %s", e)

    def fresh(self) -> int:
        """How many runs this process put rows of since it last wrote them into the snapshot."""
        return len(self._fresh)

    def add_fresh(self, minimum: int = SNAPSHOT_SLACK) -> bool:
        """Write the runs this process put rows of (its writers' commits) as a snapshot
        segment, when at least ``minimum``: a process that makes many runs leaves their
        columns behind as it goes, so the next search reads no row of them. No listing of
        refs: the stamp, if any, names them too (a search's listing makes it exact again).
        Safe beside a search of another thread (its own connection); True if written."""
        with self._adding:
            with self._lock:
                entries = [
                    (ref, commit, hit[1])
                    for ref, commit in self._fresh.items()
                    if (hit := self._mem.get(ref)) is not None and hit[0] == commit
                ]
            if len(entries) < minimum:
                return False
            try:
                reader = self._own_reader
                if reader is None:
                    self._db()
                    reader = self._own_reader = sqlite3.connect(
                        self.path, timeout=30, isolation_level=None, check_same_thread=False
                    )
                reader.execute("BEGIN")
                try:
                    gens, stamp, _ = _live(reader)
                    segments = []
                    for gen in gens:
                        segment = self._read_segment(reader, gen)
                        if segment is None:
                            break
                        segments.append((gen, segment))
                    snap = Snapshot(segments, stamp) if segments and len(segments) == len(gens) else None
                    if snap is not None:  # another process's search may have taken some already
                        commits = snap.table.commits
                        entries = [e for e in entries if all(commits[at] != e[1] for at in snap.find(e[0]))]
                        if len(entries) < minimum:
                            return False
                    extra = RunTable.from_rows(entries)
                    keep = [True] * (len(snap.table) if snap is not None else 0)
                    before = self._written
                    self._write(snap, keep, extra, lambda unkept: self._widened(snap, set(extra.refs)))
                    return self._written is not before
                finally:
                    reader.execute("COMMIT")
            except (sqlite3.Error, ValueError, KeyError, TypeError, RepositoryError) as e:  # a cache
                log.warning("gitml: could not add this process's runs to the search index snapshot: %s", e)
                return False

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
                names = [r.decode() for r in refs[i : i + _CHUNK]]
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


class Snapshot:
    """The snapshot as read: its segments (generation, table), oldest first, each sorted
    by ref; their rows as one table; and its stamp (None: unstamped)."""

    def __init__(self, segments: list[tuple[int, RunTable]], stamp: tuple[bytes, frozenset[bytes]] | None):
        self.segments = segments
        self.gens = tuple(gen for gen, _ in segments)
        self.stamp = stamp
        tables = [table for _, table in segments]
        self.table = tables[0] if len(tables) == 1 else RunTable.concat(tables)
        self._starts = list(itertools.accumulate([len(t) for t in tables], initial=0))

    def find(self, ref: bytes) -> Iterator[int]:
        """The positions in :attr:`table` of the entries of ``ref`` (by bisection in each segment)."""
        for (_, segment), start in zip(self.segments, self._starts, strict=False):
            refs = segment.refs
            at = bisect.bisect_left(refs, ref)
            while at < len(refs) and refs[at] == ref:
                yield start + at
                at += 1


def _gens(db: sqlite3.Connection) -> tuple[int, ...]:
    """The snapshot's generations (its segments), oldest first."""
    return tuple(g for (g,) in db.execute("SELECT DISTINCT gen FROM snapshot ORDER BY gen"))


def _live(reader: sqlite3.Connection) -> tuple[tuple[int, ...], tuple[bytes, frozenset[bytes]] | None, bool]:
    """The snapshot's generations (none when one is an older gitml's), its stamp (None:
    unstamped; kept in the newest), and whether every segment has its table of names."""
    marks: dict[int, dict[str, bytes]] = {}
    for gen, name, data in reader.execute(
        "SELECT gen, name, data FROM snapshot WHERE name IN ('format', 'stamp', 'by-name')"
    ):
        marks.setdefault(gen, {})[name] = data
    gens = tuple(sorted(marks))
    if any(m.get("format") != FORMAT for m in marks.values()):
        return (), None, False
    newest = marks[gens[-1]] if gens else {}
    stamp = _decode_stamp(newest["stamp"]) if "stamp" in newest else None
    return gens, stamp, all("by-name" in m for m in marks.values())


def _encode_stamp(digest: bytes, names: AbstractSet[bytes]) -> bytes:
    """A snapshot's stamp: packed-refs' sha256, then the names to look at, one a line."""
    return digest + b"\n".join(sorted(names))


def _decode_stamp(data: bytes) -> tuple[bytes, frozenset[bytes]]:
    if not isinstance(data, bytes) or len(data) < 32:
        raise ValueError("snapshot stamp malformed")
    return data[:32], frozenset(data[32:].split(b"\n")) if len(data) > 32 else frozenset()


def _insert_names(db: sqlite3.Connection, gen: int, table: RunTable) -> None:
    """The runs of segment ``gen`` by name (for :meth:`RunIndex.named`), and its mark."""
    db.executemany(
        "INSERT INTO snapshot_names VALUES (?, ?, ?, ?)",
        zip(itertools.repeat(gen), table.column("attributes", "run_name"), table.refs, table.commits),
    )
    db.execute("INSERT INTO snapshot VALUES (?, 'by-name', x'31')", (gen,))

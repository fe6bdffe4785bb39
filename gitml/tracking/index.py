"""The search index: one row per run ref, keyed by the commit it was read from.

Commits never change, so a row stays valid while its ref points at the same
commit. Writers put the row of every commit they make; search re-reads from git
only the refs whose commit differs from the row's. The index is a cache in
``.git/gitml/index.sqlite3``: deleting it only costs one slower search.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable

from gitml.errors import CorruptRecordError

log = logging.getLogger("gitml")


class RunIndex:
    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._mem: dict[bytes, tuple[bytes, dict]] = {}
        self._loaded = False
        self._lock = threading.Lock()

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
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def put(self, ref: bytes, commit: bytes, row: dict) -> None:
        with self._lock:
            self._mem[ref] = (commit, row)
            try:
                self._db().execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (ref.decode(), commit.decode(), json.dumps(row))
                )
            except sqlite3.Error as e:  # the index is a cache: never fail a write for it
                log.warning("gitml: could not update the search index: %s", e)

    def rows(
        self, refs: dict[bytes, bytes], load: Callable[[bytes, bytes], dict]
    ) -> tuple[list[dict], list[CorruptRecordError]]:
        """Rows for ``{ref: commit}``, reading from git (``load``) what the index lacks.

        Runs whose record is corrupt are left out and their errors returned.
        """
        with self._lock:
            mem = self._mem
            out, missing, errors = [], [], []
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
        for ref, commit in missing:
            try:
                row = load(ref, commit)
            except CorruptRecordError as e:
                errors.append(e)
                continue
            self.put(ref, commit, row)
            out.append(row)
        return out, errors

    def _load_all(self) -> None:
        self._loaded = True
        try:
            cursor = self._db().execute("SELECT ref, commit_id, row FROM runs")
            for ref, commit, row in cursor:
                self._mem[ref.encode()] = (commit.encode(), json.loads(row))
        except (sqlite3.Error, ValueError) as e:
            log.warning("gitml: search index unreadable (%s); reading runs from git", e)

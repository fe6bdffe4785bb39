"""The stat cache: ``realpath → (size, mtime_ns, inode, ctime_ns) → (sha256, git blob id)``,
as git's index spares re-hashing an unchanged file (``.git/gitml/statcache.sqlite3``).

A file changed within ``RACY_NS`` of being hashed is not kept ("racily clean", as git says):
file systems stamp times by a coarse clock tick (a few milliseconds, 2 s on FAT), so a file
rewritten to the same size within one tick of the first write keeps every field of its stat,
and would be taken for the bytes hashed before. Such a file is hashed again next time."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

RACY_NS = 2_000_000_000  # a file's times within this of its hashing may hide a rewrite in the same tick


class StatCache:
    """``realpath → (size, mtime_ns, inode, ctime_ns) → (sha256, git blob id)`` in SQLite."""

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS stat2 "
                    "(path TEXT PRIMARY KEY, size INT, mtime INT, ino INT, ctime INT, sha TEXT, blob TEXT)"
                )
                self._conn = conn
            except sqlite3.DatabaseError:  # a cache: start again
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(self.path + suffix):
                        os.unlink(self.path + suffix)
                return self._db()
        return self._conn

    @staticmethod
    def key(st: os.stat_result) -> tuple:
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def get_many(self, stats: dict[str, os.stat_result]) -> dict[str, tuple[str, str | None]]:
        """``{path: (sha256, blob)}`` for the paths whose stat is unchanged."""
        found = {}
        paths = list(stats)
        with self._lock:
            db = self._db()
            for i in range(0, len(paths), 500):
                chunk = paths[i : i + 500]
                rows = db.execute(
                    "SELECT path, size, mtime, ino, ctime, sha, blob FROM stat2 "
                    f"WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for path, size, mtime, ino, ctime, sha, blob in rows:
                    if (size, mtime, ino, ctime) == self.key(stats[path]):
                        found[path] = (sha, blob)
        return found

    def put_many(self, rows: list[tuple[str, os.stat_result, str, str | None]]) -> None:
        """Keep ``(path, stat, sha256, blob)`` of files hashed just now, but the racily clean
        ones (changed within ``RACY_NS`` of now: see the module's docstring)."""
        settled = time.time_ns() - RACY_NS
        rows = [row for row in rows if row[1].st_mtime_ns < settled]
        if not rows:
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO stat2 VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(path, *self.key(st), sha, blob) for path, st, sha, blob in rows],
            )
            db.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

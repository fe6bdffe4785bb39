"""The stat cache: ``realpath → (size, mtime_ns, inode, ctime_ns) → (sha256, git blob id)``,
as git's index spares re-hashing an unchanged file (``.git/gitml/statcache.sqlite3``)."""

from __future__ import annotations

import os
import sqlite3
import threading


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
                    f"SELECT path, size, mtime, ino, ctime, sha, blob FROM stat2 WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for path, size, mtime, ino, ctime, sha, blob in rows:
                    if (size, mtime, ino, ctime) == self.key(stats[path]):
                        found[path] = (sha, blob)
        return found

    def put_many(self, rows: list[tuple[str, os.stat_result, str, str | None]]) -> None:
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

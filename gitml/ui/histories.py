"""Parsed metric histories kept on disk, one file per history chunk, named by the chunk's blob id.

Parsing a million ``step<TAB>timestamp<TAB>value`` lines takes pandas 0.3-0.7 s and
reading their 100 chunks from the packs 0.2 s; loading the same points as arrays takes
a few hundredths. A chunk's blob never changes under its id, so what was parsed of it
stays true: a RUNNING run's new points are new chunks (and a rewritten last chunk), and
only those are parsed. Only chunks of ``MIN_POINTS`` or more are kept (small ones parse
in microseconds, and 200,000 small files would cost more than they save).

A cache file is raw bytes, never a pickle::

    MAGIC  blob id (20 bytes)  n (uint64 LE)  sha256 (32 bytes)
    steps (n int64 LE)  times (n int64 LE)  values (n float64 LE)

The sha256 covers the blob id, n and the arrays: a file that is short, damaged, or
made for another blob is ignored and rebuilt from the blob. (Anyone who can write
under ``.git`` can rewrite the runs themselves; the checksum is against damage.)

>>> cache = HistoryCache(client.cache_dir("histories"))
>>> commit, (steps, times, values) = read_history(client, cache, run_id, "loss")
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from gitml.ui import series

if TYPE_CHECKING:
    from gitml.ops import Operations

log = logging.getLogger(__name__)
MAGIC = b"gitml-history-chunk 1\n"
HEAD = struct.Struct("<20sQ32s")
MIN_POINTS = 2_000  # chunks with fewer points are parsed each time, not kept
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


class HistoryCache:
    """Parsed chunks under ``root/<2hex>/<38hex>``; counts what it loaded and what was parsed."""

    def __init__(self, root: str):
        self.root = root
        self.loaded = 0  # chunks read from cache files
        self.parsed = 0  # chunks parsed from their blobs
        self.rejected = 0  # cache files ignored (damaged, short, another blob's)

    def path(self, blob_id: str) -> str:
        return os.path.join(self.root, blob_id[:2], blob_id[2:])

    def load(self, blob_id: str) -> Arrays | None:
        """The arrays kept for ``blob_id``, or None (absent, or not to be trusted)."""
        try:
            with open(self.path(blob_id), "rb") as f:
                data = f.read()
        except OSError:
            return None
        arrays = _decode(data, bytes.fromhex(blob_id))
        if arrays is None:
            self.rejected += 1
            log.warning("gitml ui: ignoring the damaged history cache file %s", self.path(blob_id))
            return None
        self.loaded += 1
        return arrays

    def save(self, blob_id: str, arrays: Arrays) -> None:
        """Keep ``arrays`` for ``blob_id`` (written to a temporary name, then renamed:
        a reader sees a whole file or none). A failure (read-only repository, full
        disk) is logged: the cache is an optimisation."""
        folder = os.path.dirname(self.path(blob_id))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".gitml-tmp-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_encode(bytes.fromhex(blob_id), arrays))
                os.replace(tmp, self.path(blob_id))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            log.warning("gitml ui: could not keep a parsed history chunk: %s", e)


def _encode(blob: bytes, arrays: Arrays) -> bytes:
    steps, times, values = arrays
    body = b"".join((steps.astype("<i8").tobytes(), times.astype("<i8").tobytes(), values.astype("<f8").tobytes()))
    n = struct.pack("<Q", len(steps))
    return MAGIC + HEAD.pack(blob, len(steps), hashlib.sha256(blob + n + body).digest()) + body


def _decode(data: bytes, blob: bytes) -> Arrays | None:
    start = len(MAGIC) + HEAD.size
    if len(data) < start or not data.startswith(MAGIC):
        return None
    found, n, digest = HEAD.unpack_from(data, len(MAGIC))
    body = memoryview(data)[start:]
    if found != blob or len(body) != 24 * n or hashlib.sha256(blob + struct.pack("<Q", n) + body).digest() != digest:
        return None
    return (
        np.frombuffer(body, "<i8", n, 0),
        np.frombuffer(body, "<i8", n, 8 * n),
        np.frombuffer(body, "<f8", n, 16 * n),
    )


def read_history(client: Operations, cache: HistoryCache | None, run_id: str, key: str) -> tuple[str, Arrays]:
    """``(run commit, (steps, timestamps ms, values))`` of ``key``: chunks kept in
    ``cache`` are loaded, the others read and parsed together in one pass (and kept
    when large)."""
    commit, chunks = client.metric_history_chunks(run_id, key)
    if not chunks:
        return commit, series.parse_history(b"")
    parts: list[Arrays | None] = [cache.load(sha) if cache else None for sha in chunks]
    missing = [i for i, part in enumerate(parts) if part is None]
    if missing:
        texts = [client.metric_history_chunk(chunks[i]) for i in missing]
        parsed = series.parse_history(b"".join(texts))
        if cache is not None:
            cache.parsed += len(missing)
        counts = [text.count(b"\n") for text in texts]
        if sum(counts) != len(parsed[0]):  # lines pandas skipped (blank): no split by chunk, no cache
            if len(missing) < len(chunks):
                parsed = series.parse_history(b"".join(client.metric_history_chunk(sha) for sha in chunks))
            return commit, parsed
        if len(missing) == len(chunks) and (cache is None or max(counts) < MIN_POINTS):
            return commit, parsed
        bounds = np.cumsum([0, *counts])
        for i, start, stop in zip(missing, bounds[:-1], bounds[1:], strict=False):
            part = (parsed[0][start:stop], parsed[1][start:stop], parsed[2][start:stop])
            parts[i] = part
            if cache is not None and stop - start >= MIN_POINTS:
                cache.save(chunks[i], part)
    if len(parts) == 1:
        return commit, parts[0]  # type: ignore[return-value]
    return commit, tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value,index]

"""The repository as the web application reads it: a Operations behind a lock, searches behind
their own, and metric histories parsed once (:class:`Reader`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from gitml.errors import TimeBudgetError
from gitml.ui import histories, series, tables

if TYPE_CHECKING:
    from gitml.ops import Operations

CACHE_POINTS = 8_000_000  # parsed history points kept in memory (~200 MB)
WARM_RUNS = 50  # newest runs whose long histories the server parses when it starts
WARM_CHUNKS = 2  # a history of at least this many chunks (10,000 points each) is warmed
REQUEST_SECONDS = 10.0  # a request's time budget: waiting for a lock, and a search's filter


class Reader:
    """The Operations behind a lock (one request reads the repository at a time; dulwich's
    store and the search index are not for threads); parsed histories cached by commit in
    memory, and their large chunks on disk by blob id (``histories.HistoryCache``).

    Searches go through a second Operations behind a lock of their own (``searches``, a
    :class:`tables.SearchCache`): a costly filter, which a page of another site can ask
    for (``<img src=".../api/runs?filter=...">``), holds up other searches only. Each
    request has REQUEST_SECONDS to get its lock and filter; past them, 503."""

    def __init__(self, client: Operations, *, search_client: Operations | None = None):
        self.client = client
        self.lock = threading.Lock()
        self._histories: OrderedDict[tuple[str, str], tuple[str, tuple]] = OrderedDict()
        self._points = 0
        self._own_search_client = search_client is None
        if search_client is None:
            from gitml.ops import Operations

            search_client = Operations(client.repo_path)
        self.searches = tables.SearchCache(search_client)
        self.chunks = histories.HistoryCache(client.cache_dir("histories"))

    def close(self) -> None:
        """Close the searches' Operations, when this Reader opened it."""
        if self._own_search_client:
            self.searches.client.close()

    def search(
        self,
        experiment_ids: list[str] | None,
        filter_string: str = "",
        *,
        view: int = 1,
        order_by: list[str] | None = None,
        budget: float | None = REQUEST_SECONDS,
    ) -> tables.Search:
        """A search of the runs (kept until a run changes), under the searches' lock only;
        TimeBudgetError past ``budget`` seconds (None: no limit)."""
        deadline = time.monotonic() + budget if budget is not None else None
        return self.searches.get(experiment_ids, filter_string, view=view, order_by=order_by, deadline=deadline)

    def warm(self) -> None:
        """What a first request would otherwise wait for: the search index's columns of
        every run, pandas' parser, and the long histories of the newest runs (the table's
        first page) parsed and kept on disk; run once in the background when the server
        starts, taking the lock once per step so a request waits for one step at most."""
        search = self.search(None, budget=None)
        with self.lock:
            series.parse_history(b"0\t0\t0\n")
            ids = search.values["attributes.run_id"]
            newest = [i for i, _ in search.order[:WARM_RUNS]]
            todo = [
                (ids[i], key)
                for i in newest
                for key in search.keys["metrics"]
                if search.column(f"metrics.{key}")[i] is not None
            ]
        for run_id, key in todo:
            with self.lock:
                if len(self.client.metric_history_chunks(run_id, key)[1]) >= WARM_CHUNKS:
                    self.history(run_id, key)

    async def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a thread, under the lock; TimeBudgetError when the
        lock is not free within REQUEST_SECONDS."""

        def locked():
            if not self.lock.acquire(timeout=REQUEST_SECONDS):
                raise TimeBudgetError(f"the UI was busy with other requests for {REQUEST_SECONDS:.0f} s: try again")
            try:
                return fn(*args, **kwargs)
            finally:
                self.lock.release()

        return await run_in_threadpool(locked)

    def history(self, run_id: str, key: str) -> tuple:
        """``(steps, timestamps, values)`` of a metric, parsed once per run commit."""
        commit, _ = self.client.metric_history_chunks(run_id, key)
        cached = self._histories.get((run_id, key))
        if cached is not None and cached[0] == commit:
            self._histories.move_to_end((run_id, key))
            return cached[1]
        commit, arrays = histories.read_history(self.client, self.chunks, run_id, key)
        self._histories[(run_id, key)] = (commit, arrays)
        self._points += len(arrays[0])
        while self._points > CACHE_POINTS and len(self._histories) > 1:
            _, (_, old) = self._histories.popitem(last=False)
            self._points -= len(old[0])
        return arrays

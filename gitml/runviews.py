"""What a reader (the ``gitml ui`` server, a notebook) asks of runs beyond MLflow's API:
search rows, raw metric histories, lineage, the code a run changed, artifact streams.

A mixin of :class:`gitml.ops.Operations` (the internal facade, not ``gitml.Client``):

>>> client = Operations("path/to/repo")
>>> rows = client.search_rows(filter_string="metrics.auc > 0.9 OR params.lr = '0.1'")
>>> commit, text = client.metric_history_text(rows[0]["run_id"], "loss")
>>> with client.open_artifact(rows[0]["run_id"], "model/MLmodel") as f:
...     head = f.read(4096)
"""

from __future__ import annotations

import io
import os
import time
from typing import TYPE_CHECKING, BinaryIO

from gitml.errors import InvalidInputError, NotFoundError
from gitml.names import check_artifact_path, check_key, parse_history_path
from gitml.runlog.entities import ViewType

if TYPE_CHECKING:
    from gitml.content.service import RunArtifacts
    from gitml.registry.state import Registry
    from gitml.runlog.lineage import LogEntry
    from gitml.runlog.tracker import Tracker
    from gitml.store.git import GitStore


# -- times as people read them (the CLI's tables, the UI's pages) ----------------------
def when(ms: int | None) -> str:
    """A time in ms since the epoch as local ``YYYY-mm-dd HH:MM:SS``; ``-`` when unset."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def duration(start: int | None, end: int | None) -> str:
    """How long from ``start`` to ``end`` (or now), in ms, as ``4.2s``, ``3.1m`` or ``2.0h``."""
    if not start:
        return "-"
    seconds = ((end or time.time() * 1000) - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


class RunViews:
    """Read-only views of runs; ``Operations`` provides ``tracker``, ``artifacts`` and the store."""

    tracker: Tracker
    _store: GitStore

    @property
    def artifacts(self) -> RunArtifacts:  # pragma: no cover - Operations' property replaces it
        raise NotImplementedError

    @property
    def registry(self) -> Registry:  # pragma: no cover - Operations' property replaces it
        raise NotImplementedError

    def search_rows(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str = "",
        *,
        view: int = ViewType.ACTIVE_ONLY,
        order_by: list[str] | None = None,
        max_results: int | None = None,
    ) -> list[dict]:
        """Search rows (dicts: run_id, run_name, status, start_time, end_time, params,
        metrics, tags, ...) of the runs matching ``filter_string``, ordered, as
        ``gitml runs --json`` prints them. Raises FilterSyntaxError, InvalidInputError."""
        from gitml.runlog.search import search_rows

        return search_rows(
            self.tracker, experiment_ids, filter_string, view=view, max_results=max_results, order_by=order_by
        )

    def search_columns(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str = "",
        *,
        view: int = ViewType.ACTIVE_ONLY,
        order_by: list[str] | None = None,
        deadline: float | None = None,
    ) -> tuple[dict[str, list[str]], dict[str, list]]:
        """:meth:`search_rows` by column, without a dict per run: ``(keys, values)``.
        ``keys``: the param, metric and tag keys the matched runs have (``{"params":
        [...], "metrics": [...], "tags": [...]}``, sorted); ``values[name]``: the field
        ``name`` (``attributes.run_id``, ``params.lr``, ``tags.note``...) of each matched
        run, in order, None where a run has none. ``deadline``: a ``time.monotonic()``
        value past which the filter stops (a server's time budget). Raises
        FilterSyntaxError, InvalidInputError, TimeBudgetError.

        >>> keys, values = client.search_columns(filter_string="metrics.auc > 0.9")
        >>> list(zip(values["attributes.run_id"], values["metrics.auc"]))
        """
        from gitml.runlog.search import search_columns

        return search_columns(
            self.tracker, experiment_ids, filter_string, view=view, order_by=order_by, deadline=deadline
        )

    def missing_keys_hint(self, filter_string: str, experiment_ids: list[str] | None = None) -> str | None:
        """For a search that found nothing: a one-line hint naming each param, metric or tag key
        the filter asks for that no run (of those experiments) has, with the nearest keys runs
        do have, or None when every key it names exists. Raises FilterSyntaxError."""
        import difflib

        from gitml.runlog.filter import filter_fields

        asked = [(s, k) for s, k in filter_fields(filter_string) if s in ("params", "metrics", "tags")]
        if not asked:
            return None
        with self.tracker.index.reading():
            table, _ = self.tracker.table(experiment_ids)
            keys = {section: set(table.keys[section]) for section in ("params", "metrics", "tags")}
        said = []
        for section, key in dict.fromkeys(asked):
            if key in keys[section]:
                continue
            near = difflib.get_close_matches(key, sorted(keys[section]), n=3, cutoff=0.6)
            if len(key) >= 3:  # a key inside a longer one: "auc" in "val_auc"
                near += [k for k in sorted(keys[section]) if key.lower() in k.lower() and k not in near][
                    : 3 - len(near)
                ]
            maybe = " (did you mean " + " or ".join(f"{section}.{k}" for k in near) + "?)" if near else ""
            said.append(f"{section}.{key}{maybe}")
        return "gitml: no run has " + ", ".join(said) if said else None

    def run_commits(self, experiment_ids: list[str] | None = None) -> dict[bytes, bytes]:
        """``{run ref: commit}`` of the runs (of some experiments): it changes whenever
        a run does, so a reader may keep what it computed from a search until it changes."""
        return self.tracker.run_refs(experiment_ids)

    def resolve_run(self, spec: str) -> str:
        """The run id of ``spec``: a run id, a unique prefix of one, or a run name.
        Raises RunNotFoundError, or InvalidInputError when ``spec`` is ambiguous."""
        return self.tracker.resolve(spec)

    def metric_history_text(self, run_id: str, key: str) -> tuple[str, bytes]:
        """``(run commit, text)``: every point of ``key`` as the run stores them, one
        ``step<TAB>timestamp<TAB>value`` line each (``nan``/``inf`` spelled so), in logged order,
        read at the run's current commit. For readers that parse a million points at
        once (numpy, pandas); ``get_metric_history`` gives ``Metric`` objects.
        Raises RunNotFoundError, CorruptRecordError."""
        commit, chunks = self.metric_history_chunks(run_id, key)
        return commit, b"".join(self.metric_history_chunk(sha) for sha in chunks)

    def metric_history_chunks(self, run_id: str, key: str) -> tuple[str, list[str]]:
        """``(run commit, blob ids)``: the chunks holding ``key``'s history, in order. A
        chunk's content never changes under its id, so a reader may keep what it parsed
        of one by that id. Raises RunNotFoundError, CorruptRecordError."""
        check_key(key, "metric")
        record, commit = self.tracker.record(run_id)
        chunks = sorted(
            (parsed[1], sha)
            for path, (_, sha) in record.paths.items()
            if path.startswith("metrics/") and (parsed := parse_history_path(path[8:])) and parsed[0] == key
        )
        return commit.decode(), [sha.decode() for _, sha in chunks]

    def metric_history_chunk(self, blob_id: str) -> bytes:
        """The ``step<TAB>timestamp<TAB>value`` lines of one chunk (from
        :meth:`metric_history_chunks`), each ending in a newline."""
        if len(blob_id) != 40 or blob_id.strip("0123456789abcdef"):
            raise InvalidInputError(f"{blob_id[:80]!r} is not a blob id (40 lowercase hex digits)")
        from gitml.yamlread import MAX_YAML_BYTES

        chunk = self._store.blob(blob_id.encode(), MAX_YAML_BYTES, f"history chunk {blob_id}")
        data = chunk.partition(b"\n")[2]  # the first line names the columns
        return data + b"\n" if data and not data.endswith(b"\n") else data

    def cache_dir(self, name: str) -> str:
        """``<git common dir>/gitml/<name>``: where a reader keeps what it can rebuild
        from the repository (nothing there is needed; any of it may be deleted)."""
        if not name.isidentifier():
            raise InvalidInputError(f"cache name {name!r} must be a plain word")
        return os.path.join(self._store.gitml_dir, name)

    def run_lineage(self, run_id: str, *, limit: int = 20) -> list[LogEntry]:
        """What ``gitml log`` shows: the run's own commits, newest first, then up to
        ``limit`` commits of its source history."""
        from gitml.runlog.lineage import lineage

        _, commit = self.tracker.record(run_id)
        return lineage(self._store, commit, limit=limit)

    def branch_commits(self, rev: str, *, limit: int = 1000) -> list[str]:
        """Up to ``limit`` commit ids of ``rev``'s history, newest first by commit time.
        ``rev``: a branch, remote branch (``origin/main``), tag, full ref, ``HEAD`` or
        commit id, as the registry resolves them. Raises NotFoundError when ``rev`` names nothing."""
        import heapq

        store = self._store
        start = self.registry.resolve_commit(rev)
        seen = {start}
        heap = [(-store.commit(start).commit_time, start)]
        out: list[str] = []
        while heap and len(out) < limit:
            _, sha = heapq.heappop(heap)
            out.append(sha.decode())
            for parent in store.commit(sha).parents:
                if parent not in seen and store.contains(parent):  # a shallow clone ends early
                    seen.add(parent)
                    heapq.heappush(heap, (-store.commit(parent).commit_time, parent))
        return out

    def run_code_diff(self, run_id: str) -> dict[str, str]:
        """The code a run ran, as unified diffs: ``commit``, what its source commit
        changed against that commit's parent (everything, for a first commit);
        ``uncommitted``, the changes to tracked files it ran with (the run's tree
        against its source commit). Binary files are named, not shown."""
        from gitml.runlog.lineage import code_diff

        run_source = self.tracker.get_run(run_id).source
        assert run_source is not None  # a run read from git has one
        run_commit = (run_source.run_commit or "").encode()
        source = run_source.commit.encode() if run_source.commit else None
        out = {"commit": "", "uncommitted": ""}
        cut = source is not None and self._store.is_shallow() and not self._store.contains(source)
        if source is not None and not cut:  # behind a shallow clone's cut, its code is not here to show
            parents = self._store.commit(source).parents
            out["commit"] = code_diff(self._store, parents[0] if parents else None, source, labels=("a", "b"))
        if run_source.dirty and run_commit and not cut:
            out["uncommitted"] = code_diff(self._store, source, run_commit, labels=("a", "b"))
        return out

    def artifact_manifest(self, run_id: str) -> dict[str, dict]:
        """Every artifact file of a run: path → ``{"sha256", "size"}``."""
        return self.artifacts.manifest(run_id)

    def open_artifact(self, run_id: str, path: str) -> BinaryIO:
        """An artifact file of a run, open for reading in binary (close it). Its bytes
        were checked against the manifest's hash first (a damaged cached copy is fetched
        again from the remote). Raises NotFoundError, InvalidInputError (a folder, or a
        bad path), IntegrityError."""
        path = check_artifact_path(path.strip("/"), "path")
        manifest = self.artifacts.manifest(run_id)
        entry = manifest.get(path)
        if entry is None:
            if any(p.startswith(path + "/") for p in manifest):
                raise InvalidInputError(f"artifact {path!r} of run {run_id} is a folder, not a file")
            raise NotFoundError(f"run {run_id} has no artifact {path!r}")
        inline = self.artifacts.inline_copy(run_id, path, entry["sha256"])
        if inline is not None:
            return io.BytesIO(inline)
        content = self.artifacts.content
        what = f"run {run_id} artifact {path!r}"
        local = content.ensure_local(entry["sha256"], what=what, size=entry["size"])
        if not content.verify_local(entry["sha256"]):
            content.read_bytes(
                entry["sha256"], what=what, size=entry["size"]
            )  # drops the bad copy, fetches again or raises
        return open(local, "rb")

"""The run record: the files under ``.gitml/run/`` of a run commit.

    meta.yaml            run_id, run_name, experiment_id, status, user_id,
                         start_time, end_time, lifecycle_stage, source, parent_run_id
    params.yaml          key -> string
    tags.yaml            key -> string (user tags; system facts live in meta)
    metrics.yaml         key -> {value, step, timestamp} (the latest point)
    metrics/<key>@<n>.tsv  the history, ``step  timestamp  value`` rows, in chunks of
                         CHUNK_POINTS so a flush rewrites only the last chunk

A :class:`RunRecord` is the in-memory form; :meth:`RunRecord.files` gives blobs
for what changed since it was loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dulwich.objects import Blob

from gitml.errors import CorruptRecordError
from gitml.names import RECORD_DIR, history_path, parse_history_path
from gitml.store import yamlout
from gitml.store.git import FILE_MODE, GitStore
from gitml.tracking.entities import Metric

CHUNK_POINTS = 10_000
HISTORY_HEADER = "step\ttimestamp\tvalue\n"
META, PARAMS, TAGS, METRICS = "meta.yaml", "params.yaml", "tags.yaml", "metrics.yaml"
ARTIFACTS = "artifacts.yaml"
INLINE_DIR = "artifacts/"



def dump_yaml(data: dict) -> bytes:
    return yamlout.dump(data)


def load_yaml(data: bytes, what: str):
    import yaml  # imported on first read: commands served by the index never need it

    try:
        return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise CorruptRecordError(what, f"invalid YAML ({str(e).splitlines()[0]})") from None


def newer(point: tuple, old: tuple | None) -> bool:
    """MLflow's rule for the latest value: larger step, then timestamp, then value."""
    if old is None:
        return True
    if point[:2] != old[:2]:
        return point[:2] > old[:2]
    value, old_value = point[2], old[2]
    if math.isnan(old_value):
        return not math.isnan(value)
    return value > old_value


def format_point(step: int, timestamp: int, value: float) -> str:
    return f"{step}\t{timestamp}\t{value!r}\n"


@dataclass
class RunRecord:
    """A run's params, metrics, tags and metadata, and the blob of each file."""

    meta: dict
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # key -> (step, ts, value)
    artifacts: dict[str, dict] = field(default_factory=dict)  # path -> {sha256, size}
    paths: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # file -> (mode, sha)
    dirty: set[str] = field(default_factory=set)
    _tails: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    _new_blobs: list[Blob] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    # -- reading ---------------------------------------------------------
    @classmethod
    def load(cls, store: GitStore, commit_sha: bytes, what: str) -> RunRecord:
        """Read the record of a run commit. Raises CorruptRecordError naming ``what``."""
        try:
            tree = store.commit(commit_sha).tree
            entry = store.lookup(tree, RECORD_DIR)
        except CorruptRecordError as e:
            raise CorruptRecordError(what, str(e)) from None
        if entry is None:
            raise CorruptRecordError(what, f"commit {commit_sha.decode()} has no {RECORD_DIR}/")
        paths = store.files(entry[1])
        record = cls(meta={}, paths=paths)

        def read(name: str, default):
            if name not in paths:
                return default
            data = load_yaml(store.blob(paths[name][1]), f"{what} ({name})")
            if data is None:
                return default
            if not isinstance(data, dict):
                raise CorruptRecordError(what, f"{name} is not a mapping")
            return data

        record.meta = read(META, None)
        if not record.meta or "run_id" not in record.meta:
            raise CorruptRecordError(what, f"{META} is missing or has no run_id")
        record.params = {str(k): str(v) for k, v in read(PARAMS, {}).items()}
        record.tags = {str(k): str(v) for k, v in read(TAGS, {}).items()}
        try:
            record.artifacts = {
                str(k): {"sha256": str(v["sha256"]), "size": int(v["size"])} for k, v in read(ARTIFACTS, {}).items()
            }
        except (TypeError, KeyError, ValueError) as e:
            raise CorruptRecordError(what, f"{ARTIFACTS} has a malformed entry ({e})") from None
        try:
            record.latest = {
                str(k): (int(v["step"]), int(v["timestamp"]), float(v["value"]))
                for k, v in read(METRICS, {}).items()
            }
        except (TypeError, KeyError, ValueError) as e:
            raise CorruptRecordError(what, f"{METRICS} has a malformed entry ({e})") from None
        return record

    def history(self, store: GitStore, key: str) -> list[Metric]:
        """Every logged point of ``key``, in logged order."""
        chunks = sorted(
            (parsed[1], sha)
            for path, (_, sha) in self.paths.items()
            if path.startswith("metrics/") and (parsed := parse_history_path(path[8:])) and parsed[0] == key
        )
        out = []
        for _, sha in chunks:
            lines = store.blob(sha).decode().splitlines()[1:]
            for line in lines:
                try:
                    step, ts, value = line.split("\t")
                    out.append(Metric(key, float(value), int(ts), int(step)))
                except ValueError:
                    raise CorruptRecordError(f"run {self.run_id}", f"bad history line {line!r} of metric {key!r}") from None
        return out

    # -- changing --------------------------------------------------------
    def append_points(self, store: GitStore, key: str, points: list[tuple[int, int, float]]) -> None:
        """Add history points of ``key`` (step, timestamp, value) and update its latest value."""
        chunk, lines = self._tail(store, key)
        best = self.latest.get(key)
        for point in points:
            lines.append(format_point(*point))
            if newer(point, best):
                best = point
        if best is not None:
            self.latest[key] = best
        while len(lines) > CHUNK_POINTS:
            self._put_history(key, chunk, lines[:CHUNK_POINTS])
            chunk, lines = chunk + 1, lines[CHUNK_POINTS:]
        self._tails[key] = (chunk, lines)
        self._put_history(key, chunk, lines)
        self.dirty.add(METRICS)

    def add_artifact(self, path: str, sha256: str, size: int, blob: str | None) -> None:
        """Record an artifact; ``blob`` is the git blob of an inline copy (small files)."""
        self.artifacts[path] = {"sha256": sha256, "size": size}
        if blob:
            self.paths[INLINE_DIR + path] = (FILE_MODE, blob.encode())
        else:
            self.paths.pop(INLINE_DIR + path, None)
        self.dirty.add(ARTIFACTS)

    def inline_blob(self, path: str) -> bytes | None:
        entry = self.paths.get(INLINE_DIR + path)
        return entry[1] if entry else None

    def _tail(self, store: GitStore, key: str) -> tuple[int, list[str]]:
        if key in self._tails:
            return self._tails[key]
        last = -1
        for path in self.paths:
            if path.startswith("metrics/") and (parsed := parse_history_path(path[8:])) and parsed[0] == key:
                last = max(last, parsed[1])
        if last < 0:
            return 0, []
        data = store.blob(self.paths[f"metrics/{history_path(key, last)}"][1]).decode()
        return last, data.splitlines(keepends=True)[1:]

    def _put_history(self, key: str, chunk: int, lines: list[str]) -> None:
        blob = Blob.from_string((HISTORY_HEADER + "".join(lines)).encode())
        self._new_blobs.append(blob)
        self.paths[f"metrics/{history_path(key, chunk)}"] = (FILE_MODE, blob.id)

    def take_blobs(self) -> list[Blob]:
        """Blobs for every file changed since the last call (YAML files re-dumped)."""
        for name, data in ((META, self.meta), (PARAMS, self.params), (TAGS, self.tags)):
            if name in self.dirty or name not in self.paths:
                self._put_yaml(name, data)
        if ARTIFACTS in self.dirty:
            self._put_yaml(ARTIFACTS, self.artifacts)
        if METRICS in self.dirty or METRICS not in self.paths:
            self._put_yaml(
                METRICS,
                {k: {"step": s, "timestamp": t, "value": v} for k, (s, t, v) in self.latest.items()},
            )
        self.dirty.clear()
        blobs, self._new_blobs = self._new_blobs, []
        return blobs

    def _put_yaml(self, name: str, data) -> None:
        blob = Blob.from_string(dump_yaml(data))
        self._new_blobs.append(blob)
        self.paths[name] = (FILE_MODE, blob.id)

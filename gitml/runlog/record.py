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
import re
from dataclasses import dataclass, field

from gitml.errors import CorruptRecordError, InvalidInputError
from gitml.names import (
    RECORD_DIR,
    check_artifact_path,
    check_experiment_id,
    check_int64,
    check_key,
    check_run_id,
    check_sha256,
    check_text,
    history_path,
    parse_history_path,
    parse_run_ref,
)
from gitml.runlog.entities import Metric
from gitml.store import yamlout
from gitml.store.git import FILE_MODE, TREE_MODE, GitStore
from gitml.store.packs import RawObject

# the guarded YAML reader sits below the store: model folders, projects and the registry use it too
from gitml.yamlread import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, load_yaml  # noqa: F401

CHUNK_POINTS = 10_000
HISTORY_HEADER = "step\ttimestamp\tvalue\n"
_HEADER = HISTORY_HEADER.encode()
META, PARAMS, TAGS, METRICS = "meta.yaml", "params.yaml", "tags.yaml", "metrics.yaml"
ARTIFACTS = "artifacts.yaml"
BLOB = 3  # git's type number of a blob
INLINE_DIR = "artifacts/"


def dump_yaml(data: dict) -> bytes:
    return yamlout.dump(data)


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
    _tails: dict[str, tuple[int, int, bytes]] = field(default_factory=dict)  # key -> last chunk, its lines, text
    _new_blobs: list[RawObject] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    # -- reading ---------------------------------------------------------
    @classmethod
    def load(cls, store: GitStore, commit_sha: bytes, what: str, *, ref: bytes | None = None) -> RunRecord:
        """Read the record of a run commit, every field checked (see :func:`check_meta` and
        the other checks below) before anything uses it: a record pushed by anyone may be
        hostile. ``ref``, when given, must be the ref of the run the record names.
        Raises CorruptRecordError naming ``what``."""
        try:
            tree = store.commit(commit_sha).tree
            entry = store.lookup(tree, RECORD_DIR)
            paths = store.files(entry[1]) if entry is not None and entry[0] == TREE_MODE else None
        except CorruptRecordError as e:
            raise CorruptRecordError(what, str(e)) from None
        except RecursionError:
            raise CorruptRecordError(what, f"{RECORD_DIR}/ nests folders too deep") from None
        if paths is None:
            raise CorruptRecordError(what, f"commit {commit_sha.decode()} has no {RECORD_DIR}/")
        record = cls(meta={}, paths=paths)
        expect = parse_run_ref(ref) if ref is not None else None

        def read(name: str, default):
            if name not in paths:
                return default
            if paths[name][0] not in FILE_MODES:
                raise CorruptRecordError(what, f"{name} is not a file")
            data = load_yaml(store.blob(paths[name][1], MAX_YAML_BYTES, f"{what} ({name})"), f"{what} ({name})")
            if data is None:
                return default
            if not isinstance(data, dict):
                raise CorruptRecordError(what, f"{name} is not a mapping")
            return data

        name = META
        try:
            record.meta = check_meta(read(META, None), expect)
            name = PARAMS
            record.params = check_texts(read(PARAMS, {}), "param")
            name = TAGS
            record.tags = check_texts(read(TAGS, {}), "tag")
            name = ARTIFACTS
            record.artifacts = check_manifest(read(ARTIFACTS, {}))
            name = METRICS
            record.latest = check_latest(read(METRICS, {}))
            name = "metrics/"
            check_history_paths(paths)
        except InvalidInputError as e:
            raise CorruptRecordError(what, f"{name}: {e}") from None
        return record

    @classmethod
    def load_meta(cls, store: GitStore, commit_sha: bytes, what: str, *, ref: bytes | None = None) -> dict:
        """The checked meta of a run commit alone (what deciding whether a run takes a
        change needs: its lifecycle stage), without the other files :meth:`load` reads."""
        try:
            tree = store.commit(commit_sha).tree
            entry = store.lookup(tree, f"{RECORD_DIR}/{META}")
        except CorruptRecordError as e:
            raise CorruptRecordError(what, str(e)) from None
        if entry is None or entry[0] not in FILE_MODES:
            return cls.load(store, commit_sha, what, ref=ref).meta  # its error names what is wrong
        data = load_yaml(store.blob(entry[1], MAX_YAML_BYTES, f"{what} ({META})"), f"{what} ({META})")
        if not isinstance(data, dict):
            return cls.load(store, commit_sha, what, ref=ref).meta
        try:
            return check_meta(data, parse_run_ref(ref) if ref is not None else None)
        except InvalidInputError as e:
            raise CorruptRecordError(what, f"{META}: {e}") from None

    def history(self, store: GitStore, key: str) -> list[Metric]:
        """Every logged point of ``key``, in logged order."""
        chunks = sorted(
            (parsed[1], sha)
            for path, (_, sha) in self.paths.items()
            if path.startswith("metrics/") and (parsed := parse_history_path(path[8:])) and parsed[0] == key
        )
        return _points(store, f"run {self.run_id}", key, [sha for _, sha in chunks])

    @classmethod
    def load_history(
        cls, store: GitStore, commit_sha: bytes, what: str, key: str, *, ref: bytes | None = None
    ) -> list[Metric]:
        """:meth:`history` of one metric of a run commit, reading its meta (checked as
        :meth:`load_meta` does) and that metric's chunks alone: the time does not grow with
        the number of other metrics in the run (``load`` reads and checks them all)."""
        meta = cls.load_meta(store, commit_sha, what, ref=ref)
        folder, _, name = f"{RECORD_DIR}/metrics/{key}".rpartition("/")
        try:
            entry = store.lookup(store.commit(commit_sha).tree, folder)
            if entry is None or entry[0] != TREE_MODE:
                return []
            chunks = sorted(
                (parsed[1], sha)
                for file, (mode, sha) in store.tree(entry[1]).items()
                if file.startswith(name.encode() + b"@")
                and (parsed := parse_history_path(file.decode("utf-8", "surrogateescape")))
                and parsed[0] == name
                and mode in FILE_MODES
            )
        except CorruptRecordError as e:
            raise CorruptRecordError(what, str(e)) from None
        return _points(store, f"run {meta['run_id']}", key, [sha for _, sha in chunks])

    # -- changing --------------------------------------------------------
    def append_points(
        self, store: GitStore, key: str, steps: list[bytes], stamps: list[bytes], values: list[bytes]
    ) -> None:
        """Add history points of ``key`` and update its latest value. A point is given as the
        text of its step, timestamp and value, as its history line holds them (``str`` of the
        ints, ``repr`` of the float: the journal line's text, :func:`gitml.runlog.journal.metric_columns`)."""
        n = len(steps)
        if n:
            self._newest(key, steps, stamps, values)
        chunk, count, text = self._tail(store, key)
        while count > CHUNK_POINTS:  # a chunk longer than this version makes: cut as the lines come
            lines = text.decode().splitlines(keepends=True)
            self._put_history(key, chunk, "".join(lines[:CHUNK_POINTS]).encode())
            chunk, count, text = chunk + 1, count - CHUNK_POINTS, "".join(lines[CHUNK_POINTS:]).encode()
        done = 0
        while count + n - done > CHUNK_POINTS:  # the last chunk filled up: the next one starts
            take = CHUNK_POINTS - count
            self._put_history(key, chunk, text + _lines(steps, stamps, values, done, done + take))
            chunk, count, text, done = chunk + 1, 0, b"", done + take
        text += _lines(steps, stamps, values, done, n)
        self._tails[key] = (chunk, count + n - done, text)
        self._put_history(key, chunk, text)
        self.dirty.add(METRICS)

    def _newest(self, key: str, steps: list[bytes], stamps: list[bytes], values: list[bytes]) -> None:
        """The latest value of ``key`` with the points given (MLflow's rule, :func:`newer`): of the
        points that rule ranks highest, the first logged. Only points at the largest step can be
        it, so only those become numbers (W1: 20,000 calls of :func:`newer` saved)."""
        best = self.latest.get(key)
        if len(steps) == 1:  # (a run's metrics logged once each: W2)
            point = (int(steps[0]), int(stamps[0]), float(values[0]))
            if best is None or point[0] > best[0] or (point[0] == best[0] and newer(point, best)):
                self.latest[key] = point
            return
        numbers = list(map(int, steps))
        top = max(numbers)
        if best is not None and top < best[0]:
            return
        i = numbers.index(top)  # (the last point, when steps go up: nothing after it to count)
        for _ in range(1 + numbers[i + 1 :].count(top)):  # in logged order
            i = numbers.index(top, i)
            point = (top, int(stamps[i]), float(values[i]))
            i += 1
            if best is None or point[0] > best[0] or newer(point, best):
                best = point
        assert best is not None  # (the first point at the largest step, at least)
        self.latest[key] = best

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

    def _tail(self, store: GitStore, key: str) -> tuple[int, int, bytes]:
        """The last history chunk of ``key``: its number, how many lines it has, their text."""
        if key in self._tails:
            return self._tails[key]
        last = -1
        start = f"metrics/{key}@"  # ('@' is never part of a key): no parse of every other file's path
        for path in self.paths:
            if path.startswith(start) and (parsed := parse_history_path(path[8:])) and parsed[0] == key:
                last = max(last, parsed[1])
        if last < 0:
            return 0, 0, b""
        chunk = f"metrics/{history_path(key, last)}"
        data = store.blob(self.paths[chunk][1], MAX_YAML_BYTES, f"run {self.run_id} ({chunk})")
        lines = data.decode().splitlines(keepends=True)[1:]  # (as readers split it: the header dropped)
        return last, len(lines), "".join(lines).encode()

    def _put_history(self, key: str, chunk: int, text: bytes) -> None:
        blob = RawObject(BLOB, _HEADER + text)
        self._new_blobs.append(blob)
        self.paths[f"metrics/{history_path(key, chunk)}"] = (FILE_MODE, blob.id)

    def take_blobs(self) -> list[RawObject]:
        """Blobs for every file changed since the last call (YAML files re-dumped)."""
        for name, data in ((META, self.meta), (PARAMS, self.params), (TAGS, self.tags)):
            if name in self.dirty or name not in self.paths:
                self._put_yaml(name, data)
        if ARTIFACTS in self.dirty:
            self._put_yaml(ARTIFACTS, self.artifacts)
        if METRICS in self.dirty or METRICS not in self.paths:
            self._put_blob(METRICS, yamlout.dump_points(self.latest))
        self.dirty.clear()
        blobs, self._new_blobs = self._new_blobs, []
        return blobs

    def _put_yaml(self, name: str, data) -> None:
        self._put_blob(name, dump_yaml(data))

    def _put_blob(self, name: str, content: bytes) -> None:
        blob = RawObject(BLOB, content)
        self._new_blobs.append(blob)
        self.paths[name] = (FILE_MODE, blob.id)


# -- checking what was read ----------------------------------------------------
# Every field of a record read from git passes one of these before it is used: a
# hostile hash or path must never reach the disk, a hostile number never a sort or
# a clock. Each raises InvalidInputError (the loader names the run and file).
FILE_MODES = (0o100644, 0o100755)
_STAGES = ("active", "deleted")
_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def check_field_text(value: object, what: str, *, single_line: bool = True) -> str:
    """A text field of a record; a number or boolean is taken as its text, a mapping or list refused.
    No length limit but the file's: a later gitml may log longer values than this one."""
    if isinstance(value, (dict, list, bytes)):
        raise InvalidInputError(f"{what} is a {type(value).__name__}, not text")
    return check_text(value, what, MAX_YAML_BYTES, single_line=single_line)


def _optional(data: dict, key: str, check):
    value = data.get(key)
    if value is not None:
        data[key] = check(value, key)


def check_meta(meta: object, expect: tuple[str, str] | None = None) -> dict:
    """meta.yaml's fields; ``expect``: the ``(experiment_id, run_id)`` of the run's ref."""
    if not isinstance(meta, dict) or "run_id" not in meta:
        raise InvalidInputError("missing, or has no run_id")
    meta["run_id"] = run_id = check_run_id(meta["run_id"])
    experiment_id = meta.get("experiment_id")
    if experiment_id is not None:
        if isinstance(experiment_id, bool) or not isinstance(experiment_id, (str, int)):
            raise InvalidInputError(f"experiment_id {str(experiment_id)[:40]!r} is not a number")
        meta["experiment_id"] = check_experiment_id(experiment_id)
    if expect is not None and (meta.get("experiment_id"), run_id) != expect:
        raise InvalidInputError(
            f"names run {run_id} of experiment {meta.get('experiment_id')}, "
            f"but is the record of run {expect[1]} of experiment {expect[0]}"
        )
    for key in ("run_name", "user_id", "entry_point"):
        _optional(meta, key, check_field_text)
    for key in ("start_time", "end_time"):
        _optional(meta, key, check_int64)
    _optional(meta, "parent_run_id", lambda v, _: check_run_id(v))
    if meta.get("status", "RUNNING") not in _STATUSES:
        raise InvalidInputError(f"status {str(meta['status'])[:40]!r} is not one of {', '.join(_STATUSES)}")
    if meta.get("lifecycle_stage", "active") not in _STAGES:
        raise InvalidInputError(f"lifecycle_stage {str(meta['lifecycle_stage'])[:40]!r} is not active or deleted")
    if meta.get("artifact_uri") not in (None, f"runs:/{run_id}"):
        raise InvalidInputError(f"artifact_uri {str(meta['artifact_uri'])[:80]!r} is not runs:/{run_id}")
    source = meta.get("source")
    if source is not None:
        if not isinstance(source, dict):
            raise InvalidInputError("source is not a mapping")
        commit = source.get("commit")
        if commit is not None and not (isinstance(commit, str) and _COMMIT_RE.fullmatch(commit)):
            raise InvalidInputError(f"source commit {str(commit)[:80]!r} is not a commit id")
        for key in ("branch", "name", "type"):  # the name: the script, in the work tree or not
            _optional(source, key, lambda v, k: check_field_text(v, f"source {k}"))
        if source.get("dirty") not in (None, True, False):
            raise InvalidInputError("source dirty is not true or false")
    return meta


def check_texts(data: dict, kind: str) -> dict[str, str]:
    """params.yaml / tags.yaml: valid keys, text values."""
    return {check_key(k, kind): check_field_text(v, f"{kind} {k!r} value", single_line=False) for k, v in data.items()}


def check_latest(data: dict) -> dict[str, tuple[int, int, float]]:
    """metrics.yaml: key -> {step, timestamp, value}."""
    out = {}
    for key, point in data.items():
        check_key(key, "metric")
        if not isinstance(point, dict):
            raise InvalidInputError(f"metric {key!r} is not a mapping")
        try:
            out[key] = _point(point.get("step"), point.get("timestamp"), point.get("value"))
        except InvalidInputError as e:
            raise InvalidInputError(f"metric {key!r}: {e}") from None
    return out


def _point(step: object, timestamp: object, value: object) -> tuple[int, int, float]:
    if isinstance(value, str):  # repr() of a float without a dot (1e+20) reads back from YAML as a string
        try:
            value = float(value)
        except ValueError:
            raise InvalidInputError(f"value {str(value)[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"value {str(value)[:40]!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInputError(f"value {str(value)[:40]}... is too large") from None
    return check_int64(step, "step"), check_int64(timestamp, "timestamp"), number


def check_manifest(data: dict) -> dict[str, dict]:
    """artifacts.yaml: path -> {sha256, size}; no path both a file and a folder."""
    out = {}
    for path, entry in data.items():
        check_artifact_path(path)
        if not isinstance(entry, dict):
            raise InvalidInputError(f"artifact {path!r} has no {{sha256, size}}")
        sha = check_sha256(entry.get("sha256"), f"artifact {path!r} hash")
        out[path] = {"sha256": sha, "size": check_int64(entry.get("size"), f"artifact {path!r} size", minimum=0)}
    for path in out:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in out:
                raise InvalidInputError(f"artifact {path!r} sits below the file {'/'.join(parts[:i])!r}")
    return out


def check_history_paths(paths: dict[str, tuple[int, bytes]]) -> None:
    """Every file under metrics/ is a chunk ``<key>@<n>.tsv`` of a valid key."""
    for path, (mode, _) in paths.items():
        if path.startswith("metrics/"):
            parsed = parse_history_path(path[8:])
            if parsed is None or mode not in FILE_MODES:
                raise InvalidInputError(f"{path[:120]!r} is not a metric history chunk")
            check_key(parsed[0], "metric")


def _lines(steps: list[bytes], stamps: list[bytes], values: list[bytes], start: int, stop: int) -> bytes:
    """History lines ``step  timestamp  value`` of the points ``start:stop``, made by one join
    of the columns interleaved (a Python f-string a line was half of W1's ``end_run``)."""
    n = stop - start
    if n == 1:
        return b"%s\t%s\t%s\n" % (steps[start], stamps[start], values[start])
    parts = [b"\t"] * (6 * n)
    parts[0::6] = steps[start:stop]
    parts[2::6] = stamps[start:stop]
    parts[4::6] = values[start:stop]
    parts[5::6] = [b"\n"] * n
    return b"".join(parts)


def parse_point(key: str, line: str) -> Metric:
    """One ``step  timestamp  value`` line of a metric's history (ValueError if malformed)."""
    step, ts, value = line.split("\t")
    checked = _point(int(step), int(ts), float(value))
    return Metric(key, checked[2], checked[1], checked[0])


def _points(store: GitStore, what: str, key: str, chunks: list[bytes]) -> list[Metric]:
    """The points of a metric's history chunks (blob ids, in order)."""
    out = []
    for sha in chunks:
        try:
            data = store.blob(sha, MAX_YAML_BYTES, f"{what} (a history chunk of metric {key!r})")
            lines = data.decode().splitlines()[1:]
        except UnicodeDecodeError:
            raise CorruptRecordError(what, f"the history of metric {key!r} is not UTF-8") from None
        for line in lines:
            try:
                out.append(parse_point(key, line))
            except (ValueError, InvalidInputError):
                raise CorruptRecordError(what, f"bad history line {line[:80]!r} of metric {key!r}") from None
    return out

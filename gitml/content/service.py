"""Logging, listing and reading a run's artifacts.

Every file becomes a content-addressed object (cache now, remote on push);
the run's manifest (``artifacts.yaml``: path → sha256, size) is committed with
the run, and files up to ``artifacts.inline_max_bytes`` are also stored in the
run's git tree under ``.gitml/run/artifacts/``, so they show in ``git show``
and in pull-request diffs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dulwich.objects import Blob

from gitml.content.cas import ContentStore
from gitml.errors import ConflictError, CorruptRecordError, GitmlError, InvalidInputError, NotFoundError
from gitml.names import check_artifact_path
from gitml.runlog.record import RunRecord
from gitml.runlog.tracker import Tracker
from gitml.store.git import GitStore


@dataclass(frozen=True)
class FileInfo:
    """An entry of ``list_artifacts``, as MLflow's: ``file_size`` is None for folders."""

    path: str
    is_dir: bool
    file_size: int | None


def _join(prefix: str | None, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix and prefix.strip("/") else name


def collect_files(local_dir: str, artifact_path: str | None) -> list[tuple[str, str]]:
    """``(real path of the file, artifact path)`` for every file below ``local_dir``.

    Symbolic links are followed only while they stay inside ``local_dir``; one
    that points outside it is refused, as is a link cycle.
    """
    root = os.path.realpath(local_dir)
    if not os.path.isdir(root):
        raise InvalidInputError(f"{local_dir!r} is not a folder")
    out, seen = [], set()

    def walk(real: str, rel: str) -> None:  # ``real``: a folder path with no links in it
        if real in seen:
            raise InvalidInputError(f"{real!r} is reached twice through symbolic links (a cycle?)")
        seen.add(real)
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            target = entry.path
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not (target == root or target.startswith(root + os.sep)):
                    raise InvalidInputError(
                        f"{entry.path!r} is a symbolic link to {target!r}, outside the logged folder {local_dir!r}"
                    )
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir():
                walk(target, name)
            elif entry.is_file():
                out.append((target, check_artifact_path(_join(artifact_path, name))))

    walk(root, "")
    return out


class RunArtifacts:
    """A repository's run artifacts: ``store`` holds small files inline in git, ``content``
    the others by hash; ``tracker`` records them in the runs."""

    def __init__(self, tracker: Tracker, store: GitStore, content: ContentStore, inline_max_bytes: int):
        self.tracker = tracker
        self.store = store
        self.content = content
        self.inline_max_bytes = inline_max_bytes

    def referenced_objects(
        self,
        refs: dict[bytes, bytes] | None = None,
        *,
        broken: dict[bytes, str] | None = None,
        sizes: dict[str, int] | None = None,
    ) -> dict[str, tuple[str, str]]:
        """:func:`referenced_objects` of this repository's runs (every run's by default)."""
        return referenced_objects(self.tracker, refs, broken=broken, sizes=sizes)

    def objects_by_run(
        self,
        refs: dict[bytes, bytes],
        *,
        stop: AbstractSet[bytes] = frozenset(),
        broken: dict[bytes, str] | None = None,
    ) -> dict[bytes, dict[str, tuple[str, str]]]:
        """:func:`objects_by_run` of these run refs."""
        return objects_by_run(self.tracker, refs, stop=stop, broken=broken)

    # -- logging ---------------------------------------------------------
    def log_files(self, run_id: str, files: list[tuple[str, str]], *, resolved: bool = False) -> None:
        """Log ``(local file, artifact path)`` pairs to a run.

        A file whose size, times and inode are unchanged since it was last
        logged is neither read nor hashed again (the stat cache).
        """
        for _, path in files:
            check_artifact_path(path)
        self._check_layout(run_id, [p for _, p in files])
        entries = self.stage_files(files, resolved=resolved)
        self.tracker.update(run_id, lambda w: w.add_artifacts(entries))

    def stage_files(
        self, files: list[tuple[str, str]], *, resolved: bool = False, remember: bool = True
    ) -> list[tuple[str, str, int, str | None]]:
        """Store ``(local file, artifact path)`` pairs (small ones as git blobs, the others in
        the content cache by hash) and return their manifest entries ``(path, sha256, size,
        inline blob id)``, for a run's writer to record (:meth:`log_files` does both).
        ``remember=False``: the files are temporary, keep them out of the stat cache."""
        if not resolved:
            files = [(os.path.realpath(local), path) for local, path in files]
        stats = {local: os.stat(local) for local, _ in files}
        known = self.content.stat_cache.get_many(stats) if remember else {}
        contains = self.store.contains
        entries, blobs, small = [], [], []
        fresh: list[tuple[str, os.stat_result, str, str | None]] = []
        large = []
        for real, path in files:
            st = stats[real]
            hit = known.get(real)
            inline = st.st_size <= self.inline_max_bytes
            if hit and (
                (inline and hit[1] and contains(hit[1].encode())) or (not inline and self.content.has_local(hit[0]))
            ):
                entries.append((path, hit[0], st.st_size, hit[1] if inline else None))
            elif inline:
                small.append((real, path, st))
            else:
                large.append((real, path))
        with ThreadPoolExecutor(max_workers=4) as pool:
            # big files hash on other threads (hashlib releases the GIL) while small ones are read here
            hashed = [pool.submit(self.content.add_file, real) for real, _ in large]
            for real, path, st in small:  # their bytes live in git; the cache gets a copy when pushed
                with open(real, "rb") as f:
                    data = f.read()
                sha, size = hashlib.sha256(data).hexdigest(), len(data)
                b = Blob.from_string(data)
                blobs.append(b)
                entries.append((path, sha, size, b.id.decode()))
                fresh.append((real, st, sha, b.id.decode()))
            for (real, path), future in zip(large, hashed, strict=False):
                sha, size = future.result()
                entries.append((path, sha, size, None))
                fresh.append((real, os.stat(real), sha, None))
        self.store.write(list(blobs))
        if remember:
            self.content.stat_cache.put_many(fresh)
        return entries

    def log_bytes(self, run_id: str, data: bytes, artifact_path: str) -> None:
        path = check_artifact_path(artifact_path)
        self._check_layout(run_id, [path])
        blob = None
        if len(data) <= self.inline_max_bytes:  # in git; cached when pushed
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
            b = Blob.from_string(data)
            self.store.write([b])
            blob = b.id.decode()
        else:
            sha, size = self.content.add_bytes(data)
        self.tracker.update(run_id, lambda w: w.add_artifacts([(path, sha, size, blob)]))

    def _check_layout(self, run_id: str, paths: list[str]) -> None:
        """Refuse a path that is both a file and a folder of the run's artifacts."""
        files = set(self.manifest(run_id)) | set(paths)
        folders: set[str] = set()
        for path in files:
            parts = path.split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        for path in paths:
            if path in folders:
                raise ConflictError(f"artifact {path!r} is already a folder of the run's artifacts")
            parts = path.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in files:
                    raise ConflictError(f"artifact {path!r} would sit below the file {'/'.join(parts[:i])!r}")

    # -- reading ---------------------------------------------------------
    def manifest(self, run_id: str) -> dict[str, dict]:
        """path → {sha256, size}, including what an open writer still buffers."""
        writer = self.tracker.writers.get(run_id)
        if writer is not None and not writer.closed:
            record = writer.record()  # no flush needed: the buffer is added below
        else:
            record, _ = self.tracker.record(run_id)
        manifest = dict(record.artifacts)
        if writer is not None:
            for path, (sha, size, _blob) in writer.pending_artifacts().items():
                manifest[path] = {"sha256": sha, "size": size}
        return manifest

    def list(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The entries directly inside ``path`` (the root by default), as MLflow lists them."""
        prefix = check_artifact_path(path.strip("/")) + "/" if path and path.strip("/") else ""
        manifest = self.manifest(run_id)
        out: dict[str, FileInfo] = {}
        for name, entry in manifest.items():
            if not name.startswith(prefix):
                if name == prefix[:-1]:
                    return [FileInfo(name, False, entry["size"])]
                continue
            child = name[len(prefix) :].split("/", 1)
            child_path = prefix + child[0]
            if len(child) == 1:
                out[child_path] = FileInfo(child_path, False, entry["size"])
            else:
                out.setdefault(child_path, FileInfo(child_path, True, None))
        return sorted(out.values(), key=lambda f: f.path)

    def _entries(self, run_id: str, artifact_path: str | None) -> dict[str, dict]:
        manifest = self.manifest(run_id)
        if not artifact_path or not artifact_path.strip("/"):
            return manifest
        path = check_artifact_path(artifact_path.strip("/"))
        if path in manifest:
            return {path: manifest[path]}
        below = {k: v for k, v in manifest.items() if k.startswith(path + "/")}
        if not below:
            raise NotFoundError(f"run {run_id} has no artifact {path!r}")
        return below

    def download(self, run_id: str, artifact_path: str | None, dst: str) -> str:
        """Copy an artifact (file or folder) under ``dst``; returns its local path. Every file is verified."""
        entries = self._entries(run_id, artifact_path)
        root = os.path.realpath(dst)
        for path, entry in entries.items():
            target = os.path.realpath(os.path.join(root, path))
            if not target.startswith(root + os.sep):
                raise InvalidInputError(f"artifact {path!r} would be written outside {dst!r}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self._fetch(run_id, path, entry, target)
        return os.path.join(root, artifact_path.strip("/")) if artifact_path and artifact_path.strip("/") else root

    def read_bytes(self, run_id: str, artifact_path: str) -> bytes:
        entries = self._entries(run_id, artifact_path)
        path = check_artifact_path(artifact_path.strip("/"))
        if path not in entries:
            raise InvalidInputError(f"artifact {path!r} of run {run_id} is a folder, not a file")
        entry = entries[path]
        data = self.inline_copy(run_id, path, entry["sha256"])
        if data is not None:
            return data
        return self.content.read_bytes(entry["sha256"], what=f"run {run_id} artifact {path!r}", size=entry["size"])

    def _fetch(self, run_id: str, path: str, entry: dict, target: str) -> None:
        data = self.inline_copy(run_id, path, entry["sha256"])
        if data is not None:
            with open(target, "wb") as f:
                f.write(data)
            return
        self.content.copy_to(entry["sha256"], target, what=f"run {run_id} artifact {path!r}", size=entry["size"])

    def inline_copy(self, run_id: str, path: str, sha256: str) -> bytes | None:
        """The run's inline copy of a small artifact, if it has one that matches its hash."""
        record, _ = self.tracker.record(run_id)
        blob = record.inline_blob(path)
        if blob is None:
            return None
        size = record.artifacts.get(path, {}).get("size", 0)
        if (self.store.size(blob) or 0) > size:  # not the file the manifest names (a bomb, maybe): not read
            return None
        data = self.store.blob(blob)
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def materialize(self, objects: dict[str, tuple[str, str]]) -> int:
        """Put in the cache the objects that only live inline in git (before an upload)."""
        added = 0
        for sha, (run_id, path) in objects.items():
            if not self.content.has_local(sha):
                data = self.inline_copy(run_id, path, sha)
                if data is not None:
                    self.content.add_bytes(data)
                    added += 1
        return added


def referenced_objects(
    tracker: Tracker,
    refs: dict[bytes, bytes] | None = None,
    *,
    stop: AbstractSet[bytes] = frozenset(),
    broken: dict[bytes, str] | None = None,
    sizes: dict[str, int] | None = None,
) -> dict[str, tuple[str, str]]:
    """Every artifact object any run commit references: ``{sha256: (run_id, path)}``.

    Older commits of a run count too (a path logged twice keeps both
    versions), and so do the artifacts that live journals hold but no commit
    has yet. A run's walk ends at a commit of ``stop`` (whose objects are
    accounted for already, e.g. known to be on the artifact remote). ``sizes``
    gets each committed object's size as the manifests record it (the largest
    claim: a hostile run's smaller one cannot stop the download of a true object).
    """
    found: dict[str, tuple[str, str]] = {}
    for objects in objects_by_run(tracker, refs, stop=stop, broken=broken, sizes=sizes).values():
        for sha, where in objects.items():
            found.setdefault(sha, where)
    if refs is None:
        for run_id, path, sha256 in _journaled_artifacts(tracker):
            found.setdefault(sha256, (run_id, path))
    return found


def objects_by_run(
    tracker: Tracker,
    refs: dict[bytes, bytes] | None = None,
    *,
    stop: AbstractSet[bytes] = frozenset(),
    broken: dict[bytes, str] | None = None,
    sizes: dict[str, int] | None = None,
) -> dict[bytes, dict[str, tuple[str, str]]]:
    """The artifact objects of each run ref's commits (down to ``stop``):
    ``{ref: {sha256: (run_id, path)}}`` (and their sizes in ``sizes``, if given).

    A run whose commits or manifest cannot be read raises :class:`CorruptRecordError`
    naming its ref, or, given a ``broken`` dict, is put there (``{ref: why}``) and skipped.
    """
    from gitml.names import parse_run_ref

    out: dict[bytes, dict[str, tuple[str, str]]] = {}
    manifests: dict[bytes, dict[str, tuple[str, str]]] = {}  # manifest blob -> its objects
    refs = tracker.run_refs() if refs is None else refs
    checked = tracker.index.known(refs)  # records the index has a row of loaded already
    for ref, sha in refs.items():
        parsed = parse_run_ref(ref)
        if parsed is None:
            continue
        try:
            if sha not in stop and ref not in checked:  # the whole record is checked, not only the
                RunRecord.load(tracker.store, sha, f"run {parsed[1]}", ref=ref)  # manifests: a run pulled is read next
            out[ref] = _run_objects(tracker.store, parsed[1], sha, stop, manifests, sizes)
        except CorruptRecordError as e:
            why = f"{e.what}: {e.detail}"  # the object and what is wrong with it
            if broken is None:
                raise CorruptRecordError(f"run {ref.decode()}", why) from None
            broken[ref] = why
    return out


def _run_objects(
    store,
    run_id: str,
    sha: bytes,
    stop: AbstractSet[bytes],
    manifests: dict[bytes, dict[str, tuple[str, str]]],
    sizes: dict[str, int] | None = None,
) -> dict[str, tuple[str, str]]:
    """The objects one run's commits reference, from ``sha`` down to its source commit."""
    from gitml.runlog.record import ARTIFACTS, MAX_YAML_BYTES, check_manifest, load_yaml
    from gitml.runlog.writer import TRAILER_ARTIFACTS, TRAILER_RUN

    marker = f"\n{TRAILER_RUN}: ".encode()
    changed = f"\n{TRAILER_ARTIFACTS}: ".encode()
    found: dict[str, tuple[str, str]] = {}
    commit_sha: bytes | None = sha
    while commit_sha is not None and commit_sha not in stop:
        commit = store.commit(commit_sha)
        if marker not in commit.message:
            break  # the source commit: the run's own commits are behind us
        if changed in commit.message:  # this commit changed the manifest
            entry = store.lookup(commit.tree, f".gitml/run/{ARTIFACTS}")
            if entry and entry[1] not in manifests:
                what = f"run {run_id} ({ARTIFACTS})"
                manifest = load_yaml(store.blob(entry[1], MAX_YAML_BYTES, what), what) or {}
                if not isinstance(manifest, dict):
                    raise CorruptRecordError(f"run {run_id}", f"{ARTIFACTS} is not a mapping")
                try:  # the same checks as a run's record: a hostile hash never becomes a path
                    checked = check_manifest(manifest)
                except InvalidInputError as e:
                    raise CorruptRecordError(f"run {run_id}", f"{ARTIFACTS}: {e}") from None
                manifests[entry[1]] = {item["sha256"]: (run_id, path) for path, item in checked.items()}
                if sizes is not None:
                    for item in checked.values():
                        sizes[item["sha256"]] = max(sizes.get(item["sha256"], 0), item["size"])
            if entry:
                for sha256, where in manifests[entry[1]].items():
                    found.setdefault(sha256, where)
        commit_sha = store.first_parent(commit)  # None past a shallow clone's cut
    return found


def _journaled_artifacts(tracker: Tracker):
    from gitml.runlog import journal as jr

    try:
        names = [n for n in os.listdir(tracker.journal_dir) if n.endswith(".log")]
    except FileNotFoundError:
        return
    for name in names:
        try:
            with open(os.path.join(tracker.journal_dir, name), "rb") as f:
                runs, entries = jr.replay(f.read(), name)
        except (OSError, GitmlError):
            continue
        for slot, _end, entry in entries:
            if entry[0] == "A" and slot in runs:
                yield runs[slot][1], entry[1]["path"], entry[1]["sha256"]

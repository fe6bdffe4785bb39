"""Experiments: one ref each, ``refs/gitml/experiments/<id>``, whose commit holds
``experiment.yaml`` (name, lifecycle_stage, tags, creation and update times).

An experiment's id derives from its name (15 digits of its SHA-256), so two
processes, or two clones, that create "churn" make the same experiment, and
creation is a plain create-if-absent of the ref. A rename keeps the id; a later
experiment reusing the old name takes the next salted id. Id "0" is the
default experiment, present even before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time

from dulwich.objects import Blob

from gitml.errors import CorruptRecordError, ExperimentNotFoundError, InvalidInputError
from gitml.names import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    EXPERIMENTS_PREFIX,
    check_experiment_id,
    check_int64,
    check_key,
    check_name,
    check_text,
    experiment_ref,
)
from gitml.runlog.entities import Experiment, LifecycleStage, ViewType
from gitml.runlog.record import MAX_YAML_BYTES, check_field_text, dump_yaml, load_yaml
from gitml.runlog.writer import make_commit
from gitml.store.git import FILE_MODE, GitStore, make_tree
from gitml.store.perms import shared_file_mode

FILE = b"experiment.yaml"
_FIELDS = ("name", "artifact_location", "lifecycle_stage", "tags", "creation_time", "last_update_time")
log = logging.getLogger("gitml")


def experiment_id_for(name: str, salt: int = 0) -> str:
    digest = hashlib.sha256(f"{name}\n{salt}".encode() if salt else name.encode()).digest()
    return str(int.from_bytes(digest[:7], "big") % 10**15 + 10**15)


class ExperimentRegistry:
    def __init__(self, store: GitStore, artifact_root: str):
        self.store = store
        self.artifact_root = artifact_root
        self._cache: dict[bytes, Experiment] = {}
        self._known: dict[str, dict] | None = None  # the file of checked records, read once

    # -- reading ---------------------------------------------------------
    def _read(self, experiment_id: str, commit: bytes) -> Experiment:
        hit = self._cache.get(commit) or self._remembered(experiment_id, commit)
        if hit is None:
            try:
                entry = self.store.tree(self.store.commit(commit).tree).get(FILE)
            except CorruptRecordError as e:
                raise CorruptRecordError(f"experiment {experiment_id}", str(e)) from None
            what = f"experiment {experiment_id}"
            data = load_yaml(self.store.blob(entry[1], MAX_YAML_BYTES, what), what) if entry else None
            if not isinstance(data, dict) or "name" not in data:
                raise CorruptRecordError(f"experiment {experiment_id}", "experiment.yaml is missing or malformed")
            try:
                hit = self._checked(experiment_id, data)
            except InvalidInputError as e:
                raise CorruptRecordError(f"experiment {experiment_id}", f"experiment.yaml: {e}") from None
            self._remember(commit, experiment_id, data)
        self._cache[commit] = hit
        return hit

    # Experiments' records, once read and checked, are kept by commit in
    # .git/gitml/experiments.json (a commit never changes): a command that shows a run's
    # experiment then reads no YAML (importing the YAML parser is 15 ms of a 0.2 s command).
    def _cache_path(self) -> str:
        return os.path.join(self.store.gitml_dir, "experiments.json")

    def _remembered(self, experiment_id: str, commit: bytes) -> Experiment | None:
        """The experiment of ``commit`` from the file of checked records, or None."""
        if self._known is None:
            try:
                with open(self._cache_path(), "rb") as f:
                    known = json.load(f)
                self._known = known if isinstance(known, dict) else {}
            except (OSError, ValueError):
                self._known = {}
        data = self._known.get(commit.decode())
        if not isinstance(data, dict) or data.get("experiment_id") != experiment_id:
            return None
        try:
            return self._checked(experiment_id, data)  # the file is checked as a record is
        except (InvalidInputError, TypeError, KeyError):
            return None

    def _remember(self, commit: bytes, experiment_id: str, data: dict) -> None:
        """Keep the fields of a record that checked (as the record has them: the default
        artifact location is not kept, it depends on where the repository is)."""
        known = dict(self._known or {}) if len(self._known or ()) < 4096 else {}  # old commits' go, now and then
        known[commit.decode()] = {"experiment_id": experiment_id, **{k: data.get(k) for k in _FIELDS}}
        try:
            text = json.dumps(known)
        except (TypeError, ValueError):
            return  # a value JSON cannot hold: this record is read from git each time
        self._known = known
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.store.gitml_dir, suffix=".tmp", delete=False) as f:
                f.write(text)
                os.fchmod(f.fileno(), shared_file_mode(self.store.commondir, 0o666))  # as git's own files
            os.replace(f.name, self._cache_path())
        except OSError:
            pass  # a cache: the record is read again next time

    def _checked(self, experiment_id: str, data: dict) -> Experiment:
        """An experiment from its record, every field checked (a pushed record may be hostile)."""
        stage = data.get("lifecycle_stage", LifecycleStage.ACTIVE)
        if stage not in (LifecycleStage.ACTIVE, LifecycleStage.DELETED):
            raise InvalidInputError(f"lifecycle_stage {str(stage)[:40]!r} is not active or deleted")
        tags = data.get("tags") or {}
        if not isinstance(tags, dict):
            raise InvalidInputError("tags is not a mapping")
        times = [data.get(k) for k in ("creation_time", "last_update_time")]
        location = data.get("artifact_location") or f"{self.artifact_root}/{experiment_id}"
        return Experiment(
            experiment_id=experiment_id,
            name=check_name(data["name"], "name"),
            artifact_location=check_field_text(location, "artifact_location"),
            lifecycle_stage=stage,
            tags={
                check_key(k, "tag"): check_field_text(v, f"tag {k!r} value", single_line=False) for k, v in tags.items()
            },
            creation_time=None if times[0] is None else check_int64(times[0], "creation_time"),
            last_update_time=None if times[1] is None else check_int64(times[1], "last_update_time"),
        )

    def _default(self) -> Experiment:
        return Experiment(
            DEFAULT_EXPERIMENT_ID,
            DEFAULT_EXPERIMENT_NAME,
            f"{self.artifact_root}/{DEFAULT_EXPERIMENT_ID}",
            LifecycleStage.ACTIVE,
            {},
            None,
            None,
        )

    def all(self, view: int = ViewType.ALL) -> list[Experiment]:
        found = {}
        for ref, commit in self.store.refs_under(EXPERIMENTS_PREFIX).items():
            experiment_id = ref.decode("utf-8", "replace")[len(EXPERIMENTS_PREFIX) :]
            try:
                found[experiment_id] = self._read(check_experiment_id(experiment_id), commit)
            except InvalidInputError as e:
                log.warning("gitml: skipping %s: %s", ref.decode("utf-8", "replace"), e)
            except CorruptRecordError as e:  # one bad record must not hide the others
                log.warning("gitml: skipping %s: %s", ref.decode(), e)
        found.setdefault(DEFAULT_EXPERIMENT_ID, self._default())
        return [e for e in found.values() if ViewType.matches(view, e.lifecycle_stage)]

    def get(self, experiment_id: str) -> Experiment:
        experiment_id = check_experiment_id(experiment_id)
        commit = self.store.ref(experiment_ref(experiment_id))
        if commit is None:
            if experiment_id == DEFAULT_EXPERIMENT_ID:
                return self._default()
            raise ExperimentNotFoundError(experiment_id)
        return self._read(experiment_id, commit)

    def by_name(self, name: str) -> Experiment | None:
        for salt in range(0, 64):
            experiment_id = experiment_id_for(name, salt)
            commit = self.store.ref(experiment_ref(experiment_id))
            if commit is None:
                break
            experiment = self._read(experiment_id, commit)
            if experiment.name == name:
                return experiment
        for experiment in self.all():  # renamed into this name, or the default
            if experiment.name == name:
                return experiment
        return None

    # -- writing ---------------------------------------------------------
    def create(self, name: str, *, tags: dict[str, str] | None = None, artifact_location: str | None = None) -> str:
        name = check_name(name, "experiment name")
        tags = self._check_tags(tags or {})
        existing = self.by_name(name)
        if existing is not None:
            state = " (deleted: restore it or choose another name)" if existing.lifecycle_stage == "deleted" else ""
            raise InvalidInputError(f"experiment {name!r} already exists with id {existing.experiment_id}{state}")
        now = int(time.time() * 1000)
        data = {"name": name, "lifecycle_stage": "active", "tags": tags, "creation_time": now, "last_update_time": now}
        if artifact_location:
            data["artifact_location"] = artifact_location
        for salt in range(0, 64):
            experiment_id = (
                DEFAULT_EXPERIMENT_ID
                if name == DEFAULT_EXPERIMENT_NAME and salt == 0
                else experiment_id_for(name, salt)
            )
            if self._write(experiment_id, None, data):
                return experiment_id
            if self.get(experiment_id).name == name:
                raise InvalidInputError(f"experiment {name!r} already exists with id {experiment_id}")
        raise InvalidInputError(f"could not find a free id for experiment {name!r}")

    def update(self, experiment_id: str, change) -> Experiment:
        """Apply ``change(data)`` to an experiment's YAML with compare-and-swap."""
        experiment_id = check_experiment_id(experiment_id)
        ref = experiment_ref(experiment_id)
        while True:
            old = self.store.ref(ref)
            current = self.get(experiment_id)
            data = {
                "name": current.name,
                "lifecycle_stage": current.lifecycle_stage,
                "tags": dict(current.tags),
                "creation_time": current.creation_time or int(time.time() * 1000),
            }
            change(data)
            data["last_update_time"] = int(time.time() * 1000)
            if self._write(experiment_id, old, data):
                return self.get(experiment_id)

    def rename(self, experiment_id: str, new_name: str) -> Experiment:
        new_name = check_name(new_name, "experiment name")
        other = self.by_name(new_name)
        if other is not None and other.experiment_id != experiment_id:
            raise InvalidInputError(f"experiment {new_name!r} already exists with id {other.experiment_id}")
        return self.update(experiment_id, lambda d: d.__setitem__("name", new_name))

    def set_tag(self, experiment_id: str, key: str, value: str | None) -> Experiment:
        if value is None:
            return self.update(experiment_id, lambda d: d["tags"].pop(check_key(key, "tag"), None))
        tags = self._check_tags({key: value})
        return self.update(experiment_id, lambda d: d["tags"].update(tags))

    def set_lifecycle(self, experiment_id: str, stage: str) -> Experiment:
        return self.update(experiment_id, lambda d: d.__setitem__("lifecycle_stage", stage))

    def merge(self, experiment_id: str, theirs: bytes) -> bool:
        """Join a diverged record of this experiment (made in another clone) with ours:
        a commit whose parents are both, holding the record updated last (creation
        time: the earlier one). Both clones then push and fetch it by fast-forward.
        Returns False when our ref moved meanwhile."""
        experiment_id = check_experiment_id(experiment_id)
        ref = experiment_ref(experiment_id)
        ours = self.store.ref(ref)
        if ours is None or ours == theirs:
            return self.store.cas(ref, ours, theirs) if ours is None else True
        a, b = self._read(experiment_id, ours), self._read(experiment_id, theirs)
        newer, _ = sorted([(a, ours), (b, theirs)], key=lambda e: (e[0].last_update_time or 0, e[1]))[::-1]
        winner = newer[0]
        created = [t for t in (a.creation_time, b.creation_time) if t is not None]
        data = {
            "name": winner.name,
            "lifecycle_stage": winner.lifecycle_stage,
            "tags": dict(winner.tags),
            "creation_time": min(created) if created else None,
            "last_update_time": winner.last_update_time,
        }
        if winner.artifact_location != f"{self.artifact_root}/{experiment_id}":
            data["artifact_location"] = winner.artifact_location
        blob = Blob.from_string(dump_yaml(data))
        tree = make_tree({FILE: (FILE_MODE, blob.id)})
        commit = make_commit(self.store, tree.id, [ours, theirs], f"gitml: experiment {winner.name} (merged)\n")
        self.store.write([blob, tree, commit])
        return self.store.cas(ref, ours, commit.id)

    def _write(self, experiment_id: str, old: bytes | None, data: dict) -> bool:
        blob = Blob.from_string(dump_yaml(data))
        tree = make_tree({FILE: (FILE_MODE, blob.id)})
        parents = [old] if old else []
        commit = make_commit(self.store, tree.id, parents, f"gitml: experiment {data['name']}\n")
        self.store.write([blob, tree, commit])
        return self.store.cas(experiment_ref(experiment_id), old, commit.id)

    @staticmethod
    def _check_tags(tags: dict) -> dict[str, str]:
        return {
            check_key(k, "tag"): check_text(v, f"tag {k!r} value", MAX_EXPERIMENT_TAG_VALUE_LENGTH)
            for k, v in tags.items()
        }


MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20_000  # MLflow's limit for experiment tags (refused, not cut)

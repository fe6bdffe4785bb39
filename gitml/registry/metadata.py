"""MLflow's registry metadata, kept in git beside the tags: one ref per registered model.

``refs/gitml/registry/<model>`` (the model as its tags name it, :func:`model_slug`; ``/``
written ``%2F`` so that ``a`` and ``a/b`` do not clash as files) points at a commit whose tree
holds ``model.yaml``::

    name: Model 1                 # the name as MLflow spells it
    created: 1700000000000        # ms, as MLflow
    updated: 1700000005000
    description: predicts churn
    tags: {team: growth}
    deleted: false                # MLflow's delete_registered_model (with a deprecation tag)
    versions:                     # by semantic version (the tag); numbers derive from the tags
      v1.0.0: {description: first, tags: {stage: canary}, updated: 1700000003000, created: ...}
      v2.0.0: {deleted: true}     # MLflow's delete_model_version (with a deregistration tag)

Each change is one commit on that ref (author: who, commit time: when, message: what), so
``git log refs/gitml/registry/churn`` is the metadata's history; two writers meet by
compare-and-swap of the ref (the loser re-reads and re-applies its change). Only what
does not change what a ``models:/`` URI resolves to lives here: versions, stages,
deprecation, renames and copies are registry tags, signed as the policy asks. The ref is
outside ``refs/tags/``, so GTO reads the registry exactly as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dulwich.objects import Blob, Commit

from gitml.errors import ConflictError, CorruptRecordError, InvalidInputError
from gitml.names import REGISTRY_PREFIX, parse_registry_ref, registry_ref
from gitml.registry.tags import model_slug
from gitml.store import yamlout
from gitml.store.git import FILE_MODE, GitStore, tree_from_files
from gitml.store.ids import oids
from gitml.yamlread import MAX_YAML_BYTES, load_yaml

FILE = "model.yaml"
MAX_TAG_KEY, MAX_TAG_VALUE, MAX_DESCRIPTION = 250, 5000, 100_000  # MLflow's limits (tags), and a bound


def now_ms() -> int:
    """Milliseconds now; ``GIT_COMMITTER_DATE`` (``<unix> <+hhmm>``) pins it, as for tags."""
    pinned = os.environ.get("GIT_COMMITTER_DATE", "").strip().lstrip("@").partition(" ")[0]
    return int(pinned) * 1000 if pinned.isdigit() else int(time.time() * 1000)


@dataclass
class VersionMeta:
    description: str | None = None  # None: the registration tag's
    tags: dict[str, str] = field(default_factory=dict)
    updated: int = 0  # ms
    deleted: bool = False
    source: str | None = None  # a copy's source (models:/<name>/<N>), as MLflow records it
    created: int = 0  # ms; set when a rename re-registered the version (its first registration's time)


@dataclass
class ModelMeta:
    name: str
    created: int = 0
    updated: int = 0
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    versions: dict[str, VersionMeta] = field(default_factory=dict)

    def version(self, version: str) -> VersionMeta:
        """The metadata of ``version`` (made when missing)."""
        return self.versions.setdefault(version, VersionMeta())

    def as_dict(self) -> dict:
        versions = {}
        for v, m in sorted(self.versions.items()):
            entry: dict = {}
            if m.description is not None:
                entry["description"] = m.description
            if m.tags:
                entry["tags"] = dict(sorted(m.tags.items()))
            if m.updated:
                entry["updated"] = m.updated
            if m.deleted:
                entry["deleted"] = True
            if m.source:
                entry["source"] = m.source
            if m.created:
                entry["created"] = m.created
            if entry:
                versions[v] = entry
        out = {
            "name": self.name,
            "created": self.created,
            "updated": self.updated,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "deleted": self.deleted,
        }
        if versions:
            out["versions"] = versions
        return out


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{what} is not text of at most {limit} characters")
    return value


def _tags(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a mapping")
    return {
        _text(k, f"{what} key", MAX_TAG_KEY): _text("" if v is None else str(v), f"{what} {k!r}", MAX_TAG_VALUE)
        for k, v in value.items()
    }


def _ms(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise ValueError(f"{what} is not a time in ms")
    return value


def parse_meta(data: object) -> ModelMeta:
    """A model's metadata from ``model.yaml``'s content, every field checked (a pushed
    record may be hostile). Raises ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    versions = {}
    raw_versions = data.get("versions") or {}
    if not isinstance(raw_versions, dict):
        raise ValueError("versions is not a mapping")
    for v, entry in raw_versions.items():
        if not isinstance(v, str) or not isinstance(entry, dict):
            raise ValueError(f"version {v!r} is not a mapping")
        description = entry.get("description")
        source = entry.get("source")
        versions[v] = VersionMeta(
            description=None
            if description is None
            else _text(description, f"version {v} description", MAX_DESCRIPTION),
            tags=_tags(entry.get("tags"), f"version {v} tags"),
            updated=_ms(entry.get("updated", 0), f"version {v} updated"),
            deleted=entry.get("deleted", False) is True,
            source=None if source is None else _text(source, f"version {v} source", 1000),
            created=_ms(entry.get("created", 0), f"version {v} created"),
        )
    return ModelMeta(
        name=_text(data.get("name"), "name", 500),
        created=_ms(data.get("created", 0), "created"),
        updated=_ms(data.get("updated", 0), "updated"),
        description=_text(data.get("description") or "", "description", MAX_DESCRIPTION),
        tags=_tags(data.get("tags"), "tags"),
        deleted=data.get("deleted", False) is True,
        versions=versions,
    )


def _names(meta: ModelMeta, slug: str) -> None:
    """ValueError unless ``meta`` names the model its ref is for: a teammate's record
    under ``churn``'s ref naming itself ``Model 1`` must not show churn's versions as
    Model 1's (nor a name with control characters reach a terminal)."""
    try:
        named = model_slug(meta.name)
    except InvalidInputError:
        raise ValueError(f"its name {meta.name!r} is no registered model name") from None
    if named != slug:
        raise ValueError(f"it names model {meta.name!r}, whose metadata ref is {registry_ref(named).decode()!r}")


_GONE = object()


def _flat(data: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """``{path: leaf}`` of nested mappings (an empty mapping is a leaf)."""
    out: dict[tuple, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _unflat(flat: dict[tuple, object]) -> dict:
    out: dict = {}
    for path, value in sorted(flat.items(), key=lambda kv: len(kv[0])):
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not (isinstance(value, dict) and not value and isinstance(node.get(path[-1]), dict)):
            node[path[-1]] = value
    return out


class RegistryMetadata:
    """The metadata refs of one repository: read (cached per commit) and changed by
    compare-and-swap."""

    def __init__(self, store: GitStore):
        self.store = store
        self._read: dict[bytes, ModelMeta] = {}

    def refs(self) -> dict[str, bytes]:
        """``{model as its tags name it: commit}`` for every metadata ref."""
        out = {}
        for ref, sha in self.store.refs_under(REGISTRY_PREFIX).items():
            out[ref[len(REGISTRY_PREFIX) :].decode("utf-8", "replace").replace("%2F", "/")] = sha
        return out

    def at(self, slug: str, commit: bytes) -> ModelMeta:
        """The metadata a commit of ``slug``'s ref holds. Raises CorruptRecordError."""
        found = self._read.get(commit)
        if found is None:
            what = f"registry metadata {registry_ref(slug).decode()} at {commit.decode()[:12]}"
            try:
                entry = self.store.lookup(self.store.commit(commit).tree, FILE)
                if entry is None:
                    raise CorruptRecordError(what, f"no {FILE}")
                found = parse_meta(load_yaml(self.store.blob(entry[1], MAX_YAML_BYTES, what), what))
                _names(found, slug)
            except ValueError as e:
                raise CorruptRecordError(what, str(e)) from None
            self._read[commit] = found
        return found

    def fetched_problem(self, ref: bytes, sha: bytes) -> str | None:
        """Why a fetched value of a metadata ref must not be taken (its ``model.yaml``
        missing, hostile, or naming another model than its ref's), or None; any other
        ref passes. The fetch's ``check``: a teammate's push cannot plant a record that
        breaks every listing of the registry here."""
        slug = parse_registry_ref(ref)
        if slug is None:
            return None
        try:
            self.at(slug, sha)
        except CorruptRecordError as e:
            return str(e)
        return None

    def _commit(self, ref: bytes, old: bytes | None, meta: ModelMeta, parents: list[bytes], message: str) -> bool:
        """Write ``meta`` as a commit with ``parents`` and move ``ref`` from ``old`` to it."""
        blob = Blob.from_string(yamlout.dump(meta.as_dict()))
        objects: list = [blob]
        tree = tree_from_files({FILE: (FILE_MODE, blob.id)}, objects)
        commit = Commit()
        commit.tree = tree
        commit.parents = oids(parents)
        who = self.store.identity().as_bytes()
        commit.author = commit.committer = who
        commit.author_time = commit.commit_time = now_ms() // 1000
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = f"{message}\n".encode()
        objects.append(commit)
        self.store.write(objects)
        if not self.store.cas(ref, old, commit.id):
            return False
        self.store.release_kept()
        self._read[commit.id] = meta
        return True

    def read(self, slug: str) -> ModelMeta | None:
        """``slug``'s metadata now, None when it has none."""
        commit = self.store.ref(registry_ref(slug))
        return None if commit is None else self.at(slug, commit)

    def all(self) -> dict[str, ModelMeta]:
        """Every model's metadata, by the model its tags name it."""
        return {slug: self.at(slug, commit) for slug, commit in self.refs().items()}

    def change(self, slug: str, name: str, edit: Callable[[ModelMeta], object], message: str) -> ModelMeta:
        """Apply ``edit`` to ``slug``'s metadata (a fresh record named ``name`` when it has
        none) and commit it; when another writer moved the ref meanwhile, re-read and apply
        again. Returns the metadata as committed."""
        ref = registry_ref(slug)
        for _ in range(50):
            old = self.store.ref(ref)
            if old is None:
                meta = ModelMeta(name=name)
            else:
                meta = parse_meta(self.at(slug, old).as_dict())  # a copy: the cached one stays as read
            edit(meta)
            if self._commit(ref, old, meta, [old] if old is not None else [], message):
                return meta
        raise ConflictError(f"registry metadata of {name!r}: 50 other writers changed it meanwhile")

    def merge(self, slug: str, theirs: bytes) -> bool:
        """Join this clone's metadata of ``slug`` with a diverged one fetched (``theirs``):
        a commit whose parents are both, holding theirs with every field this clone changed
        since the two met (their merge base) set as this clone set it; so two clones that
        edited different tags or descriptions keep both edits, and the same field edited in
        both keeps this clone's. Both clones then push and fetch by fast-forward. False when
        this clone's ref moved meanwhile."""
        ref = registry_ref(slug)
        ours = self.store.ref(ref)
        if ours is None:
            return self.store.cas(ref, None, theirs)
        if ours == theirs:
            return True
        base_commit = self._merge_base(ours, theirs)
        mine, other = _flat(self.at(slug, ours).as_dict()), _flat(self.at(slug, theirs).as_dict())
        try:
            base = _flat(self.at(slug, base_commit).as_dict()) if base_commit is not None else {}
        except CorruptRecordError:  # an old commit of their history a teammate wrote by hand: no base
            base = {}
        merged = dict(other)
        for key in set(mine) | set(base):
            if mine.get(key, _GONE) != base.get(key, _GONE):
                if key in mine:
                    merged[key] = mine[key]
                else:
                    merged.pop(key, None)
        try:
            meta = parse_meta(_unflat(merged))
        except ValueError as e:
            raise CorruptRecordError(
                f"registry metadata {ref.decode()}", f"the join of both clones' is invalid ({e})"
            ) from None
        meta.updated = max(self.at(slug, ours).updated, self.at(slug, theirs).updated)
        return self._commit(ref, ours, meta, [ours, theirs], f"merge the registry metadata of {meta.name}")

    def _merge_base(self, a: bytes, b: bytes, limit: int = 100_000) -> bytes | None:
        seen: set[bytes] = set()
        todo = [b]
        while todo and len(seen) < limit:
            sha = todo.pop()
            if sha not in seen:
                seen.add(sha)
                todo.extend(self.store.commit(sha).parents)
        todo, visited = [a], set()
        while todo:  # breadth first from ours: the nearest commit theirs also reaches
            nxt = []
            for sha in todo:
                if sha in seen:
                    return sha
                if sha not in visited:
                    visited.add(sha)
                    nxt.extend(self.store.commit(sha).parents)
            todo = list(nxt)
        return None

    def history(self, slug: str, limit: int = 1000) -> list[dict]:
        """The changes of ``slug``'s metadata, newest first: ``{commit, by, at (s), message}``."""
        out: list[dict] = []
        sha = self.store.ref(registry_ref(slug))
        while sha is not None and len(out) < limit:
            commit = self.store.commit(sha)
            out.append(
                {
                    "commit": sha.decode(),
                    "by": commit.author.decode("utf-8", "replace"),
                    "at": commit.author_time,
                    "message": commit.message.decode("utf-8", "replace").strip(),
                }
            )
            sha = commit.parents[0] if commit.parents else None
        return out

"""MLflow's model-registry calls on :class:`gitml.Client`, over the tag registry and the
models' metadata refs.

A mixin of ``Client`` (as ``gitml.runviews``), so ``MlflowClient`` code runs unchanged:

>>> client.create_registered_model("Churn model", tags={"team": "growth"}, description="...")
>>> client.create_model_version("Churn model", "runs:/<run>/model", run_id, tags={"k": "v"})  # version 1
>>> client.set_registered_model_alias("Churn model", "champion", "1")
>>> client.search_model_versions("tags.k = 'v'", order_by=["version_number DESC"])

Mapping: MLflow's version ``N`` is the model's N-th registration, whatever semantic version
its tag carries (``ModelVersion.tag_version``). What changes a resolution is a tag (signed
as the policy asks): versions, aliases and stages (both are the registry's stages; MLflow's
``Staging``/``Production`` are the stages ``staging``/``production``, shown as
``current_stage``, the others as aliases), ``Archived`` (a deregistration), deletion (a
deregistration or deprecation), renames and copies (tags under the new name,
:mod:`gitml.registry.copying`). What does not — descriptions, registered-model and version
tags, creation and update times, which versions and models MLflow deleted — is the
model's metadata ref (:mod:`gitml.registry.metadata`). Names MLflow allows but GTO does not
(``Model 1``) are carried encoded in the tags (:func:`gitml.registry.tags.model_slug`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitml.errors import ConflictError, InvalidInputError, RegisteredModelNotFound
from gitml.names import parse_runs_uri
from gitml.registry.mlflow_search import MODEL_VERSIONS, REGISTERED_MODELS, PagedList, search
from gitml.registry.tags import model_slug

if TYPE_CHECKING:
    from gitml.registry.metadata import ModelMeta, RegistryMetadata, VersionMeta
    from gitml.registry.state import ModelState, Registry
    from gitml.registry.state import ModelVersion as VersionRecord
    from gitml.runlog.tracker import Tracker
    from gitml.store.git import GitStore

_MLFLOW_STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
_STAGE_TAGS = ("staging", "production")  # the registry's stages MLflow shows as current_stage, not aliases


@dataclass
class ModelVersion:
    """MLflow's ``ModelVersion``: ``version`` is MLflow's number (``"2"``: the second registration)."""

    name: str
    version: str
    run_id: str
    source: str
    current_stage: str = "None"
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    user_id: str = ""
    status: str = "READY"
    tags: dict = field(default_factory=dict)
    run_link: str = ""
    tag_version: str = ""  # the registry's version (v2.0.0)
    commit: str = ""


@dataclass
class RegisteredModel:
    name: str
    latest_versions: list[ModelVersion] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> MLflow version
    description: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    tags: dict = field(default_factory=dict)
    deprecated: bool = False


def _current_stage(mv: VersionRecord) -> str:
    if mv.deregistered:
        return "Archived"
    held = {s.lower() for s in mv.stages}
    return "Production" if "production" in held else "Staging" if "staging" in held else "None"


def to_model_version(mv: VersionRecord, meta: VersionMeta | None = None) -> ModelVersion:
    """The MLflow view of a registered version, with its metadata (``meta``) when it has some."""
    created = meta.created if meta is not None and meta.created else mv.registered_at * 1000
    source = (
        meta.source
        if meta is not None and meta.source
        else (f"runs:/{mv.run_id}/{mv.path}" if mv.path else f"runs:/{mv.run_id}")
    )
    description = meta.description if meta is not None and meta.description is not None else mv.description
    return ModelVersion(
        name=mv.model,
        version=str(mv.number),
        run_id=mv.run_id,
        source=source,
        current_stage=_current_stage(mv),
        aliases=sorted(s for s in mv.stages if s.lower() not in _STAGE_TAGS),
        description=description,
        creation_timestamp=created,
        last_updated_timestamp=max(created, meta.updated if meta is not None else 0),
        user_id=mv.registered_by,
        tags=dict(meta.tags) if meta is not None else {},
        tag_version=mv.version,
        commit=mv.commit,
    )


def _visible(state: ModelState | None, meta: ModelMeta | None) -> list[VersionRecord]:
    """A model's versions MLflow shows (those it deleted left out), by number."""
    if state is None:
        return []
    gone = {v for v, m in meta.versions.items() if m.deleted} if meta is not None else set()
    return [state.versions[v] for _, v in sorted(state.numbers.items()) if v not in gone]


def to_registered_model(
    state: ModelState | None, meta: ModelMeta | None = None, name: str | None = None
) -> RegisteredModel:
    """The MLflow view of a registered model: its tags' state and its metadata."""
    versions = _visible(state, meta)
    views = [to_model_version(v, meta.versions.get(v.version) if meta else None) for v in versions]
    latest: dict[str, ModelVersion] = {}
    for view in views:  # by number: the last one of each stage wins (MLflow's latest_versions)
        latest[view.current_stage] = view
    times = [v.creation_timestamp for v in views]
    created = meta.created if meta is not None and meta.created else min(times, default=0)
    updated = max([created, *times, meta.updated if meta is not None else 0])
    live = {v.version for v in versions}
    aliases = {}
    if state is not None:
        aliases = {
            s: str(state.versions[v].number)
            for s, v in sorted(state.stages.items())
            if s.lower() not in _STAGE_TAGS and v in live
        }
    return RegisteredModel(
        name=name or (meta.name if meta is not None else state.name if state is not None else ""),
        latest_versions=sorted(latest.values(), key=lambda v: int(v.version)),
        aliases=aliases,
        description=meta.description if meta is not None else "",
        creation_timestamp=created,
        last_updated_timestamp=updated,
        tags=dict(meta.tags) if meta is not None else {},
        deprecated=bool(state is not None and state.deprecated),
    )


def _stage(stage: str) -> str:
    return stage.lower() if stage.lower() in _MLFLOW_STAGES else stage


def _check_tag(key: object, value: object) -> tuple[str, str]:
    """A registry tag's key and value as MLflow takes them (key 1-250 characters, value at most 5000)."""
    if not isinstance(key, str) or not key or len(key) > 250:
        raise InvalidInputError(f"tag key {key!r} is not 1 to 250 characters")
    text = "" if value is None else str(value)
    if len(text) > 5000:
        raise InvalidInputError(f"value of tag {key!r} is longer than 5000 characters")
    return key, text


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, version, alias)`` of ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""
    m = re.fullmatch(r"models:/([^/@]+)(?:/([^/@]+)|@([^/@]+))", uri or "")
    if m is None:
        raise InvalidInputError(f"model URI {uri!r} is not models:/<name>/<version> nor models:/<name>@<alias>")
    return m[1], m[2], m[3]


class RegistryCalls:
    """MLflow's registry calls; ``Client`` provides ``tracker`` and the store."""

    tracker: Tracker
    _store: GitStore

    @property
    def _tag_registry(self) -> Registry:
        """The tag registry of this repository (:class:`gitml.registry.Registry`)."""
        found = self.__dict__.get("_registry")
        if found is None:
            from gitml.registry.state import Registry  # its modules loaded here: reading runs needs none

            found = self.__dict__["_registry"] = Registry(self._store, self.tracker)
        return found

    @property
    def _model_metadata(self) -> RegistryMetadata:
        """The models' metadata refs (:class:`gitml.registry.metadata.RegistryMetadata`)."""
        found = self.__dict__.get("_registry_metadata")
        if found is None:
            from gitml.registry.metadata import RegistryMetadata

            found = self.__dict__["_registry_metadata"] = RegistryMetadata(self._store)
        return found

    # -- reading both records ------------------------------------------------------
    def _view(self, name: str) -> tuple[ModelState | None, ModelMeta | None]:
        """``(state of the tags or None, metadata or None)`` of a model that exists for
        MLflow; RegisteredModelNotFound otherwise (never created, or deleted)."""
        slug = model_slug(name)
        meta = self._model_metadata.read(slug)
        state = None
        if self._tag_registry.tag_refs(slug):
            state = self._tag_registry.model(name)
        if (meta is not None and meta.deleted) or (meta is None and state is None):
            raise RegisteredModelNotFound(
                f"registered model {name!r} does not exist" + (" (deleted)" if meta is not None else "")
            )
        return state, meta

    def _version_view(self, name: str, version: str | int) -> tuple[ModelState, ModelMeta | None, VersionRecord]:
        state, meta = self._view(name)
        if state is None:
            raise RegisteredModelNotFound(f"registered model {name!r} has no version {version}")
        mv = self._tag_registry.find_version(state, version)
        if meta is not None and mv.version in meta.versions and meta.versions[mv.version].deleted:
            raise RegisteredModelNotFound(f"version {version} of registered model {name!r} was deleted")
        return state, meta, mv

    def _change(self, name: str, edit, message: str) -> ModelMeta:
        from gitml.registry.metadata import now_ms

        stamp = now_ms()

        def apply(meta: ModelMeta) -> None:
            if not meta.created:
                meta.created = stamp
            edit(meta, stamp)

        return self._model_metadata.change(model_slug(name), name, apply, message)

    # -- registered models ---------------------------------------------------------
    def create_registered_model(
        self, name: str, tags: dict | None = None, description: str | None = None
    ) -> RegisteredModel:
        """A registered model with no version yet (its metadata ref); ConflictError when
        ``name`` exists.

        Args:
            name: the registered model's name.
            tags: ``{key: value}`` MLflow tags.
            description: the description.

        Returns:
            The :class:`RegisteredModel`.

        Raises:
            ConflictError: a model has that name.
            InvalidInputError: a bad name or tag.

        >>> client.create_registered_model("churn", description="Churn classifier")
        """
        slug = model_slug(name)
        checked = dict(_check_tag(k, v) for k, v in (tags or {}).items())
        meta = self._model_metadata.read(slug)
        if (meta is not None and not meta.deleted) or (meta is None and self._tag_registry.tag_refs(slug)):
            raise ConflictError(f"registered model {name!r} already exists")
        if meta is not None and self._tag_registry.tag_refs(slug):
            raise ConflictError(
                f"registered model {name!r} was deleted and its registry tags remain "
                "(deprecated, as GTO reads them): choose another name"
            )

        def edit(m: ModelMeta, stamp: int) -> None:
            if m.deleted:
                m.versions.clear()
            m.name, m.created, m.updated, m.deleted = name, stamp, stamp, False
            m.description, m.tags = description or "", checked

        return to_registered_model(None, self._change(name, edit, f"create registered model {name}"))

    def get_registered_model(self, name: str) -> RegisteredModel:
        """A registered model: its versions and the stages and aliases they hold.

        Args:
            name: the registered model's name.

        Returns:
            The :class:`RegisteredModel`: latest versions per stage, aliases, tags.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.get_registered_model("churn").aliases
        """
        state, meta = self._view(name)
        return to_registered_model(state, meta, name)

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        """Set the model's description.

        Args:
            name: the registered model's name.
            description: the description.

        Returns:
            The :class:`RegisteredModel` after the change.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.update_registered_model("churn", description="v2 features")
        """
        self._view(name)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.description, m.updated = description or "", stamp

        self._change(name, edit, f"describe registered model {name}")
        return self.get_registered_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a model: its versions (same numbers, semvers, commits), stages and aliases
        are written as tags under ``new_name`` and ``name`` is deprecated
        (:func:`gitml.registry.copying.rename`); its metadata moves with it.

        Args:
            name: the registered model's name.
            new_name: the model's new name.

        Returns:
            The renamed :class:`RegisteredModel`.

        Raises:
            RegisteredModelNotFound: no model has that name.
            ConflictError: a model has the new name.

        >>> client.rename_registered_model("churn", "churn-classifier")
        """
        from gitml.registry import copying

        state, meta = self._view(name)
        new_slug = model_slug(new_name)
        there = self._model_metadata.read(new_slug)
        if (there is not None and not there.deleted) or self._tag_registry.tag_refs(new_slug):
            raise ConflictError(f"registered model {new_name!r} already exists")
        if state is not None:
            copying.rename(self._tag_registry, name, new_name)

        def move(m: ModelMeta, stamp: int) -> None:
            if meta is not None:
                m.description, m.tags, m.created = meta.description, dict(meta.tags), meta.created
                m.versions = {v: vm for v, vm in meta.versions.items()}
            m.name, m.deleted, m.updated = new_name, False, stamp
            if state is not None:
                if meta is None or not meta.created:
                    m.created = min((v.registered_at * 1000 for v in state.versions.values()), default=stamp)
                for v, mv in state.versions.items():
                    vm = m.version(v)
                    vm.updated, vm.created = stamp, vm.created or mv.registered_at * 1000

        def gone(m: ModelMeta, stamp: int) -> None:
            m.deleted, m.updated = True, stamp

        self._change(new_name, move, f"rename registered model {name} to {new_name}")
        self._change(name, gone, f"rename registered model {name} to {new_name}")
        return self.get_registered_model(new_name)

    def delete_registered_model(self, name: str) -> None:
        """MLflow deletes the model: the registry deprecates it (``<name>@deprecated#N``) and
        its metadata says it was deleted.

        Args:
            name: the registered model's name.

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.delete_registered_model("churn")
        """
        state, _ = self._view(name)
        if state is not None and not state.deprecated:
            self._tag_registry.deprecate(name)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.deleted, m.updated = True, stamp

        self._change(name, edit, f"delete registered model {name}")

    def set_registered_model_tag(self, name: str, key: str, value) -> None:
        """Set an MLflow tag on a registered model (kept in its metadata ref).

        Args:
            name: the registered model's name.
            key: the tag's key.
            value: the tag's value (stored as text).

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no model has that name.
            InvalidInputError: a key or value MLflow refuses.

        >>> client.set_registered_model_tag("churn", "team", "ml")
        """
        self._view(name)
        key, text = _check_tag(key, value)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.tags[key] = text

        self._change(name, edit, f"set tag {key} of registered model {name}")

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Remove a tag from a registered model.

        Args:
            name: the registered model's name.
            key: the tag's key.

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.delete_registered_model_tag("churn", "team")
        """
        self._view(name)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.tags.pop(key, None)

        self._change(name, edit, f"delete tag {key} of registered model {name}")

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Registered models matching MLflow's filter (``name LIKE 'a%'``, ``tags.team = 'x'``),
        ordered by ``order_by`` (``name``, ``creation_timestamp``, ``last_updated_timestamp``,
        ``ASC``/``DESC``; then by name), one page of ``max_results`` from ``page_token``; the
        next page's token is the result's ``token``.

        Args:
            filter_string: MLflow's filter for the search (default: everything).
            max_results: at most this many.
            order_by: MLflow's ``order_by`` clauses.
            page_token: the ``token`` of the previous page.

        Returns:
            A :class:`PagedList` of :class:`RegisteredModel`.

        Raises:
            InvalidInputError: a filter or order MLflow's grammar does not take.

        >>> client.search_registered_models("name LIKE 'churn%'")
        """
        models = self._all_models()
        return search(
            models,
            lambda m: {
                "name": m.name,
                "creation_timestamp": m.creation_timestamp,
                "last_updated_timestamp": m.last_updated_timestamp,
                "tags": m.tags,
            },
            REGISTERED_MODELS,
            filter_string,
            max_results,
            order_by,
            page_token,
        )

    def _all_models(self) -> list[RegisteredModel]:
        states = self._tag_registry.models()
        metas = self._model_metadata.all()
        out = []
        by_slug: dict[str, str] = {}
        for name in states:
            by_slug[model_slug(name)] = name
        for slug, meta in metas.items():
            found = by_slug.pop(slug, "")
            if not meta.deleted:
                out.append(to_registered_model(states.get(found) if found else None, meta, meta.name))
        out.extend(to_registered_model(states[name]) for name in by_slug.values())
        return out

    # -- versions ------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict | None = None,
        run_link: str | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register ``source`` (``runs:/<run>/<path>``, or a version to copy:
        ``models:/<name>/<N>``) as the next version of ``name``; ``tags`` and ``description``
        are kept (tags in the metadata ref, the description in the signed tag).

        Args:
            name: the registered model's name.
            source: ``runs:/<run_id>/<path>``, a path in ``run_id``'s artifacts, or ``models:/...`` to copy.
            run_id: the run, when ``source`` is a path.
            tags: ``{key: value}`` MLflow tags.
            run_link: accepted as MLflow's (not stored).
            description: the description.

        Returns:
            The new :class:`ModelVersion`.

        Raises:
            InvalidInputError: the source names no run, or a bad name or tag.
            RunNotFoundError: no run has that id.

        >>> client.create_model_version("churn", f"runs:/{run_id}/model")
        """
        checked = dict(_check_tag(k, v) for k, v in (tags or {}).items())
        model_slug(name)
        if source.startswith("models:/"):
            return self._copy(source, name, checked, description)
        run, path = parse_runs_uri(source) if source.startswith("runs:/") else (run_id or "", source)
        if not run:
            raise InvalidInputError(f"model source {source!r} names no run: give runs:/<run_id>/<path>")
        self._check_not_deleted(name)
        mv = self._tag_registry.register(name, run, path, description=description or "")
        return self._after_registration(name, mv, checked, None)

    def _check_not_deleted(self, name: str) -> None:
        meta = self._model_metadata.read(model_slug(name))
        if meta is not None and meta.deleted:
            raise RegisteredModelNotFound(f"registered model {name!r} was deleted")

    def _after_registration(self, name: str, mv: VersionRecord, tags: dict, source: str | None) -> ModelVersion:
        if not tags and not source:  # nothing the tag does not hold: no metadata commit
            meta = self._model_metadata.read(model_slug(name))
            return to_model_version(mv, meta.versions.get(mv.version) if meta else None)

        def edit(m: ModelMeta, stamp: int) -> None:
            vm = m.version(mv.version)
            vm.tags.update(tags)
            if source:
                vm.source = source
            m.updated = max(m.updated, mv.registered_at * 1000)

        meta = self._change(name, edit, f"register version {mv.number} ({mv.version}) of {name}")
        return to_model_version(mv, meta.versions.get(mv.version))

    def _copy(self, src_uri: str, dst: str, tags: dict, description: str | None) -> ModelVersion:
        from gitml.registry import copying

        src_name, version, alias = _parse_models_uri(src_uri)
        src = (
            self.get_model_version_by_alias(src_name, alias)
            if alias
            else self.get_model_version(src_name, version or "")
        )
        _, _, record = self._version_view(src_name, src.version)
        self._check_not_deleted(dst)
        made = copying.copy_version(self._tag_registry, record, dst)
        if description is not None and description != record.description:
            self.update_model_version(dst, str(made.number), description)
        return self._after_registration(dst, made, {**src.tags, **tags}, f"models:/{src_name}/{src.version}")

    def copy_model_version(self, src_model_uri: str, dst_name: str) -> ModelVersion:
        """Copy a version (``models:/<name>/<N>`` or ``models:/<name>@<alias>``) to the next
        version of ``dst_name`` (created when missing), with its tags and description, as
        MLflow does; its source is the URI copied.

        Args:
            src_model_uri: ``models:/<name>/<N>`` or ``models:/<name>@<alias>``.
            dst_name: the model the copy becomes the next version of (created when missing).

        Returns:
            The new :class:`ModelVersion` of ``dst_name``.

        Raises:
            RegisteredModelNotFound: the source version does not exist.

        >>> client.copy_model_version("models:/churn@champion", "churn-prod")
        """
        try:
            self.create_registered_model(dst_name)
        except ConflictError:
            pass
        return self.create_model_version(dst_name, src_model_uri)

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        """Version ``version`` (MLflow's number, or a semantic version ``v1.1.0``) of ``name``;
        a deregistered one too (its stage is ``Archived``), not one MLflow deleted.

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).

        Returns:
            The :class:`ModelVersion`.

        Raises:
            RegisteredModelNotFound: no such model or version.

        >>> client.get_model_version("churn", 1).run_id
        """
        _, meta, mv = self._version_view(name, version)
        return to_model_version(mv, meta.versions.get(mv.version) if meta else None)

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        """Where the version's files are: ``runs:/<run>/<path>`` (a copy's too).

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).

        Returns:
            ``runs:/<run_id>/<path>``.

        Raises:
            RegisteredModelNotFound: no such model or version.

        >>> client.get_model_version_download_uri("churn", 1)
        """
        _, _, mv = self._version_view(name, version)
        return f"runs:/{mv.run_id}/{mv.path}" if mv.path else f"runs:/{mv.run_id}"

    def update_model_version(self, name: str, version: str | int, description: str | None = None) -> ModelVersion:
        """Set a version's description (kept in the metadata ref; the registration tag keeps
        the one it was registered with).

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).
            description: the description.

        Returns:
            The :class:`ModelVersion` after the change.

        Raises:
            RegisteredModelNotFound: no such model or version.

        >>> client.update_model_version("churn", 1, description="baseline")
        """
        _, _, mv = self._version_view(name, version)

        def edit(m: ModelMeta, stamp: int) -> None:
            vm = m.version(mv.version)
            vm.description, vm.updated = description or "", stamp

        self._change(name, edit, f"describe version {mv.number} ({mv.version}) of {name}")
        return self.get_model_version(name, version)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value) -> None:
        """Set an MLflow tag on a model version (kept in the metadata ref).

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).
            key: the tag's key.
            value: the tag's value (stored as text).

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no such model or version.
            InvalidInputError: a key or value MLflow refuses.

        >>> client.set_model_version_tag("churn", 1, "validated", "yes")
        """
        _, _, mv = self._version_view(name, version)
        key, text = _check_tag(key, value)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.version(mv.version).tags[key] = text

        self._change(name, edit, f"set tag {key} of version {mv.number} ({mv.version}) of {name}")

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        """Remove a tag from a model version.

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).
            key: the tag's key.

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no such model or version.

        >>> client.delete_model_version_tag("churn", 1, "validated")
        """
        _, _, mv = self._version_view(name, version)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.version(mv.version).tags.pop(key, None)

        self._change(name, edit, f"delete tag {key} of version {mv.number} ({mv.version}) of {name}")

    def delete_model_version(self, name: str, version: str | int) -> None:
        """MLflow deletes the version: the registry deregisters it (``<name>@<v>!#N``; its
        number is never reused) and the metadata says it was deleted.

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no such model or version.

        >>> client.delete_model_version("churn", 1)
        """
        _, _, mv = self._version_view(name, version)
        if not mv.deregistered:
            self._tag_registry.deregister(name, mv.version)

        def edit(m: ModelMeta, stamp: int) -> None:
            vm = m.version(mv.version)
            vm.deleted, vm.updated, m.updated = True, stamp, stamp

        self._change(name, edit, f"delete version {mv.number} ({mv.version}) of {name}")

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 10_000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Versions matching MLflow's filter (``name = 'x'``, ``version_number > 2``,
        ``run_id IN (...)``, ``source_path LIKE ...``, ``tags.k = 'v'``), ordered as MLflow
        orders them (by default newest update first, then name, then number descending),
        one page of ``max_results`` from ``page_token``.

        Args:
            filter_string: MLflow's filter for the search (default: everything).
            max_results: at most this many.
            order_by: MLflow's ``order_by`` clauses.
            page_token: the ``token`` of the previous page.

        Returns:
            A :class:`PagedList` of :class:`ModelVersion`.

        Raises:
            InvalidInputError: a filter or order MLflow's grammar does not take.

        >>> client.search_model_versions(f"run_id = '{run_id}'")
        """
        states = self._tag_registry.models()
        metas = self._model_metadata.all()
        views: list[ModelVersion] = []
        for name, state in states.items():
            meta = metas.get(model_slug(name))
            if meta is not None and meta.deleted:
                continue
            views.extend(
                to_model_version(v, meta.versions.get(v.version) if meta else None) for v in _visible(state, meta)
            )
        return search(
            views,
            lambda v: {
                "name": v.name,
                "version_number": int(v.version),
                "run_id": v.run_id,
                "source_path": v.source,
                "current_stage": v.current_stage,
                "creation_timestamp": v.creation_timestamp,
                "last_updated_timestamp": v.last_updated_timestamp,
                "tags": v.tags,
            },
            MODEL_VERSIONS,
            filter_string,
            max_results,
            order_by,
            page_token,
        )

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        """For each stage asked (default: every stage), the latest version in it, as MLflow.

        Args:
            name: the registered model's name.
            stages: the stages asked (default: every stage).

        Returns:
            A list of :class:`ModelVersion`.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.get_latest_versions("churn", ["Production"])
        """
        latest = self.get_registered_model(name).latest_versions
        if stages is None:
            return latest
        wanted = {_MLFLOW_STAGES.get(s.lower(), s).lower() for s in stages}
        return [v for v in latest if v.current_stage.lower() in wanted]

    def transition_model_version_stage(
        self, name: str, version: str | int, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        """``Production``/``Staging``/any stage: assign it (``archive_existing_versions``:
        the version it held is deregistered, MLflow's ``Archived``); ``None``: take the
        version out of the stages it holds; ``Archived``: deregister it.

        Args:
            name: the registered model's name.
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).
            stage: ``Production``, ``Staging``, ``None``, ``Archived`` or a stage of the policy.
            archive_existing_versions: archive the version that held the stage.

        Returns:
            The :class:`ModelVersion` after the change.

        Raises:
            RegisteredModelNotFound: no such model or version.
            PolicyError: the repository's policy refuses the change.

        >>> client.transition_model_version_stage("churn", 2, "Production")
        """
        reg = self._tag_registry
        state, _, mv = self._version_view(name, version)
        key = _stage(stage)
        allowed = reg.policy.stages or ()
        key = next((s for s in allowed if s.lower() == key.lower()), key)  # the policy's spelling
        if key == "archived":
            if not mv.deregistered:
                reg.deregister(name, mv.version)
        elif key == "none":
            for held in list(mv.stages):
                reg.unassign(name, held)
        else:
            before = state.stages.get(key)
            reg.assign(name, mv.version, key)
            if archive_existing_versions and before is not None and before != mv.version:
                reg.deregister(name, before)

        def edit(m: ModelMeta, stamp: int) -> None:
            m.version(mv.version).updated, m.updated = stamp, stamp

        self._change(name, edit, f"move version {mv.number} ({mv.version}) of {name} to {stage}")
        return self.get_model_version(name, mv.version)

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """An alias is a stage: ``models:/<name>@<alias>`` resolves to ``version``. MLflow's
        reserved names (``latest``, ``v<N>``) are refused, as MLflow refuses them.

        Args:
            name: the registered model's name.
            alias: the alias (a stage of the tag registry).
            version: MLflow's number (``1``) or the registry's semantic version (``v1.0.0``).

        Returns:
            None.

        Raises:
            InvalidInputError: a reserved alias.
            RegisteredModelNotFound: no such model or version.
            PolicyError: the repository's policy refuses the change.

        >>> client.set_registered_model_alias("churn", "champion", 2)
        """
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise InvalidInputError(f"alias {alias!r} is reserved (latest, v<number>)")
        _, _, mv = self._version_view(name, version)
        self._tag_registry.assign(name, mv.version, alias)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Take an alias (a stage) off the version holding it.

        Args:
            name: the registered model's name.
            alias: the alias (a stage of the tag registry).

        Returns:
            None.

        Raises:
            RegisteredModelNotFound: no model has that name.

        >>> client.delete_registered_model_alias("churn", "champion")
        """
        self._tag_registry.unassign(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version holding an alias.

        Args:
            name: the registered model's name.
            alias: the alias (a stage of the tag registry).

        Returns:
            The :class:`ModelVersion`.

        Raises:
            RegisteredModelNotFound: no version holds that alias.

        >>> client.get_model_version_by_alias("churn", "champion")
        """
        mv = self._tag_registry.resolve(name, stage=alias)
        _, meta = self._view(name)
        return to_model_version(mv, meta.versions.get(mv.version) if meta else None)


__all__ = ["ModelVersion", "PagedList", "RegisteredModel", "RegistryCalls"]

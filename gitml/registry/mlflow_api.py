"""MLflow's model-registry calls on :class:`gitml.Client`, over the tag registry.

A mixin of ``Client`` (as ``gitml.runviews``), so ``MlflowClient`` code runs unchanged:

>>> client.create_model_version("churn", "runs:/<run>/model", run_id)   # churn@v1.0.0
>>> client.set_registered_model_alias("churn", "production", "1")       # churn#production#1
>>> client.get_model_version_by_alias("churn", "production").run_id

Mapping: MLflow's version ``N`` is the model's N-th registration, whatever semantic
version its tag carries (``ModelVersion.tag_version``); aliases and stages are both the registry's stages (``Production`` is the
stage ``production``); ``Archived`` deregisters the version; a model exists once its
first version is registered (tags are the registry's only record, so
``create_registered_model`` checks the name and makes nothing).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitml.errors import ConflictError, InvalidInputError, RegisteredModelNotFound
from gitml.names import parse_runs_uri
from gitml.registry.tags import check_model_name, version_key

if TYPE_CHECKING:
    from gitml.registry.state import ModelState, Registry
    from gitml.registry.state import ModelVersion as VersionRecord
    from gitml.store.git import GitStore
    from gitml.tracking.tracker import Tracker

_MLFLOW_STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}


@dataclass
class ModelVersion:
    """MLflow's ``ModelVersion``: ``version`` is MLflow's number (``"2"`` for v2.0.0)."""

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
    aliases: dict[str, str] = field(default_factory=dict)  # alias (stage) -> MLflow version
    description: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    tags: dict = field(default_factory=dict)
    deprecated: bool = False


def to_model_version(mv: VersionRecord) -> ModelVersion:
    stage = "Archived" if mv.deregistered else "None"
    for s in mv.stages:
        stage = _MLFLOW_STAGES.get(s.lower(), s)
        if s.lower() == "production":
            break
    return ModelVersion(
        name=mv.model, version=str(mv.number), run_id=mv.run_id,
        source=f"runs:/{mv.run_id}/{mv.path}" if mv.path else f"runs:/{mv.run_id}",
        current_stage=stage, aliases=sorted(mv.stages), description=mv.description,
        creation_timestamp=mv.registered_at * 1000, last_updated_timestamp=mv.registered_at * 1000,
        user_id=mv.registered_by, tag_version=mv.version, commit=mv.commit,
    )


def to_registered_model(state: ModelState) -> RegisteredModel:
    versions = sorted(state.versions.values(), key=lambda v: version_key(v.version))
    latest = state.latest
    times = [v.registered_at * 1000 for v in versions] + [e.time * 1000 for e in state.events]
    return RegisteredModel(
        name=state.name, latest_versions=[to_model_version(latest)] if latest else [],
        aliases={s: str(state.versions[v].number) for s, v in sorted(state.stages.items())},
        creation_timestamp=min(times, default=0), last_updated_timestamp=max(times, default=0),
        deprecated=state.deprecated,
    )


def _stage(stage: str) -> str:
    return stage.lower() if stage.lower() in _MLFLOW_STAGES else stage


def _name_filter(filter_string: str | None, fields: tuple[str, ...]) -> dict[str, str]:
    """The few filters MLflow's registry searches take: ``field = 'x'`` / ``field LIKE 'x%'``
    joined by AND (``ILIKE`` too)."""
    out: dict[str, str] = {}
    if not filter_string or not filter_string.strip():
        return out
    for clause in re.split(r"\s+AND\s+", filter_string.strip(), flags=re.IGNORECASE):
        m = re.fullmatch(r"\s*(\w+)\s*(=|LIKE|ILIKE)\s*(['\"])(.*)\3\s*", clause, flags=re.IGNORECASE)
        if m is None or m[1] not in fields:
            raise InvalidInputError(
                f"filter {filter_string!r}: gitml's registry search takes {' / '.join(fields)} = 'x' or LIKE 'x%', joined by AND"
            )
        value = m[4]
        out[m[1]] = value.replace("%", "*").replace("_", "?") if m[2].upper() != "=" else value
        if m[2].upper() == "ILIKE":
            out[m[1]] = "(?i)" + out[m[1]]
    return out


def _matches(value: str, pattern: str) -> bool:
    if pattern.startswith("(?i)"):
        return fnmatch.fnmatch(value.lower(), pattern[4:].lower())
    return fnmatch.fnmatchcase(value, pattern)


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

    def create_registered_model(self, name: str, tags: dict | None = None, description: str | None = None) -> RegisteredModel:
        """Check ``name`` is free: the model appears (as a tag) with its first registered version.

        Args:
            name: the model's name.
            tags: returned as given (the tag registry stores no model tags).
            description: returned as given.

        Returns:
            The :class:`RegisteredModel`.

        Raises:
            ConflictError: a model has that name.
            InvalidInputError: a bad name.

        >>> client.create_registered_model("churn")
        """
        check_model_name(name)
        if self._tag_registry.tag_refs(name):
            raise ConflictError(f"registered model {name!r} already exists")
        return RegisteredModel(name=name, description=description or "", tags=dict(tags or {}))

    def get_registered_model(self, name: str) -> RegisteredModel:
        """A registered model: its versions and the stages and aliases they hold.

        Args:
            name: the model's name.

        Returns:
            The :class:`RegisteredModel`.

        Raises:
            RegisteredModelNotFoundError: no model has that name.

        >>> client.get_registered_model("churn").latest_versions
        """
        return to_registered_model(self._tag_registry.model(name))

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 100,
                                 order_by: list[str] | None = None, page_token: str | None = None) -> list[RegisteredModel]:
        """Registered models, by name.

        Args:
            filter_string: ``name = 'x'`` or ``name LIKE 'x%'`` (default: all).
            max_results: at most this many (default 100).
            order_by: ``DESC`` in any entry reverses the order of names.
            page_token: accepted as MLflow's (one page).

        Returns:
            A list of :class:`RegisteredModel`.

        Raises:
            InvalidInputError: a filter gitml's registry search does not take.

        >>> client.search_registered_models("name LIKE 'churn%'")
        """
        wanted = _name_filter(filter_string, ("name",))
        models = [to_registered_model(s) for n, s in self._tag_registry.models().items()
                  if "name" not in wanted or _matches(n, wanted["name"])]
        if order_by and any("DESC" in o.upper() for o in order_by):
            models.reverse()
        return models[:max_results]

    def delete_registered_model(self, name: str) -> None:
        """MLflow deletes the model; the registry deprecates it (tag ``<name>@deprecated#N``).

        Args:
            name: the model's name.

        Returns:
            None.

        Raises:
            RegisteredModelNotFoundError: no model has that name.

        >>> client.delete_registered_model("churn")
        """
        self._tag_registry.deprecate(name)

    def create_model_version(self, name: str, source: str, run_id: str | None = None, tags: dict | None = None,
                             run_link: str | None = None, description: str | None = None) -> ModelVersion:
        """Register ``source`` as the next version of ``name`` (a signed tag ``<name>@vX.Y.Z``).

        Args:
            name: the model's name.
            source: ``runs:/<run_id>/<path>``, or a path in ``run_id``'s artifacts.
            run_id: the run, when ``source`` is a path.
            tags: accepted as MLflow's (not stored).
            run_link: accepted as MLflow's (not stored).
            description: the version's description.

        Returns:
            The new :class:`ModelVersion`.

        Raises:
            InvalidInputError: the source names no run, or a bad name.
            RunNotFoundError: no run has that id.

        >>> client.create_model_version("churn", f"runs:/{run_id}/model")
        """
        run, path = parse_runs_uri(source) if source.startswith("runs:/") else (run_id or "", source)
        if not run:
            raise InvalidInputError(f"model source {source!r} names no run: give runs:/<run_id>/<path>")
        return to_model_version(self._tag_registry.register(name, run, path, description=description or ""))

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        """Version ``version`` of a registered model; a deregistered one too (its stage is ``Archived``).

        Args:
            name: the model's name.
            version: MLflow's number (``1``: the first registration) or the registry's (``v1.0.0``).

        Returns:
            The :class:`ModelVersion`.

        Raises:
            RegisteredModelNotFound: no model has that name, or it is deprecated.
            VersionNotFoundError: the model has no such version.

        >>> client.get_model_version("churn", 1).run_id
        """
        reg = self._tag_registry
        state = reg.model(name)
        if state.deprecated:
            raise RegisteredModelNotFound(f"registered model {name!r} is deprecated")
        return to_model_version(reg.find_version(state, version))

    def delete_model_version(self, name: str, version: str | int) -> None:
        """MLflow deletes the version; the registry deregisters it (tag ``<name>@<v>!#N``).

        Args:
            name: the model's name.
            version: MLflow's number or the registry's.

        Returns:
            None.

        Raises:
            VersionNotFoundError: the model has no such version.

        >>> client.delete_model_version("churn", 1)
        """
        self._tag_registry.deregister(name, str(version))

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10_000,
                              order_by: list[str] | None = None, page_token: str | None = None) -> list[ModelVersion]:
        """Model versions, newest first per model.

        Args:
            filter_string: ``name``, ``run_id`` or ``source_path`` ``= 'x'`` / ``LIKE 'x%'``, joined by AND.
            max_results: at most this many (default 10,000).
            order_by: accepted as MLflow's.
            page_token: accepted as MLflow's (one page).

        Returns:
            A list of :class:`ModelVersion`.

        Raises:
            InvalidInputError: a filter gitml's registry search does not take.

        >>> client.search_model_versions(f"run_id = '{run_id}'")
        """
        wanted = _name_filter(filter_string, ("name", "run_id", "source_path"))
        out = []
        for name, state in self._tag_registry.models().items():
            if "name" in wanted and not _matches(name, wanted["name"]):
                continue
            for mv in sorted(state.versions.values(), key=lambda v: version_key(v.version), reverse=True):
                if "run_id" in wanted and not _matches(mv.run_id, wanted["run_id"]):
                    continue
                out.append(to_model_version(mv))
        return out[:max_results]

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        """For each stage, the version holding it.

        Args:
            name: the model's name.
            stages: the stages (default: every stage held, and ``None``: the latest version).

        Returns:
            A list of :class:`ModelVersion`.

        Raises:
            RegisteredModelNotFoundError: no model has that name.

        >>> client.get_latest_versions("churn", ["Production"])
        """
        state = self._tag_registry.model(name)
        out = []
        if stages is None:
            held = sorted(state.stages)
            out = [to_model_version(state.versions[state.stages[s]]) for s in held]
            if state.latest is not None:
                out.append(to_model_version(state.latest))
            return out
        for stage in stages:
            key = _stage(stage)
            if key == "none":
                if state.latest is not None:
                    out.append(to_model_version(state.latest))
            elif key in state.stages:
                out.append(to_model_version(state.versions[state.stages[key]]))
        return out

    def transition_model_version_stage(self, name: str, version: str | int, stage: str,
                                       archive_existing_versions: bool = False) -> ModelVersion:
        """``Production``/``Staging``/any stage: assign it; ``None``: take the version out of
        the stages it holds; ``Archived``: deregister it.

        Args:
            name: the model's name.
            version: MLflow's number or the registry's.
            stage: the stage.
            archive_existing_versions: accepted as MLflow's (a stage has one holder already).

        Returns:
            The :class:`ModelVersion` after the change.

        Raises:
            VersionNotFoundError: the model has no such version.
            PolicyError: the repository's policy refuses the change.

        >>> client.transition_model_version_stage("churn", 2, "Production")
        """
        reg = self._tag_registry
        mv = reg.resolve(name, str(version))
        key = _stage(stage)
        allowed = reg.policy.stages or ()
        key = next((s for s in allowed if s.lower() == key.lower()), key)  # the policy's spelling
        if key == "archived":
            reg.deregister(name, mv.version)
        elif key == "none":
            for held in list(mv.stages):
                reg.unassign(name, held)
        else:
            reg.assign(name, mv.version, key)
        return to_model_version(reg.resolve(name, mv.version) if key != "archived" else mv)

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """An alias is a stage: ``models:/<name>@<alias>`` resolves to ``version`` (tag
        ``<name>#<alias>#N``). MLflow's reserved names (``latest``, ``v<N>``) are refused, as MLflow refuses them.

        Args:
            name: the model's name.
            alias: the alias.
            version: MLflow's number or the registry's.

        Returns:
            None.

        Raises:
            InvalidInputError: a reserved alias.
            VersionNotFoundError: the model has no such version.
            PolicyError: the repository's policy refuses the change.

        >>> client.set_registered_model_alias("churn", "champion", 2)
        """
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise InvalidInputError(f"alias {alias!r} is reserved (latest, v<number>)")
        self._tag_registry.assign(name, str(version), alias)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Take an alias (a stage) off the version holding it.

        Args:
            name: the model's name.
            alias: the alias.

        Returns:
            None.

        Raises:
            RegisteredModelNotFoundError: no model has that name.

        >>> client.delete_registered_model_alias("churn", "champion")
        """
        self._tag_registry.unassign(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version holding an alias.

        Args:
            name: the model's name.
            alias: the alias.

        Returns:
            The :class:`ModelVersion`.

        Raises:
            VersionNotFoundError: no version holds that alias.

        >>> client.get_model_version_by_alias("churn", "champion")
        """
        return to_model_version(self._tag_registry.resolve(name, stage=alias))


__all__ = ["ModelVersion", "RegisteredModel", "RegistryCalls"]


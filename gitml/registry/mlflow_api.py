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
    def registry(self) -> Registry:
        """The tag registry of this repository (:class:`gitml.registry.Registry`)."""
        found = self.__dict__.get("_registry")
        if found is None:
            from gitml.registry.state import Registry  # its modules loaded here: reading runs needs none

            found = self.__dict__["_registry"] = Registry(self._store, self.tracker)
        return found

    def create_registered_model(self, name: str, tags: dict | None = None, description: str | None = None) -> RegisteredModel:
        """Check ``name`` is free; the model appears with its first registered version."""
        check_model_name(name)
        if self.registry.tag_refs(name):
            raise ConflictError(f"registered model {name!r} already exists")
        return RegisteredModel(name=name, description=description or "", tags=dict(tags or {}))

    def get_registered_model(self, name: str) -> RegisteredModel:
        return to_registered_model(self.registry.model(name))

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 100,
                                 order_by: list[str] | None = None, page_token: str | None = None) -> list[RegisteredModel]:
        wanted = _name_filter(filter_string, ("name",))
        models = [to_registered_model(s) for n, s in self.registry.models().items()
                  if "name" not in wanted or _matches(n, wanted["name"])]
        if order_by and any("DESC" in o.upper() for o in order_by):
            models.reverse()
        return models[:max_results]

    def delete_registered_model(self, name: str) -> None:
        """MLflow deletes the model; the registry deprecates it (``<name>@deprecated#N``)."""
        self.registry.deprecate(name)

    def create_model_version(self, name: str, source: str, run_id: str | None = None, tags: dict | None = None,
                             run_link: str | None = None, description: str | None = None) -> ModelVersion:
        """Register ``source`` (``runs:/<run>/<path>``) as the next version of ``name``."""
        run, path = parse_runs_uri(source) if source.startswith("runs:/") else (run_id or "", source)
        if not run:
            raise InvalidInputError(f"model source {source!r} names no run: give runs:/<run_id>/<path>")
        return to_model_version(self.registry.register(name, run, path, description=description or ""))

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        """Version ``version`` (MLflow's number, or a semantic version ``v1.1.0``) of ``name``;
        a deregistered one too (its stage is ``Archived``)."""
        reg = self.registry
        state = reg.model(name)
        if state.deprecated:
            raise RegisteredModelNotFound(f"registered model {name!r} is deprecated")
        return to_model_version(reg.find_version(state, version))

    def delete_model_version(self, name: str, version: str | int) -> None:
        """MLflow deletes the version; the registry deregisters it (``<name>@<v>!#N``)."""
        self.registry.deregister(name, str(version))

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10_000,
                              order_by: list[str] | None = None, page_token: str | None = None) -> list[ModelVersion]:
        wanted = _name_filter(filter_string, ("name", "run_id", "source_path"))
        out = []
        for name, state in self.registry.models().items():
            if "name" in wanted and not _matches(name, wanted["name"]):
                continue
            for mv in sorted(state.versions.values(), key=lambda v: version_key(v.version), reverse=True):
                if "run_id" in wanted and not _matches(mv.run_id, wanted["run_id"]):
                    continue
                out.append(to_model_version(mv))
        return out[:max_results]

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        """For each stage (default: every stage held, and ``None``: the latest version), its version."""
        state = self.registry.model(name)
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
        the stages it holds; ``Archived``: deregister it."""
        reg = self.registry
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
        """An alias is a stage: ``models:/<name>@<alias>`` resolves to ``version``. MLflow's
        reserved names (``latest``, ``v<N>``) are refused, as MLflow refuses them."""
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise InvalidInputError(f"alias {alias!r} is reserved (latest, v<number>)")
        self.registry.assign(name, str(version), alias)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.registry.unassign(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return to_model_version(self.registry.resolve(name, stage=alias))


__all__ = ["ModelVersion", "RegisteredModel", "RegistryCalls"]


"""MLflow's model registry store over gitml's tag registry (entry point
``mlflow.model_registry_store``: ``gitml``).

Calls map onto :class:`gitml.Client`'s registry calls (``gitml.registry.mlflow_api``):
a version is a tag ``<name>@vN.0.0`` on the run commit (signed as the repository's policy
asks), an alias or stage a stage tag; ``Archived`` deregisters. What the tags cannot hold
(registered-model and version tags, descriptions set later, renames) is an
``MlflowException`` naming the call, never a silent no-op.
"""

from __future__ import annotations

import re
import urllib.parse

from mlflow.entities.model_registry import ModelVersion, RegisteredModel, RegisteredModelAlias
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore

from gitml.errors import ConflictError, InvalidInputError
from gitml.mlflow_plugin import (
    ARTIFACT_SCHEME,
    as_mlflow_exception,
    check_mlflow_version,
    client_for,
    mlflow_errors,
    parse_artifact_uri,
    parse_view,
    repository_path,
    unsupported,
    view_uri,
)


# MLflow's client adds one of these to every search_registered_models (prompts are registered
# models tagged so); gitml's registry has no prompts, so "not a prompt" holds for every model
_PROMPT_CLAUSE = re.compile(
    r"""\s*tags?\.`?mlflow\.prompt\.is_prompt`?\s*(=|!=)\s*(['"])(true|false)\2\s*""", re.IGNORECASE
)


def _without_prompt_clause(filter_string: str | None) -> tuple[str | None, bool]:
    """``(filter without MLflow's prompt clause, whether the filter asks for prompts)``."""
    if not filter_string or "mlflow.prompt.is_prompt" not in filter_string:
        return filter_string, False
    clauses = re.split(r"\s+AND\s+", filter_string.strip(), flags=re.IGNORECASE)
    kept, prompts = [], False
    for clause in clauses:
        m = _PROMPT_CLAUSE.fullmatch(clause)
        if m is None:
            kept.append(clause)
        else:
            prompts = prompts or ((m[1] == "=") == (m[3].lower() == "true"))
    return " AND ".join(kept) or None, prompts


def _check(name, version=None, alias=None) -> None:
    """Names, versions and aliases checked as MLflow's registry stores check them, in their
    words (a name of None or a number is INVALID_PARAMETER_VALUE, not an AttributeError)."""
    from mlflow.utils import validation

    if not isinstance(name, str):
        validation._validate_model_name(None if name is None else "")
    validation._validate_model_name(name)
    if version is not None:
        validation._validate_model_version(version)
    if alias is not None:
        validation._validate_model_alias_name(alias)


class GitmlRegistryStore(AbstractStore):
    """MLflow's model-registry ``AbstractStore`` on the repository a ``gitml:`` URI names."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None):
        check_mlflow_version()
        super().__init__(store_uri, tracking_uri)
        self.client, self._lock = client_for(repository_path(store_uri))
        self.repo_path = self.client.repo_path
        self.gitml_dir = self.client.store.gitml_dir
        self._run_experiments: dict[str, str] = {}  # run id -> its experiment (never changes)

    # -- conversions ------------------------------------------------------------
    def _version(self, mv) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            creation_timestamp=mv.creation_timestamp,
            last_updated_timestamp=mv.last_updated_timestamp,
            description=mv.description or None,
            user_id=mv.user_id,
            current_stage=mv.current_stage,
            source=self._source_uri(mv.source),
            run_id=mv.run_id,
            status="READY",
            aliases=list(mv.aliases),
        )

    def _model(self, rm) -> RegisteredModel:
        return RegisteredModel(
            name=rm.name,
            creation_timestamp=rm.creation_timestamp,
            last_updated_timestamp=rm.last_updated_timestamp,
            description=rm.description or None,
            latest_versions=[self._version(v) for v in rm.latest_versions],
            aliases=[RegisteredModelAlias(a, v) for a, v in rm.aliases.items()],
        )

    def _source_uri(self, source: str) -> str:
        """``runs:/<run>/<path>`` (the registry's form) as the artifact URI MLflow downloads
        (the run's artifacts view: see gitml.mlflow_plugin.artifacts)."""
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/"):].partition("/")
            experiment_id = self._run_experiments.get(run_id)
            if experiment_id is None:
                experiment_id = self._run_experiments[run_id] = str(self.client.get_run(run_id).info.experiment_id)
            return view_uri(self.gitml_dir, experiment_id, run_id, path)
        return source

    def _runs_uri(self, source: str, run_id: str | None, model_id: str | None) -> str:
        """The ``runs:/<run>/<path>`` a version registers, from what MLflow passes: the run's
        artifact URI, ``runs:/``, or ``models:/<logged model id>``."""
        view = parse_view(source)
        if view is not None or source.startswith(ARTIFACT_SCHEME + ":"):
            repo, run, path = view[:3] if view is not None else parse_artifact_uri(source)
            if repository_path(repo) != repository_path(self.repo_path):
                raise InvalidInputError(f"model source {source!r} is in another repository than {self.repo_path!r}")
            return f"runs:/{run}/{path}"
        if source.startswith("runs:/"):
            return source
        if source.startswith("models:/") and model_id:
            import mlflow

            logged = mlflow.MlflowClient().get_logged_model(model_id)
            if parse_view(logged.artifact_location) is None and not logged.artifact_location.startswith(ARTIFACT_SCHEME + ":"):
                raise InvalidInputError(f"logged model {model_id} is not in a gitml repository")
            return self._runs_uri(logged.artifact_location, run_id, None)
        parsed = urllib.parse.urlparse(source)
        raise InvalidInputError(
            f"model source {source!r} ({parsed.scheme or 'a path'}) is not a run of this repository: "
            "register runs:/<run_id>/<path>"
        )

    # -- registered models -------------------------------------------------------
    @mlflow_errors
    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        _check(name)
        if tags:
            raise unsupported("registered model tags (the registry keeps only what git tags hold)")
        try:
            rm = self.client.create_registered_model(name, description=description)
        except ConflictError as e:
            raise as_mlflow_exception(e, "RESOURCE_ALREADY_EXISTS") from e
        return self._model(rm)

    @mlflow_errors
    def update_registered_model(self, name, description, deployment_job_id=None):
        _check(name)
        raise unsupported("update_registered_model (a description of a registered model)")

    @mlflow_errors
    def rename_registered_model(self, name, new_name):
        raise unsupported("renaming a registered model (its versions are tags named after it)")

    @mlflow_errors
    def delete_registered_model(self, name):
        _check(name)
        self.client.delete_registered_model(name)

    @mlflow_errors
    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        filter_string, prompts = _without_prompt_clause(filter_string)
        if prompts:  # gitml's registry holds models, never MLflow's prompts
            return PagedList([], None)
        found = self.client.search_registered_models(filter_string, max_results or 100, order_by)
        return PagedList([self._model(m) for m in found], None)

    @mlflow_errors
    def get_registered_model(self, name):
        _check(name)
        return self._model(self.client.get_registered_model(name))

    @mlflow_errors
    def get_latest_versions(self, name, stages=None):
        _check(name)
        return [self._version(v) for v in self.client.get_latest_versions(name, stages)]

    @mlflow_errors
    def set_registered_model_tag(self, name, tag):
        _check(name)
        raise unsupported("registered model tags (the registry keeps only what git tags hold)")

    @mlflow_errors
    def delete_registered_model_tag(self, name, key):
        _check(name)
        raise unsupported("registered model tags (the registry keeps only what git tags hold)")

    # -- versions -------------------------------------------------------------------
    @mlflow_errors
    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None, description=None,
                             local_model_path=None, model_id=None):
        _check(name)
        if tags:
            raise unsupported("model version tags (the registry keeps only what git tags hold)")
        uri = self._runs_uri(source, run_id, model_id)
        return self._version(self.client.create_model_version(name, uri, run_id, description=description))

    @mlflow_errors
    def update_model_version(self, name, version, description):
        _check(name, version)
        raise unsupported("update_model_version (a version's description is part of its signed tag)")

    @mlflow_errors
    def transition_model_version_stage(self, name, version, stage, archive_existing_versions=False):
        _check(name, version)
        return self._version(self.client.transition_model_version_stage(name, version, stage, archive_existing_versions))

    @mlflow_errors
    def delete_model_version(self, name, version):
        _check(name, version)
        self.client.delete_model_version(name, version)

    @mlflow_errors
    def get_model_version(self, name, version):
        _check(name, version)
        return self._version(self.client.get_model_version(name, version))

    @mlflow_errors
    def get_model_version_download_uri(self, name, version):
        _check(name, version)
        return self._source_uri(self.client.get_model_version(name, version).source)

    @mlflow_errors
    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        found = self.client.search_model_versions(filter_string, max_results or 10_000, order_by)
        return PagedList([self._version(v) for v in found], None)

    @mlflow_errors
    def set_model_version_tag(self, name, version, tag):
        _check(name, version)
        raise unsupported("model version tags (the registry keeps only what git tags hold)")

    @mlflow_errors
    def delete_model_version_tag(self, name, version, key):
        _check(name, version)
        raise unsupported("model version tags (the registry keeps only what git tags hold)")

    @mlflow_errors
    def set_registered_model_alias(self, name, alias, version):
        _check(name, version, alias)
        self.client.set_registered_model_alias(name, alias, version)

    @mlflow_errors
    def delete_registered_model_alias(self, name, alias):
        _check(name, alias=alias)
        self.client.delete_registered_model_alias(name, alias)

    @mlflow_errors
    def get_model_version_by_alias(self, name, alias):
        _check(name, alias=alias)
        return self._version(self.client.get_model_version_by_alias(name, alias))

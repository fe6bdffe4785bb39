"""MLflow's model registry store over gitml's tag registry (entry point
``mlflow.model_registry_store``: ``gitml``).

Calls map onto :class:`gitml.Client`'s registry calls (``gitml.registry.mlflow_api``):
a version is a tag ``<name>@vN.0.0`` on the run commit (signed as the repository's policy
asks), an alias or stage a stage tag; ``Archived`` deregisters. What the tags cannot hold
(registered-model and version tags, descriptions set later, renames) is an
``MlflowException`` naming the call, never a silent no-op.
"""

from __future__ import annotations

import functools
import re

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore

from gitml.errors import ConflictError, InvalidInputError, NoModelError, NotFoundError, RegisteredModelNotFound
from gitml.mlflow_plugin import (
    ARTIFACT_SCHEME,
    as_mlflow_exception,
    check_mlflow_version,
    client_for,
    mlflow_errors,
    parse_artifact_uri,
    parse_view,
    repository_path,
    view_uri,
)
from gitml.mlflow_plugin.logged_models import SOURCE_RUN_TAG, SOURCE_TAG

# MLflow's client adds ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every
# search_registered_models (prompts are registered models tagged so). MLflow's stores read it
# as "not a prompt", a model without the tag included; gitml's grammar is SQL's (a comparison
# on a missing value is false), so the clause is spelled out for it.
_NOT_PROMPT = re.compile(r"""tags?\.`?mlflow\.prompt\.is_prompt`?\s*!=\s*(['"])true\1""", re.IGNORECASE)


def _prompt_clause(filter_string: str | None) -> str | None:
    if not filter_string or "mlflow.prompt.is_prompt" not in filter_string:
        return filter_string
    key = "tags.`mlflow.prompt.is_prompt`"
    return _NOT_PROMPT.sub(f"({key} IS NULL OR {key} != 'true')", filter_string)


def _tags(tags) -> dict[str, str]:
    """MLflow's tag entities (or a dict) as a dict."""
    if isinstance(tags, dict):
        return dict(tags)
    return {t.key: t.value for t in tags or ()}


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


def _model_words(method):
    """A missing model in MLflow's words: "Registered Model with name=X not found" (its
    callers and tests match them), gitml's reason after them."""

    @functools.wraps(method)
    def wrapper(self, name, *args, **kwargs):
        try:
            return method(self, name, *args, **kwargs)
        except RegisteredModelNotFound as e:
            raise as_mlflow_exception(NotFoundError(f"Registered Model with name={name} not found ({e})")) from e

    return wrapper


def _version_words(method):
    """A missing version in MLflow's words: "Model Version (name=X, version=N) not found"."""

    @functools.wraps(method)
    def wrapper(self, name, version, *args, **kwargs):
        try:
            return method(self, name, version, *args, **kwargs)
        except RegisteredModelNotFound as e:
            raise as_mlflow_exception(
                NotFoundError(f"Model Version (name={name}, version={version}) not found ({e})")
            ) from e

    return wrapper


class GitmlRegistryStore(AbstractStore):
    """MLflow's model-registry ``AbstractStore`` on the repository a ``gitml:`` URI names."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None):
        check_mlflow_version()
        super().__init__(store_uri, tracking_uri)
        self.client, self._lock = client_for(repository_path(store_uri))
        self.repo_path = self.client.repo_path
        self.gitml_dir = self.client.gitml_dir
        self._runs: dict[str, tuple[str, tuple[str, str | None] | None]] = {}  # see _facts

    # -- conversions ------------------------------------------------------------
    def _version(self, mv) -> ModelVersion:
        source, run_id = self._source_uri(mv.source), mv.run_id
        external = self._facts(mv.run_id)[1] if mv.run_id else None
        if external is not None:  # a version of a source outside the repository: MLflow's own values
            source, run_id = external
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            creation_timestamp=mv.creation_timestamp,
            last_updated_timestamp=mv.last_updated_timestamp,
            description=mv.description or None,
            user_id=mv.user_id,
            current_stage=mv.current_stage,
            source=source,
            run_id=run_id,
            status="READY",
            aliases=list(mv.aliases),
            tags=[ModelVersionTag(k, v) for k, v in (getattr(mv, "tags", None) or {}).items()],
            run_link=getattr(mv, "run_link", None) or None,
        )

    def _model(self, rm) -> RegisteredModel:
        return RegisteredModel(
            name=rm.name,
            creation_timestamp=rm.creation_timestamp,
            last_updated_timestamp=rm.last_updated_timestamp,
            description=rm.description or None,
            latest_versions=[self._version(v) for v in rm.latest_versions],
            aliases=[RegisteredModelAlias(a, v) for a, v in rm.aliases.items()],
            tags=[RegisteredModelTag(k, v) for k, v in (getattr(rm, "tags", None) or {}).items()],
        )

    def _source_uri(self, source: str) -> str:
        """``runs:/<run>/<path>`` (the registry's form) as the artifact URI MLflow downloads
        (the run's artifacts view: see gitml.mlflow_plugin.artifacts)."""
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            experiment_id, external = self._facts(run_id)
            return external[0] if external is not None else view_uri(self.gitml_dir, experiment_id, run_id, path)
        return source

    def _facts(self, run_id: str) -> tuple[str, tuple[str, str | None] | None]:
        """``(experiment id, (source, run id) MLflow gave when the run holds a version of a
        source outside the repository, else None)``; read once per run (neither changes)."""
        found = self._runs.get(run_id)
        if found is None:
            run = self.client.get_run(run_id)
            tags = run.data.tags
            external = (tags[SOURCE_TAG], tags.get(SOURCE_RUN_TAG)) if SOURCE_TAG in tags else None
            found = self._runs[run_id] = (str(run.info.experiment_id), external)
        return found

    def _external(self, source: str, run_id: str | None) -> str:
        """A version of a source that is no run of this repository (another store's path,
        an s3:// folder, a run id MLflow made up) is registered on a run made for it: GTO's
        tags name commits. The run holds an MLmodel stub naming the source (gitml's loaders
        find no flavor there); MLflow is given the source itself back, and its searches do
        not show the run."""
        import yaml

        tags = {SOURCE_TAG: source, **({SOURCE_RUN_TAG: run_id} if run_id else {})}
        holder = self.client.create_run("0", run_name="registered-source", tags=tags).info.run_id
        stub = {"artifact_path": "model", "flavors": {}, "metadata": {"gitml.external_source": source}}
        self.client.log_text(holder, yaml.safe_dump(stub, sort_keys=False), "model/MLmodel")
        self.client.set_terminated(holder)
        self._runs[holder] = ("0", (source, run_id))
        return f"runs:/{holder}/model"

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
            try:
                self._facts(source[len("runs:/") :].partition("/")[0])
            except NotFoundError:
                return self._external(source, run_id)
            return source
        if source.startswith("models:/m-") and model_id:
            from gitml.mlflow_plugin.tracking import GitmlTrackingStore

            # this repository's tracking store, never MLflow's current tracking URI: inside
            # `mlflow server` that is the server itself, which waits on this very call
            logged = GitmlTrackingStore(f"gitml:{self.repo_path}").get_logged_model(model_id)
            if parse_view(logged.artifact_location) is None and not logged.artifact_location.startswith(
                ARTIFACT_SCHEME + ":"
            ):
                raise InvalidInputError(f"logged model {model_id} is not in a gitml repository")
            return self._runs_uri(logged.artifact_location, run_id, None)
        if source.startswith("models:/"):  # models:/<name>/<N>: a copy of that version (the Client makes it)
            return source
        return self._external(source, run_id)

    # -- registered models -------------------------------------------------------
    @mlflow_errors
    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        _check(name)
        try:
            rm = self.client.create_registered_model(name, tags=_tags(tags), description=description)
        except ConflictError as e:  # MLflow's words, which its callers and tests look for
            raise as_mlflow_exception(
                ConflictError(f"Registered Model (name={name}) already exists. ({e})"), "RESOURCE_ALREADY_EXISTS"
            ) from e
        return self._model(rm)

    @mlflow_errors
    @_model_words
    def update_registered_model(self, name, description, deployment_job_id=None):
        _check(name)
        return self._model(self.client.update_registered_model(name, description=description))

    @mlflow_errors
    @_model_words
    def rename_registered_model(self, name, new_name):
        _check(name)
        from mlflow.utils.validation import _validate_model_renaming

        _validate_model_renaming(new_name)
        try:
            return self._model(self.client.rename_registered_model(name, new_name))
        except ConflictError as e:
            raise as_mlflow_exception(
                ConflictError(f"Registered Model (name={new_name}) already exists. ({e})"), "RESOURCE_ALREADY_EXISTS"
            ) from e

    @mlflow_errors
    @_model_words
    def delete_registered_model(self, name):
        _check(name)
        self.client.delete_registered_model(name)

    @mlflow_errors
    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        found = self.client.search_registered_models(
            _prompt_clause(filter_string), max_results or 100, order_by, page_token
        )
        return PagedList([self._model(m) for m in found], getattr(found, "token", None))

    @mlflow_errors
    @_model_words
    def get_registered_model(self, name):
        _check(name)
        return self._model(self.client.get_registered_model(name))

    @mlflow_errors
    @_model_words
    def get_latest_versions(self, name, stages=None):
        _check(name)
        return [
            self._version(v) for v in self.client.get_latest_versions(name, stages or None)
        ]  # [] is every stage, as MLflow

    @mlflow_errors
    @_model_words
    def set_registered_model_tag(self, name, tag):
        _check(name)
        from mlflow.utils.validation import _validate_registered_model_tag

        _validate_registered_model_tag(tag.key, tag.value)
        self.client.set_registered_model_tag(name, tag.key, tag.value)

    @mlflow_errors
    @_model_words
    def delete_registered_model_tag(self, name, key):
        _check(name)
        self.client.delete_registered_model_tag(name, key)

    # -- versions -------------------------------------------------------------------
    @mlflow_errors
    @_model_words
    def create_model_version(
        self,
        name,
        source,
        run_id=None,
        tags=None,
        run_link=None,
        description=None,
        local_model_path=None,
        model_id=None,
    ):
        _check(name)
        from mlflow.utils.validation import _validate_model_version_tag

        for t in tags or ():
            _validate_model_version_tag(t.key, t.value)
        uri = self._runs_uri(source, run_id, model_id)
        try:
            created = self.client.create_model_version(
                name, uri, run_id, tags=_tags(tags), run_link=run_link, description=description
            )
        except (
            NoModelError
        ):  # MLflow registers any folder: one of a run that holds no model there, as an outside source
            uri = self._external(source, run_id)
            created = self.client.create_model_version(
                name, uri, run_id, tags=_tags(tags), run_link=run_link, description=description
            )
        return self._version(created)

    @mlflow_errors
    @_version_words
    def update_model_version(self, name, version, description):
        _check(name, version)
        return self._version(self.client.update_model_version(name, version, description=description))

    @mlflow_errors
    def copy_model_version(self, src_mv, dst_name):
        _check(dst_name)
        return self._version(self.client.copy_model_version(f"models:/{src_mv.name}/{src_mv.version}", dst_name))

    @mlflow_errors
    @_version_words
    def transition_model_version_stage(self, name, version, stage, archive_existing_versions=False):
        _check(name, version)
        return self._version(
            self.client.transition_model_version_stage(name, version, stage, archive_existing_versions)
        )

    @mlflow_errors
    @_version_words
    def delete_model_version(self, name, version):
        _check(name, version)
        self.client.delete_model_version(name, version)

    @mlflow_errors
    @_version_words
    def get_model_version(self, name, version):
        _check(name, version)
        return self._version(self.client.get_model_version(name, version))

    @mlflow_errors
    @_version_words
    def get_model_version_download_uri(self, name, version):
        _check(name, version)
        return self._source_uri(self.client.get_model_version(name, version).source)

    @mlflow_errors
    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        found = self.client.search_model_versions(filter_string, max_results or 10_000, order_by, page_token)
        return PagedList([self._version(v) for v in found], getattr(found, "token", None))

    @mlflow_errors
    @_version_words
    def set_model_version_tag(self, name, version, tag):
        _check(name, version)
        from mlflow.utils.validation import _validate_model_version_tag

        _validate_model_version_tag(tag.key, tag.value)
        self.client.set_model_version_tag(name, version, tag.key, tag.value)

    @mlflow_errors
    @_version_words
    def delete_model_version_tag(self, name, version, key):
        _check(name, version)
        self.client.delete_model_version_tag(name, version, key)

    @mlflow_errors
    def set_registered_model_alias(self, name, alias, version):
        _check(name, version, alias)
        self.client.set_registered_model_alias(name, alias, version)

    @mlflow_errors
    @_model_words
    def delete_registered_model_alias(self, name, alias):
        _check(name, alias=alias)
        self.client.delete_registered_model_alias(name, alias)

    @mlflow_errors
    @_model_words
    def get_model_version_by_alias(self, name, alias):
        _check(name, alias=alias)
        if alias.lower() == "latest":  # MLflow's reserved alias: the newest version (no alias can be named so)
            versions = self.client.get_latest_versions(name, None)
            if not versions:
                raise NotFoundError(f"Latest version not found for model {name}.")
            return self._version(max(versions, key=lambda v: int(v.version)))
        try:
            return self._version(self.client.get_model_version_by_alias(name, alias))
        except RegisteredModelNotFound as e:
            self.client.get_registered_model(name)  # a missing model: MLflow's words for it (_model_words)
            raise as_mlflow_exception(  # the model has no such alias: MLflow's words, then gitml's
                InvalidInputError(f"Registered model alias {alias} not found. ({e})"), "INVALID_PARAMETER_VALUE"
            ) from e

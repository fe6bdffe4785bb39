"""The model registry part of ``gitml import mlflow``: MLflow's registered models onto gitml's tags.

Each MLflow version whose run came along becomes a registration tag with MLflow's number
(version 3 is ``<name>@v3.0.0``, and its tag names the number 3, so ``models:/<name>/3``
names the same model even where a version before it was not brought: a gap stays a gap, as
one MLflow deleted), its description in the tag's message; a ``Staging`` or ``Production``
stage and every alias become stage tags, ``Archived`` a deregistration. All through gitml's
registry API, signed as the repository's policy asks. Registered-model descriptions and
tags and version tags go to the registry's metadata (``refs/gitml/registry/<model>``).

A second version of one model on one run (MLflow allows it; gitml, as GTO, tells versions
apart by the commit they tag) is registered on a commit added to that run's history for it:
the run's record unchanged (the same tree), so the run reads as before and each version's
commit is in its run's history, as ``models:/`` requires. Skipped, and said so in the
summary: a version whose run is not in the repository.
"""

from __future__ import annotations

from gitml.errors import ConflictError, GitmlError


def import_registry(mc, client, summary, *, runs: set[str], dry_run: bool) -> None:
    """Bring every registered model of MLflow's client ``mc`` whose versions' runs are in
    ``runs`` into ``client``'s registry (``summary`` counts and notes what was skipped)."""
    for rm in _registered_models(mc):
        name = rm.name
        versions = sorted(_versions(mc, name), key=lambda v: int(v.version))
        created = _bring_model_metadata(client, rm, dry_run=dry_run)
        held = _held_versions(client, name)
        brought = 0
        for mv in versions:
            number = str(mv.version)
            what = f"version {number} of {name}"
            if number in held:
                if not dry_run:
                    _bring_version_tags(client, name, number, mv.tags or {})
                continue
            if mv.run_id not in runs:
                summary.skip(what, f"its run {mv.run_id or '(none)'} is not in the repository")
                continue
            path = _model_path(mc, mv)
            if path is None:
                summary.skip(what, f"its source {mv.source!r} is not a folder of its run")
                continue
            if dry_run:
                brought += 1
                continue
            try:
                try:
                    client.registry.register(
                        name,
                        mv.run_id,
                        path,
                        version=f"v{int(number)}.0.0",
                        description=mv.description or "",
                        number=int(number),
                    )
                except ConflictError as e:
                    if "GTO tells versions apart by their commit" not in str(e):
                        raise
                    head = client.restate_run(
                        mv.run_id,
                        f"gitml import: version {number} of {name} is registered on this commit "
                        "(the run's record unchanged)",
                    )
                    client.registry.register_commit(
                        name,
                        head,
                        mv.run_id,
                        path,
                        version=f"v{int(number)}.0.0",
                        description=mv.description or "",
                        number=int(number),
                    )
            except GitmlError as e:
                summary.skip(what, str(e))
                continue
            held.add(number)
            brought += 1
            _bring_version_tags(client, name, number, mv.tags or {})
            if mv.current_stage == "Archived":
                client.transition_model_version_stage(name, number, "Archived")
        summary.model_versions += brought
        summary.registered_models += bool(brought) or created
        stages = {
            mv.current_stage.lower(): str(mv.version)
            for mv in versions
            if mv.current_stage in ("Staging", "Production")
        }
        stages.update({alias: str(version) for alias, version in (rm.aliases or {}).items()})
        current = _current_stages(client, name) if held else {}
        for stage, version in sorted(stages.items()):
            if current.get(stage) == str(version):
                continue
            if str(version) not in held:
                if not dry_run:
                    summary.skip(f"stage {stage} of {name}", f"its version {version} was not brought")
                continue
            if not dry_run:
                try:
                    client.set_registered_model_alias(name, stage, str(version))
                except GitmlError as e:
                    summary.skip(f"stage {stage} of {name}", str(e))
                    continue
            summary.stages += 1


def _bring_model_metadata(client, rm, *, dry_run: bool) -> bool:
    """The registered model, its description and tags, where they differ from what the
    registry has (a second import changes nothing). True when the model is new."""
    try:
        have = client.get_registered_model(rm.name)
    except GitmlError:
        if not dry_run:
            client.create_registered_model(rm.name, tags=dict(rm.tags or {}), description=rm.description or None)
        return True
    if dry_run:
        return False
    if (rm.description or "") != (have.description or ""):
        client.update_registered_model(rm.name, description=rm.description or "")
    for key, value in sorted((rm.tags or {}).items()):
        if have.tags.get(key) != value:
            client.set_registered_model_tag(rm.name, key, value)
    return False


def _bring_version_tags(client, name: str, number: str, tags: dict) -> None:
    have = client.get_model_version(name, number).tags if tags else {}
    for key, value in sorted(tags.items()):
        if have.get(key) != value:
            client.set_model_version_tag(name, number, key, value)


def _registered_models(mc) -> list:
    found, token = [], None
    while True:
        page = mc.search_registered_models(max_results=100, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _versions(mc, name: str) -> list:
    escaped = name.replace("'", "\\'")
    found, token = [], None
    while True:
        page = mc.search_model_versions(f"name = '{escaped}'", max_results=10_000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _held_versions(client, name: str) -> set[str]:
    """MLflow numbers of the versions the gitml registry has of ``name`` (an earlier import)."""
    escaped = name.replace("'", "\\'")
    return {mv.version for mv in client.search_model_versions(f"name = '{escaped}'")}


def _current_stages(client, name: str) -> dict[str, str]:
    """Stage or alias -> the MLflow number of the version it holds (MLflow's stages among
    them: a registered model's ``aliases`` leaves those out)."""
    try:
        state = client.registry.model(name)
    except GitmlError:
        return {}
    return {stage: str(state.versions[version].number) for stage, version in state.stages.items()}


def _model_path(mc, mv) -> str | None:
    """The folder of the version's model inside its run, as gitml holds the run: a logged
    model's name (MLflow 3; the import puts its files there), the path of a ``runs:/`` URI,
    or the part of the source below the run's artifact URI."""
    model_id = getattr(mv, "model_id", None)
    source = mv.source or ""
    if not model_id and source.startswith("models:/m-"):
        model_id = source[len("models:/") :].split("/", 1)[0]
    if model_id:
        try:
            model = mc.get_logged_model(model_id)
        except Exception:  # noqa: BLE001  (MLflow's own error: the model is gone)
            return None
        return (model.name or "model") if model.source_run_id == mv.run_id else None
    if source.startswith("runs:/"):
        parts = source[len("runs:/") :].split("/", 1)
        return parts[1].strip("/") if len(parts) == 2 and parts[0] == mv.run_id else None
    try:
        root = mc.get_run(mv.run_id).info.artifact_uri.rstrip("/")
    except Exception:  # noqa: BLE001
        return None
    if source.startswith(root + "/"):
        return source[len(root) + 1 :].strip("/")
    return None

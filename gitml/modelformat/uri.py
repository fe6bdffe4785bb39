"""Model URIs: the one parser and the one resolver.

    path/to/model  or  file:///abs/path    a model folder on disk (loaded as it is)
    runs:/<run>/<path>                     a run's artifact folder (run id, id prefix or run name)
    models:/<name>/<version>               a registered model's version (or stage, or ``latest``)
    models:/<name>@<alias>                 a registered model's alias

A model from a run is downloaded and every file checked against the run's manifest
hashes before anything in it is read (:func:`local_model`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitml.errors import (
    InvalidInputError,
    ModelIntegrityError,
    NoModelError,
    NotFoundError,
    RegisteredModelNotFoundError,
)

if TYPE_CHECKING:
    from gitml.ops import Operations

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI: ``kind`` is ``path``, ``runs`` or ``models``."""

    kind: str
    path: str = ""  # the folder (path), or the artifact path in the run (runs)
    run: str | None = None
    name: str | None = None  # registered model name (models)
    version: str | None = None  # a version number, a stage or "latest" (models:/<name>/<version>)
    alias: str | None = None  # models:/<name>@<alias>

    def __str__(self) -> str:
        if self.kind == "runs":
            return f"runs:/{self.run}/{self.path}" if self.path else f"runs:/{self.run}"
        if self.kind == "models":
            return (
                f"models:/{self.name}@{self.alias}" if self.alias is not None else f"models:/{self.name}/{self.version}"
            )
        return self.path


def parse_model_uri(uri: str | os.PathLike) -> ModelURI:
    """Parse a model URI; raises InvalidInputError naming what is wrong.

    >>> parse_model_uri("models:/churn@champion")
    ModelURI(kind='models', path='', run=None, name='churn', version=None, alias='champion')
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri:
        raise InvalidInputError(f"model URI {uri!r} is not a non-empty string")
    if _CONTROL.search(uri):
        raise InvalidInputError(f"model URI {uri!r} holds a control character")
    if uri.startswith("runs:/"):
        from gitml.names import check_artifact_path, parse_runs_uri

        run, path = parse_runs_uri(uri)
        return ModelURI("runs", check_artifact_path(path, "model path") if path else "", run=run)
    if uri.startswith("models:/"):
        rest = uri[len("models:/") :]
        if "@" in rest:
            name, _, alias = rest.rpartition("@")
            if not name or not alias or "/" in alias:
                raise InvalidInputError(f"model URI {uri!r} is not models:/<name>@<alias>")
            return ModelURI("models", name=name, alias=alias)
        name, _, version = rest.rpartition("/")
        if not name or not version:
            raise InvalidInputError(f"model URI {uri!r} is not models:/<name>/<version> or models:/<name>@<alias>")
        return ModelURI("models", name=name, version=version)
    if uri.startswith("file://"):
        return ModelURI("path", uri[len("file://") :])
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", uri):
        raise InvalidInputError(f"model URI {uri!r}: gitml takes a path, runs:/ or models:/ URIs")
    return ModelURI("path", uri)


def _resolve_registered(client: Operations, name: str, version: str | None, alias: str | None) -> tuple[str, str]:
    """``(run_id, artifact path)`` of a registered model version, its chain checked by the
    registry (stage tag under the policy, run commit, the model files' manifest hashes)."""
    from gitml.errors import RegisteredModelNotFound

    try:
        return client.registry.locate(name, version, stage=alias)
    except RegisteredModelNotFound as e:
        raise RegisteredModelNotFoundError(str(e)) from None


def resolve_model_uri(client: Operations | None, uri: str | os.PathLike) -> tuple[str | None, str]:
    """``(run_id, artifact path)`` for a run's or registered model, ``(None, folder)`` for a path.

    Raises InvalidInputError (a bad URI), RunNotFoundError / AmbiguousRunError, and
    RegisteredModelNotFoundError.
    """
    parsed = parse_model_uri(uri)
    if parsed.kind == "path":
        return None, parsed.path
    if client is None:
        from gitml import fluent

        client = fluent.client()
    if parsed.kind == "runs":
        assert parsed.run is not None
        return client.get_run(parsed.run).info.run_id, parsed.path
    assert parsed.name is not None
    return _resolve_registered(client, parsed.name, parsed.version, parsed.alias)


def run_model_files(client: Operations, run_id: str, path: str) -> dict[str, dict]:
    """The manifest entries (``{relative path: {sha256, size}}``) of the model folder ``path``
    of a run; NotFoundError if the run has no MLmodel there."""
    prefix = f"{path}/" if path else ""
    manifest = client.artifact_manifest(run_id)
    files = {name[len(prefix) :]: entry for name, entry in manifest.items() if name.startswith(prefix)}
    if "MLmodel" not in files:
        raise NoModelError(
            f"run {run_id} has no model at {path or '(its artifact root)'!r}: no {prefix}MLmodel artifact"
        )
    return files


def verify_folder(folder: str, files: dict[str, dict], what: str) -> None:
    """Check that ``folder`` holds exactly ``files``, each matching its SHA-256 and size;
    raises ModelIntegrityError naming the first file that does not."""
    found = set()
    for top, _dirs, names in os.walk(folder):
        for name in names:
            found.add(os.path.relpath(os.path.join(top, name), folder).replace(os.sep, "/"))
    extra = sorted(found - set(files))
    if extra:
        raise ModelIntegrityError(f"{what}: file {extra[0]!r} is not in the run's manifest; refusing to load")
    for name, entry in sorted(files.items()):
        full = os.path.join(folder, name)
        if name not in found:
            raise ModelIntegrityError(f"{what}: file {name!r} is missing; refusing to load")
        digest = hashlib.sha256()
        with open(full, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"] or os.path.getsize(full) != entry["size"]:
            raise ModelIntegrityError(
                f"{what}: file {name!r} does not match the hash the run recorded "
                f"({entry['sha256'][:12]}...); refusing to load"
            )


def local_model(
    uri: str | os.PathLike, dst: str | None = None, *, client: Operations | None = None
) -> tuple[str, str | None]:
    """``(folder, run_id)``: a model folder on disk for ``uri``. A run's model is downloaded
    to ``dst`` (default: a new temporary folder) and every file verified against the run's
    manifest before it is returned; a path is returned as it is (with ``run_id`` None).

    Raises NotFoundError (no such folder, run or model), IntegrityError /
    ModelIntegrityError (a file that does not match its hash; nothing is loaded).
    """
    run_id, path = resolve_model_uri(client, uri)
    if run_id is None:
        if not os.path.isdir(path):
            raise NotFoundError(f"no model folder at {path!r}")
        return path, None
    if client is None:
        from gitml import fluent

        client = fluent.client()
    files = run_model_files(client, run_id, path)
    target = dst if dst is not None else tempfile.mkdtemp(prefix="gitml-model-")
    created = dst is None
    what = f"model runs:/{run_id}/{path}" if path else f"model runs:/{run_id}"
    try:
        os.makedirs(target, exist_ok=True)
        if os.listdir(target):
            raise InvalidInputError(f"{target!r} is not empty: a model is downloaded into an empty folder")
        staging = tempfile.mkdtemp(prefix=".gitml-model-", dir=target)
        client.download_artifacts(run_id, path, staging)  # each file is checked while copied
        root = os.path.join(staging, path) if path else staging
        verify_folder(root, files, what)  # and the folder as a whole, before anything reads it
        for name in os.listdir(root):
            os.replace(os.path.join(root, name), os.path.join(target, name))
        shutil.rmtree(staging)
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for name in os.listdir(target):
                if name.startswith(".gitml-model-"):
                    shutil.rmtree(os.path.join(target, name), ignore_errors=True)
        raise
    return target, run_id


@contextlib.contextmanager
def model_on_disk(uri: str | os.PathLike, dst: str | None = None, *, client: Operations | None = None) -> Iterator[str]:
    """:func:`local_model`'s folder for the length of a ``with`` block: a temporary folder it made
    (no ``dst``, a run's model) is removed at the end, so a loader that reads the model into memory
    leaves nothing in ``$TMPDIR``. Raises as :func:`local_model`."""
    folder, run_id = local_model(uri, dst, client=client)
    try:
        yield folder
    finally:
        if run_id is not None and dst is None:
            shutil.rmtree(folder, ignore_errors=True)

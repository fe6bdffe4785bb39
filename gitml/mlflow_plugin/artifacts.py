"""MLflow's artifact repository for gitml runs (entry points ``mlflow.artifact_repository``:
``file`` and ``gitml-artifacts``).

A run's ``artifact_uri`` under the plugin is the local folder MLflow's own stores would give
it, ``file://<repo>/.git/gitml/artifacts/<experiment_id>/<run_id>/artifacts`` (the
experiment's default location, then ``<run_id>/artifacts``), so code that opens
``run.info.artifact_uri`` as a path, as MLflow's users and tests do, finds the files. Files
still go through :class:`gitml.Client`: hashed into the run's manifest, their bytes in gitml's
content cache (small ones in git), so ``gitml push`` uploads them; reads come from gitml,
checked against the manifest's SHA-256, so a run pulled from a teammate reads the same. The
folder holds a copy of what this clone logged through MLflow (a view: nothing reads it back).

MLflow picks an artifact repository by URI scheme; ``file`` is taken over by
:func:`file_repository`, which hands every path that is not such a view to MLflow's own
``LocalArtifactRepository`` unchanged. ``gitml-artifacts:/<run_id>/<path>?repo=<repository>``
(the URIs of earlier versions) still reads and writes the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from gitml.mlflow_plugin import (
    check_mlflow_version,
    client_for,
    mlflow_errors,
    parse_artifact_uri,
    parse_view,
    unsupported,
)


def _join(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class GitmlArtifactRepository(ArtifactRepository):
    """The artifacts of one run (below a path of it) in a gitml repository."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        check_mlflow_version()
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        view = parse_view(artifact_uri)
        self.view: str | None = None  # the run's artifacts view, which this repository keeps up to date
        if view is not None:
            repo, self.run_id, self.base, self.view = view
        else:
            repo, self.run_id, self.base = parse_artifact_uri(artifact_uri)
        self.client, self._lock = client_for(repo)

    @mlflow_errors
    def log_artifact(self, local_file, artifact_path=None):
        path = _join(self.base, artifact_path)
        self.client.log_artifact(self.run_id, local_file, path or None)
        if self.view is not None:
            _copy_file(local_file, os.path.join(self.view, path, os.path.basename(local_file)))

    @mlflow_errors
    def log_artifacts(self, local_dir, artifact_path=None):
        path = _join(self.base, artifact_path)
        self.client.log_artifacts(self.run_id, local_dir, path or None)
        if self.view is not None:
            for folder, _, files in os.walk(local_dir):
                inner = os.path.relpath(folder, local_dir)
                os.makedirs(
                    os.path.normpath(os.path.join(self.view, path, inner)), exist_ok=True
                )  # empty ones too, as MLflow's copy
                for name in files:
                    _copy_file(os.path.join(folder, name), os.path.join(self.view, path, inner, name))

    @mlflow_errors
    def list_artifacts(self, path=None):
        """The entries directly inside ``path``, relative to this repository's root (MLflow's
        rule: a file, or a path that does not exist, lists nothing)."""
        full = _join(self.base, path)
        entries = self.client.list_artifacts(self.run_id, full or None)
        if len(entries) == 1 and not entries[0].is_dir and entries[0].path == full:
            return []
        cut = len(self.base.strip("/")) + 1 if self.base.strip("/") else 0
        return [FileInfo(e.path[cut:], e.is_dir, e.file_size) for e in entries]

    def _is_directory(self, artifact_path):
        return bool(self.list_artifacts(artifact_path))

    @mlflow_errors
    def download_artifacts(self, artifact_path, dst_path=None):
        """The file or folder ``artifact_path`` copied (each file verified) to ``dst_path``
        (a new temporary folder by default); returns its local path, as MLflow does."""
        dst = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="gitml-mlflow-")
        full = _join(self.base, artifact_path)
        if not self.base.strip("/"):
            return self.client.download_artifacts(self.run_id, full, dst)
        staging = tempfile.mkdtemp(prefix=".gitml-", dir=dst)
        try:
            got = self.client.download_artifacts(self.run_id, full, staging)
            target = os.path.join(dst, artifact_path.strip("/")) if artifact_path and artifact_path.strip("/") else dst
            if target == dst:
                for name in os.listdir(got):
                    _replace(os.path.join(got, name), os.path.join(dst, name))
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _replace(got, target)
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _download_file(self, remote_file_path, local_path):
        with self._lock:
            got = self.download_artifacts(remote_file_path, tempfile.mkdtemp(prefix="gitml-mlflow-"))
        shutil.move(got, local_path)

    def delete_artifacts(self, artifact_path=None):
        raise unsupported("deleting artifacts: they are part of the run's history in git")


def file_repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
    """MLflow's repository for a ``file:`` URI (entry point ``file``): a gitml run's
    artifacts view is this module's repository, any other path MLflow's own."""
    if parse_view(artifact_uri) is not None:
        return GitmlArtifactRepository(artifact_uri, tracking_uri, registry_uri)
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    return LocalArtifactRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)


def _copy_file(source: str, target: str) -> None:
    """``source`` copied to ``target`` in the view through a temporary name (a reader
    never sees half a file)."""
    target = os.path.normpath(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gitml-view-", dir=os.path.dirname(target))
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def _replace(source: str, target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.remove(target)
    shutil.move(source, target)

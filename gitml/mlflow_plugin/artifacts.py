"""MLflow's artifact repository for gitml runs (entry point ``mlflow.artifact_repository``:
``gitml-artifacts``).

A run's ``artifact_uri`` under the plugin is ``gitml-artifacts:/<run_id>?repo=<repository>``
(MLflow appends sub-paths to the URI's path). Files go through :class:`gitml.Client`:
hashed into the run's manifest, their bytes in gitml's content cache (small ones in git),
so ``gitml push`` uploads them; reads are checked against the manifest's SHA-256.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from gitml.mlflow_plugin import check_mlflow_version, client_for, mlflow_errors, parse_artifact_uri, unsupported


def _join(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class GitmlArtifactRepository(ArtifactRepository):
    """The artifacts of one run (below a path of it) in a gitml repository."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        check_mlflow_version()
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        repo, self.run_id, self.base = parse_artifact_uri(artifact_uri)
        self.client, self._lock = client_for(repo)

    @mlflow_errors
    def log_artifact(self, local_file, artifact_path=None):
        self.client.log_artifact(self.run_id, local_file, _join(self.base, artifact_path) or None)

    @mlflow_errors
    def log_artifacts(self, local_dir, artifact_path=None):
        self.client.log_artifacts(self.run_id, local_dir, _join(self.base, artifact_path) or None)

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


def _replace(source: str, target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.remove(target)
    shutil.move(source, target)

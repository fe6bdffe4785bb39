"""MLflow's plugin for gitml: ``import mlflow`` with a ``gitml:`` tracking URI logs into git.

    pip install "gitml[mlflow]"
    MLFLOW_TRACKING_URI=gitml:/path/to/repo python train.py      # or gitml:. / gitml:

Three stores, registered through MLflow's entry points (``pyproject.toml``):

- ``mlflow.tracking_store`` ``gitml`` → :class:`~gitml.mlflow_plugin.tracking.GitmlTrackingStore`
  (experiments, runs, params, metrics, tags, inputs, MLflow 3's logged models, search);
- ``mlflow.artifact_repository`` ``gitml-artifacts`` →
  :class:`~gitml.mlflow_plugin.artifacts.GitmlArtifactRepository` (a run's artifacts by
  content hash in gitml's cache, so ``gitml push`` shares them);
- ``mlflow.model_registry_store`` ``gitml`` → :class:`~gitml.mlflow_plugin.registry.GitmlRegistryStore`
  (gitml's tag registry).

An edge of gitml, as the CLI: it uses gitml's Client and its internal facade (``gitml.ops.Operations``) and nothing
below it. MLflow is imported only here: ``import gitml`` never loads it. The plugin is
tested with MLflow 3.17.2; any other version gets one warning when a store is made.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import urllib.parse
import warnings

from gitml.errors import InvalidInputError

SCHEME = "gitml"
ARTIFACT_SCHEME = "gitml-artifacts"
TESTED_MLFLOW = "3.17.2"

_clients: dict[str, object] = {}
_locks: dict[str, threading.RLock] = {}
_registry_lock = threading.Lock()
_warned = False


def check_mlflow_version() -> None:
    """Warn once per process when the installed MLflow is not the tested one."""
    global _warned
    if _warned:
        return
    _warned = True
    import mlflow

    if mlflow.__version__ != TESTED_MLFLOW:
        warnings.warn(
            f"gitml's MLflow plugin is tested with mlflow=={TESTED_MLFLOW}; mlflow {mlflow.__version__} "
            f'is installed (pip install "gitml[mlflow]" installs the tested version)',
            stacklevel=3,
        )


def repository_path(uri: str | None) -> str:
    """The folder a ``gitml:`` URI names: ``gitml:/abs/path``, ``gitml:relative``,
    ``gitml:.`` or ``gitml:`` (the working directory); ``file:`` and plain paths too.
    Raises InvalidInputError for another scheme or a host part."""
    text = uri or ""
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme and parsed.scheme not in (SCHEME, "file"):
        raise InvalidInputError(f"tracking URI {text!r} is not a gitml: URI (gitml:/path/to/repo)")
    if parsed.netloc or parsed.query or parsed.fragment:
        raise InvalidInputError(f"tracking URI {text!r}: write gitml:/path/to/repo (no host, query or fragment)")
    path = urllib.parse.unquote(parsed.path) if parsed.scheme else text
    return os.path.abspath(path or ".")


def client_for(path: str):
    """The process's one Client (:class:`gitml.ops.Operations`) for the repository at (or above) ``path``,
    with the lock that serialises its use (MLflow's server and artifact transfers use
    threads; a Client is for one thread at a time)."""
    from gitml.ops import Operations

    with _registry_lock:
        found = _clients.get(path)
        if found is None:
            found = Operations(path)
            same = [p for p, c in _clients.items() if c.repo_path == found.repo_path]  # type: ignore[attr-defined]
            if same:  # gitml:. and gitml:/abs/path naming one repository share its Client
                found.close()
                found, _locks[path] = _clients[same[0]], _locks[same[0]]
            else:
                _locks[path] = threading.RLock()
            _clients[path] = found
            _register_exit()
        return found, _locks[path]


def _register_exit() -> None:
    """End MLflow's active runs and close the Clients at exit, before gitml's own exit
    handlers (registered earlier, so run later) close what these use."""
    import atexit

    if getattr(_register_exit, "done", False):
        return
    _register_exit.done = True  # type: ignore[attr-defined]
    atexit.register(_at_exit)


def _at_exit() -> None:
    try:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
    except Exception:  # noqa: BLE001  (exit must go on; MLflow's own handler tries again)
        pass
    with _registry_lock:
        for client in _clients.values():
            try:
                client.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass
        _clients.clear()


def mlflow_errors(method):
    """Run a store method under its Client's lock; a gitml error becomes MLflow's
    ``MlflowException`` with the same message and error code (so MLflow's server answers
    404 for RESOURCE_DOES_NOT_EXIST, and ``except MlflowException`` catches it)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from gitml.errors import DeletedRunError, GitmlError

        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except DeletedRunError as e:  # MLflow's words (its callers and tests look for them), then gitml's
            prefix = f"The run {e.run_id} must be in the 'active' state. Current state is deleted. "
            raise as_mlflow_exception(e, None, prefix) from e
        except GitmlError as e:
            raise as_mlflow_exception(e) from e

    return wrapper


def as_mlflow_exception(error: Exception, error_code: str | None = None, prefix: str = ""):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode

    code = error_code or getattr(error, "error_code", "INTERNAL_ERROR")
    try:
        number = ErrorCode.Value(code)
    except ValueError:
        number = ErrorCode.Value("INTERNAL_ERROR")
    return MlflowException(prefix + str(error), error_code=number)


def unsupported(what: str):
    """The MlflowException for an MLflow call gitml cannot map (never a silent no-op)."""
    return as_mlflow_exception(InvalidInputError(f"gitml's MLflow plugin does not support {what}"))


def artifact_uri(repo_path: str, run_id: str, path: str = "") -> str:
    """``gitml-artifacts:/<run_id>/<path>?repo=<repository>``: a run's artifacts, as MLflow
    joins sub-paths onto a URI's path (the repository rides in the query)."""
    tail = "/" + path.strip("/") if path.strip("/") else ""
    return f"{ARTIFACT_SCHEME}:/{run_id}{urllib.parse.quote(tail)}?repo={urllib.parse.quote(repo_path, safe='/')}"


def parse_artifact_uri(uri: str) -> tuple[str, str, str]:
    """``(repository, run_id, path)`` of a ``gitml-artifacts:`` URI."""
    parsed = urllib.parse.urlparse(uri)
    query = urllib.parse.parse_qs(parsed.query)
    parts = urllib.parse.unquote(parsed.path).strip("/").split("/", 1)
    if parsed.scheme != ARTIFACT_SCHEME or parsed.netloc or not parts[0] or len(query.get("repo", [])) != 1:
        raise InvalidInputError(f"artifact URI {uri!r} is not gitml-artifacts:/<run_id>/<path>?repo=<repository>")
    return query["repo"][0], parts[0], parts[1] if len(parts) > 1 else ""


# A run's artifacts as MLflow sees them: the folder MLflow's own stores would use under the
# experiment's default location (gitml's Experiment.artifact_location, <gitml dir>/artifacts/<id>),
# <location>/<run_id>/artifacts. Writes and reads go through gitml; the folder holds a copy of
# what this clone logged through MLflow, for code that opens the path (see artifacts.py).
_VIEW = re.compile(
    r"(?P<gitdir>/.+)/gitml/artifacts/(?P<experiment>[0-9]{1,20})/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<rest>.*))?"
)


def view_path(gitml_dir: str, experiment_id: str, run_id: str, path: str = "") -> str:
    """The local folder (or file) ``path`` of a run's artifacts view."""
    folder = os.path.join(gitml_dir, "artifacts", str(experiment_id), run_id, "artifacts")
    return os.path.join(folder, *path.strip("/").split("/")) if path.strip("/") else folder


def view_uri(gitml_dir: str, experiment_id: str, run_id: str, path: str = "") -> str:
    """``file://`` URI of :func:`view_path` (what MLflow reads as ``run.info.artifact_uri``)."""
    uri = f"{_folder_uri(gitml_dir)}/artifacts/{experiment_id}/{run_id}/artifacts"
    return f"{uri}/{urllib.parse.quote(path.strip('/'))}" if path.strip("/") else uri


@functools.lru_cache(maxsize=64)
def _folder_uri(folder: str) -> str:
    import pathlib

    return pathlib.Path(folder).as_uri()


def parse_view(uri: str) -> tuple[str, str, str, str] | None:
    """``(repository, run_id, path, view folder)`` of a run's artifacts-view URI (``file:``
    or a plain path), or None when ``uri`` names anything else. No file system access
    unless the path has the view's shape; the repository must exist."""
    import posixpath

    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment:
            return None
        local = urllib.parse.unquote(parsed.path)
    elif "://" in uri or uri.startswith(("gitml", "runs:", "models:")):
        return None
    else:
        local = uri
    m = _VIEW.fullmatch(posixpath.normpath(local)) if local.startswith("/") else None
    if m is None or not os.path.isdir(os.path.join(m["gitdir"], "gitml")):
        return None
    rest = m["rest"] or ""
    gitdir = m["gitdir"]
    repo = os.path.dirname(gitdir) if os.path.basename(gitdir) == ".git" else gitdir
    folder = view_path(os.path.join(gitdir, "gitml"), m["experiment"], m["run"])
    return repo, m["run"], rest, folder


def __getattr__(name: str):
    """The store classes, imported on first use (each imports MLflow)."""
    modules = {
        "GitmlTrackingStore": "gitml.mlflow_plugin.tracking",
        "GitmlArtifactRepository": "gitml.mlflow_plugin.artifacts",
        "GitmlRegistryStore": "gitml.mlflow_plugin.registry",
    }
    if name not in modules:
        raise AttributeError(f"module 'gitml.mlflow_plugin' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(modules[name]), name)


__all__ = ["GitmlArtifactRepository", "GitmlRegistryStore", "GitmlTrackingStore", "repository_path"]

"""Run a project's entry point as a recorded run (``gitml run``, ``gitml.projects.run``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping

from gitml.errors import InvalidInputError, ProjectRunFailedError
from gitml.names import check_key
from gitml.projects import envs
from gitml.projects import source as sources
from gitml.projects.spec import load_project

STOP_GRACE_SECONDS = 10.0  # after SIGINT, before SIGKILL


class SubmittedRun:
    """A project run whose command was started, as MLflow's ``SubmittedRun``:
    ``run_id``, ``wait()``, ``get_status()``, ``cancel()``. The run ends FINISHED
    (exit status 0), FAILED (any other) or KILLED (cancelled, or Ctrl-C while waiting)."""

    def __init__(
        self, client, run_id: str, process: subprocess.Popen, source: sources.ProjectSource, env: envs.Environment
    ):
        self.run_id = run_id
        self.environment = env
        self._client = client
        self._process = process
        self._source = source
        self._lock = threading.Lock()
        self._killed = False
        self._status: str | None = None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def wait(self) -> bool:
        """Wait for the command and end the run; True if it ended FINISHED. Ctrl-C
        (KeyboardInterrupt) stops the command, ends the run KILLED, and is raised again."""
        try:
            self._process.wait()
        except KeyboardInterrupt:
            self.cancel()
            raise
        return self._finish() == "FINISHED"

    def get_status(self) -> str:
        """RUNNING while the command runs, then FINISHED, FAILED or KILLED."""
        if self._process.poll() is None:
            return "RUNNING"
        return self._finish()

    def cancel(self) -> None:
        """Stop the command (SIGINT to its process group, SIGKILL after
        ``STOP_GRACE_SECONDS``) and end the run KILLED."""
        self._killed = True
        if self._process.poll() is None:
            _signal_group(self._process, signal.SIGINT)
            try:
                self._process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(self._process, signal.SIGKILL)
                self._process.wait()
        self._finish()

    def _watch(self) -> None:  # synchronous=False: the run ends when the command does
        self._process.wait()
        self._finish()

    def _finish(self) -> str:
        with self._lock:
            if self._status is None:
                code = self._process.returncode
                status = "KILLED" if self._killed else "FINISHED" if code == 0 else "FAILED"
                try:
                    self._client.set_terminated(self.run_id, status)
                finally:
                    self._status = status
                    self._source.cleanup()
                    self._client.close()
            return self._status


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    uri: str = ".",
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, object] | None = None,
    docker_args: dict | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    backend: str = "local",
    backend_config: dict | None = None,
    storage_dir: str | None = None,
    synchronous: bool = True,
    run_id: str | None = None,
    run_name: str | None = None,
    env_manager: str | None = None,
    build_image: bool = False,
    docker_auth: dict | None = None,
    *,
    repo: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> SubmittedRun:
    """Run entry point ``entry_point`` of the project at ``uri`` (a folder, or a git URL
    at ``version``; ``#subdir`` for a project inside a repository) as a run recorded
    in ``repo`` (default: the current repository), as ``mlflow.projects.run``.

    >>> submitted = gitml.projects.run("https://host/team/model.git", version="v1",
    ...                                parameters={"alpha": 0.5}, experiment_name="churn")
    >>> submitted.run_id, submitted.get_status()

    Everything is checked before the command runs: the source (ProjectFetchError,
    VersionNotFoundError), the MLproject (ProjectSpecError), the entry point
    (EntryPointNotFoundError), each parameter (ParameterError), the environment
    (ProjectEnvError). With ``synchronous`` (the default) it waits, and raises
    ProjectRunFailedError when the command fails. Docker, other backends and
    ``run_id`` are MLflow features gitml does not have (InvalidInputError).
    ``progress`` is told each step of an environment's build and each package installed.
    """
    for name, value in (
        ("docker_args", docker_args),
        ("backend_config", backend_config),
        ("storage_dir", storage_dir),
        ("run_id", run_id),
        ("docker_auth", docker_auth),
    ):
        if value:
            raise InvalidInputError(f"gitml.projects.run does not support {name}")
    if build_image:
        raise InvalidInputError("gitml.projects.run does not support build_image (no docker)")
    if backend != "local":
        raise InvalidInputError(f"backend {backend!r} is not supported: gitml runs projects locally")
    given = {check_key(k, "parameter"): _text(v) for k, v in (parameters or {}).items()}  # recorded as params
    cache = sources.cache_dir()
    invoked_in = os.getcwd()
    source = sources.resolve(uri, version, cache=cache)
    try:
        project = load_project(source.path)
        entry = project.entry_point(entry_point)
        command = entry.command_for(given, cwd=invoked_in)
        declared, extra = entry.values(given, cwd=invoked_in)
        env = envs.prepare(project, env_manager, cache=cache, progress=progress)
        return _start(
            repo,
            source,
            entry.name,
            command,
            {**declared, **extra},
            env,
            experiment_name,
            experiment_id,
            run_name,
            synchronous,
        )
    except BaseException:
        source.cleanup()
        raise


def _start(
    repo, source, entry_point, command, params, env, experiment_name, experiment_id, run_name, synchronous
) -> SubmittedRun:
    from gitml.ops import Operations

    client = Operations(repo)
    try:
        experiment = _experiment(client, experiment_name, experiment_id)
        code = _code(client, source)
        tags = {"mlflow.project.env": env.manager, "mlflow.project.backend": "local"}
        if source.url is not None:
            tags["mlflow.source.git.repoURL"] = source.url
            tags["mlflow.gitRepoURL"] = source.url  # MLflow's older name, which it still writes
        run = client.create_project_run(
            experiment,
            code=code,
            dirty=source.dirty,
            source_name=source.uri,
            entry_point=entry_point,
            run_name=run_name,
            tags=tags,
        )
        run_id = run.info.run_id
        if params:
            client.log_batch(run_id, params=list(params.items()))
        variables = {
            "GITML_RUN_ID": run_id,
            "MLFLOW_RUN_ID": run_id,
            "GITML_REPO": client.repo_path,
            "GITML_EXPERIMENT_ID": experiment,
            "MLFLOW_EXPERIMENT_ID": experiment,
        }
        shell = shutil.which("bash") or "/bin/sh"
        try:
            process = subprocess.Popen(
                [shell, "-c", command], cwd=source.path, env=env.env({**os.environ, **variables}), process_group=0
            )
        except OSError as e:
            client.set_terminated(run_id, "FAILED")
            raise InvalidInputError(f"cannot start {shell}: {e.strerror or e}") from None
    except BaseException:
        client.close()
        raise
    submitted = SubmittedRun(client, run_id, process, source, env)
    if synchronous:
        if not submitted.wait():
            raise ProjectRunFailedError(run_id, submitted.returncode)
        return submitted
    try:
        threading.Thread(target=submitted._watch, daemon=True).start()
    except KeyboardInterrupt:  # Ctrl-C as the command starts: it stops too, never left running alone
        submitted.cancel()
        raise
    return submitted


def _experiment(client, name: str | None, experiment_id: str | None) -> str:
    if experiment_id is not None:
        return client.get_experiment(str(experiment_id)).experiment_id
    name = name or os.environ.get("GITML_EXPERIMENT_NAME")
    if name:
        found = client.get_experiment_by_name(name)
        return found.experiment_id if found is not None else client.create_experiment(name)
    return client.get_experiment(os.environ.get("GITML_EXPERIMENT_ID", "0")).experiment_id


def _code(client, source: sources.ProjectSource) -> str | None:
    """What ``create_project_run`` records: this work tree (None), a commit brought
    here from the project's repository, or nothing ("": a folder outside git)."""
    if source.repository is None:
        return ""
    if os.path.realpath(source.repository) == os.path.realpath(client.repo_path) and source.url is None:
        return None  # the project is in the repository that records it: its work tree, as any run
    if source.commit is None:
        return ""
    client.import_commit(source.repository, source.commit)
    return source.commit


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    raise InvalidInputError(f"parameter value {value!r} is not text or a number")

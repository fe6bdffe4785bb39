"""Projects: run an MLflow ``MLproject`` entry point, from a folder or a git URL, as a run.

>>> import gitml.projects
>>> submitted = gitml.projects.run(".", entry_point="main", parameters={"alpha": 0.5})
>>> submitted.run_id, submitted.get_status()

The pieces: :mod:`.spec` (the MLproject file, parameters, the command), :mod:`.source`
(a folder, or a git URL fetched at a version), :mod:`.envs` (local, virtualenv, uv,
conda), :mod:`.condalock` (conda-lock lock files), :mod:`.runner` (the run).
"""

from gitml.errors import (
    EntryPointNotFoundError,
    ParameterError,
    ProjectEnvError,
    ProjectFetchError,
    ProjectRunFailedError,
    ProjectSpecError,
    VersionNotFoundError,
)
from gitml.projects.condalock import lock
from gitml.projects.runner import SubmittedRun, run
from gitml.projects.spec import load_project

__all__ = [
    "EntryPointNotFoundError",
    "ParameterError",
    "ProjectEnvError",
    "ProjectFetchError",
    "ProjectRunFailedError",
    "ProjectSpecError",
    "SubmittedRun",
    "VersionNotFoundError",
    "load_project",
    "lock",
    "run",
]

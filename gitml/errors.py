"""Every error gitml raises on purpose derives from :class:`GitmlError`.

The tree::

    GitmlError                    one-line message, with context attributes
    (alias MlflowException)       ``error_code``: MLflow's name for the kind of error
    ├── InvalidInputError         a bad name, key, value, id or argument
    │   ├── DeletedRunError       a write to (or resuming of) a deleted run
    │   └── FilterSyntaxError     a malformed search filter (points at the token)
    ├── NotFoundError             no such run, experiment or object
    │   ├── RunNotFoundError
    │   └── ExperimentNotFoundError
    ├── AmbiguousRunError         an abbreviation or name matching several runs
    ├── ConflictError             the operation would overwrite something
    │   └── ParamConflictError    a logged param re-logged with another value
    ├── CorruptRecordError        a stored record that cannot be parsed
    └── RepositoryError           no usable git repository / store state

Classes for one part of gitml are defined beside the code that raises them and
reachable here by name (``from gitml.errors import PackError``; :data:`ELSEWHERE`
says where each lives, and importing one imports its module then)::

    GitmlError
    ├── MissingExtraError         an optional part (ui, serve) is not installed
    ├── InvalidInputError
    │   ├── ProjectSpecError, ParameterError (projects.spec), UnsupportedFlavorError (pyfunc),
    │   │   ModelIntegrityError (models.uri), BadInputFileError (models.batch),
    │   │   SchemaEnforcementError (models.enforce), InvalidHostError (ui.app)
    ├── NotFoundError
    │   └── EntryPointNotFoundError (projects.spec), VersionNotFoundError (projects.source),
    │       RegisteredModelNotFoundError (models.uri), RegisteredModelNotFound (registry.state)
    ├── ConflictError
    │   └── LockHeld (store.locks), IndexLockedError (store.checkout), UntrustedTagError (registry.state)
    ├── CorruptRecordError
    │   └── ModelChangedError (registry.state), PolicyError (registry.policy)
    ├── RepositoryError
    │   └── UnsupportedRepositoryError (store.git), PackError (store.unpack),
    │       IndexFormatError (store.gitindex), JournalWriteError (tracking.journal)
    ├── IntegrityError, ArtifactRemoteError (artifacts.cas)
    │   └── ObjectMissingError, RemoteTimeoutError, UnconfirmedRemoteError
    ├── RemoteError (store.remote), SigningError (registry.signing)
    ├── ProjectFetchError (projects.source), ProjectRunFailedError (projects.runner),
    │   ProjectEnvError (projects.envs)
    └── ServerStartError (serving.workers), RequestError (serving.app)

The CLI turns any of these into one red line and exit status 1. ``GitmlError`` is
also ``gitml.exceptions.MlflowException``: code written against MLflow catches what it
caught there, and reads ``error_code`` (``INVALID_PARAMETER_VALUE``,
``RESOURCE_DOES_NOT_EXIST``, ...) as MLflow sets it.
"""

from __future__ import annotations


class GitmlError(Exception):
    """Root of gitml's errors. ``str(err)`` is a complete one-line message.

    ``error_code`` is MLflow's code for the class (each subclass sets its own);
    ``GitmlError("message", error_code="BAD_REQUEST")`` sets one per error, as
    ``MlflowException`` does.
    """

    error_code: str = "INTERNAL_ERROR"

    def __init__(self, message: object = "", error_code: str | None = None, **_kwargs):
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code

    @property
    def message(self) -> str:
        return str(self)

    @classmethod
    def invalid_parameter_value(cls, message: str) -> GitmlError:
        return cls(message, error_code="INVALID_PARAMETER_VALUE")


MlflowException = GitmlError


class InvalidInputError(GitmlError, ValueError):
    """Bad input: a hostile or malformed name, key, value or argument."""

    error_code = "INVALID_PARAMETER_VALUE"


class DeletedRunError(InvalidInputError):
    """A write to a deleted run, or resuming it: MLflow refuses both."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"run {run_id} is deleted; restore it (restore_run) to change or resume it")


class FilterSyntaxError(InvalidInputError):
    """A search filter or order_by clause that does not parse.

    ``position`` is the 0-based offset of the offending token in ``text``.
    """

    def __init__(self, message: str, text: str, position: int):
        self.text = text
        self.position = position
        super().__init__(f"{message} at position {position} in filter {text!r}")


class NotFoundError(GitmlError, LookupError):
    """Something named does not exist."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class RunNotFoundError(NotFoundError):
    def __init__(self, run: str):
        self.run = run
        super().__init__(f"no run matches {run!r}")


class ExperimentNotFoundError(NotFoundError):
    def __init__(self, experiment: str):
        self.experiment = experiment
        super().__init__(f"no experiment {experiment!r}")


class AmbiguousRunError(GitmlError):
    error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, run: str, candidates: list[str]):
        self.run = run
        self.candidates = candidates
        shown = ", ".join(candidates[:5]) + (" ..." if len(candidates) > 5 else "")
        super().__init__(f"run {run!r} is ambiguous: it matches {shown}")


class ConflictError(GitmlError):
    """The operation would overwrite or contradict recorded state."""

    error_code = "INVALID_STATE"


class ParamConflictError(ConflictError):
    error_code = "INVALID_PARAMETER_VALUE"  # as MLflow reports a changed param

    def __init__(self, run_id: str, key: str, old: str, new: str):
        self.run_id, self.key = run_id, key
        super().__init__(
            f"param {key!r} of run {run_id} is already {old!r}; "
            f"cannot change it to {new!r} (params are immutable)"
        )


class CorruptRecordError(GitmlError):
    """A stored record (run, experiment, journal) that cannot be read."""

    error_code = "DATA_LOSS"

    def __init__(self, what: str, detail: str):
        self.what, self.detail = what, detail
        super().__init__(f"corrupt record {what}: {detail}")


class RepositoryError(GitmlError):
    """No usable git repository, or a broken store."""


class MissingExtraError(GitmlError):
    """An optional part of gitml is not installed (the message has the install hint)."""


# The error classes defined beside the code that raises them: name -> module. This module
# imports none of them (it is the lowest layer); ``gitml.errors.<name>`` imports its module.
ELSEWHERE = {
    **dict.fromkeys(
        ("IntegrityError", "ArtifactRemoteError", "ObjectMissingError", "RemoteTimeoutError", "UnconfirmedRemoteError"),
        "gitml.artifacts.cas",
    ),
    "UnsupportedRepositoryError": "gitml.store.git",
    "PackError": "gitml.store.unpack",
    "LockHeld": "gitml.store.locks",
    "IndexLockedError": "gitml.store.checkout",
    "RemoteError": "gitml.store.remote",
    "IndexFormatError": "gitml.store.gitindex",
    "JournalWriteError": "gitml.tracking.journal",
    **dict.fromkeys(("ProjectSpecError", "EntryPointNotFoundError", "ParameterError"), "gitml.projects.spec"),
    **dict.fromkeys(("ProjectFetchError", "VersionNotFoundError"), "gitml.projects.source"),
    "ProjectRunFailedError": "gitml.projects.runner",
    "ProjectEnvError": "gitml.projects.envs",
    "UnsupportedFlavorError": "gitml.pyfunc",
    **dict.fromkeys(("RegisteredModelNotFoundError", "ModelIntegrityError"), "gitml.models.uri"),
    "BadInputFileError": "gitml.models.batch",
    "SchemaEnforcementError": "gitml.models.enforce",
    **dict.fromkeys(("RegisteredModelNotFound", "ModelChangedError", "UntrustedTagError"), "gitml.registry.state"),
    "SigningError": "gitml.registry.signing",
    "PolicyError": "gitml.registry.policy",
    "InvalidHostError": "gitml.ui.app",
    "ServerStartError": "gitml.serving.workers",
    "RequestError": "gitml.serving.app",
}

__all__ = [
    "GitmlError", "MlflowException", "InvalidInputError", "DeletedRunError", "FilterSyntaxError", "NotFoundError",
    "RunNotFoundError", "ExperimentNotFoundError", "AmbiguousRunError", "ConflictError", "ParamConflictError",
    "CorruptRecordError", "RepositoryError", "MissingExtraError", *ELSEWHERE,
]


def __getattr__(name: str) -> type[GitmlError]:
    """An error class of :data:`ELSEWHERE`, from its module (imported now)."""
    module = ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gitml.errors' has no attribute {name!r}")
    import importlib

    found = getattr(importlib.import_module(module), name)
    globals()[name] = found
    return found

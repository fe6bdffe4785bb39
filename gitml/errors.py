"""Every error gitml raises on purpose derives from :class:`GitmlError`.

The tree::

    GitmlError                    one-line message, with context attributes
    (alias MlflowException)       ``error_code``: MLflow's name for the kind of error
    ├── InvalidInputError         a bad name, key, value, id or argument
    │   ├── DeletedRunError       a write to (or resuming of) a deleted run
    │   └── FilterSyntaxError     a malformed search filter (points at the token)
    ├── NotFoundError             no such run, experiment or object
    │   ├── NoModelError          no MLmodel where a run's model was named
    │   ├── RunNotFoundError
    │   └── ExperimentNotFoundError
    ├── AmbiguousRunError         an abbreviation or name matching several runs
    │   └── DuplicateRunIdError   one run id claimed by two refs (tracking.tracker)
    ├── ConflictError             the operation would overwrite something
    │   └── ParamConflictError    a logged param re-logged with another value
    ├── CorruptRecordError        a stored record that cannot be parsed
    └── RepositoryError           no usable git repository / store state

The classes one part of gitml raises are defined here too (the module that raises
one also offers it under its name; the part is named in brackets)::

    GitmlError
    ├── MissingExtraError         an optional part (ui, serve) is not installed
    ├── InvalidInputError
    │   ├── ProjectSpecError, ParameterError (projects.spec), UnsupportedFlavorError (pyfunc),
    │   │   ModelIntegrityError (modelformat.uri), BadInputFileError, InputTooLargeError (pyfunc.batch),
    │   │   SchemaEnforcementError (modelformat.enforce), InvalidHostError (ui.app),
    │   │   LocalArtifactsError (sync)
    ├── NotFoundError
    │   └── EntryPointNotFoundError (projects.spec), VersionNotFoundError (projects.source),
    │       RegisteredModelNotFoundError (modelformat.uri), RegisteredModelNotFound (registry.state)
    ├── ConflictError
    │   └── LockHeld (store.locks), IndexLockedError (store.checkout), UntrustedTagError (registry.state),
    │       GateError (registry.gates)
    ├── CorruptRecordError
    │   └── ModelChangedError (registry.state), PolicyError (registry.policy)
    ├── RepositoryError
    │   └── UnsupportedRepositoryError (store.git), PackError (store.unpack),
    │       IndexFormatError (store.gitindex), JournalWriteError (tracking.journal)
    ├── IntegrityError, ArtifactRemoteError (content.cas)
    │   └── ObjectMissingError, RemoteTimeoutError, UnconfirmedRemoteError
    ├── RemoteError (store.remote), SigningError (registry.signing), TimeBudgetError (tracking.filter)
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


class LocalArtifactsError(InvalidInputError):
    """A push of runs whose large artifacts are only in this user's default store to a git
    remote other people reach: they could not load them (``--allow-local-artifacts``)."""


class DeletedRunError(InvalidInputError):
    """A write to a deleted run, or resuming it: MLflow refuses both."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"run {run_id} is deleted; restore it (restore_run) to change or resume it")


class FilterSyntaxError(InvalidInputError):
    """A search filter or order_by clause that does not parse.

    ``position`` is the 0-based offset of the offending token in ``text``.
    """

    def __init__(self, message: str, text: str, position: int, *, what: str = "filter"):
        self.reason = message  # the message alone, without where
        self.text = text
        self.position = position
        self.what = what  # "filter" or "order-by clause": the option the user gave
        super().__init__(f"{message} at position {position} in {what} {text!r}")


# raised by gitml.runlog.filter
class TimeBudgetError(GitmlError):
    """Work stopped at its time budget: a search past its deadline, a lock not free in
    time (the web UI gives each request one)."""

    error_code = "TEMPORARILY_UNAVAILABLE"


class NotFoundError(GitmlError, LookupError):
    """Something named does not exist."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class NoModelError(NotFoundError):
    """A run has no model (no MLmodel artifact) where one was named."""


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


class DuplicateRunIdError(AmbiguousRunError):
    """Two run refs claim one run id (one came from elsewhere claiming it): no reader picks one."""

    def __init__(self, run: str, refs: list[str]):
        self.run, self.candidates = run, refs
        GitmlError.__init__(
            self,
            f"run id {run} is claimed by {len(refs)} refs ({', '.join(refs)}): one is not that run; "
            "delete the one you do not trust (`git update-ref -d REF`)",
        )


class ConflictError(GitmlError):
    """The operation would overwrite or contradict recorded state."""

    error_code = "INVALID_STATE"


class ParamConflictError(ConflictError):
    error_code = "INVALID_PARAMETER_VALUE"  # as MLflow reports a changed param

    def __init__(self, run_id: str, key: str, old: str, new: str):
        self.run_id, self.key, self.old, self.new = run_id, key, old, new
        super().__init__(
            f"param {key!r} of run {run_id} is already {old!r}; cannot change it to {new!r} (params are immutable)"
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

    @classmethod
    def unless_installed(cls, extra: str, modules: tuple[str, ...]) -> None:
        """Raise one naming the modules of ``gitml[extra]`` that do not import."""
        missing = []
        for module in modules:
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise cls(f'gitml {extra} needs {", ".join(missing)}: pip install "gitml[{extra}]"')


# -- raised by one part of gitml each ------------------------------------------
# raised by gitml.content.cas
class IntegrityError(GitmlError):
    """An artifact object whose bytes do not match its hash."""


class ArtifactRemoteError(GitmlError):
    """The artifact remote cannot be opened or used."""


class ObjectMissingError(ArtifactRemoteError):
    """The artifact remote works, but lacks this object."""


class RemoteTimeoutError(ArtifactRemoteError):
    """The artifact remote did not answer in time (``artifacts.timeout``)."""


class UnconfirmedRemoteError(ArtifactRemoteError):
    """A write or delete on an artifact remote that the committed config set and this clone
    has not confirmed (``gitml config --trust-committed``), or any contact with one that
    can reach a network service."""


# raised by gitml.store.git
class UnsupportedRepositoryError(RepositoryError):
    """A repository in a format that gitml's writes would damage (SHA-256 objects,
    reftable refs, an extension it does not know); gitml leaves it untouched."""

    def __init__(self, path: str, feature: str):
        self.path = path
        self.feature = feature
        super().__init__(
            f"{path}: the repository uses {feature}, which gitml does not support (it writes SHA-1 "
            "objects and files refs only); nothing was written to it"
        )


# raised by gitml.store.unpack
class PackError(RepositoryError):
    """A received pack that is damaged, truncated or refers to objects nobody has."""

    def __init__(self, why: str):
        super().__init__(f"received pack: {why}")


# raised by gitml.store.locks
class LockHeld(ConflictError):
    """Another writer holds ``<path>.lock`` (caught inside gitml.store, which waits or retries)."""

    def __init__(self, lock: str):
        super().__init__(lock)
        self.lock = lock


# raised by gitml.store.checkout
class IndexLockedError(ConflictError):
    """Another process holds git's ``index.lock``."""

    def __init__(self, lock: str):
        self.lock = lock
        super().__init__(
            f"{lock} exists: another git process seems to be running in this repository (if none is, remove the file)"
        )


# raised by gitml.store.remote
class RemoteError(GitmlError):
    """A remote that cannot be reached, is not a repository, or refused the transfer."""

    def __init__(self, url: str, cause: str):
        self.url, self.cause = url, cause
        super().__init__(f"remote {url}: {cause}")


# raised by gitml.store.gitindex
class IndexFormatError(RepositoryError):
    """The index file is damaged or in a form this reader does not know."""

    def __init__(self, path: str, detail: str):
        self.path, self.detail = path, detail
        super().__init__(f"cannot read git's index {path}: {detail}")


# raised by gitml.runlog.journal
class JournalWriteError(RepositoryError):
    """A journal line could not be written (disk full, file too large, I/O error):
    the call that logged it is not recorded; everything before it is."""

    def __init__(self, path: str, error: OSError):
        self.path = path
        super().__init__(
            f"could not write the journal {path}: {error.strerror or error}; "
            "this call was not recorded (earlier ones were)"
        )


# raised by gitml.projects.spec
class ProjectSpecError(InvalidInputError):
    """A malformed ``MLproject`` (or environment file): names the file and the field."""

    def __init__(self, where: str, detail: str):
        self.where, self.detail = where, detail
        super().__init__(f"{where}: {detail}")


class EntryPointNotFoundError(NotFoundError):
    def __init__(self, project: str, name: str, known: list[str]):
        self.project, self.name = project, name
        choices = ", ".join(known) if known else "none"
        super().__init__(
            f"project {project!r} has no entry point {name!r} (entry points: {choices}; "
            "a .py or .sh file of the project also runs)"
        )


class ParameterError(InvalidInputError):
    """A parameter missing, or whose value does not fit its type."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(f"parameter {name!r}: {detail}")


# raised by gitml.projects.source
class ProjectFetchError(GitmlError):
    """The project's git URL cannot be reached or read."""

    error_code = "RESOURCE_DOES_NOT_EXIST"

    def __init__(self, url: str, cause: str):
        self.url, self.cause = url, cause
        super().__init__(f"cannot fetch project {url}: {cause}")


class VersionNotFoundError(NotFoundError):
    def __init__(self, url: str, version: str):
        self.url, self.version = url, version
        super().__init__(f"project {url} has no branch, tag or commit {version!r}")


# raised by gitml.projects.runner
class ProjectRunFailedError(GitmlError):
    """A synchronous project run whose command failed (the run is recorded FAILED)."""

    error_code = "INTERNAL_ERROR"

    def __init__(self, run_id: str, returncode: int | None):
        self.run_id, self.returncode = run_id, returncode
        super().__init__(f"run {run_id} failed: the command exited with status {returncode}")


# raised by gitml.projects.envs
class ProjectEnvError(GitmlError):
    """An environment that cannot be built, or a tool it needs that is missing."""

    error_code = "INVALID_STATE"


# raised by gitml.pyfunc
class UnsupportedFlavorError(InvalidInputError):
    """A model whose ``python_function`` loader gitml does not have."""


# raised by gitml.modelformat.uri
class RegisteredModelNotFoundError(NotFoundError):
    """A ``models:/`` URI naming no registered model (or version, or alias)."""


class ModelIntegrityError(InvalidInputError):
    """A model file that does not match the hash the run recorded for it."""


# raised by gitml.pyfunc.batch
class BadInputFileError(InvalidInputError):
    """An input file that cannot be read as the table a model takes."""


class InputTooLargeError(BadInputFileError):
    """An input whose table would decode to more cells (or bytes) than allowed."""


# raised by gitml.modelformat.enforce
class SchemaEnforcementError(InvalidInputError):
    """Input or params that do not fit the model's signature."""


# raised by gitml.registry.state
class RegisteredModelNotFound(NotFoundError):
    """No such registered model, version, stage or alias."""


class ModelChangedError(CorruptRecordError):
    """A registered version whose run no longer holds what was tagged."""

    def __init__(self, message: str):
        GitmlError.__init__(self, message)


class UntrustedTagError(ConflictError):
    """A stage tag the policy requires to be signed by a trusted key is not (``on_untrusted: refuse``)."""

    error_code = "PERMISSION_DENIED"


# raised by gitml.registry.gates
class GateError(ConflictError):
    """A promotion that fails a gate of the policy (a metric threshold, a regression)."""

    error_code = "INVALID_STATE"


# raised by gitml.registry.signing
class SigningError(GitmlError):
    """Signing failed (no key, the program failed, an unsupported format)."""

    error_code = "INVALID_STATE"


# raised by gitml.registry.policy
class PolicyError(CorruptRecordError):
    """The committed policy or stages file is malformed."""


# raised by gitml.ui.app
class InvalidHostError(InvalidInputError):
    """A request for a host name the server does not answer to."""


# raised by gitml.serving.workers
class ServerStartError(GitmlError):
    """The scoring server could not listen, or its workers kept dying."""


# raised by gitml.serving.app
class RequestError(GitmlError):
    """A refused request: HTTP status, MLflow's error code, a message without the body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


__all__ = [  # one name a line: parts added at once merge without conflict
    "GitmlError",
    "MlflowException",
    "InvalidInputError",
    "DeletedRunError",
    "NoModelError",
    "FilterSyntaxError",
    "NotFoundError",
    "RunNotFoundError",
    "ExperimentNotFoundError",
    "GateError",
    "AmbiguousRunError",
    "DuplicateRunIdError",
    "ConflictError",
    "ParamConflictError",
    "ArtifactRemoteError",
    "BadInputFileError",
    "CorruptRecordError",
    "EntryPointNotFoundError",
    "IndexFormatError",
    "IndexLockedError",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidHostError",
    "JournalWriteError",
    "LocalArtifactsError",
    "LockHeld",
    "MissingExtraError",
    "ModelChangedError",
    "ModelIntegrityError",
    "ObjectMissingError",
    "PackError",
    "ParameterError",
    "PolicyError",
    "ProjectEnvError",
    "ProjectFetchError",
    "ProjectRunFailedError",
    "ProjectSpecError",
    "RegisteredModelNotFound",
    "RegisteredModelNotFoundError",
    "RemoteError",
    "RemoteTimeoutError",
    "RepositoryError",
    "RequestError",
    "SchemaEnforcementError",
    "ServerStartError",
    "SigningError",
    "TimeBudgetError",
    "UnconfirmedRemoteError",
    "UnsupportedFlavorError",
    "UnsupportedRepositoryError",
    "UntrustedTagError",
    "VersionNotFoundError",
]

"""Every error gitml raises on purpose derives from :class:`GitmlError`.

The tree::

    GitmlError                    one-line message, with context attributes
    ├── InvalidInputError         a bad name, key, value, id or argument
    │   └── FilterSyntaxError     a malformed search filter (points at the token)
    ├── NotFoundError             no such run, experiment or object
    │   ├── RunNotFoundError
    │   └── ExperimentNotFoundError
    ├── AmbiguousRunError         an abbreviation or name matching several runs
    ├── ConflictError             the operation would overwrite something
    │   └── ParamConflictError    a logged param re-logged with another value
    ├── CorruptRecordError        a stored record that cannot be parsed
    └── RepositoryError           no usable git repository / store state

The CLI turns any of these into one red line and exit status 1.
"""

from __future__ import annotations


class GitmlError(Exception):
    """Root of gitml's errors. ``str(err)`` is a complete one-line message."""


class InvalidInputError(GitmlError, ValueError):
    """Bad input: a hostile or malformed name, key, value or argument."""


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


class RunNotFoundError(NotFoundError):
    def __init__(self, run: str):
        self.run = run
        super().__init__(f"no run matches {run!r}")


class ExperimentNotFoundError(NotFoundError):
    def __init__(self, experiment: str):
        self.experiment = experiment
        super().__init__(f"no experiment {experiment!r}")


class AmbiguousRunError(GitmlError):
    def __init__(self, run: str, candidates: list[str]):
        self.run = run
        self.candidates = candidates
        shown = ", ".join(candidates[:5]) + (" ..." if len(candidates) > 5 else "")
        super().__init__(f"run {run!r} is ambiguous: it matches {shown}")


class ConflictError(GitmlError):
    """The operation would overwrite or contradict recorded state."""


class ParamConflictError(ConflictError):
    def __init__(self, run_id: str, key: str, old: str, new: str):
        self.run_id, self.key = run_id, key
        super().__init__(
            f"param {key!r} of run {run_id} is already {old!r}; "
            f"cannot change it to {new!r} (params are immutable)"
        )


class CorruptRecordError(GitmlError):
    """A stored record (run, experiment, journal) that cannot be read."""

    def __init__(self, what: str, detail: str):
        self.what, self.detail = what, detail
        super().__init__(f"corrupt record {what}: {detail}")


class RepositoryError(GitmlError):
    """No usable git repository, or a broken store."""

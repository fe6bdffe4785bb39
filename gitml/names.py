"""Every naming format of gitml's git data, with its one parser.

Run refs         refs/gitml/runs/<experiment_id>/<run_id>
Experiment refs  refs/gitml/experiments/<experiment_id> (ids derive from the name)
Run record       .gitml/run/ inside the run commit's tree
Metric history   .gitml/run/metrics/<key>@<chunk>.tsv

Keys (params, metrics, tags) follow MLflow's rule: letters, digits, ``_ - . /``,
space and ``:``; at most 250 characters; no empty, ``.`` or ``..`` component,
no leading or trailing ``/``. ``@`` is never part of a key, so a history file
name can never collide with another key's.
"""

from __future__ import annotations

import re

from gitml.errors import InvalidInputError

RUNS_PREFIX = "refs/gitml/runs/"
EXPERIMENTS_PREFIX = "refs/gitml/experiments/"
RECORD_DIR = ".gitml/run"
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 500

_KEY_RE = re.compile(r"[\w\-. /:]+")
_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
_EXPERIMENT_ID_RE = re.compile(r"[0-9]{1,20}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HISTORY_RE = re.compile(r"(.+)@(\d+)\.tsv")


def check_key(key: object, kind: str = "key") -> str:
    """Return ``key`` if it is a safe param/metric/tag key, else raise.

    >>> check_key("train/loss", "metric")
    'train/loss'
    """
    if not isinstance(key, str):
        raise InvalidInputError(f"{kind} key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidInputError(f"{kind} key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(f"{kind} key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.fullmatch(key):
        bad = next(c for c in key if not _KEY_RE.fullmatch(c))
        raise InvalidInputError(
            f"{kind} key {key!r} holds {bad!r}; keys may hold letters, digits, "
            "'_', '-', '.', ' ', ':' and '/'"
        )
    if key.startswith("/") or key.endswith("/"):
        raise InvalidInputError(f"{kind} key {key!r} may not start or end with '/'")
    _check_components(key, f"{kind} key")
    return key


def _check_components(path: str, what: str) -> None:
    """Each ``/`` component becomes a git tree entry: none may be empty, ``.``, ``..`` or ``.git``."""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidInputError(f"{what} {path!r} has an empty, '.' or '..' component")
        if part.lower() == ".git":
            raise InvalidInputError(f"{what} {path!r} has a '.git' component (git refuses such trees)")


def check_artifact_path(path: object, what: str = "artifact path") -> str:
    """A relative, normalised path inside a run's artifacts; never escapes its root.

    >>> check_artifact_path("model/weights.pt")
    'model/weights.pt'
    """
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"{what} must be a non-empty string")
    if len(path) > 1024:
        raise InvalidInputError(f"{what} {path[:40]!r}... is longer than 1024 characters")
    if _CONTROL_RE.search(path) or "\\" in path:
        raise InvalidInputError(f"{what} {path!r} holds a control character or a backslash")
    if path.startswith("/"):
        raise InvalidInputError(f"{what} {path!r} is absolute; give a path inside the run's artifacts")
    _check_components(path, what)
    return path


def check_text(value: object, what: str, max_length: int, *, single_line: bool = False) -> str:
    """Validate a free-text value (param value, tag value, name)."""
    if not isinstance(value, str):
        value = str(value)
    if len(value) > max_length:
        raise InvalidInputError(f"{what} is longer than {max_length} characters")
    if single_line and _CONTROL_RE.search(value):
        raise InvalidInputError(f"{what} {value!r} holds a control character")
    if "\x00" in value:
        raise InvalidInputError(f"{what} holds a NUL character")
    return value


def check_name(name: object, what: str) -> str:
    """A run or experiment name: non-empty, one line, no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} must be a non-empty string")
    return check_text(name, what, MAX_NAME_LENGTH, single_line=True)


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidInputError(f"run id {run_id!r} is not 32 lowercase hex digits")
    return run_id


def check_experiment_id(experiment_id: object) -> str:
    experiment_id = str(experiment_id)
    if not _EXPERIMENT_ID_RE.fullmatch(experiment_id):
        raise InvalidInputError(f"experiment id {experiment_id!r} is not a number")
    return experiment_id


def run_ref(experiment_id: str, run_id: str) -> bytes:
    """The ref of a run: ``refs/gitml/runs/<experiment_id>/<run_id>``."""
    return f"{RUNS_PREFIX}{check_experiment_id(experiment_id)}/{check_run_id(run_id)}".encode()


def parse_run_ref(ref: bytes | str) -> tuple[str, str] | None:
    """``(experiment_id, run_id)`` of a run ref, or None for any other ref."""
    if isinstance(ref, bytes):
        ref = ref.decode("utf-8", "replace")
    if not ref.startswith(RUNS_PREFIX):
        return None
    parts = ref[len(RUNS_PREFIX):].split("/")
    if len(parts) != 2 or not _EXPERIMENT_ID_RE.fullmatch(parts[0]) or not _RUN_ID_RE.fullmatch(parts[1]):
        return None
    return parts[0], parts[1]


def run_ref_parts(ref: bytes | str) -> tuple[str, str]:
    """``(experiment_id, run_id)`` of a ref known to be a run ref (ValueError otherwise)."""
    parts = parse_run_ref(ref)
    if parts is None:
        raise ValueError(f"not a run ref: {ref!r}")
    return parts


def experiment_ref(experiment_id: str) -> bytes:
    return f"{EXPERIMENTS_PREFIX}{check_experiment_id(experiment_id)}".encode()


def parse_experiment_ref(ref: bytes | str) -> str | None:
    """The experiment id of an experiment ref, or None for any other ref."""
    if isinstance(ref, bytes):
        ref = ref.decode("utf-8", "replace")
    if not ref.startswith(EXPERIMENTS_PREFIX) or not _EXPERIMENT_ID_RE.fullmatch(ref[len(EXPERIMENTS_PREFIX):]):
        return None
    return ref[len(EXPERIMENTS_PREFIX):]


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """``(run, artifact path)`` of ``runs:/<run>/<path>`` (the run as an id, prefix or name)."""
    if not isinstance(uri, str) or not uri.startswith("runs:/"):
        raise InvalidInputError(f"{uri!r} is not a runs:/<run_id>/<path> URI")
    run, _, path = uri[len("runs:/"):].lstrip("/").partition("/")
    if not run:
        raise InvalidInputError(f"{uri!r} names no run")
    return run, path.strip("/")


def history_path(key: str, chunk: int) -> str:
    """Path, under ``metrics/``, of one chunk of a metric's history."""
    return f"{key}@{chunk}.tsv"


def parse_history_path(path: str) -> tuple[str, int] | None:
    """``(key, chunk)`` of a history file path under ``metrics/``, or None."""
    m = _HISTORY_RE.fullmatch(path)
    if not m:
        return None
    return m.group(1), int(m.group(2))

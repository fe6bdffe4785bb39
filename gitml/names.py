"""Every naming format of gitml's git data, with its one parser.

Run refs         refs/gitml/runs/<experiment_id>/<run_id>
Experiment refs  refs/gitml/experiments/<experiment_id> (ids derive from the name)
Registry refs    refs/gitml/registry/<model as its tags name it, '/' as %2F> (MLflow's metadata)
Run record       .gitml/run/ inside the run commit's tree
Metric history   .gitml/run/metrics/<key>@<chunk>.tsv

Keys (params, metrics, tags) follow MLflow's rule: letters, digits, ``_ - . /``,
space and ``:``; at most 250 characters; no empty, ``.`` or ``..`` component,
no leading or trailing ``/``. ``@`` is never part of a key, so a history file
name can never collide with another key's.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping

from gitml.errors import InvalidInputError

RUNS_PREFIX = "refs/gitml/runs/"
EXPERIMENTS_PREFIX = "refs/gitml/experiments/"
REGISTRY_PREFIX = "refs/gitml/registry/"  # a registered model's MLflow metadata (gitml.registry.metadata)
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
_HISTORY_RE = re.compile(r"(.+)@(0|[1-9][0-9]{0,8})\.tsv")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # MLflow stores steps and timestamps as int64


def check_key(key: object, kind: str = "key") -> str:
    """Return ``key`` if it is a safe param/metric/tag key, else raise.

    >>> check_key("train/loss", "metric")
    'train/loss'
    """
    if type(key) is str and key in _CHECKED_KEYS:
        return key  # checked before in this process: the same few keys come with every run
    if not isinstance(key, str):
        raise InvalidInputError(f"{kind} key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidInputError(f"{kind} key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(f"{kind} key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.fullmatch(key):
        bad = next(c for c in key if not _KEY_RE.fullmatch(c))
        raise InvalidInputError(
            f"{kind} key {key!r} holds {bad!r}; keys may hold letters, digits, '_', '-', '.', ' ', ':' and '/'"
        )
    if key.startswith("/") or key.endswith("/"):
        raise InvalidInputError(f"{kind} key {key!r} may not start or end with '/'")
    _check_components(key, f"{kind} key")
    if type(key) is str:
        if len(_CHECKED_KEYS) >= _CHECKED_KEYS_KEPT:
            _CHECKED_KEYS.clear()
        _CHECKED_KEYS.add(key)
    return key


_CHECKED_KEYS: set[str] = set()  # keys check_key passed (whatever their kind: the rule is one)
_CHECKED_KEYS_KEPT = 1 << 16


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
    """Validate a free-text value (param value, tag value, name); other values are ``str()``-ed,
    as MLflow does, except bytes (whose ``str()`` is rarely what was meant)."""
    value = as_text(value, what)
    if len(value) > max_length:
        raise InvalidInputError(f"{what} is longer than {max_length} characters")
    if single_line and _CONTROL_RE.search(value):
        raise InvalidInputError(f"{what} {value!r} holds a control character")
    if "\x00" in value:
        raise InvalidInputError(f"{what} holds a NUL character")
    return value


def as_text(value: object, what: str) -> str:
    """``str(value)``, as MLflow takes param and tag values, except bytes (whose ``str()``
    is rarely what was meant); InvalidInputError when ``__str__`` fails."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"{what} is bytes; decode it to a string first")
    try:
        return str(value)
    except Exception as e:  # noqa: BLE001 - any object's __str__ may fail
        raise InvalidInputError(f"{what} cannot be turned into a string ({type(e).__name__}: {e})") from None


def check_mapping(value: object, what: str) -> Mapping:
    """A dict (any mapping) argument, such as ``log_params``' params."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping (a dict), not {type(value).__name__}")
    return value


def check_name(name: object, what: str) -> str:
    """A run or experiment name: non-empty, one line, no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} must be a non-empty string")
    return check_text(name, what, MAX_NAME_LENGTH, single_line=True)


def check_sha256(value: object, what: str = "artifact hash") -> str:
    """An artifact object's id: exactly 64 lowercase hex digits (it becomes a file name)."""
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidInputError(f"{what} {str(value)[:80]!r} is not 64 lowercase hex digits")
    return value


def check_int64(value: object, what: str, *, minimum: int = INT64_MIN) -> int:
    """An integer (int or numpy integer, not bool) in MLflow's int64 range."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, (str, bytes)):
        raise InvalidInputError(f"{what} must be an integer, not {type(value).__name__} {str(value)[:40]!r}")
    number = operator.index(value)
    if not minimum <= number <= INT64_MAX:
        raise InvalidInputError(f"{what} {number} is outside the range {minimum}..{INT64_MAX}")
    return number


def check_metric(value: object, step: object, timestamp: object) -> tuple[float, int, int]:
    """``(value, step, timestamp)`` of a metric point, as MLflow takes them: the value
    a real number (int, float, numpy scalar; not bool or str), the step an integer,
    the timestamp milliseconds since 1970 (a float is truncated, as MLflow's store
    does); both int64.

    >>> check_metric(0.5, 3, 1700000000000)
    (0.5, 3, 1700000000000)
    """
    # the common case (a Python float, int step and time in range) in one test: a third of
    # a fluent log_metric call went to the general checks below (W1, docs/design.md Performance)
    if (
        type(value) is float
        and type(step) is int
        and type(timestamp) is int
        and INT64_MIN <= step <= INT64_MAX
        and 0 <= timestamp <= INT64_MAX
    ):
        return value, step, timestamp
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise InvalidInputError(f"metric value must be a number, not {type(value).__name__} {str(value)[:40]!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidInputError(f"metric value {str(value)[:40]!r} is not a number ({e})") from None
    if isinstance(timestamp, float) and math.isfinite(timestamp):
        timestamp = int(timestamp)
    return number, check_int64(step, "metric step"), check_int64(timestamp, "metric timestamp", minimum=0)


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


_REGISTRY_REF = re.compile(rb"refs/gitml/registry/[A-Za-z0-9](?:(?:[A-Za-z0-9_-]|%2F)*[A-Za-z0-9])?")


def registry_ref(model: str) -> bytes:
    """The metadata ref of a registered model (``model`` as its tags name it)."""
    return f"{REGISTRY_PREFIX}{model.replace('/', '%2F')}".encode()


def parse_registry_ref(ref: bytes) -> str | None:
    """The model (as its tags name it) of a registry metadata ref, or None for any other ref."""
    if _REGISTRY_REF.fullmatch(ref) is None or b"%2F%2F" in ref:
        return None
    return ref[len(REGISTRY_PREFIX) :].decode().replace("%2F", "/")


_RUN_REF_BYTES = re.compile(rb"refs/gitml/runs/[0-9]{1,20}/[0-9a-f]{32}")
RUN_REF_NAMES = _RUN_REF_BYTES  # a run ref's whole name: listings keep the refs it matches


def is_run_ref(ref: bytes) -> bool:
    """Whether ``ref`` is a run ref (what :func:`parse_run_ref` accepts), in one regex match."""
    return _RUN_REF_BYTES.fullmatch(ref) is not None


def parse_run_ref(ref: bytes | str) -> tuple[str, str] | None:
    """``(experiment_id, run_id)`` of a run ref, or None for any other ref."""
    if isinstance(ref, bytes):
        ref = ref.decode("utf-8", "replace")
    if not ref.startswith(RUNS_PREFIX):
        return None
    parts = ref[len(RUNS_PREFIX) :].split("/")
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
    if not ref.startswith(EXPERIMENTS_PREFIX) or not _EXPERIMENT_ID_RE.fullmatch(ref[len(EXPERIMENTS_PREFIX) :]):
        return None
    return ref[len(EXPERIMENTS_PREFIX) :]


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """``(run, artifact path)`` of ``runs:/<run>/<path>`` (the run as an id, prefix or name)."""
    if not isinstance(uri, str) or not uri.startswith("runs:/"):
        raise InvalidInputError(f"{uri!r} is not a runs:/<run_id>/<path> URI")
    run, _, path = uri[len("runs:/") :].lstrip("/").partition("/")
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

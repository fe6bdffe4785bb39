"""gitml's settings: committed ``.gitml/config.yaml``, per-clone ``.git/gitml/config.yaml``,
then the environment, each overriding the one before.

    artifacts.remote            fsspec URL of the artifact remote
                                (default: ~/.local/share/gitml/artifacts, a local folder)
    artifacts.inline_max_bytes  artifacts up to this size are also stored in the run's
                                git tree (default 65536)
    artifacts.storage_options   fsspec options (e.g. endpoint_url); never credentials
                                in the committed file
    artifacts.timeout           seconds an artifact remote may stay silent (default 30)
    push.batch_refs             refs a push sends in one connection (default 1000); a batch
                                the host refuses whole is halved and sent again

``GITML_ARTIFACT_REMOTE`` overrides ``artifacts.remote``, ``GITML_ARTIFACT_TIMEOUT``
``artifacts.timeout``. Every value is checked when set and when read; a bad one read
from a file names the file and the key, and ``gitml config KEY VALUE`` replaces it.

An artifact remote the committed file sets (its URL or its storage options) is read
from as it is: every object read is checked against its hash. Writing or deleting
there needs this clone's confirmation (:func:`trust_committed`, ``gitml config
--trust-committed``), kept in the clone's file as ``artifacts.trusted_committed``; a
committed value that changes afterwards needs confirming again. A committed remote that
can reach a network service (``http(s)://``, a scheme this clone's own settings do not
use, or committed storage options) is not contacted at all before that confirmation
(:func:`uncontacted`): a URL such as ``http://127.0.0.1:8080/admin?action=...`` would
otherwise make the next model load send that request.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from typing import Any

from gitml.errors import CorruptRecordError, InvalidInputError
from gitml.store import yamlout
from gitml.store.git import GitStore

log = logging.getLogger("gitml")

REMOTE, INLINE_MAX_BYTES, STORAGE_OPTIONS, TIMEOUT = (
    "artifacts.remote",
    "artifacts.inline_max_bytes",
    "artifacts.storage_options",
    "artifacts.timeout",
)
PUSH_BATCH_REFS = "push.batch_refs"
KEYS = (REMOTE, INLINE_MAX_BYTES, STORAGE_OPTIONS, TIMEOUT, PUSH_BATCH_REFS)
TRUSTED = "artifacts.trusted_committed"  # the clone's file only; written by trust_committed()
DEFAULT_TIMEOUT = 30.0  # seconds a remote may stay silent (artifacts.timeout)
DEFAULT_INLINE_MAX_BYTES = 65536
DEFAULT_PUSH_BATCH_REFS = 1000  # docs/design.md, Scaling out: hosts with no limit take it; a lower limit halves it
MAX_PUSH_BATCH_REFS = 1_000_000
MAX_INLINE_BYTES = 1 << 30
MAX_TIMEOUT = 86400.0
_SECRET_KEY = re.compile(r"secret|password|token|key|credential", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"^[a-z0-9+.-]+://[^/@]*:[^/@]*@", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def default_remote() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "gitml", "artifacts")


def committed_path(store: GitStore) -> str | None:
    return os.path.join(store.workdir, ".gitml", "config.yaml") if store.workdir else None


def local_path(store: GitStore) -> str:
    return os.path.join(store.gitml_dir, "config.yaml")


# -- values ---------------------------------------------------------------
def _remote(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a URL or a folder")
    if _CONTROL.search(value):
        raise ValueError("must not hold control characters")
    return value


def _inline_max_bytes(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INLINE_BYTES:
        raise ValueError(f"must be a whole number of bytes from 0 to {MAX_INLINE_BYTES}")
    return value


def _storage_options(value: Any) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("must be a mapping of fsspec options, e.g. {endpoint_url: 'http://host:9000'}")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 < value <= MAX_TIMEOUT)
        or math.isnan(value)
    ):
        raise ValueError(f"must be a number of seconds above 0, at most {MAX_TIMEOUT:g}")
    return float(value)


def _batch_refs(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PUSH_BATCH_REFS:
        raise ValueError(f"must be a whole number of refs from 1 to {MAX_PUSH_BATCH_REFS}")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    REMOTE: _remote,
    INLINE_MAX_BYTES: _inline_max_bytes,
    STORAGE_OPTIONS: _storage_options,
    TIMEOUT: _timeout,
    PUSH_BATCH_REFS: _batch_refs,
}
_MAPPINGS = (STORAGE_OPTIONS, TRUSTED)  # values that are mappings, not sections


def check_value(key: str, value: Any) -> Any:
    """``value`` as ``key`` holds it (``"65536"`` → 65536), or :class:`InvalidInputError`
    saying what the key takes."""
    if key not in _CHECKS:
        raise InvalidInputError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
    try:
        return _CHECKS[key](value)
    except ValueError as e:
        raise InvalidInputError(f"{key} {e}, not {value!r}") from None


def parse_text(key: str, text: str) -> Any:
    """A value typed on the command line, read as YAML (``{a: 1}``, ``5``), except a remote's URL."""
    import yaml

    if key == REMOTE:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # then refused by check_value, which says what the key takes


# -- files ----------------------------------------------------------------
def _read(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    from gitml.yamlread import read_yaml_file  # refuses aliases and oversize files, reads no more than its limit

    try:
        data = read_yaml_file(path, path)
    except CorruptRecordError as e:
        raise InvalidInputError(f"{path} is not valid YAML or is unsafe ({e.detail}); fix or delete it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must be a mapping of settings; fix or delete it")
    return data


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in _MAPPINGS:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _settings(path: str | None, *, committed: bool) -> dict:
    """A settings file's known keys, checked; a bad value names the file, the key and the fix."""
    found = {}
    for key, value in _flat(_read(path)).items():
        if key == TRUSTED and not committed:
            found[key] = value if isinstance(value, dict) else {}
        elif key not in _CHECKS:
            log.warning("%s: unknown setting %r ignored (known: %s)", path, key, ", ".join(KEYS))
        else:
            try:
                found[key] = check_value(key, value)
            except InvalidInputError as e:
                fix = f"gitml config{' --committed' if committed else ''} {key} VALUE"
                raise InvalidInputError(f"{path}: {e}; set it again with `{fix}`") from None
    return found


def load(store: GitStore) -> dict:
    """The effective settings, flat (``{"artifacts.remote": ...}``), defaults filled in."""
    settings: dict[str, Any] = {
        REMOTE: default_remote(),
        INLINE_MAX_BYTES: DEFAULT_INLINE_MAX_BYTES,
        STORAGE_OPTIONS: {},
        TIMEOUT: DEFAULT_TIMEOUT,
        PUSH_BATCH_REFS: DEFAULT_PUSH_BATCH_REFS,
    }
    settings.update(_settings(committed_path(store), committed=True))
    settings.update({k: v for k, v in _settings(local_path(store), committed=False).items() if k != TRUSTED})
    if os.environ.get("GITML_ARTIFACT_REMOTE"):  # a relative folder: from the current one
        settings[REMOTE] = _folder(os.environ["GITML_ARTIFACT_REMOTE"], os.getcwd())
    else:  # a relative folder in a settings file: from the top of the work tree, as git reads paths
        settings[REMOTE] = _folder(settings[REMOTE], store.workdir or store.commondir)
    if os.environ.get("GITML_ARTIFACT_TIMEOUT"):
        try:
            settings[TIMEOUT] = check_value(TIMEOUT, os.environ["GITML_ARTIFACT_TIMEOUT"])
        except InvalidInputError as e:
            raise InvalidInputError(f"GITML_ARTIFACT_TIMEOUT: {e}") from None
    return settings


def _folder(remote: str, base: str) -> str:
    """``remote`` with a relative or ``~`` folder made absolute; URLs as they are."""
    if "://" in remote:
        return remote
    return os.path.normpath(os.path.join(base, os.path.expanduser(remote)))


def _from_committed(store: GitStore) -> dict:
    """The parts of the artifact remote's place that the committed file decides:
    ``{"remote": ..., "storage_options": ...}`` as written there (none: {})."""
    committed = _settings(committed_path(store), committed=True)
    local = _settings(local_path(store), committed=False)
    decided = {}
    if REMOTE in committed and REMOTE not in local and not os.environ.get("GITML_ARTIFACT_REMOTE"):
        decided["remote"] = committed[REMOTE]
    if STORAGE_OPTIONS in committed and STORAGE_OPTIONS not in local:
        decided["storage_options"] = committed[STORAGE_OPTIONS]
    return decided


def unconfirmed(store: GitStore) -> str | None:
    """Why this clone may not write or delete on its artifact remote, or None when it may:
    the committed file decides where the remote is (its URL or storage options) and this
    clone has not confirmed those values (:func:`trust_committed`)."""
    decided = _from_committed(store)
    trusted = _settings(local_path(store), committed=False).get(TRUSTED, {})
    if all(trusted.get(k) == v for k, v in decided.items()):
        return None
    where = load(store)[REMOTE]
    changed = ", which changed since this clone confirmed it" if any(k in trusted for k in decided) else ""
    return (
        f"artifact remote {where} is set by the committed .gitml/config.yaml{changed}; this clone reads from it, "
        "but writes and deletes there only once you confirm it is your team's store: `gitml config --trust-committed` "
        "(or set your own: `gitml config artifacts.remote URL`)"
    )


_LOCAL_SCHEMES = ("file", "local")


def _scheme(url: str) -> str | None:
    """The scheme of an artifact remote's URL (``file`` for a folder); None for an fsspec
    chain (``zip://x::http://host/y``), whose links may each reach anywhere."""
    if "::" in url:
        return None
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def uncontacted(store: GitStore) -> str | None:
    """Why this clone must not contact its artifact remote at all, not even to read, or
    None when it may: the committed file decides where the remote is, this clone has not
    confirmed it (:func:`trust_committed`), and it can reach a network service: an
    ``http(s)://`` URL, a scheme none of this clone's own settings use (a folder is the
    one every clone uses), an fsspec chain, or storage options (an ``endpoint_url``
    sends any scheme's requests anywhere). A folder is read as it is."""
    decided = _from_committed(store)
    local = _settings(local_path(store), committed=False)
    trusted = local.get(TRUSTED, {})
    pending = {k: v for k, v in decided.items() if trusted.get(k) != v}
    if not pending:
        return None
    where = load(store)[REMOTE]
    scheme = _scheme(where)
    if scheme in _LOCAL_SCHEMES:
        return None
    own = [trusted.get("remote"), local.get(REMOTE), os.environ.get("GITML_ARTIFACT_REMOTE")]
    used = {*_LOCAL_SCHEMES, *(_scheme(u) for u in own if isinstance(u, str))}
    if "storage_options" not in pending and scheme not in ("http", "https") and scheme in used:
        return None  # a scheme this clone already reads and writes with its own settings
    what = "its storage options" if "storage_options" in pending else "its URL"
    return (
        f"artifact remote {where} is set by the committed .gitml/config.yaml ({what}) and reaches a network service, "
        "so gitml does not contact it, not even to read, until you confirm it is your team's store: "
        "`gitml config --trust-committed` (or set your own: `gitml config artifacts.remote URL`)"
    )


def trust_committed(store: GitStore) -> dict:
    """Confirm, for this clone, the artifact remote the committed file sets (its URL and
    storage options as written now): writes and deletes there are then allowed. Returns
    what was confirmed."""
    decided = _from_committed(store)
    if not decided:
        raise InvalidInputError(
            "the committed .gitml/config.yaml sets no artifact remote that this clone uses (nothing to trust)"
        )
    _write(local_path(store), TRUSTED, decided)
    return decided


def set_value(store: GitStore, key: str, value, *, committed: bool = False) -> str:
    """Set ``key`` in the per-clone file (default) or the committed one; returns the file.

    The value is checked first (:class:`InvalidInputError` says what the key takes); the
    file's other settings are kept as they are, even bad ones, so a bad value can be
    replaced. Setting the committed remote or options confirms them for this clone.
    """
    value = check_value(key, value)
    if committed:
        check_no_credentials(key, value)
        path = committed_path(store)
        if path is None:
            raise InvalidInputError("a bare repository has no work tree for the committed .gitml/config.yaml")
    else:
        path = local_path(store)
    _write(path, key, value)
    if committed and key in (REMOTE, STORAGE_OPTIONS):  # you wrote it: you confirmed it
        trusted = _settings(local_path(store), committed=False).get(TRUSTED, {})
        _write(local_path(store), TRUSTED, {**trusted, key.split(".", 1)[1]: value})
    return path


def _write(path: str, key: str, value) -> None:
    """Set one key in a settings file, replacing the file at once."""
    data = _read(path)
    section, name = key.split(".", 1)
    if not isinstance(data.get(section), dict):
        data[section] = {}  # absent, or not a mapping (which holds no setting): made one
    data[section][name] = value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(yamlout.dump(data))
    os.replace(tmp, path)


def check_no_credentials(key: str, value) -> None:
    """Refuse a value for the committed file that carries credentials: a URL's user and
    password or a secret-named query parameter (``?sig=``, ``?access_token=``), or a
    secret-named option at any depth of the storage options (``client_kwargs``' too)."""
    if isinstance(value, str):
        if _URL_CREDENTIALS.match(value):
            raise InvalidInputError(f"{key} holds credentials; keep them out of committed files (use the environment)")
        for name in re.findall(r"[?&;]([^=&;#]+)=", value.split("#", 1)[0]):
            if _SECRET_KEY.search(name) or name.lower() in ("sig", "signature"):
                raise InvalidInputError(
                    f"{key} holds the query parameter {name!r}; credentials never go in the committed file "
                    "(use the environment)"
                )
    elif isinstance(value, dict):
        for option, inner in value.items():
            if _SECRET_KEY.search(str(option)):
                raise InvalidInputError(
                    f"{key} holds {option!r}; credentials never go in the committed file (use the environment)"
                )
            check_no_credentials(key, inner)
    elif isinstance(value, list):
        for inner in value:
            check_no_credentials(key, inner)

"""gitml's settings: committed ``.gitml/config.yaml``, per-clone ``.git/gitml/config.yaml``,
then the environment, each overriding the one before.

    artifacts.remote            fsspec URL of the artifact remote
                                (default: ~/.local/share/gitml/artifacts, a local folder)
    artifacts.inline_max_bytes  artifacts up to this size are also stored in the run's
                                git tree (default 65536)
    artifacts.storage_options   fsspec options (e.g. endpoint_url); never credentials
                                in the committed file

``GITML_ARTIFACT_REMOTE`` overrides ``artifacts.remote``.
"""

from __future__ import annotations

import os
import re
from typing import Any


from gitml.errors import InvalidInputError
from gitml.store.git import GitStore
from gitml.store import yamlout

KEYS = ("artifacts.remote", "artifacts.inline_max_bytes", "artifacts.storage_options")
DEFAULT_INLINE_MAX_BYTES = 65536
_SECRET_KEY = re.compile(r"secret|password|token|key|credential", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"^[a-z0-9+.-]+://[^/@]*:[^/@]*@", re.IGNORECASE)


def default_remote() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "gitml", "artifacts")


def committed_path(store: GitStore) -> str | None:
    return os.path.join(store.workdir, ".gitml", "config.yaml") if store.workdir else None


def local_path(store: GitStore) -> str:
    return os.path.join(store.gitml_dir, "config.yaml")


def _read(path: str | None) -> dict:
    import yaml

    if not path or not os.path.exists(path):
        return {}
    try:
        data = yaml.safe_load(open(path, "rb").read())
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must be a mapping of settings")
    return data


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "artifacts.storage_options":
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def load(store: GitStore) -> dict:
    """The effective settings, flat (``{"artifacts.remote": ...}``), defaults filled in."""
    settings: dict[str, Any] = {"artifacts.remote": default_remote(), "artifacts.inline_max_bytes": DEFAULT_INLINE_MAX_BYTES, "artifacts.storage_options": {}}
    settings.update(_flat(_read(committed_path(store))))
    settings.update(_flat(_read(local_path(store))))
    remote = str(settings["artifacts.remote"])
    if os.environ.get("GITML_ARTIFACT_REMOTE"):  # a relative folder: from the current one
        remote = _folder(os.environ["GITML_ARTIFACT_REMOTE"], os.getcwd())
    else:  # a relative folder in a settings file: from the top of the work tree, as git reads paths
        remote = _folder(remote, store.workdir or store.commondir)
    settings["artifacts.remote"] = remote
    try:
        settings["artifacts.inline_max_bytes"] = int(settings["artifacts.inline_max_bytes"])
    except (TypeError, ValueError):
        raise InvalidInputError("artifacts.inline_max_bytes must be a whole number of bytes") from None
    if not isinstance(settings["artifacts.storage_options"], dict):
        raise InvalidInputError("artifacts.storage_options must be a mapping")
    return settings


def _folder(remote: str, base: str) -> str:
    """``remote`` with a relative or ``~`` folder made absolute; URLs as they are."""
    if "://" in remote:
        return remote
    return os.path.normpath(os.path.join(base, os.path.expanduser(remote)))


def set_value(store: GitStore, key: str, value, *, committed: bool = False) -> str:
    """Set ``key`` in the per-clone file (default) or the committed one; returns the file."""
    if key not in KEYS:
        raise InvalidInputError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
    if committed:
        check_no_credentials(key, value)
        path = committed_path(store)
        if path is None:
            raise InvalidInputError("a bare repository has no work tree for the committed .gitml/config.yaml")
    else:
        path = local_path(store)
    data = _read(path)
    section, name = key.split(".", 1)
    data.setdefault(section, {})[name] = value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(yamlout.dump(data))
    return path


def check_no_credentials(key: str, value) -> None:
    if isinstance(value, str) and _URL_CREDENTIALS.match(value):
        raise InvalidInputError(f"{key} holds credentials; keep them out of committed files (use the environment)")
    if isinstance(value, dict):
        for option in value:
            if _SECRET_KEY.search(str(option)):
                raise InvalidInputError(
                    f"{key} holds {option!r}; credentials never go in the committed file (use the environment)"
                )

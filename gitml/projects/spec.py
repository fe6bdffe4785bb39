"""The ``MLproject`` file, in MLflow's format, and the command an entry point runs.

>>> project = load_project("path/to/project")
>>> project.entry_point("main").command_for({"alpha": "0.5"}, cwd=os.getcwd())
'python train.py --alpha 0.5'

Parameter values reach the command as data: each is checked against its type and
substituted shell-quoted (``shlex.quote``), as MLflow does, so ``'1; rm -rf ~'`` is one
argument, never a command.
"""

from __future__ import annotations

import math
import os
import shlex
import string
from dataclasses import dataclass, field
from urllib.parse import urlparse

from gitml.errors import EntryPointNotFoundError, InvalidInputError, ParameterError, ProjectSpecError

SPEC_FILE = "MLproject"
PARAMETER_TYPES = ("string", "float", "int", "path", "uri")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    default: str | None = None

    def value_of(self, given: str | None, cwd: str) -> str:
        """The value the command gets (``given``, else the default), checked against the
        type; a ``path`` becomes absolute (relative to ``cwd``, where gitml was started)."""
        value = given if given is not None else self.default
        if value is None:
            raise ParameterError(self.name, f"required ({self.type}, no default): pass -P {self.name}=VALUE")
        if self.type == "float":
            try:
                number = float(value)
            except ValueError:
                raise ParameterError(self.name, f"{value!r} is not a float") from None
            if math.isnan(number) and value.strip().lower() not in ("nan", "+nan", "-nan"):
                raise ParameterError(self.name, f"{value!r} is not a float")
        elif self.type == "int":
            try:
                int(value)
            except ValueError:
                raise ParameterError(self.name, f"{value!r} is not an int") from None
        elif self.type == "uri":
            if not urlparse(value).scheme:  # MLflow's data.is_uri
                raise ParameterError(self.name, f"{value!r} is not a URI (no scheme such as file:// or s3://)")
        elif self.type == "path":
            if urlparse(value).scheme not in ("", "file"):
                raise ParameterError(self.name, f"{value!r}: only local paths are supported (gitml downloads no URI)")
            local = urlparse(value).path if value.startswith("file:") else value
            local = os.path.join(cwd, os.path.expanduser(local))
            if not os.path.exists(local):
                raise ParameterError(self.name, f"{value!r}: no such file or folder")
            return os.path.abspath(local)
        return value


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def values(self, given: dict[str, str], *, cwd: str) -> tuple[dict[str, str], dict[str, str]]:
        """``(declared, extra)``: the declared parameters' checked values (defaults
        filled in) and the given ones the entry point does not declare."""
        for key, value in given.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidInputError(f"parameter {key!r}: names and values are strings, not {type(value).__name__}")
        declared = {name: p.value_of(given.get(name), cwd) for name, p in self.parameters.items()}
        extra = {k: v for k, v in given.items() if k not in self.parameters}
        return declared, extra

    def command_for(self, given: dict[str, str], *, cwd: str) -> str:
        """The shell command: placeholders replaced by quoted values, and each
        undeclared parameter appended as ``--key value``, as MLflow does."""
        declared, extra = self.values(given, cwd=cwd)
        command = self.command.format_map({k: shlex.quote(v) for k, v in declared.items()})
        for key, value in extra.items():
            command += f" --{shlex.quote(key)} {shlex.quote(value)}"
        return command


@dataclass(frozen=True)
class Project:
    """A project folder: its name, entry points and environment file (relative paths)."""

    path: str
    name: str
    entry_points: dict[str, EntryPoint] = field(default_factory=dict)
    python_env: str | None = None
    conda_env: str | None = None

    def entry_point(self, name: str) -> EntryPoint:
        """The entry point ``name``, or a ``.py``/``.sh`` file of the project run with
        ``python``/``$SHELL`` (MLflow's rule). Raises EntryPointNotFoundError."""
        if name in self.entry_points:
            return self.entry_points[name]
        if name.endswith((".py", ".sh")) and _inside(self.path, name) and os.path.isfile(os.path.join(self.path, name)):
            runner = "python" if name.endswith(".py") else os.environ.get("SHELL", "bash")
            return EntryPoint(name, f"{shlex.quote(runner)} {shlex.quote(name)}")
        raise EntryPointNotFoundError(self.name, name, sorted(self.entry_points))

    @property
    def env_file(self) -> str | None:
        return self.python_env or self.conda_env


def load_project(path: str) -> Project:
    """Read ``path/MLproject``; a folder without one is a project of ``.py``/``.sh``
    entry points whose environment is ``python_env.yaml`` or ``conda.yaml`` if present.
    Raises ProjectSpecError naming the field that is wrong."""
    spec_path = os.path.join(path, SPEC_FILE)
    name = os.path.basename(os.path.normpath(path))
    if not os.path.isfile(spec_path):
        python_env = "python_env.yaml" if os.path.isfile(os.path.join(path, "python_env.yaml")) else None
        conda_env = "conda.yaml" if not python_env and os.path.isfile(os.path.join(path, "conda.yaml")) else None
        return Project(path, name, python_env=python_env, conda_env=conda_env)
    data = read_yaml(spec_path, SPEC_FILE)
    if not isinstance(data, dict):
        raise ProjectSpecError(SPEC_FILE, "is not a mapping of fields (name, entry_points, python_env or conda_env)")
    known = {"name", "entry_points", "python_env", "conda_env", "docker_env"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ProjectSpecError(SPEC_FILE, f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    if "docker_env" in data:
        raise ProjectSpecError(SPEC_FILE, "docker_env is not supported by gitml (python_env or conda_env are)")
    if "python_env" in data and "conda_env" in data:
        raise ProjectSpecError(SPEC_FILE, "give python_env or conda_env, not both")
    if data.get("name") is not None:
        name = _text(data["name"], "name")
    envs = {key: _env_file(path, data[key], key) for key in ("python_env", "conda_env") if data.get(key) is not None}
    entries = data.get("entry_points") or {}
    if not isinstance(entries, dict):
        raise ProjectSpecError(SPEC_FILE, "entry_points is not a mapping of names to entry points")
    points = {_text(k, "entry point name"): _entry_point(str(k), v) for k, v in entries.items()}
    return Project(path, name, points, envs.get("python_env"), envs.get("conda_env"))


def _entry_point(name: str, data: object) -> EntryPoint:
    where = f"entry point {name!r}"
    if not isinstance(data, dict):
        raise ProjectSpecError(SPEC_FILE, f"{where} is not a mapping with a command")
    unknown = sorted(str(k) for k in data if k not in ("command", "parameters"))
    if unknown:
        raise ProjectSpecError(SPEC_FILE, f"{where}: unknown field {unknown[0]!r} (fields: command, parameters)")
    if not isinstance(data.get("command"), str) or not data["command"].strip():
        raise ProjectSpecError(SPEC_FILE, f"{where} has no command")
    raw = data.get("parameters") or {}
    if not isinstance(raw, dict):
        raise ProjectSpecError(SPEC_FILE, f"{where}: parameters is not a mapping")
    params = {_text(k, f"{where} parameter name"): _parameter(where, str(k), v) for k, v in raw.items()}
    command = data["command"]
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as e:
        raise ProjectSpecError(
            SPEC_FILE, f"{where}: command {command!r} is malformed ({e}; write braces as {{{{ }}}})"
        ) from None
    for placeholder in fields:
        if placeholder not in params:
            raise ProjectSpecError(
                SPEC_FILE, f"{where}: command names {{{placeholder}}}, which is not one of its parameters"
            )
    return EntryPoint(name, command, params)


def _parameter(where: str, name: str, data: object) -> Parameter:
    if isinstance(data, str):  # `alpha: float`
        data = {"type": data}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProjectSpecError(SPEC_FILE, f"{where}: parameter {name!r} is not a type or a mapping (type, default)")
    kind = data.get("type", "string")
    if kind not in PARAMETER_TYPES:
        raise ProjectSpecError(
            SPEC_FILE, f"{where}: parameter {name!r} has type {kind!r}, not one of {', '.join(PARAMETER_TYPES)}"
        )
    default = data.get("default")
    if isinstance(default, (dict, list)):
        raise ProjectSpecError(SPEC_FILE, f"{where}: parameter {name!r} has a default that is not a single value")
    return Parameter(name, kind, None if default is None else str(default))


def _env_file(path: str, value: object, key: str) -> str:
    rel = _text(value, key)
    if not _inside(path, rel):
        raise ProjectSpecError(SPEC_FILE, f"{key} {rel!r} is not a file inside the project")
    if not os.path.isfile(os.path.join(path, rel)):
        raise ProjectSpecError(SPEC_FILE, f"{key} names {rel!r}, which is not in the project")
    return rel


def _inside(root: str, rel: str) -> bool:
    if os.path.isabs(rel):
        return False
    full = os.path.realpath(os.path.join(root, rel))
    return full.startswith(os.path.realpath(root) + os.sep)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ProjectSpecError(SPEC_FILE, f"{what} {value!r} is not a non-empty line of text")
    return value


def read_yaml(path: str, what: str) -> object:
    """A YAML file of the project, read with the limits of run records (size, nesting,
    nodes; no anchors): a project fetched from a URL is anyone's input."""
    from gitml.errors import CorruptRecordError
    from gitml.yamlread import read_yaml_file

    try:
        return read_yaml_file(path, what)
    except CorruptRecordError as e:
        raise ProjectSpecError(what, e.detail) from None
    except OSError as e:
        raise ProjectSpecError(what, f"cannot be read ({e.strerror or e})") from None

"""Where a project's command runs: ``local``, ``virtualenv``, ``uv`` or ``conda``.

A built environment is cached under :func:`~gitml.projects.source.cache_dir` (``envs/``),
named by a hash of its specification (the interpreter, the dependencies, the
contents of the requirement files they name; for conda the lock file), so the second
run of a project reuses it. Each run makes the running gitml importable inside: a
``.pth`` file in the environment's site-packages names a folder of links to the
running gitml and its own dependencies, appended after the environment's packages
(which win), so a project's script can ``import gitml`` with the very version that
started it, without installing it there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from gitml.errors import InvalidInputError, ProjectEnvError, ProjectSpecError
from gitml.projects import condalock
from gitml.projects.spec import Project, read_yaml

MANAGERS = ("local", "virtualenv", "uv", "conda")
Progress = Callable[[str], None]  # told each step of a build and each package, one line each
READY = ".gitml-ready"
PTH_FILE = "gitml-running.pth"


@dataclass
class Environment:
    """How to run a command in an environment: its manager, the folder whose ``bin``
    goes first on PATH (None: PATH as it is), extra variables, and whether the build
    was reused."""

    manager: str
    prefix: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    reused: bool = False

    def env(self, base: dict[str, str]) -> dict[str, str]:
        out = dict(base)
        if self.prefix is not None:
            out["PATH"] = os.path.join(self.prefix, "bin") + os.pathsep + base.get("PATH", "")
        out.update(self.variables)
        return out


def default_manager(project: Project) -> str:
    """MLflow's choice: the environment the MLproject names, else the local one."""
    if project.python_env:
        return "virtualenv"
    if project.conda_env:
        return "conda"
    return "local"


def prepare(project: Project, manager: str | None, *, cache: str, progress: Progress | None = None) -> Environment:
    """The environment ``manager`` (default: :func:`default_manager`) for ``project``,
    built or reused. ``progress`` is told each step of a build (with the log's path) and
    each package the installer reports, one line each. Raises InvalidInputError (unknown
    manager, environment file mismatch), ProjectSpecError (bad environment file),
    ProjectEnvError (build failed, tool missing)."""
    manager = manager or default_manager(project)
    if manager not in MANAGERS:
        raise InvalidInputError(f"env manager {manager!r} is not one of {', '.join(MANAGERS)}")
    if manager == "local":
        # `python` in the command is the interpreter running gitml, which can import it
        return Environment(
            "local", variables={"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        )
    if manager == "conda":
        return _conda(project, cache, progress)
    if project.conda_env:
        raise InvalidInputError(
            f"project {project.name!r} names a conda environment ({project.conda_env}): "
            "run it with --env-manager conda (or local)"
        )
    spec = python_env(project)
    return _venv(project, spec, manager, cache, progress)


@dataclass(frozen=True)
class PythonEnv:
    """MLflow's ``python_env.yaml``: the Python version and pip requirements."""

    python: str
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()


def python_env(project: Project) -> PythonEnv:
    """The project's python_env.yaml, or the running Python and no requirements."""
    if not project.python_env:
        return PythonEnv(f"{sys.version_info.major}.{sys.version_info.minor}")
    where = project.python_env
    data = read_yaml(os.path.join(project.path, where), where)
    if not isinstance(data, dict):
        raise ProjectSpecError(where, "is not a mapping (python, build_dependencies, dependencies)")
    unknown = sorted(str(k) for k in data if k not in ("python", "build_dependencies", "dependencies"))
    if unknown:
        raise ProjectSpecError(
            where, f"unknown field {unknown[0]!r} (fields: python, build_dependencies, dependencies)"
        )
    version = str(data.get("python") or "")
    if not re.fullmatch(r"3\.\d+(\.\d+)?", version):
        raise ProjectSpecError(where, f"python {data.get('python')!r} is not a Python 3 version such as 3.11")
    lists = {}
    for key in ("build_dependencies", "dependencies"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and "\n" not in v for v in value):
            raise ProjectSpecError(where, f"{key} is not a list of requirement lines")
        lists[key] = tuple(value)
    return PythonEnv(version, lists["build_dependencies"], lists["dependencies"])


def interpreter(version: str) -> str:
    """A Python of ``version``'s major.minor: the one running gitml, else ``python3.X`` on PATH."""
    major_minor = ".".join(version.split(".")[:2])
    if f"{sys.version_info.major}.{sys.version_info.minor}" == major_minor:
        return sys.executable
    found = shutil.which(f"python{major_minor}")
    if found is None:
        raise ProjectEnvError(
            f"the project asks for Python {version}, and no python{major_minor} is on PATH: install it"
        )
    return found


def _requirements(project: Project, lines: tuple[str, ...]) -> str:
    """The requirement lines as a file's text, ``-r``/``-c`` paths made absolute
    (they are relative to the project, and the file lives elsewhere)."""
    out = []
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ("-r", "--requirement", "-c", "--constraint"):
            line = f"{parts[0]} {os.path.join(project.path, parts[1].strip())}"
        out.append(line)
    return "\n".join(out) + "\n"


def _files_named(project: Project, lines: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each requirement file the lines name (part of the environment's hash)."""
    out = {}
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ("-r", "--requirement", "-c", "--constraint"):
            path = os.path.join(project.path, parts[1].strip())
            try:
                with open(path, "rb") as f:
                    out[parts[1].strip()] = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                raise ProjectSpecError(
                    project.python_env or "python_env.yaml", f"names {parts[1].strip()!r}: {e.strerror}"
                ) from None
    return out


def spec_hash(project: Project, spec: PythonEnv, manager: str, python: str) -> str:
    """What names a built environment: the manager, the interpreter, the requirements."""
    lines = spec.build_dependencies + spec.dependencies
    key = {
        "manager": manager,
        "python": os.path.realpath(python),
        "build": list(spec.build_dependencies),
        "deps": list(spec.dependencies),
        "files": _files_named(project, lines),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _venv(project: Project, spec: PythonEnv, manager: str, cache: str, progress: Progress | None) -> Environment:
    uv = None
    if manager == "uv":
        uv = shutil.which("uv")
        if uv is None:
            raise ProjectEnvError("--env-manager uv needs uv, which is not on PATH: pip install uv")
    python = interpreter(spec.python)
    prefix = os.path.join(cache, "envs", f"{manager}-{spec_hash(project, spec, manager, python)}")

    def build() -> None:
        if uv is not None:
            _call(
                [uv, "venv", "--quiet", "--python", python, prefix],
                prefix,
                "creating the environment (uv venv)",
                progress,
            )
        else:
            pip = [] if spec.build_dependencies or spec.dependencies else ["--without-pip"]  # nothing to install
            _call([python, "-m", "venv", *pip, prefix], prefix, "creating the environment (python -m venv)", progress)
        env_python = os.path.join(prefix, "bin", "python")
        for what, lines in (("build dependencies", spec.build_dependencies), ("dependencies", spec.dependencies)):
            if not lines:
                continue
            requirements = os.path.join(prefix, ".gitml-requirements.txt")
            with open(requirements, "w") as f:
                f.write(_requirements(project, lines))
            step = f"installing the {what} ({len(lines)} line{'s' if len(lines) > 1 else ''} of requirements)"
            if uv is not None:
                _call(
                    [uv, "pip", "install", "--python", env_python, "-r", requirements],
                    prefix,
                    step,
                    progress,
                    cwd=project.path,
                )
            else:
                _call(
                    [
                        env_python,
                        "-m",
                        "pip",
                        "install",
                        "--progress-bar",
                        "off",
                        "--disable-pip-version-check",
                        "-r",
                        requirements,
                    ],
                    prefix,
                    step,
                    progress,
                    cwd=project.path,
                )

    reused = _built(prefix, build)
    link_gitml(prefix, cache)
    return Environment(manager, prefix, {"VIRTUAL_ENV": prefix}, reused)


def _conda(project: Project, cache: str, progress: Progress | None) -> Environment:
    if not project.conda_env:
        raise InvalidInputError(f"project {project.name!r} names no conda_env: there is no conda environment to build")
    lock_path = os.path.join(project.path, os.path.dirname(project.conda_env), condalock.LOCK_FILE)
    lock = condalock.read_lock(lock_path)
    platform = condalock.current_platform()
    condalock.packages_for(lock, platform)  # refuses a lock without this platform, before any tool is looked for
    tool = shutil.which("conda-lock")
    if tool is None:
        raise ProjectEnvError(
            "--env-manager conda installs from conda-lock.yml with conda-lock, which is not on PATH: "
            'pip install "gitml[conda]" (it also needs conda, mamba or micromamba)'
        )
    with open(lock_path, "rb") as f:
        digest = hashlib.sha256(f.read() + platform.encode()).hexdigest()[:20]
    prefix = os.path.join(cache, "envs", f"conda-{digest}")
    reused = _built(
        prefix,
        lambda: _call(
            condalock.install_command(tool, lock_path, prefix),
            prefix,
            f"installing {condalock.LOCK_FILE} for {platform} (conda-lock)",
            progress,
        ),
    )
    link_gitml(prefix, cache)
    return Environment("conda", prefix, {"CONDA_PREFIX": prefix}, reused)


def _built(prefix: str, build) -> bool:
    """Build the environment at ``prefix`` once (under a lock file; a half-built one is
    removed and built again); returns whether it was already there."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with open(prefix + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(prefix, READY)):
            return True
        shutil.rmtree(prefix, ignore_errors=True)
        try:
            build()
        except BaseException:
            shutil.rmtree(prefix, ignore_errors=True)
            raise
        with open(os.path.join(prefix, READY), "w") as f:
            f.write("built by gitml\n")
        return False


def _call(argv: list[str], prefix: str, step: str, progress: Progress | None, *, cwd: str | None = None) -> None:
    """Run one build step (an argv list, no shell); its output goes to ``prefix.log``, and
    ``progress`` hears the step, then each package the installer names as it goes."""
    if progress is not None:
        progress(f"{step}; the log is {prefix}.log")
    with open(prefix + ".log", "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            process = subprocess.Popen(
                argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as e:
            raise ProjectEnvError(f"cannot run {argv[0]}: {e.strerror or e}") from None
        assert process.stdout is not None
        with process:
            for line in process.stdout:
                log.write(line)
                said = _installer_says(line)
                if said and progress is not None:
                    log.flush()
                    progress(said)
        returncode = process.returncode
    if returncode != 0:
        with open(prefix + ".log", "rb") as f:
            lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
        raise ProjectEnvError(
            f"building the environment failed: {os.path.basename(argv[0])} exited with status {returncode}"
            f" ({last[:200]}); the whole output is in {prefix}.log"
        )


_INSTALLER_LINE = re.compile(
    rb"^\s*(Collecting|Processing|Downloading|Building wheel for|Installing collected packages:|Successfully installed"
    rb"|Resolved|Prepared|Installed|Uninstalled|\+) ?(.*)$"
)


def _installer_says(line: bytes) -> str | None:
    """The package news in one line of pip's, uv's or conda-lock's output ("collecting numpy==2.1"),
    or None for the rest (which stays in the log)."""
    found = _INSTALLER_LINE.match(line.rstrip())
    if found is None:
        return None
    verb, rest = found.group(1).decode(), found.group(2).decode("utf-8", "replace").strip()
    verb = "installing" if verb == "+" else verb.rstrip(":").lower()
    return f"{verb} {rest[:160]}".strip()


# -- the running gitml inside an environment ------------------------------------
def gitml_modules() -> dict[str, str]:
    """``{top-level name: path}`` of the running gitml and of the modules of its
    dependencies (recursively, extras left out)."""
    import importlib.metadata as md

    out = {"gitml": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # the package holding projects/
    seen = {"gitml"}
    todo = ["gitml"]
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for requirement in dist.requires or []:
            if "extra" in requirement.partition(";")[2]:
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            if match and match.group(0).lower() not in seen:
                seen.add(match.group(0).lower())
                todo.append(match.group(0))
        if name == "gitml":
            continue
        for top in {str(f).split("/")[0] for f in dist.files or []}:
            if top.endswith((".dist-info", ".egg-info", ".pth", ".data")) or top in ("..", "__pycache__", "bin"):
                continue
            path = str(dist.locate_file(top))
            if os.path.exists(path):
                out.setdefault(top, path)
    return out


def link_gitml(prefix: str, cache: str) -> str | None:
    """Point the environment's site-packages at a folder of links to the running
    gitml and its dependencies (see the module's docstring); returns that folder."""
    import glob

    sites = sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages")))
    if not sites:
        return None
    modules = gitml_modules()
    digest = hashlib.sha256(json.dumps(modules, sort_keys=True).encode()).hexdigest()[:16]
    links = os.path.join(cache, "gitml-links", digest)
    if not os.path.isdir(links):
        os.makedirs(os.path.dirname(links), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(links))
        for name, path in modules.items():
            os.symlink(path, os.path.join(staging, name))
        try:
            os.rename(staging, links)
        except OSError:  # made meanwhile by another run
            shutil.rmtree(staging, ignore_errors=True)
    for site in sites:
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=site)
        with os.fdopen(fd, "w") as f:
            f.write(links + "\n")
        os.replace(temporary, os.path.join(site, PTH_FILE))
    return links

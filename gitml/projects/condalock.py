"""conda environments from a conda-lock lock file (``conda-lock.yml``, format version 1).

``gitml env lock`` solves ``conda.yaml`` into ``conda-lock.yml`` with conda-lock;
``--env-manager conda`` installs exactly the locked packages of this platform with
``conda-lock install``. Both run conda-lock as a program (an argv list, never a
shell string); it needs conda, mamba or micromamba and a reachable channel.

>>> lock = read_lock("conda-lock.yml")
>>> [p["name"] for p in packages_for(lock, "linux-64")]
['python', 'numpy', ...]
"""

from __future__ import annotations

import os
import platform as _platform
import sys

from gitml.errors import ProjectSpecError
from gitml.projects.spec import read_yaml

LOCK_FILE = "conda-lock.yml"
_MACHINES = {
    ("linux", "x86_64"): "linux-64",
    ("linux", "aarch64"): "linux-aarch64",
    ("linux", "ppc64le"): "linux-ppc64le",
    ("darwin", "x86_64"): "osx-64",
    ("darwin", "arm64"): "osx-arm64",
    ("win32", "amd64"): "win-64",
}
_PACKAGE_FIELDS = ("name", "version", "manager", "platform", "url", "hash")


def current_platform() -> str:
    """conda's name for this machine (``linux-64``, ``osx-arm64``, ...)."""
    key = (sys.platform, _platform.machine().lower())
    return _MACHINES.get(key, f"{key[0]}-{key[1]}")


def read_lock(path: str) -> dict:
    """The lock file at ``path``, checked: version 1, its platforms, and each package's
    name, version, manager (conda or pip), platform, url and hash. Raises
    ProjectSpecError naming the file and what is wrong (or that it is missing)."""
    where = os.path.basename(path)
    if not os.path.isfile(path):
        raise ProjectSpecError(
            where, f"not found at {path}: run `gitml env lock` to solve conda.yaml into it (needs conda-lock)"
        )
    data = read_yaml(path, where)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ProjectSpecError(where, "is not a conda-lock lock file of version 1 (conda-lock >= 2 writes one)")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not _strings(metadata.get("platforms")):
        raise ProjectSpecError(where, "metadata.platforms is not a list of platforms")
    packages = data.get("package")
    if not isinstance(packages, list):
        raise ProjectSpecError(where, "package is not a list of packages")
    for i, package in enumerate(packages):
        if not isinstance(package, dict):
            raise ProjectSpecError(where, f"package #{i + 1} is not a mapping")
        missing = [k for k in _PACKAGE_FIELDS if package.get(k) in (None, "")]
        if missing:
            raise ProjectSpecError(where, f"package #{i + 1} ({package.get('name', '?')}) has no {missing[0]}")
        if package["manager"] not in ("conda", "pip"):
            raise ProjectSpecError(
                where, f"package {package['name']!r} has manager {package['manager']!r}, not conda or pip"
            )
        if not isinstance(package["hash"], dict) or not (package["hash"].get("sha256") or package["hash"].get("md5")):
            raise ProjectSpecError(where, f"package {package['name']!r} has no sha256 or md5 hash")
        if package["platform"] not in metadata["platforms"]:
            raise ProjectSpecError(
                where, f"package {package['name']!r} is for {package['platform']}, not a platform of the file"
            )
    return data


def packages_for(lock: dict, platform: str, *, categories: tuple[str, ...] = ("main",)) -> list[dict]:
    """The packages installed on ``platform``: conda's first, then pip's, in file order
    (optional ones only when their category is asked for). Raises ProjectSpecError
    when the lock file has no entry for that platform."""
    platforms = lock["metadata"]["platforms"]
    if platform not in platforms:
        raise ProjectSpecError(
            LOCK_FILE,
            f"locks {', '.join(platforms)}, not this machine's {platform}: run `gitml env lock -p {platform}`",
        )
    chosen = [
        p
        for p in lock["package"]
        if p["platform"] == platform
        and (not p.get("optional") or p.get("category", "main") in categories)
        and p.get("category", "main") in categories
    ]
    return [p for p in chosen if p["manager"] == "conda"] + [p for p in chosen if p["manager"] == "pip"]


def install_command(tool: str, lock_path: str, prefix: str) -> list[str]:
    """The argv that installs the lock file's packages for this platform into ``prefix``."""
    return [tool, "install", "--prefix", prefix, lock_path]


def lock_command(tool: str, env_file: str, lock_path: str, platforms: list[str]) -> list[str]:
    """The argv that solves ``env_file`` (conda.yaml) into ``lock_path`` for ``platforms``."""
    argv = [tool, "lock", "--file", env_file, "--lockfile", lock_path]
    for platform in platforms:
        argv += ["--platform", platform]
    return argv


def _strings(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def lock(project_path: str, platforms: list[str] | None = None) -> str:
    """Solve the project's conda environment file into ``conda-lock.yml`` beside it,
    for ``platforms`` (default: this machine's); returns the lock file's path. Raises
    InvalidInputError (no conda_env), ProjectEnvError (conda-lock missing or failing)."""
    import shutil
    import subprocess

    from gitml.errors import InvalidInputError, ProjectEnvError
    from gitml.projects.spec import load_project

    project = load_project(project_path)
    if not project.conda_env:
        raise InvalidInputError(f"project {project.name!r} names no conda_env (conda.yaml) to lock")
    tool = shutil.which("conda-lock")
    if tool is None:
        raise ProjectEnvError('gitml env lock runs conda-lock, which is not on PATH: pip install "gitml[conda]"')
    env_file = os.path.join(project.path, project.conda_env)
    lock_path = os.path.join(os.path.dirname(env_file), LOCK_FILE)
    argv = lock_command(tool, env_file, lock_path, platforms or [current_platform()])
    done = subprocess.run(argv, cwd=project.path, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise ProjectEnvError(
            f"conda-lock failed (status {done.returncode}): {lines[-1][:300] if lines else 'no output'}"
        )
    read_lock(lock_path)  # what it wrote is what an install reads
    return lock_path

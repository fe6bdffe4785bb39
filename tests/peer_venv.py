"""A peer (MLflow, GTO) in a venv of its own, made by its ``benchmarks/setup_*.sh`` when missing.

Peers never share gitml's venv: their dependencies must not leak into the code under test.
The venvs live in a cache outside the clone (``benchmarks/peers.py`` says where), one per tool
and version, so a fresh clone reuses them and the suite writes no gigabytes into the checkout.
The setup scripts are idempotent and quick once the venv exists; one pytest process at a
time runs a script, under a lock file beside the venv (xdist's workers, other clones' runs), and a
process that finds it held waits, then reuses the venv. ``conftest.py`` builds the venvs the
collected tests need before the first test runs, so an install is never cut by a test's timeout.
"""

from __future__ import annotations

import fcntl
import os
import subprocess

from benchmarks.peers import peer_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILED: dict[str, str] = {}  # package -> why its venv could not be made (this session)
READY: set[str] = set()  # the peer pythons checked in this session (each is checked once)


def installed_version(python: str, package: str, also: tuple[str, ...] = ()) -> str | None:
    """The version of ``package`` that ``python`` imports, or None when it (or one of ``also``) is missing."""
    if not os.path.exists(python):
        return None
    probe = subprocess.run(
        [
            python,
            "-c",
            f"import importlib.metadata as m; [m.version(p) for p in {also!r}]; print(m.version({package!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_peer_python(
    package: str, version: str, *, setup: str, version_env: str, skip_env: str, also: tuple[str, ...] = ()
) -> str:
    """Path of the peer venv's python holding ``package==version``, running ``setup`` first if needed."""
    if package in FAILED:  # the install already failed once in this session: say so again, at once
        raise RuntimeError(FAILED[package])
    venv = peer_venv(package, version)
    python = os.path.join(venv, "bin", "python")
    if python in READY:
        return python
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    # Even the check waits for the lock: while another process (an xdist worker, another clone's
    # run) installs, the package can already be importable with its dependencies still arriving.
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(python, package, also) != version:
            done = subprocess.run(
                ["bash", os.path.join(ROOT, setup)],
                capture_output=True,
                text=True,
                env={**os.environ, version_env: version},
            )
            if done.returncode != 0:
                FAILED[package] = (
                    f"installing {package}=={version} into {venv} ({setup}) failed "
                    f"(exit {done.returncode}); set {skip_env}=1 to skip "
                    f"the {package} comparisons:\n{done.stderr[-2000:]}"
                )
                raise RuntimeError(FAILED[package])
    READY.add(python)
    return python

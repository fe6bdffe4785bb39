"""The ``gto`` of a venv holding GTO 1.10.1, for tests that check GTO reads gitml's registry.

GTO lives in its own venv (``benchmarks/.venv-gto``, made by ``benchmarks/setup_gto.sh``
when missing, under a lock file), never in gitml's. ``GITML_SKIP_GTO=1`` skips these tests.
"""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(ROOT, "benchmarks", "setup_gto.sh")
VENV = os.path.join(ROOT, "benchmarks", ".venv-gto")
GTO_VERSION = "1.10.1"


def _installed(python: str) -> str | None:
    if not os.path.exists(python):
        return None
    probe = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('gto'))"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_gto_python() -> str:
    """Path of the venv's python with GTO 1.10.1 (its ``gto`` is beside it)."""
    python = os.path.join(VENV, "bin", "python")
    if _installed(python) == GTO_VERSION:
        return python
    with open(VENV + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(python) != GTO_VERSION:
            setup = subprocess.run(["bash", SETUP], capture_output=True, text=True,
                                   env={**os.environ, "GTO_VERSION": GTO_VERSION})
            if setup.returncode != 0:
                raise RuntimeError(f"benchmarks/setup_gto.sh failed; GITML_SKIP_GTO=1 skips:\n{setup.stderr[-2000:]}")
    return python


@pytest.fixture(scope="session")
def gto_python() -> str:
    if os.environ.get("GITML_SKIP_GTO") == "1":
        pytest.skip("GITML_SKIP_GTO=1")
    return ensure_gto_python()

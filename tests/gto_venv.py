"""The ``gto`` of a venv holding GTO 1.10.1, for tests that check GTO reads gitml's registry.

GTO lives in its own venv (outside the clone: ``benchmarks/peers.py``; made by
``benchmarks/setup_gto.sh`` when missing, under a lock file), never in gitml's. ``GITML_SKIP_GTO=1`` skips these tests.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.peers import GTO_VERSION
from tests.peer_venv import ensure_peer_python


def ensure_gto_python() -> str:
    """Path of the venv's python with GTO 1.10.1 (its ``gto`` is beside it)."""
    return ensure_peer_python(
        "gto", GTO_VERSION, setup="benchmarks/setup_gto.sh", version_env="GTO_VERSION", skip_env="GITML_SKIP_GTO"
    )


@pytest.fixture(scope="session")
def gto_python() -> str:
    if os.environ.get("GITML_SKIP_GTO") == "1":
        pytest.skip("GITML_SKIP_GTO=1")
    return ensure_gto_python()

"""The Python of a venv holding MLServer 1.7.1 (and mlserver-sklearn), for the tests that run an
exported model folder under a real ``mlserver start`` (tests/serving/test_export.py).

MLServer pins starlette<0.47 and fastapi<0.116, which gitml's UI (starlette 1.x) does not fit, so it
lives in a venv of its own outside the clone (``benchmarks/peers.py``), made by
``benchmarks/setup_mlserver.sh`` when missing. ``GITML_SKIP_MLSERVER=1`` skips these tests.
"""

from __future__ import annotations

from tests.peer_venv import ensure_peer_python

MLSERVER_VERSION = "1.7.1"


def ensure_mlserver_python() -> str:
    """Path of a Python with MLServer 1.7.1, installing the venv if needed."""
    return ensure_peer_python(
        "mlserver",
        MLSERVER_VERSION,
        setup="benchmarks/setup_mlserver.sh",
        version_env="MLSERVER_VERSION",
        skip_env="GITML_SKIP_MLSERVER",
        also=("mlserver-sklearn", "dulwich", "scikit-learn"),
    )

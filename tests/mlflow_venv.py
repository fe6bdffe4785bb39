"""The Python of a venv holding MLflow 3.17.2, for tests that compare gitml with MLflow.

MLflow lives in its own venv (outside the clone: ``benchmarks/peers.py``), never in gitml's: its
dependencies must not leak into the code under test. The session fixture
:func:`mlflow_python` creates the venv with ``benchmarks/setup_mlflow.sh`` when it
is missing (that is how CI gets it; the script is idempotent and quick once the
venv exists). One pytest process at a time runs the script, under a lock file.

``GITML_MLFLOW_PYTHON`` names another interpreter with MLflow 3.17.2 instead;
``GITML_SKIP_MLFLOW=1`` skips these tests (e.g. offline with no venv yet).
"""

from __future__ import annotations

import os

import pytest

from benchmarks.peers import MLFLOW_VERSION
from tests.peer_venv import ROOT, ensure_peer_python


def ensure_mlflow_python() -> str:
    """Path of a Python with MLflow 3.17.2, installing the venv if needed."""
    if os.environ.get("GITML_MLFLOW_PYTHON"):
        return os.environ["GITML_MLFLOW_PYTHON"]
    return ensure_peer_python(
        "mlflow",
        MLFLOW_VERSION,
        setup="benchmarks/setup_mlflow.sh",
        version_env="MLFLOW_VERSION",
        skip_env="GITML_SKIP_MLFLOW",
        also=(
            "torch",
            "dulwich",
            "scikit-learn",
            "xgboost-cpu",
            "lightgbm",
            "catboost",
            "onnxruntime",
            "skl2onnx",
            "keras",
            "transformers",
            "statsmodels",
            "lightning",
            "httptools",
            "orjson",
        ),  # the extras setup_mlflow.sh adds must be there too
    )


@pytest.fixture(scope="session")
def mlflow_python() -> str:
    """The MLflow venv's python (created by benchmarks/setup_mlflow.sh if missing)."""
    if os.environ.get("GITML_SKIP_MLFLOW") == "1":
        pytest.skip("GITML_SKIP_MLFLOW=1")
    return ensure_mlflow_python()


def plugin_pythonpath() -> str:
    """A ``PYTHONPATH`` under which MLflow's Python finds this checkout of gitml and its
    MLflow plugin: the checkout, and a folder holding a ``gitml-0.1.0.dist-info`` whose
    ``entry_points.txt`` is ``pyproject.toml``'s (what ``pip install`` writes; MLflow reads
    entry points through ``importlib.metadata``, which scans ``sys.path``). gitml is not
    installed into the venv itself: tests/compat/test_models_mlflow.py needs it absent there."""
    import tempfile
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    folder = tempfile.mkdtemp(prefix="gitml-mlflow-plugin-")
    info = os.path.join(folder, f"gitml-{project['version']}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: gitml\nVersion: {project['version']}\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        for group, points in project["entry-points"].items():
            f.write(f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items()) + "\n")
    return os.pathsep.join([folder, ROOT])  # first: ROOT may hold a stale gitml.egg-info (the first found wins)

"""Where a peer's venv lives (the same rule as ``peers.sh``, which the setup scripts source).

Peers (MLflow, GTO) are cached outside any clone, one venv per tool and version, shared by every
checkout and CI run on the machine: ``$GITML_PEERS/<tool>-<version>``, ``$GITML_PEERS`` defaulting
to ``${XDG_CACHE_HOME:-~/.cache}/gitml/peers``. A clone never holds a peer's venv.
"""

from __future__ import annotations

import os

MLFLOW_VERSION = "3.17.2"
GTO_VERSION = "1.10.1"


def peer_venv(tool: str, version: str) -> str:
    """The folder of ``tool``'s venv at ``version``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.environ.get("GITML_PEERS") or os.path.join(cache, "gitml", "peers"), f"{tool}-{version}")


def peer_bin(tool: str, version: str, program: str = "python") -> str:
    """A program of that venv (its ``python`` by default)."""
    return os.path.join(peer_venv(tool, version), "bin", program)


MLFLOW_PY = peer_bin("mlflow", MLFLOW_VERSION)
GTO_BIN = peer_bin("gto", GTO_VERSION, "gto")
# benchmarks/run_spark_scoring.py runs MLflow's spark_udf in that venv, beside gitml's: it adds
# pyspark there when missing (the version gitml's test extra pins)
MLFLOW_SPARK = "pyspark==4.3.0"

#!/usr/bin/env bash
# Create the MLflow peer venv (benchmarks/peers.sh says where; idempotent) and print its path last.
set -euo pipefail
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/peers.sh"
VENV="$(peer_venv mlflow "$MLFLOW_VERSION")"
mkdir -p "$(dirname "$VENV")"
PY="${PYTHON:-python3}"

# Besides MLflow: torch (tests/test_models_mlflow.py loads gitml's PyTorch models in MLflow;
# the CPU wheel pip already cached for gitml's own test extra) and dulwich (a PythonModel
# model loads in MLflow "with gitml beside it": PYTHONPATH gives gitml, this its one missing dependency).
EXTRAS="torch==2.13.0 dulwich==1.2.21 scikit-learn==1.9.1"
if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; [m.version(p) for p in ("torch", "dulwich", "scikit-learn")]; print(m.version("mlflow"))' 2>/dev/null)" = "$MLFLOW_VERSION" ]; then
  echo "mlflow $MLFLOW_VERSION already installed in $VENV" >&2
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "mlflow==$MLFLOW_VERSION"
"$VENV/bin/python" -m pip install --quiet $EXTRAS
"$VENV/bin/python" -c 'import mlflow; print("installed mlflow", mlflow.__version__)'

#!/usr/bin/env bash
# Create the MLflow peer venv (benchmarks/peers.sh says where; idempotent) and print its path last.
set -euo pipefail
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/peers.sh"
VENV="$(peer_venv mlflow "$MLFLOW_VERSION")"
mkdir -p "$(dirname "$VENV")"
PY="${PYTHON:-python3}"

# Besides MLflow: torch (tests/compat/test_models_mlflow.py loads gitml's PyTorch models in MLflow;
# the CPU wheel pip already cached for gitml's own test extra) and dulwich (a PythonModel
# model loads in MLflow "with gitml beside it": PYTHONPATH gives gitml, this its one missing dependency).
# The model flavors' libraries (tests/compat/test_flavors_mlflow.py: each flavor both ways), pinned as in
# pyproject's test extra; xgboost-cpu is xgboost without the 200 MB nvidia-nccl wheel.
EXTRAS="torch==2.13.0 dulwich==1.2.21 scikit-learn==1.9.1"
# httptools and orjson: `gitml serve` runs in this venv too (a flavor gitml loads through MLflow's own loader).
SERVE="httptools==0.9.0 orjson==3.13.0"
FLAVORS="xgboost-cpu==3.2.0 lightgbm==4.7.0 catboost==1.2.10 onnx==1.23.0 onnxruntime==1.32.0 skl2onnx==1.20.0 keras==3.15.1 transformers==5.17.0 statsmodels==0.15.0 lightning==2.6.6"
CHECK='import importlib.metadata as m; [m.version(p) for p in ("torch", "dulwich", "scikit-learn", "xgboost-cpu", "lightgbm", "catboost", "onnxruntime", "skl2onnx", "keras", "transformers", "statsmodels", "lightning", "httptools", "orjson")]; print(m.version("mlflow"))'
if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c "$CHECK" 2>/dev/null)" = "$MLFLOW_VERSION" ]; then
  echo "mlflow $MLFLOW_VERSION already installed in $VENV" >&2
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "mlflow==$MLFLOW_VERSION"
"$VENV/bin/python" -m pip install --quiet $EXTRAS $FLAVORS $SERVE
"$VENV/bin/python" -c 'import mlflow; print("installed mlflow", mlflow.__version__)'

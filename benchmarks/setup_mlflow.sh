#!/usr/bin/env bash
# Create benchmarks/.venv-mlflow with MLflow installed (idempotent).
set -euo pipefail
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-mlflow"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null)" = "$MLFLOW_VERSION" ]; then
  echo "mlflow $MLFLOW_VERSION already installed in $VENV"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "mlflow==$MLFLOW_VERSION"
"$VENV/bin/python" -c 'import mlflow; print("installed mlflow", mlflow.__version__)'

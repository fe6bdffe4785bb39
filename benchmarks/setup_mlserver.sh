#!/usr/bin/env bash
# Create the MLServer peer venv (benchmarks/peers.sh says where; idempotent) and print its path last.
# MLServer 1.7.1 pins starlette<0.47 and fastapi<0.116 (gitml's UI runs on starlette 1.x), so it gets a
# venv of its own: tests/serving/test_export.py runs a folder made by `gitml models export --target mlserver`
# under a real `mlserver start`. Beside MLServer: gitml's own dependencies at the versions of gitml's
# test environment (the exported runtime loads the model through gitml, found by PYTHONPATH) and
# mlserver-sklearn (the same model read by MLServer's own scikit-learn runtime). uvloop is held at
# 0.21.0: MLServer 1.7.1's inference workers call asyncio.get_event_loop() outside a loop, which
# uvloop 0.22 and later refuse (the worker dies at start and the model never loads).
set -euo pipefail
MLSERVER_VERSION="${MLSERVER_VERSION:-1.7.1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/peers.sh"
VENV="$(peer_venv mlserver "$MLSERVER_VERSION")"
mkdir -p "$(dirname "$VENV")"
PY="${PYTHON:-python3}"

EXTRAS="uvloop==0.21.0 mlserver-sklearn==$MLSERVER_VERSION scikit-learn==1.9.1 dulwich==1.2.21 click==8.4.0 pyyaml==6.0.3 pandas==3.1.1 fsspec==2026.9.0 cloudpickle==3.1.3"
if [ -x "$VENV/bin/mlserver" ] && \
   [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; [m.version(p) for p in ("mlserver-sklearn", "dulwich", "scikit-learn")]; print(m.version("mlserver") + "+uvloop" + m.version("uvloop"))' 2>/dev/null)" = "$MLSERVER_VERSION+uvloop0.21.0" ]; then
  echo "mlserver $MLSERVER_VERSION already installed in $VENV" >&2
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "mlserver==$MLSERVER_VERSION" $EXTRAS
"$VENV/bin/python" -c 'import importlib.metadata as m; print("installed mlserver", m.version("mlserver"))'

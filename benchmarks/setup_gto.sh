#!/usr/bin/env bash
# Create the GTO peer venv (benchmarks/peers.sh says where; idempotent): the registry's interop
# tests and benchmarks/run_registry.py compare gitml's registry with GTO's reading of it.
set -euo pipefail
GTO_VERSION="${GTO_VERSION:-1.10.1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/peers.sh"
VENV="$(peer_venv gto "$GTO_VERSION")"
mkdir -p "$(dirname "$VENV")"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/gto" ] && \
   [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("gto"))' 2>/dev/null)" = "$GTO_VERSION" ]; then
  echo "gto $GTO_VERSION already installed in $VENV" >&2
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "gto==$GTO_VERSION"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("installed gto", m.version("gto"))'

# Sourced by setup_*.sh: where a peer's venv lives. Peers (MLflow, GTO) are cached outside any
# clone, one venv per tool and version, shared by every checkout and CI run on the machine:
#   $GITML_PEERS (default: ${XDG_CACHE_HOME:-$HOME/.cache}/gitml/peers)/<tool>-<version>
peer_venv() { echo "${GITML_PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/gitml/peers}/$1-$2"; }

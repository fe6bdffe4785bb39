"""What makes a run the run it was: the parts of its record that never change once the
run exists. A later commit of a run may add metrics, params, tags and artifacts, and
change its name, status, end time and lifecycle; it never changes when and by whom the
run started, from which code, under which parent run, nor a param already logged (MLflow
refuses that; so does gitml's writer). A fetched commit that descends from this clone's
commit of a run but rewrites those parts is another run wearing its id.
"""

from __future__ import annotations

from gitml.errors import GitmlError
from gitml.names import RECORD_DIR
from gitml.runlog.record import META, PARAMS
from gitml.store.git import GitStore
from gitml.yamlread import MAX_YAML_BYTES, load_yaml

FIXED_META = ("run_id", "experiment_id", "start_time", "user_id", "source", "parent_run_id", "artifact_uri")


def _read(store: GitStore, commit: bytes, name: str) -> dict:
    entry = store.lookup(store.commit(commit).tree, f"{RECORD_DIR}/{name}")
    if entry is None:
        return {}
    what = f"commit {commit.decode()} ({name})"
    data = load_yaml(store.blob(entry[1], MAX_YAML_BYTES, what), what)
    return data if isinstance(data, dict) else {}


def rewritten(store: GitStore, old: bytes, new: bytes) -> str | None:
    """What ``new``, a later commit of the run at ``old``, rewrote of the run's fixed parts
    (one line), or None when it only added to the run. A record that cannot be read here
    says nothing (reading it names the problem where it is read)."""
    try:
        before, after = _read(store, old, META), _read(store, new, META)
        for key in FIXED_META:
            if before.get(key) != after.get(key):
                return f"its later commit {new.decode()} rewrites the run's {key} (fixed once a run exists)"
        params_before, params_after = _read(store, old, PARAMS), _read(store, new, PARAMS)
    except (GitmlError, KeyError, ValueError):
        return None
    for key, value in params_before.items():
        if params_after.get(key) != value:
            return (
                f"its later commit {new.decode()} rewrites or drops param {key!r} "
                "(params are never changed once logged)"
            )
    return None

"""Reads at 100,000 runs (issue 15): a repeated search reuses its matches and frame while
no run ref changes; ``gitml show`` and ``gitml runs`` do no more than they need."""

import os

import gitml
import gitml.frame
import gitml.tracking.filter
from tests.conftest import run_python


def make_runs(n, prefix="r"):
    ids = []
    for i in range(n):
        with gitml.start_run(run_name=f"{prefix}{i}") as run:
            gitml.log_params({"p": "xyz"[i % 3]})
            gitml.log_metrics({"m": i / n})
        ids.append(run.info.run_id)
    gitml.flush()
    return ids


def trust_ref_folders(repo):
    """Folders changed long ago: their listing can be trusted without reading them again."""
    past = os.stat(repo).st_mtime - 10
    for folder, _, _ in os.walk(repo / ".git" / "refs" / "gitml" / "runs"):
        os.utime(folder, (past, past))


def test_a_repeated_search_reuses_its_matches_and_frame_until_a_run_ref_changes(repo, monkeypatch):
    gitml.set_experiment("scale")
    make_runs(6)
    trust_ref_folders(repo)
    calls = {"filter": 0, "frame": 0}
    real_mask, real_frame = gitml.tracking.filter.filter_mask, gitml.frame.table_frame

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(gitml.tracking.filter, "filter_mask", counted("filter", real_mask))
    monkeypatch.setattr(gitml.frame, "table_frame", counted("frame", real_frame))

    def search():
        return gitml.search_runs(filter_string="params.p = 'x'", order_by=["metrics.m DESC"])

    first = search()
    first.loc[0, "run_id"] = "changed by the caller"  # a caller's frame is its own
    again = search()
    assert calls == {"filter": 1, "frame": 1}
    assert list(again["tags.mlflow.runName"]) == ["r3", "r0"] and again["run_id"].iloc[0] != "changed by the caller"
    other = gitml.search_runs(filter_string="params.p = 'y'")
    assert calls == {"filter": 2, "frame": 2} and list(other["tags.mlflow.runName"]) == ["r4", "r1"]
    assert list(search()["tags.mlflow.runName"]) == ["r3", "r0"] and calls == {"filter": 2, "frame": 3}
    # another process adds a matching run: the next search sees it at once
    run_python('import gitml\ngitml.set_experiment("scale")\nwith gitml.start_run(run_name="new"):\n'
               '    gitml.log_param("p", "x")\n    gitml.log_metric("m", 9.0)', repo)
    assert list(search()["tags.mlflow.runName"]) == ["new", "r3", "r0"] and calls["filter"] == 3

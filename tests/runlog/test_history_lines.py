"""A metric's history chunk holds one ``step  timestamp  repr(value)`` line per point, whether
the point came from the fluent calls, from a Client's batch to a run open elsewhere (group
commit, folded from the journal), or across flushes (the last chunk read back and continued)."""

from __future__ import annotations

import gitml
from tests.conftest import git

VALUES = [0.1 + 0.2, 1e20, -0.0, 1.5e-300, 2.0, 1 / 3]


def _chunk(repo, run_id: str, key: str) -> str:
    return git(repo, "show", f"refs/gitml/runs/0/{run_id}:.gitml/run/metrics/{key}@0.tsv")


def _expected(points) -> str:
    return "step\ttimestamp\tvalue\n" + "".join(f"{s}\t{t}\t{v!r}\n" for s, t, v in points)


def test_history_lines_are_step_timestamp_and_repr_of_the_value(repo):
    with gitml.start_run() as run:
        for i, value in enumerate(VALUES[:3]):
            gitml.log_metric("loss", value, step=i, timestamp=1_700_000_000_000 + i)
        gitml.flush()  # the first chunk committed: the next lines continue it
        for i, value in enumerate(VALUES[3:], start=3):
            gitml.log_metric("loss", value, step=i, timestamp=1_700_000_000_000 + i)
        gitml.log_metrics({"acc": 0.75, "f1": 1 / 7}, step=9, timestamp=1_700_000_000_009)
    gitml.flush()
    run_id = run.info.run_id
    assert _chunk(repo, run_id, "loss") == _expected(
        [(i, 1_700_000_000_000 + i, value) for i, value in enumerate(VALUES)]
    )
    assert _chunk(repo, run_id, "acc") == _expected([(9, 1_700_000_000_009, 0.75)])
    assert _chunk(repo, run_id, "f1") == _expected([(9, 1_700_000_000_009, 1 / 7)])

    with gitml.Client(repo) as client:  # another way in: a group commit folds the journal's lines
        client.log_batch(run_id, metrics=[("loss", 0.5, 1_700_000_000_100, 100)])
        history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [*enumerate(VALUES), (100, 0.5)]
    assert _chunk(repo, run_id, "loss").endswith(f"100\t1700000000100\t{0.5!r}\n")
    git(repo, "fsck", "--strict")

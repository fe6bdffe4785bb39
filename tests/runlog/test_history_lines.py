"""A metric's history chunk holds one ``step  timestamp  repr(value)`` line per point, whether
the point came from the fluent calls, from a Client's batch to a run open elsewhere (group
commit, folded from the journal), or across flushes (the last chunk read back and continued)."""

from __future__ import annotations

import random

import pytest

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


def _chunks(repo, run_id: str) -> dict[str, list[str]]:
    """``{key: [chunk text, ...]}`` of a run's history, chunks in order."""
    ref = f"refs/gitml/runs/0/{run_id}"
    names = git(repo, "ls-tree", "-r", "--name-only", f"{ref}:.gitml/run/metrics").split()
    out: dict[str, list[str]] = {}
    for name in sorted(names, key=lambda n: (n.rpartition("@")[0], int(n.rpartition("@")[2][:-4]))):
        out.setdefault(name.rpartition("@")[0], []).append(git(repo, "show", f"{ref}:.gitml/run/metrics/{name}"))
    return out


def test_random_points_give_the_lines_and_the_latest_point_mlflows_rule_picks(repo, monkeypatch):
    """Points of random values (-0.0 beside 0.0, nan, inf, the smallest subnormal among them),
    steps tied, going back and negative, by every way in (a fluent call, a batch, a Client's
    batch to the run folded from the journal), committed across flushes in chunks of 7 lines:
    each chunk is the f-string lines of its points in logged order, and metrics.yaml's latest
    point is the one MLflow's rule (``newer``, point by point) picks."""
    from gitml.runlog import record
    from gitml.store import yamlout

    monkeypatch.setattr(record, "CHUNK_POINTS", 7)
    rng = random.Random(28)
    specials = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, 1e308, 0.1 + 0.2]

    def point():
        value = rng.choice(specials) if rng.random() < 0.4 else rng.uniform(-9, 9) * 10.0 ** rng.randint(-30, 30)
        step = rng.choice([0, 3, -5, 2**62]) if rng.random() < 0.5 else rng.randint(-3, 9)
        return step, rng.choice([1_700_000_000_000, 1_700_000_000_001, 0]), value

    logged: dict[str, list] = {"a": [], "b/c": [], "d": []}
    tied = {  # equal points at the top step: the first logged is the latest (-0.0 and 0.0 show which)
        "e": [(7, 5, -0.0), (7, 5, 0.0), (7, 5, float("nan")), (6, 9, 1.0)],
        "f": [(7, 5, float("nan")), (7, 5, 0.0), (7, 5, -0.0), (6, 9, 1.0)],
    }
    with gitml.start_run() as run:
        for key, points in tied.items():
            for step, ts, value in points:
                gitml.log_metric(key, value, step=step, timestamp=ts)
        for _ in range(8):
            for _ in range(rng.randint(0, 25)):
                key, (step, ts, value) = rng.choice(sorted(logged)), point()
                if rng.random() < 0.5:
                    gitml.log_metric(key, value, step=step, timestamp=ts)
                else:
                    gitml.log_metrics({key: value}, step=step, timestamp=ts)
                logged[key].append((step, ts, value))
            gitml.flush()
    run_id = run.info.run_id
    with gitml.Client(repo) as client:
        batch = [(key, *point()) for key in ("a", "d", "a")]
        client.log_batch(run_id, metrics=[(key, value, ts, step) for key, step, ts, value in batch])
        for key, *p in batch:
            logged[key].append(tuple(p))
    gitml.flush()

    chunks = _chunks(repo, run_id)
    latest = {}
    for key, points in logged.items():
        assert chunks[key] == [_expected(points[i : i + 7]) for i in range(0, len(points), 7)], key
        best = None
        for p in points:
            best = p if record.newer(p, best) else best
        latest[key] = best
    for key, points in tied.items():
        assert chunks[key] == [_expected(points)]
        latest[key] = points[0] if key == "e" else points[1]
    ref = f"refs/gitml/runs/0/{run_id}"
    assert git(repo, "show", f"{ref}:.gitml/run/metrics.yaml").encode() == yamlout.dump_points(latest)
    git(repo, "fsck", "--strict")


def test_a_chunk_longer_than_the_chunk_size_is_cut_as_its_lines_come(repo, monkeypatch):
    """A history chunk longer than this version makes (written with a larger chunk size) is cut
    at the chunk size when the run goes on, its lines first and the new ones after them."""
    from gitml.runlog import record

    points = [(i, 1_700_000_000_000 + i, i / 3) for i in range(23)]
    monkeypatch.setattr(record, "CHUNK_POINTS", 100)
    with gitml.start_run() as run:
        for step, ts, value in points[:20]:
            gitml.log_metric("loss", value, step=step, timestamp=ts)
    gitml.flush()
    monkeypatch.setattr(record, "CHUNK_POINTS", 6)
    with gitml.start_run(run_id=run.info.run_id):
        for step, ts, value in points[20:]:
            gitml.log_metric("loss", value, step=step, timestamp=ts)
    gitml.flush()
    assert _chunks(repo, run.info.run_id)["loss"] == [_expected(points[i : i + 6]) for i in range(0, 23, 6)]


def test_a_refused_point_leaves_no_line_and_no_history_of_its_key(repo):
    """A point refused (a value that is no number, a step out of range), alone or in a batch,
    leaves nothing: no line in the history, no chunk for a key it would have started, and a
    batch holding one is refused whole."""
    from gitml.errors import InvalidInputError

    with gitml.start_run() as run:
        gitml.log_metric("a", 0.5, step=1, timestamp=1_700_000_000_000)
        for call in (
            lambda: gitml.log_metric("a", "0.7", step=2),  # a key already buffered
            lambda: gitml.log_metric("b", "x", step=2),  # a new key
            lambda: gitml.log_metric("b", 1.0, step=2**63),
            lambda: gitml.log_metrics({"a": 0.9, "c": 1.0, "d": object()}, step=3),
        ):
            with pytest.raises(InvalidInputError):
                call()
        gitml.log_metric("a", 2, step=4, timestamp=1_700_000_000_004)  # an int: logged as a float
    gitml.flush()
    assert _chunks(repo, run.info.run_id) == {
        "a": [_expected([(1, 1_700_000_000_000, 0.5), (4, 1_700_000_000_004, 2.0)])]
    }
    assert gitml.get_run(run.info.run_id).data.metrics == {"a": 2.0}

"""The YAML emitter's fast paths write the bytes its general path writes, and read back the same."""

from __future__ import annotations

import math
import random

from gitml.runlog.record import check_latest
from gitml.store import yamlout
from gitml.yamlread import load_yaml

KEYS = ["m", "loss", "a b", "yes", "No", "null", "é", "x:y", "1.5", "", "m/x.y_z-1", '"q"', "#h", "step"]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e300, 1e-300, 5e-324, float("nan"), float("inf"), float("-inf"), 0.1 + 0.2]


def _latest(rng: random.Random) -> dict:
    latest = {}
    for _ in range(rng.randint(0, 12)):
        key = rng.choice(KEYS) + (str(rng.randint(0, 99)) if rng.random() < 0.5 else "")
        value = rng.choice(FLOATS) if rng.random() < 0.4 else rng.random() * 10 ** rng.randint(-30, 30)
        latest[key] = (rng.randint(-(2**63), 2**63 - 1), rng.randint(0, 2**63 - 1), value)
    return latest


def _general(latest: dict) -> bytes:
    return yamlout.dump({k: {"step": s, "timestamp": t, "value": v} for k, (s, t, v) in latest.items()})


def test_points_are_written_as_the_general_emitter_writes_them():
    rng = random.Random(28)
    for _ in range(2000):
        latest = _latest(rng)
        assert yamlout.dump_points(latest) == _general(latest), latest


def test_points_read_back_to_the_values_logged():
    """As a run record reads metrics.yaml (``check_latest``: ``1e+20`` reads back as text)."""
    rng = random.Random(7)
    for _ in range(300):
        latest = {k: p for k, p in _latest(rng).items() if k and not set(k) & set('é"#')}  # metric names
        read = check_latest(load_yaml(yamlout.dump_points(latest), "metrics.yaml") or {})
        assert set(read) == set(latest)
        for key, (step, timestamp, value) in latest.items():
            got = read[key]
            assert got[:2] == (step, timestamp)
            assert (math.isnan(got[2]) and math.isnan(value)) or got[2] == value


def test_points_of_other_types_take_the_general_path():
    """A record read from git may hold an int value or a key that is not text: the same bytes still."""
    for latest in ({"m": (1, 2, 3)}, {"m": (1, 2, True)}, {5: (1, 2, 0.5)}, {"m": (1.0, 2, 0.5)}, {}):
        assert yamlout.dump_points(latest) == _general(latest)


def test_leaves_are_written_as_before_for_random_documents():
    """The leaf fast path of ``dump`` (text, float, int) against the general ``_scalar`` rules."""
    rng = random.Random(5)
    values = [*FLOATS, 3, -7, 2**64, True, False, None, "x", "yes", "No", "", "a b", "é", [1, "a", None, 2.5], (1, 2)]
    for _ in range(2000):
        data = {}
        for _ in range(rng.randint(0, 8)):
            key = rng.choice([*KEYS, 5, 2.5])
            value = rng.choice(values)
            scalars = [v for v in values if not isinstance(v, (list, tuple))]
            data[key] = {"inner": rng.choice(scalars), "n": rng.choice(scalars)} if rng.random() < 0.2 else value
        expected = "".join(
            f"{yamlout._key(k)}:\n"
            + "".join(f"  {yamlout._key(ik)}: {yamlout._scalar(iv)}\n" for ik, iv in sorted(v.items()))
            if isinstance(v, dict)
            else f"{yamlout._key(k)}: [{', '.join(yamlout._scalar(x) for x in v)}]\n"
            if isinstance(v, (list, tuple))
            else f"{yamlout._key(k)}: {yamlout._scalar(v)}\n"
            for k, v in sorted(data.items(), key=lambda kv: str(kv[0]))
        )
        assert yamlout.dump(data) == (expected.encode() if data else b"{}\n"), data

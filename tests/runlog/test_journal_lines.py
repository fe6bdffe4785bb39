"""The journal's lines for params and tags: JSON text as ``json.dumps`` writes it, read back whole."""

from __future__ import annotations

import json
import random

from gitml.runlog import journal as jr

TEXTS = ["", "a", "é", 'q"uote', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "\u2028", "\U0001f600", "\ud800"]


def test_param_and_tag_lines_are_json_dumps_and_replay_to_the_value():
    rng = random.Random(28)
    for _ in range(3000):
        value = rng.choice(TEXTS) + "".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(0, 6)))
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            value = value.encode("utf-8", "replace").decode()  # a logged value is text (no lone surrogate)
        param, tag = jr.encode_param(3, "k", value), jr.encode_tag(3, "k", value)
        assert param == f"P\t3\tk\t{json.dumps(value)}\n" and tag == f"T\t3\tk\t{json.dumps(value)}\n"
        data = (jr.MAGIC + "\n" + "R\t3\t0\t" + "a" * 32 + "\n" + param + tag).encode()
        _, entries = jr.replay(data, "test")
        assert [e[2] for e in entries] == [("P", "k", value), ("T", "k", value)]
    assert jr.encode_tag(3, "k", None) == "D\t3\tk\n"


def test_a_new_run_registered_and_created_in_one_write_survives_a_journal_rotation_between(repo):
    """A new run's R line goes with its C line (one write); when the journal is rotated between
    the writer's registration and the run's start, the R line the run's lines follow is the new
    journal's (its slot there), not the registration meant for the old one."""
    import os

    from gitml.runlog.record import RunRecord
    from gitml.runlog.tracker import Tracker
    from gitml.store.git import open_store

    with open_store(repo) as store:
        tracker = Tracker(store)
        try:
            for other in "bc":  # slots 1 and 2 of the old journal, released: ours is its slot 3
                tracker._writer(b"refs/gitml/runs/0/" + other.encode() * 32, other * 32, "0", True).close()
            ref = b"refs/gitml/runs/0/" + b"a" * 32
            writer = tracker._writer(ref, "a" * 32, "0", True, starting=True)
            assert writer.slot == 3
            old = tracker.journal
            tracker.rotate_journal()
            assert tracker.journal is not old and writer.journal is tracker.journal
            writer.start(RunRecord(meta={"run_id": "a" * 32, "experiment_id": "0", "status": "RUNNING"}), None, None)
            writer.log_params({"p": "1"})
            with open(writer.journal.path, "rb") as f:
                runs, entries = jr.replay(f.read(), writer.journal.name)
            assert writer.slot == 1 and runs == {1: ("0", "a" * 32)}  # (slot 3 is the old journal's)
            assert [(slot, e[0]) for slot, _, e in entries] == [(writer.slot, "C"), (writer.slot, "P")]
            assert not os.path.exists(old.path) or old.users == 0
        finally:
            tracker.close()

"""The journal's lines for params and tags: JSON text as ``json.dumps`` writes it, read back whole."""

from __future__ import annotations

import json
import random

from gitml.tracking import journal as jr

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

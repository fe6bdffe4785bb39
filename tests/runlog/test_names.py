import pytest

from gitml.errors import InvalidInputError
from gitml.names import check_key, history_path, parse_history_path, parse_run_ref, run_ref

HOSTILE_KEYS = [
    "",
    "..",
    "../meta.yaml",
    "a/../b",
    "/abs",
    "trailing/",
    "a//b",
    "./x",
    "nul\x00byte",
    "new\nline",
    "tab\tkey",
    "esc\x1bkey",
    "x" * 251,
    "at@sign",
    "back\\slash",
    "star*",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused(key):
    with pytest.raises(InvalidInputError):
        check_key(key, "metric")


@pytest.mark.parametrize("key", ["loss", "train/loss", "a.b", "with space", "c:d", "x" * 250, "meta.yaml", "ünïcode"])
def test_good_keys_pass(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["loss", "train/loss", "a.b", "x.tsv", "1@"[:1], "deep/er/key"])
def test_history_path_round_trip(key):
    for chunk in (0, 7, 123):
        assert parse_history_path(history_path(key, chunk)) == (key, chunk)


def test_run_ref_round_trip_and_refusals():
    ref = run_ref("12", "0123456789abcdef0123456789abcdef")
    assert parse_run_ref(ref) == ("12", "0123456789abcdef0123456789abcdef")
    assert parse_run_ref(b"refs/gitml/runs/12/xyz") is None
    assert parse_run_ref(b"refs/heads/main") is None
    with pytest.raises(InvalidInputError):
        run_ref("../x", "0123456789abcdef0123456789abcdef")
    with pytest.raises(InvalidInputError):
        run_ref("1", "../../heads/main")

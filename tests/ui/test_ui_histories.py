"""gitml ui's parsed-history cache (gitml/ui/histories.py) over a real repository: chunks
parsed once and loaded by every later server, the same charts with and without it, a
damaged or forged cache file ignored and rebuilt, a running run's new chunks parsed alone."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

pytest.importorskip("starlette")

import gitml  # noqa: E402
import gitml.ops  # noqa: E402
from gitml.ui import histories, series  # noqa: E402
from gitml.ui.app import chart_series  # noqa: E402
from gitml.ui.reader import Reader  # noqa: E402

T0, SPIKE, SPIKE_STEP = 1_700_000_000_000, 1000.0, 17_777
POINTS = 25_000  # chunks of 10,000, 10,000 and 5,000 points


def _log(client, run_id, start, stop):
    client.log_batch(
        run_id, metrics=[("loss", SPIKE if s == SPIKE_STEP else 1.0 / (s + 1), T0 + s, s) for s in range(start, stop)]
    )


@pytest.fixture
def big(client):
    run_id = client.create_run(client.create_experiment("e"), run_name="big").info.run_id
    _log(client, run_id, 0, POINTS)
    client.log_batch(run_id, metrics=[("small", float(s), T0 + s, s) for s in range(50)])
    client.flush()
    return run_id


def _chart(reader, run_id, key="loss", **options):
    options = {"axis": "step", "lo": None, "hi": None, "width": 300, "smooth": 0.0, **options}
    return chart_series(reader, [run_id], key, **options)["series"][0]


def _truth(client, run_id, key="loss"):
    return series.parse_history(client.metric_history_text(run_id, key)[1])


def _files(repo):
    root = os.path.join(repo, ".git", "gitml", "histories")
    return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


def test_a_second_server_loads_the_parsed_chunks_and_parses_none(client, repo, big):
    first = Reader(client)
    drawn = _chart(first, big)
    assert (first.chunks.parsed, first.chunks.loaded) == (3, 0)
    assert len(_files(repo)) == 3
    assert max(v for v in drawn["y"] if v is not None) == SPIKE  # the spike survives M4
    with gitml.ops.Operations(repo) as other:
        second = Reader(other)
        again = _chart(second, big)
        assert (second.chunks.parsed, second.chunks.loaded) == (0, 3)
        assert again == drawn
        for options in ({"lo": 17_000.0, "hi": 18_500.0}, {"axis": "time", "smooth": 0.9}):
            assert _chart(Reader(other), big, **options) == _chart(first, big, **options)
        _, cached = histories.read_history(other, second.chunks, big, "loss")
        _, plain = histories.read_history(other, None, big, "loss")
    truth = _truth(client, big)
    for a, b, c in zip(cached, plain, truth, strict=False):
        assert a.dtype == c.dtype and np.array_equal(a, c) and np.array_equal(b, c)


def test_a_small_history_is_parsed_each_time_not_kept(client, repo, big):
    reader = Reader(client)
    assert _chart(reader, big, key="small")["points"] == 50
    assert _files(repo) == [] and reader.chunks.parsed == 1


def _forged_values(path, blob, other):
    data = bytearray(open(path, "rb").read())
    data[-8:] = np.float64(-5.0).tobytes()  # the last value changed, the checksum left as it was
    return bytes(data)


class _Pwn:
    def __reduce__(self):
        return os.system, ("touch PWNED",)  # what unpickling this file would run


DAMAGE = {
    "truncated": lambda path, blob, other: open(path, "rb").read()[:-100],
    "empty": lambda path, blob, other: b"",
    "bit flipped": lambda path, blob, other: (lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:])(
        open(path, "rb").read()
    ),
    "forged values": _forged_values,
    "another chunk's file": lambda path, blob, other: open(other, "rb").read(),
    "a pickle": lambda path, blob, other: pickle.dumps(_Pwn()),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_or_forged_cache_file_is_ignored_and_rebuilt(client, repo, big, damage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    drawn = _chart(Reader(client), big)
    _, chunks = client.metric_history_chunks(big, "loss")
    cache = histories.HistoryCache(client.cache_dir("histories"))
    path, other = cache.path(chunks[1]), cache.path(chunks[0])
    damaged = DAMAGE[damage](path, chunks[1], other)
    with open(path, "wb") as f:
        f.write(damaged)
    reader = Reader(client)
    assert _chart(reader, big) == drawn
    assert (reader.chunks.loaded, reader.chunks.rejected, reader.chunks.parsed) == (2, 1, 1)
    _, arrays = histories.read_history(client, reader.chunks, big, "loss")
    assert all(np.array_equal(a, b) for a, b in zip(arrays, _truth(client, big), strict=False))
    assert reader.chunks.rejected == 1  # rebuilt: the file holds the chunk again
    assert not os.path.exists(tmp_path / "PWNED")


def test_a_running_run_parses_only_its_new_and_rewritten_chunks(client, repo, big):
    reader = Reader(client)
    _chart(reader, big)
    _log(client, big, POINTS, POINTS + 10_000)  # the 5,000-point chunk fills, a new one starts
    client.flush()
    later = Reader(client)
    drawn = _chart(later, big)
    assert (later.chunks.loaded, later.chunks.parsed) == (2, 2)
    assert drawn["points"] == POINTS + 10_000
    assert _chart(reader, big) == drawn  # the server that read it before sees the new commit
    _, arrays = histories.read_history(client, later.chunks, big, "loss")
    assert all(np.array_equal(a, b) for a, b in zip(arrays, _truth(client, big), strict=False))


def test_warm_up_keeps_the_newest_runs_long_histories(client, repo, big):
    Reader(client).warm()
    assert len(_files(repo)) == 3  # loss (3 chunks) kept; small (1 chunk) not read
    with gitml.ops.Operations(repo) as other:
        reader = Reader(other)
        _chart(reader, big)
        assert (reader.chunks.parsed, reader.chunks.loaded) == (0, 3)


def test_a_read_only_cache_folder_only_costs_the_parse(client, repo, big):
    os.makedirs(os.path.join(repo, ".git", "gitml"), exist_ok=True)
    with open(os.path.join(repo, ".git", "gitml", "histories"), "w") as f:
        f.write("not a folder")  # any write under it fails
    reader = Reader(client)
    drawn = _chart(reader, big)
    assert reader.chunks.parsed == 3 and max(v for v in drawn["y"] if v is not None) == SPIKE


def test_chunk_ids_and_cache_names_are_checked(client, big):
    from gitml.errors import InvalidInputError

    for bad in ("../../etc/passwd", "A" * 40, "0" * 39, ""):
        with pytest.raises(InvalidInputError, match="blob id"):
            client.metric_history_chunk(bad)
    with pytest.raises(InvalidInputError, match="plain word"):
        client.cache_dir("../objects")

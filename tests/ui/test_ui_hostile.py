"""gitml ui against a hostile page, through the real server (``gitml ui`` on a free
loopback port): any site the user visits can make the browser ask
``<img src="http://127.0.0.1:5000/api/runs?filter=...">``. A pathological LIKE pattern
must stay fast, and a costly filter must neither freeze the other requests nor run for
ever (each request has a time budget)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("starlette")

from tests.conftest import ROOT  # noqa: E402
from tests.serving.test_serving_hostile import (  # noqa: E402
    _closed_by_server,
    open_descriptors,
    read_nothing_of,
    send_an_endless_header,
    within,
)

RUNS = 300
LONG = "a" * 8000  # MLflow's (and gitml's) longest tag value


@pytest.fixture
def served(client, repo):
    """RUNS runs whose note is 8,000 'a's, one more ending in 'b'; the UI serving them."""
    ids = [client.create_run(tags={"note": LONG}, run_name=f"r{i}").info.run_id for i in range(RUNS)]
    odd = client.create_run(tags={"note": LONG[:-1] + "b"}, run_name="odd").info.run_id
    server = subprocess.Popen(  # on a port the server binds itself (--port 0): no other process can take it first
        [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "ui", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        line = server.stderr.readline()
        printed = re.search(r"serving http://127\.0\.0\.1:(\d+)/", line)
        assert printed, line
        port = int(printed.group(1))
        yield {"url": f"http://127.0.0.1:{port}", "ids": ids, "odd": odd}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _get(url: str, timeout: float = 120) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _runs(base: str, filter_string: str) -> tuple[int, dict]:
    status, body = _get(f"{base}/api/runs?limit=5&filter={urllib.parse.quote(filter_string)}")
    return status, json.loads(body)


def test_a_pathological_like_pattern_is_answered_and_right(served):
    """'%a%a...%b' was the regular expression '.*a.*a...b': over 8,000 'a's it backtracks
    for hours (every split of the value among the wildcards); the segment scan is one pass."""
    base = served["url"]
    pattern = "%a" * 12 + "%b"
    status, body = _runs(base, f"tags.note LIKE '{pattern}'")
    assert status == 200 and body["total"] == 1 and body["rows"][0]["run_id"] == served["odd"]
    status, body = _runs(base, f"tags.note ILIKE '{pattern.upper()}' OR tags.note LIKE '%a_a_a_a%b_'")
    assert status == 200 and [r["run_id"] for r in body["rows"]] == [served["odd"]]
    status, body = _runs(base, "tags.note LIKE '" + "_" * 7999 + "%'")
    assert status == 200 and body["total"] == RUNS + 1


def test_a_costly_search_is_cut_at_its_budget_while_other_requests_are_answered(served):
    """A filter of 150 LIKE clauses, each a fixed 200-character segment tried at every
    place of every 8,000-character note, costs minutes. The search stops at the request's
    budget (503); meanwhile run pages, which do not wait for searches, keep being answered."""
    base, run = served["url"], served["ids"][0]
    clause = "tags.note LIKE '%" + "a_" * 100 + "b%'"
    costly = " OR ".join([clause.replace("b%", f"{'b' * (1 + i % 3)}%") for i in range(150)])
    outcome: dict = {}

    def search() -> None:
        outcome["search"] = _runs(base, costly)

    searching = threading.Thread(target=search)
    searching.start()
    answered = 0
    while searching.is_alive():
        status, body = _get(f"{base}/api/run/{run}", timeout=60)
        assert status == 200 and json.loads(body)["run_id"] == run
        if searching.is_alive():
            answered += 1  # answered while the search was still running
    searching.join()
    status, body = outcome["search"]
    assert status == 503 and "ran out of time" in body["error"]
    assert answered >= 1
    status, body = _runs(base, "tags.note LIKE '%b'")  # and the searches go on
    assert status == 200 and body["total"] == 1


def test_a_head_that_never_ends_or_never_comes_is_cut_off_and_the_ui_goes_on(repo):
    """The UI meets hostile clients as ``gitml serve`` does (gitml.serving.workers): httptools
    hands a header over only once its line ends, and uvicorn gathered a line that never ends
    for ever (300 MB sent took 300 MB of the UI's memory). The head is counted as it streams."""
    server = subprocess.Popen(  # --port 0: the server binds a free port itself and prints it
        [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "ui", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        printed = re.search(r"serving http://127\.0\.0\.1:(\d+)/", server.stderr.readline())
        assert printed
        port = int(printed.group(1))
        reply, sent = send_an_endless_header(port, "/")
        assert reply.startswith(b"HTTP/1.1 431") and b"aaaa" not in reply
        assert sent < 64 * 1024 * 1024
        # a head that never comes, or stops before its blank line, is closed at the head
        # timeout (gitml serve's 10 s), so slow clients cannot hold the UI's connections
        silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(5)]
        dripping = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            dripping.append(s)
        try:
            assert all(_closed_by_server(s, wait=60) for s in silent + dripping)
        finally:
            for s in silent + dripping:
                s.close()
        assert _get(f"http://127.0.0.1:{port}/api/experiments")[0] == 200  # the UI goes on
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_clients_that_read_none_of_an_artifact_are_cut_off_and_the_ui_goes_on(client, repo, tmp_path):
    """Twenty clients ask for a 16 MiB artifact and read none of it (the slow read). The
    stream waited for each to drain for ever: 1,000 of them held every connection the UI
    may open (new clients timed out, for good), and 300 held 830 MB of its memory (1 MiB
    blocks waiting). Past the head timeout without reading, a client is cut off."""
    run = client.create_run(run_name="big").info.run_id
    (tmp_path / "big.bin").write_bytes(os.urandom(16 << 20))
    client.log_artifact(run, str(tmp_path / "big.bin"))
    server = subprocess.Popen(
        [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "ui", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        printed = re.search(r"serving http://127\.0\.0\.1:(\d+)/", server.stderr.readline())
        assert printed
        port = int(printed.group(1))
        status, body = _get(f"http://127.0.0.1:{port}/run/{run}/raw/big.bin")  # a client that reads it
        assert status == 200 and len(body) == 16 << 20
        before = open_descriptors(server.pid)
        readers = read_nothing_of(
            port, b"GET /run/%s/raw/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % run.encode(), 20
        )
        peak = [0]

        def released() -> bool:
            now = open_descriptors(server.pid)
            peak[0] = max(peak[0], now)
            return now <= before and peak[0] >= before + 10  # held at first (the premise), then let go

        try:
            assert within(120, released), (before, peak)
        finally:
            for s in readers:
                s.close()
        assert _get(f"http://127.0.0.1:{port}/api/experiments")[0] == 200  # the UI goes on
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_huge_file_in_a_teammates_source_commit_is_named_not_diffed(tmp_path, repo):
    """The run page shows the diff of the run's source commit: a teammate's commit adding a
    32 MiB file (or a zlib bomb of gigabytes: 32 KB pushed here) was read whole and given to
    difflib, the page's thread working for minutes. A file over 1 MiB is named, never read."""
    from starlette.testclient import TestClient

    import gitml
    import gitml.ops
    from gitml import sync
    from gitml.ui import allowed_hosts
    from gitml.ui.app import make_app
    from tests.conftest import git

    data = (b"x" * 127 + b"\n") * (1 << 18)  # 32 MiB of lines
    (repo / "data.txt").write_bytes(data)
    (repo / "train.py").write_text("print('training v2')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "data")
    gitml.set_tracking_uri(str(repo))
    with gitml.start_run() as run:
        gitml.log_param("a", 1)
    gitml.flush()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "push", "-q", str(origin), "HEAD:refs/heads/main")
    with gitml.ops.Operations(repo) as c:
        assert not sync.push(c, str(origin), allow_local_artifacts=True).rejected
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(origin), str(victim))
    with gitml.ops.Operations(victim) as c:
        sync.fetch(c, "origin")
        web = TestClient(make_app(c, allowed_hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")
        page = web.get(f"/run/{run.info.run_id}")
        assert page.status_code == 200
        assert f"File data.txt differs: {len(data)} bytes, over the {1 << 20} a diff shows" in page.text
        assert "training v2" in page.text  # the small file's diff is shown
        assert "xxxxxxxxxx" not in page.text

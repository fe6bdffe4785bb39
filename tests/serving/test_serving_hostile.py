"""gitml serve against hostile clients, each attack through a real ``gitml serve`` process
on loopback and real sockets: slowloris (idle connections by the thousand), a header
line that never ends, bodies that decode to gigabytes, DNS rebinding, cross-site forms."""

from __future__ import annotations

import io
import json
import os
import select
import socket
import sys
import threading
import time

import pytest

import gitml.pyfunc
from tests.serving.test_serving import Server, _env

MARKER = "ZZ-HOSTILE-MARKER-51ce"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A scikit-learn pipeline saved as a plain model folder (no run: nothing to push)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gitml.sklearn
    from gitml.models import infer_signature

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    folder = tmp_path_factory.mktemp("hostile-model") / "model"
    gitml.sklearn.save_model(model, folder, signature=infer_signature(X, model.predict(X)))
    return {
        "path": folder,
        "columns": list(X.columns),
        "rows": X.iloc[:3].values.tolist(),
        "expected": model.predict(X.iloc[:3]).tolist(),
    }


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    return {"repo": tmp_path_factory.mktemp("hostile-repo"), "env": _env(home)}


def _start(place, model_dir, *args: str, limit_files: int | None = None) -> Server:
    return Server(
        place["repo"], place["env"], "-m", str(model_dir["path"]), "--max-body-mb", "1", *args, limit_files=limit_files
    )


@pytest.fixture(scope="module")
def server(place, model_dir):
    """One worker (its memory is the server's own), a 1 MB body limit, and a name behind a proxy."""
    server = _start(place, model_dir, "--allow-host", "models.internal")
    yield server
    server.stop()


def _good(model_dir) -> bytes:
    return json.dumps({"dataframe_split": {"columns": model_dir["columns"], "data": model_dir["rows"]}}).encode()


def _served(server: Server, model_dir) -> bool:
    status, body, _ = server.request("POST", "/invocations", _good(model_dir), {"Content-Type": "application/json"})
    return status == 200 and json.loads(body)["predictions"] == model_dir["expected"]


def _closed_by_server(sock: socket.socket, wait: float = 120) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``wait`` seconds; what it
    sends first (a 431, a 503) is read and dropped."""
    sock.setblocking(False)
    try:
        while True:
            ready, _, _ = select.select([sock], [], [], wait)
            if not ready:
                return False
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    finally:
        sock.setblocking(True)


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


# -- slowloris ---------------------------------------------------------------------
SLOW_BODY = (
    b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100000\r\n\r\n{"dataframe_split": '
)


def test_a_thousand_idle_connections_do_not_lock_out_a_new_client(place, model_dir):
    """1,200 connections that send nothing, part of a head, or a head and part of a body,
    against a server that may open 1,024 descriptors (a common default) and waits 10
    minutes for a client: without the cap it stops accepting at about a thousand and a
    new client's connection is reset. With it, the connections that have waited longest
    for their client are closed and the new client is answered."""
    server = _start(place, model_dir, "--head-timeout", "600", limit_files=1024)
    idle: list[socket.socket] = []
    try:
        for i in range(1200):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if i % 3 == 1:
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
            elif i % 3 == 2:
                s.sendall(SLOW_BODY)
            idle.append(s)
        assert _served(server, model_dir)
        assert server.request("GET", "/ping", timeout=30)[0] == 200
        assert _closed_by_server(idle[0]) and _closed_by_server(idle[2])  # the longest waits made room
        assert server.proc.poll() is None
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_a_thousand_bodies_that_never_end_do_not_lock_out_a_new_client(place, model_dir):
    """The slow body (R.U.D.Y.): every connection sends its head and a few bytes of a
    100 KB body. Each holds a request open, so closing only connections idle between
    requests would leave none to close: the new client would get a 503."""
    server = _start(place, model_dir, "--head-timeout", "600", limit_files=1024)
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(SLOW_BODY)
            idle.append(s)
        assert _served(server, model_dir)
        assert _closed_by_server(idle[0])
    finally:
        for s in idle:
            s.close()
        server.stop()


def read_nothing_of(port: int, request: bytes, count: int) -> list[socket.socket]:
    """``count`` connections that send ``request`` and read none of the answer (a receive
    buffer of 1 KiB): the slow read, which holds what the server is answering."""
    out = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        out.append(s)
    return out


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def within(seconds: float, done) -> bool:
    """Whether ``done()`` becomes true within ``seconds`` (asked every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


WIDE = """
import gitml.pyfunc


class Wide(gitml.pyfunc.PythonModel):
    # 4 KiB of answer a row: a small request, a large answer (an embedding model's shape)
    def predict(self, context, model_input, params=None):
        return ["x" * 4096] * len(model_input)
"""


def _wide_model(folder) -> str:
    """A model folder of ``WIDE``'s class, its module shipped in the folder (``code_paths``)."""
    import importlib.util

    source = folder.parent / "widemodel.py"
    source.write_text(WIDE)
    spec = importlib.util.spec_from_file_location("widemodel", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["widemodel"] = module
    spec.loader.exec_module(module)
    try:
        gitml.pyfunc.save_model(folder, python_model=module.Wide(), code_paths=[str(source)])
    finally:
        del sys.modules["widemodel"]
    return str(folder)


def test_clients_that_read_none_of_a_large_answer_are_cut_off(place, tmp_path):
    """Twenty clients ask for an 8 MiB answer (more than the kernel buffers for a socket)
    and read none of it. uvicorn's keep-alive time closed each with ``close``, which waits
    for the buffer to drain: each connection and its answer stayed for as long as its
    client wished (1,100 of them held 500 descriptors and 620 MB for good). A client that
    reads nothing for the head timeout is now cut off, its answer dropped."""
    server = Server(place["repo"], place["env"], "-m", _wide_model(tmp_path / "wide"), "--head-timeout", "2")
    try:
        assert server.invoke({"dataframe_records": [{"a": 1}]})[0] == 200
        before = open_descriptors(server.proc.pid)
        body = json.dumps({"dataframe_records": [{"a": 1}] * 2048}).encode()
        request = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        readers = read_nothing_of(server.port, request + b"Content-Length: %d\r\n\r\n%s" % (len(body), body), 20)
        try:
            peak = [0]

            def released() -> bool:
                now = open_descriptors(server.proc.pid)
                peak[0] = max(peak[0], now)
                return now <= before and peak[0] >= before + 10  # held at first (the premise), then let go

            assert within(120, released), (before, peak)
            assert server.invoke({"dataframe_records": [{"a": 1}]})[0] == 200
        finally:
            for s in readers:
                s.close()
    finally:
        server.stop()


def test_a_request_head_not_sent_in_time_closes_the_connection(place, model_dir):
    server = _start(place, model_dir, "--head-timeout", "1")
    try:
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(20)]
        dripping = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            dripping.append(s)
        assert all(_closed_by_server(s) for s in silent + dripping)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(SLOW_BODY)  # a head in time, then a body that stops
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"no part of the body" in reply
        for s in silent + dripping:
            s.close()
        assert server.request("GET", "/ping")[0] == 200  # a client that sends its head is answered
    finally:
        server.stop()


def send_an_endless_header(port: int, path: str) -> tuple[bytes, int]:
    """Open a request to ``path`` whose one header value never ends (up to 64 MiB, sent from
    a thread) and read what the server answers until it closes: (the reply, the bytes sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: " % path.encode())
        sent = 0

        def send() -> None:  # 64 MiB of one header value; the server closes long before
            nonlocal sent
            try:
                for _ in range(1024):
                    s.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        sender.join()
    return reply, sent


def test_a_header_line_that_never_ends_is_cut_off(server):
    """httptools hands a header over only once its line ends: a line that never ends
    would be gathered for ever. The server counts the head's bytes as they arrive."""
    reply, sent = send_an_endless_header(server.port, "/ping")
    assert reply.startswith(b"HTTP/1.1 431") and b"aaaa" not in reply
    assert sent < 64 * 1024 * 1024
    assert server.request("GET", "/ping")[0] == 200


# -- bodies that decode to gigabytes ---------------------------------------------
def _parquet_zeros(rows: int) -> bytes:
    """``rows`` zeros in one column: dictionary and run-length encoded, a few KB."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    block = pa.table({"mean radius": pa.array([0.0] * 1_000_000)})
    out = io.BytesIO()
    with pq.ParquetWriter(out, block.schema, compression="zstd") as writer:
        for _ in range(rows // 1_000_000):
            writer.write_table(block, row_group_size=1_000_000)
    return out.getvalue()


def _parquet_text(rows: int, width: int) -> bytes:
    """One string of ``width`` characters repeated ``rows`` times: one dictionary entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"mean radius": pa.array(["a" * width] * rows)})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _csv_empty_fields(columns: int, rows: int) -> bytes:
    """A header of ``columns`` names, then ``rows`` lines of one value: pandas fills every
    other field with NaN."""
    return (",".join(f"c{i}" for i in range(columns)) + "\n" + "0\n" * rows).encode()


def _records_of_distinct_keys(rows: int) -> bytes:
    """Records each with a key of its own: ``rows`` columns for every row."""
    return json.dumps({"dataframe_records": [{f"k{i}": 0} for i in range(rows)]}).encode()


BOMBS = [
    (
        "parquet zeros (50M rows, 400 MB as float64)",
        "application/vnd.apache.parquet",
        lambda: _parquet_zeros(50_000_000),
        "cells",
    ),
    (
        "parquet text (one 400 KB string x 1,000 rows, 400 MB)",
        "application/vnd.apache.parquet",
        lambda: _parquet_text(1000, 400_000),
        "text",
    ),
    (
        "csv of empty fields (2,000 columns x 50,000 rows, 800 MB)",
        "text/csv",
        lambda: _csv_empty_fields(2000, 50_000),
        "cells",
    ),
    (
        "json records of distinct keys (10,000 x 10,000, 800 MB)",
        "application/json",
        lambda: _records_of_distinct_keys(10_000),
        "cells",
    ),
]


@pytest.mark.parametrize(
    "name, content_type, make, words", BOMBS, ids=["parquet-zeros", "parquet-text", "csv", "records"]
)
def test_a_small_body_that_decodes_to_gigabytes_is_refused_in_bounded_memory(
    server, model_dir, name, content_type, make, words
):
    body = make()
    assert len(body) < 1024 * 1024  # under the body limit: only the decoded table is too large
    before = _peak_rss_kb(server.proc.pid)
    status, text, _ = server.request("POST", "/invocations", body, {"Content-Type": content_type})
    grown_mb = (_peak_rss_kb(server.proc.pid) - before) / 1024
    assert status == 413, text
    error = json.loads(text)
    assert error["error_code"] == "REQUEST_LIMIT_EXCEEDED" and words in error["message"] and "limit" in error["message"]
    assert grown_mb < 100, f"{name}: the server's peak memory grew by {grown_mb:.0f} MB"
    assert _served(server, model_dir)


def test_a_parquet_body_within_the_limits_still_predicts(server, model_dir):
    import pandas as pd

    frame = pd.DataFrame(model_dir["rows"], columns=model_dir["columns"])
    out = io.BytesIO()
    frame.to_parquet(out)
    status, text, _ = server.request(
        "POST", "/invocations", out.getvalue(), {"Content-Type": "application/vnd.apache.parquet"}
    )
    assert status == 200 and json.loads(text)["predictions"] == model_dir["expected"]


# -- DNS rebinding and cross-site posts ------------------------------------------------
def _raw(server: Server, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head + b"Connection: close\r\n\r\n" + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    "host, allowed",
    [
        (b"evil.example", False),
        (b"evil.example:5001", False),
        (b"127.0.0.1.evil.example", False),
        (b"localhost.evil.example", False),
        (b"models.internal.evil.example", False),
        (None, False),
        (b"127.0.0.1", True),
        (b"localhost:5001", True),
        (b"[::1]:5001", True),
        (b"10.1.2.3:8080", True),
        (b"models.internal", True),
        (b"MODELS.INTERNAL:443", True),
    ],
)
def test_only_ip_addresses_localhost_and_allowed_names_are_answered(server, model_dir, host, allowed):
    """A page of evil.example that resolves its name to the server (DNS rebinding) reads
    its answers as same-origin: its requests carry Host: evil.example, refused."""
    head = b"POST /invocations HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host is not None else b"")
    body = _good(model_dir)
    reply = _raw(server, head + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body), body)
    if allowed:
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    else:
        assert reply.startswith(b"HTTP/1.1 400") and b"--allow-host" in reply and b"predictions" not in reply
    ping = _raw(server, b"GET /ping HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host is not None else b""))
    assert ping.startswith(b"HTTP/1.1 200" if allowed else b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"text/plain",
        b"text/plain; charset=utf-8",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
    ],
)
def test_a_post_a_cross_site_form_could_send_is_refused(server, model_dir, content_type):
    """A form (or a fetch without a preflight) can only send these types, or none."""
    body = _good(model_dir)
    head = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % len(body)
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    reply = _raw(server, head, body)
    assert reply.startswith(b"HTTP/1.1 415") and b"predictions" not in reply


def test_the_server_keeps_serving_after_every_attack(server, model_dir):
    assert _served(server, model_dir)
    assert server.proc.poll() is None
    assert os.path.exists(f"/proc/{server.proc.pid}")

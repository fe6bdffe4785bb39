"""gitml serve: a real server process on a free port, with a real scikit-learn pipeline
logged to a real repository, queried over HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, run_python

MARKER = "ZZ-ECHO-MARKER-9f3c"

_LOG_MODELS = """
import json, sys
import gitml, gitml.sklearn
import gitml.ops
from gitml.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
signature = infer_signature(X, model.predict(X))
with gitml.start_run(run_name="cancer-lr") as run:
    gitml.sklearn.log_model(model, name="model", signature=signature, registered_model_name="cancer")
forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)  # a pickle over the inline limit
with gitml.start_run(run_name="cancer-forest") as forest_run:
    gitml.sklearn.log_model(forest, name="model", signature=signature)
print(json.dumps({"run": run.info.run_id, "forest": forest_run.info.run_id}))
"""


def _env(home) -> dict:
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
    )
    for name in ("GITML_REPO", "GITML_RUN_ID", "GITML_EXPERIMENT_NAME", "GITML_EXPERIMENT_ID"):
        env.pop(name, None)
    return env


class Server:
    """A ``gitml serve`` process; ``url`` from the line it prints once listening."""

    def __init__(self, repo, env, *args: str, limit_files: int | None = None):
        def limit() -> None:  # the descriptors the server may open, soft and hard (as a default shell's 1,024)
            import resource

            if limit_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "serve", "--port", "0", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=limit,
        )
        self.port, self.lines = 0, []
        deadline = time.monotonic() + 120
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            if ready:
                line = self.proc.stderr.readline().decode()
                if not line:
                    break
                self.lines.append(line)
                if " on http://127.0.0.1:" in line:
                    self.port = int(line.split(" on http://127.0.0.1:")[1].split()[0])
                    break
        if not self.port:
            self.stop()
            raise AssertionError(f"gitml serve did not start: {''.join(self.lines)}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.lines.append(line.decode(errors="replace"))

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 60
    ):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            conn.close()

    def invoke(self, payload, content_type: str = "application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", "/invocations", body, {"Content-Type": content_type})

    def workers(self) -> list[int]:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return [int(p) for p in f.read().split()]

    def stop(self, grace: float | None = 30) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (None: wait for the exit; pytest-timeout guards a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A repository with the pipeline logged (and registered as ``cancer``) and a forest;
    a server of ``models:/cancer/1`` with two workers and a 1 MB body limit."""
    home = tmp_path_factory.mktemp("serving-home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    repo = tmp_path_factory.mktemp("serving-repo")
    env = _env(home)
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "train.py").write_text("print('training')\n")
    subprocess.run(["git", "add", "."], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "initial"], cwd=repo, env=env, check=True)
    runs = json.loads(run_python(_LOG_MODELS, cwd=repo, env=env).stdout.strip().splitlines()[-1])
    server = Server(repo, env, "-m", "models:/cancer/1", "--workers", "2", "--max-body-mb", "1")
    yield {"repo": repo, "env": env, "server": server, **runs}
    server.stop()


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def _predictions(response) -> list:
    status, body, _ = response
    assert status == 200, body
    return json.loads(body)["predictions"]


# -- the protocol --------------------------------------------------------------
def test_ping_health_and_version(served):
    server = served["server"]
    assert server.request("GET", "/ping")[:2] == (200, b"\n")
    assert server.request("GET", "/health")[:2] == (200, b"\n")
    from gitml import __version__

    assert server.request("GET", "/version")[:2] == (200, __version__.encode())


def test_every_input_format_predicts_what_the_model_predicts(served, data):
    X, model = data
    rows = X.iloc[:7]
    expected = model.predict(rows).tolist()
    server = served["server"]
    split = {"columns": list(X.columns), "data": rows.values.tolist()}
    assert _predictions(server.invoke({"dataframe_split": split})) == expected
    assert _predictions(server.invoke({"dataframe_split": split}, "application/json; charset=utf-8")) == expected
    assert _predictions(server.invoke({"dataframe_records": rows.to_dict(orient="records")})) == expected
    assert _predictions(server.invoke({"instances": rows.to_dict(orient="records")})) == expected
    assert _predictions(server.invoke({"inputs": rows.to_dict(orient="list")})) == expected
    assert _predictions(server.invoke({"dataframe_split": split, "params": {"unused": 1}})) == expected
    assert _predictions(server.invoke(rows.to_csv(index=False).encode(), "text/csv")) == expected
    # columns in another order, an extra column: enforced as MLflow does (reordered, dropped)
    shuffled = rows[list(reversed(X.columns))].assign(extra=1.0)
    assert (
        _predictions(
            server.invoke({"dataframe_split": {"columns": list(shuffled.columns), "data": shuffled.values.tolist()}})
        )
        == expected
    )
    big = X.iloc[:500]
    assert (
        _predictions(server.invoke({"dataframe_split": {"columns": list(X.columns), "data": big.values.tolist()}}))
        == model.predict(big).tolist()
    )


BAD = [
    ("application/json", b'{"dataframe_split": {"columns": ["' + MARKER.encode() + b'"', 400, "not valid JSON"),
    ("application/json", b'[[1, 2, "' + MARKER.encode() + b'"]', 400, "not valid JSON"),
    ("application/json", b"", 400, "empty"),
    ("application/json", b"\xff\xfe" + MARKER.encode(), 400, "not valid JSON"),
    ("application/json", b"[" * 100_000, 400, "not valid JSON"),
    ("application/json", json.dumps({"nothing": MARKER}).encode(), 400, "dataframe_split"),
    ("application/json", json.dumps({"dataframe_split": MARKER}).encode(), 400, "dataframe_split"),
    (
        "application/json",
        json.dumps({"dataframe_split": {"columns": [MARKER], "data": [[1]]}}).encode(),
        400,
        "lacks columns",
    ),
    ("application/json", json.dumps({"dataframe_records": [{"mean radius": MARKER}]}).encode(), 400, "lacks columns"),
    (
        "application/json",
        json.dumps({"dataframe_split": {"columns": ["a"], "data": MARKER}}).encode(),
        400,
        "not readable",
    ),
    (
        "application/json",
        json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "params": MARKER}).encode(),
        400,
        "params",
    ),
    ("text/csv", b"a,b\n1,2,3,4\n" + MARKER.encode(), 400, ""),
    ("text/plain", MARKER.encode(), 415, "content type"),
    ("application/x-www-form-urlencoded", MARKER.encode(), 415, "content type"),
    ("multipart/form-data; boundary=x", MARKER.encode(), 415, "content type"),
    (None, json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}}).encode(), 415, "no Content-Type"),
    ("application/json; charset=latin-1", b"{}", 415, "UTF-8"),
    ("application/json; " + MARKER + "=1", b"{}", 415, "parameter"),
]


@pytest.mark.parametrize("content_type, body, status, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_request_is_a_short_4xx_that_never_echoes_the_body(served, content_type, body, status, words):
    server = served["server"]
    got, text, _ = server.request("POST", "/invocations", body, {"Content-Type": content_type} if content_type else {})
    assert got == status, text
    error = json.loads(text)
    assert set(error) == {"error_code", "message"} and words in error["message"]
    assert (
        MARKER.encode() not in text or status == 415 and "parameter" in words
    )  # a parameter *name* is named, cut at 40
    assert len(text) < 700
    assert server.request("GET", "/ping")[0] == 200  # and it keeps serving


def test_a_value_of_the_wrong_type_names_the_column(served, data):
    X, _ = data
    rows = X.iloc[:2].astype(object)
    rows.iloc[0, 3] = "lots"
    status, text, _ = served["server"].invoke(
        {"dataframe_split": {"columns": list(X.columns), "data": rows.values.tolist()}}
    )
    assert status == 400 and "mean area" in json.loads(text)["message"]


def test_wrong_methods_and_paths(served):
    server = served["server"]
    assert server.request("GET", "/invocations")[0] == 405
    assert server.request("POST", "/ping", b"{}")[0] == 405
    status, text, _ = server.request("GET", "/" + MARKER)
    assert status == 404 and MARKER.encode() not in text


def test_an_oversize_body_is_refused_by_its_length_before_it_is_sent(served):
    server = served["server"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000000\r\n\r\n" + b"[" * 1000
        )
        reply = b""
        while chunk := s.recv(4096):  # the server closes the connection after its reply
            reply += chunk
    assert (
        reply.startswith(b"HTTP/1.1 413")
        and b"limit of 1048576 bytes" in reply
        and b"connection: close" in reply.lower()
    )


def test_an_oversize_chunked_body_is_refused_while_it_is_read(served):
    import threading

    server = served["server"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

        def send():  # the server answers and closes before all is sent: a broken pipe here is expected
            try:
                for _ in range(40):
                    s.sendall(b"10000\r\n" + b"[" * 65536 + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        reply = b""
        try:  # read while the body is sent, so the reply is taken before any reset
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        sender.join()
    assert reply.startswith(b"HTTP/1.1 413") and b"[[[" not in reply
    assert server.request("GET", "/ping")[0] == 200


def test_an_oversize_request_head_is_refused(served):
    server = served["server"]
    status, text, _ = server.request("GET", "/ping", headers={"X-Big": "a" * 100_000})
    assert status == 431 and b"aaaa" not in text
    assert server.request("GET", "/ping")[0] == 200


def test_a_concurrent_burst_is_answered_in_full(served, data):
    from concurrent.futures import ThreadPoolExecutor

    X, model = data
    server = served["server"]
    good = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:3].values.tolist()}}
    expected = model.predict(X.iloc[:3]).tolist()

    def one(i: int):
        if i % 5 == 0:
            return server.invoke(b'{"broken')[0] == 400
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:  # keep-alive: several requests per connection
            for _ in range(3):
                conn.request("POST", "/invocations", json.dumps(good), {"Content-Type": "application/json"})
                response = conn.getresponse()
                if response.status != 200 or json.loads(response.read())["predictions"] != expected:
                    return False
            return True
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(160)))


def test_two_workers_serve_and_a_dead_worker_is_replaced(served):
    server = served["server"]
    workers = server.workers()
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = server.workers()
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.05)
    assert len(now) == 2 and workers[0] not in now and workers[1] in now
    for _ in range(10):
        assert server.request("GET", "/ping")[0] == 200


def test_workers_accept_connections_with_nodelay_on_asyncio_loop():
    """The stall of MLflow's ``-w 2``: asyncio sets TCP_NODELAY only on connections
    accepted from an IPPROTO_TCP socket; ``listen`` makes one."""
    from gitml.serving.workers import listen

    async def nodelay(sock) -> int:
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        async def accepted(reader, writer):
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        return value

    assert asyncio.run(nodelay(listen("127.0.0.1", 0))) != 0
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn's multi-worker mode binds
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    assert asyncio.run(nodelay(plain)) == 0


def test_a_run_uri_serves(served, data):
    X, model = data
    server = Server(served["repo"], served["env"], "-m", "runs:/cancer-lr/model")
    try:
        body = {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:4].values.tolist()}}
        assert _predictions(server.invoke(body)) == model.predict(X.iloc[:4]).tolist()
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error():
    from gitml.errors import ServerStartError
    from gitml.serving.workers import listen

    taken = listen("127.0.0.1", 0)
    try:
        with pytest.raises(
            ServerStartError, match=f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}: Address already in use"
        ):
            listen("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_a_tampered_cached_model_file_stops_the_server_before_it_listens(served):
    repo, run = served["repo"], served["forest"]
    import gitml

    client = gitml.ops.Operations(repo)
    try:
        sha = client.artifact_manifest(run)["model/model.pkl"]["sha256"]
    finally:
        client.close()
    cached = repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    assert cached.exists()  # over the inline limit: in the cache, not in git
    original = cached.read_bytes()
    os.chmod(cached, 0o644)
    cached.write_bytes(original[:-10] + b"0123456789")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gitml.cli.main",
                "-C",
                str(repo),
                "serve",
                "-m",
                f"runs:/{run}/model",
                "--port",
                "0",
            ],
            env=served["env"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        cached.write_bytes(original)
    assert result.returncode == 1 and "model.pkl" in result.stderr and "Traceback" not in result.stderr
    assert " on http://" not in result.stderr


# -- the fast path gives what the general path gives ----------------------------
def _general(model, payload):
    from gitml.pyfunc.batch import predictions_json, table_from_payload

    data, params = table_from_payload(payload, model.metadata.get_input_schema())
    return json.loads(predictions_json(model.predict(data, params=params)))


@pytest.mark.parametrize("kind", ["pipeline", "forest", "function", "columns"])
def test_the_fast_path_predicts_what_the_general_path_predicts(tmp_path, data, kind):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    import gitml.pyfunc
    import gitml.sklearn
    from gitml.models import infer_signature
    from gitml.serving.app import ScoringApp

    X, pipeline = data
    y = pipeline.predict(X)
    estimator = {
        "pipeline": pipeline,
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        "function": make_pipeline(
            FunctionTransformer(lambda f: f[["mean radius", "worst area"]]), LogisticRegression(max_iter=1000)
        ).fit(X, y),
        "columns": make_pipeline(
            ColumnTransformer([("s", StandardScaler(), ["mean radius", "mean area"])]), LogisticRegression()
        ).fit(X, y),
    }[kind]
    gitml.sklearn.save_model(estimator, tmp_path / "m", signature=infer_signature(X, y))
    model = gitml.pyfunc.load_model(str(tmp_path / "m"))
    app = ScoringApp(model, max_body_bytes=10**8, version="x")
    assert app.fast is not None and app.fast.as_array == (kind in ("pipeline", "forest"))
    columns = list(X.columns)
    ints = X.iloc[:20].round().astype(int)
    for rows in (
        X.iloc[:1].values.tolist(),
        X.iloc[:300].values.tolist(),
        ints.values.tolist(),
        [[2**60] + r[1:] for r in X.iloc[:2].values.tolist()],
    ):
        payload = {"dataframe_split": {"columns": columns, "data": rows}}
        assert app.fast.frame(payload) is not None or rows[0][0] == 2**60
        assert json.loads(app.score(json.dumps(payload).encode(), "json")) == _general(model, payload)
    for odd in (
        [[True] + r[1:] for r in X.iloc[:2].values.tolist()],
        [[None] + r[1:] for r in X.iloc[:2].values.tolist()],
    ):
        payload = {"dataframe_split": {"columns": columns, "data": odd}}
        assert app.fast.frame(payload) is None  # the general path decides these


def test_a_model_the_fast_path_does_not_fit_still_serves(tmp_path):
    import gitml.pyfunc
    from gitml.serving.app import ScoringApp

    class Echo(gitml.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"n": np.arange(len(model_input))})

    gitml.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    app = ScoringApp(gitml.pyfunc.load_model(str(tmp_path / "m")), max_body_bytes=10**6, version="x")
    assert app.fast is None
    body = json.dumps({"dataframe_records": [{"a": 1}, {"a": 2}]}).encode()
    assert json.loads(app.score(body, "json")) == {"predictions": [{"n": 0}, {"n": 1}]}


def test_missing_serve_extra_names_the_install(monkeypatch):
    from gitml.errors import MissingExtraError
    from gitml.serving import check_installed

    monkeypatch.setitem(sys.modules, "orjson", None)
    with pytest.raises(MissingExtraError, match=r'orjson: pip install "gitml\[serve\]"'):
        check_installed()


def test_a_registered_model_answers_v2_under_its_name_and_version(served, data):
    """``models:/cancer/1`` is served as ``cancer`` version ``1`` on the V2 routes, beside /invocations."""
    X, model = data
    rows = X.iloc[:4]
    server = served["server"]
    status, body, _ = server.request("GET", "/v2/models/cancer/versions/1/ready")
    assert status == 200 and json.loads(body) == {"name": "cancer", "ready": True}
    request = {"inputs": [{"name": c, "shape": [4], "datatype": "FP64", "data": rows[c].tolist()} for c in X.columns]}
    for path in ("/v2/models/cancer/infer", "/v2/models/cancer/versions/1/infer"):
        status, body, _ = server.request(
            "POST", path, json.dumps(request).encode(), {"Content-Type": "application/json"}
        )
        response = json.loads(body)
        assert status == 200 and response["model_version"] == "1"
        assert response["outputs"][0]["data"] == model.predict(rows).tolist()
    assert server.request("GET", "/v2/models/cancer/versions/2")[0] == 404

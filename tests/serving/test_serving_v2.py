"""gitml serve's V2 (Open Inference) protocol, through a real ``gitml serve`` process on
loopback: health, metadata, tensors mapped to the signature's columns, the same predictions
as /invocations, and the hostile requests refused with a clear 4xx ``{"error": ...}``."""

from __future__ import annotations

import json
import socket

import pytest

from tests.serving.test_serving import Server, _env
from tests.serving.test_serving_hostile import MARKER, _closed_by_server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A scikit-learn pipeline over the 30 columns of the breast-cancer table, saved as a folder."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gitml.sklearn
    from gitml.models import infer_signature

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    folder = tmp_path_factory.mktemp("v2-model") / "model"
    gitml.sklearn.save_model(model, folder, signature=infer_signature(X, model.predict(X)))
    rows = X.iloc[:5]
    return {
        "path": folder,
        "columns": list(X.columns),
        "rows": rows.values.tolist(),
        "expected": model.predict(rows).tolist(),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("v2-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    server = Server(
        tmp_path_factory.mktemp("v2-repo"),
        _env(home),
        "-m",
        str(model_dir["path"]),
        "--max-body-mb",
        "1",
        "--name",
        "cancer",
        "--head-timeout",
        "2",
    )
    yield server
    server.stop()


def _columns_request(model_dir, **extra) -> dict:
    rows = model_dir["rows"]
    inputs = [
        {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[i] for r in rows]}
        for i, c in enumerate(model_dir["columns"])
    ]
    return {"inputs": inputs, **extra}


def _post(server, path, payload, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, text, _ = server.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(text)


INFER = "/v2/models/cancer/infer"


def test_health_and_metadata(server, model_dir):
    from gitml import __version__

    for path, key in (("/v2/health/live", "live"), ("/v2/health/ready", "ready")):
        status, body, _ = server.request("GET", path)
        assert status == 200 and json.loads(body) == {key: True}
    status, body, _ = server.request("GET", "/v2")
    assert status == 200 and json.loads(body) == {"name": "gitml", "version": __version__, "extensions": []}
    status, body, _ = server.request("GET", "/v2/models/cancer")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "cancer" and meta["versions"] == []
    assert [t["name"] for t in meta["inputs"]] == model_dir["columns"]
    assert {t["datatype"] for t in meta["inputs"]} == {"FP64"} and meta["inputs"][0]["shape"] == [-1]
    status, body, _ = server.request("GET", "/v2/models/cancer/ready")
    assert status == 200 and json.loads(body) == {"name": "cancer", "ready": True}


def test_named_columns_and_one_table_tensor_predict_what_invocations_predicts(server, model_dir):
    expected = model_dir["expected"]
    invocations = json.loads(
        server.invoke({"dataframe_split": {"columns": model_dir["columns"], "data": model_dir["rows"]}})[1]
    )["predictions"]
    assert invocations == expected
    status, response = _post(server, INFER, _columns_request(model_dir, id="req-1"))
    assert status == 200, response
    assert response["model_name"] == "cancer" and response["id"] == "req-1"
    (output,) = response["outputs"]
    assert output["shape"] == [5] and output["datatype"] == "INT64" and output["data"] == expected
    # the whole table as one [N, 30] tensor (nested or flat), and each column as [N, 1]
    rows = model_dir["rows"]
    for data in (rows, [v for r in rows for v in r]):
        status, response = _post(
            server, INFER, {"inputs": [{"name": "input-0", "shape": [5, 30], "datatype": "FP32", "data": data}]}
        )
        assert status == 200 and response["outputs"][0]["data"] == expected, response
    request = _columns_request(model_dir)
    for tensor in request["inputs"]:
        tensor["shape"] = [5, 1]
    assert _post(server, INFER, request)[1]["outputs"][0]["data"] == expected
    # integers are read into a double column; outputs asked by name
    request = _columns_request(model_dir, outputs=[{"name": output["name"]}])
    request["inputs"][0] = {
        **request["inputs"][0],
        "datatype": "INT64",
        "data": [int(v) for v in request["inputs"][0]["data"]],
    }
    status, response = _post(server, INFER, request)
    assert status == 200 and len(response["outputs"][0]["data"]) == 5


def _wrong_datatype(model_dir):
    request = _columns_request(model_dir)
    request["inputs"][3] = {**request["inputs"][3], "datatype": "BYTES", "data": ["a"] * 5}
    return request


def _values_not_of_datatype(model_dir):
    request = _columns_request(model_dir)
    request["inputs"][2]["data"] = [MARKER] * 5
    return request


def _missing_column(model_dir):
    request = _columns_request(model_dir)
    del request["inputs"][1]
    return request


def _unknown_column(model_dir):
    request = _columns_request(model_dir)
    request["inputs"].append({"name": "not-a-column", "shape": [5], "datatype": "FP64", "data": [0.0] * 5})
    return request


def _shape_mismatch(model_dir):
    request = _columns_request(model_dir)
    request["inputs"][0]["shape"] = [6]
    return request


def _uneven_rows(model_dir):
    request = _columns_request(model_dir)
    request["inputs"][0] = {**request["inputs"][0], "shape": [4], "data": request["inputs"][0]["data"][:4]}
    return request


def _int_out_of_range(model_dir):
    request = _columns_request(model_dir)
    request["inputs"][0] = {**request["inputs"][0], "datatype": "INT8", "data": [1, 2, 3, 4, 1000]}
    return request


HOSTILE = [
    (lambda m: b'{"inputs": [{"name": "' + MARKER.encode(), 400, "not valid JSON"),
    (lambda m: {"nothing": MARKER}, 400, '"inputs"'),
    (lambda m: {"inputs": []}, 400, "non-empty list"),
    (lambda m: {"inputs": [MARKER]}, 400, "not an object"),
    (lambda m: {"inputs": [{"shape": [1], "datatype": "FP64", "data": [1.0]}]}, 400, "no name"),
    (lambda m: {"inputs": [{"name": "x", "shape": [1], "datatype": MARKER, "data": [1.0]}]}, 400, "datatype"),
    (lambda m: {"inputs": [{"name": "x", "shape": [-1], "datatype": "FP64", "data": [1.0]}]}, 400, "shape must be"),
    (lambda m: {"inputs": [{"name": "x", "shape": "5", "datatype": "FP64", "data": [1.0]}]}, 400, "shape must be"),
    (lambda m: {"inputs": [{"name": "x", "shape": [1] * 9, "datatype": "FP64", "data": [1.0]}]}, 400, "shape must be"),
    (lambda m: {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]}, 400, "has no data"),
    (lambda m: {"inputs": [{"name": "x", "shape": [100000, 100000], "datatype": "FP64", "data": [1.0]}]}, 413, "limit"),
    (
        lambda m: b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        400,
        "not valid JSON",
    ),  # nested past any parser
    (
        lambda m: {"inputs": [{"name": "x", "shape": [2**62, 2**62, 2**62], "datatype": "FP64", "data": [1.0]}]},
        413,
        "limit",
    ),
    (
        lambda m: {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [[[[[[[[[[1.0]]]]]]]]]]}]},
        400,
        "nested",
    ),
    (
        lambda m: {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]},
        400,
        "holds 2 values but data has 3",
    ),
    (
        lambda m: {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [[1.0], [2.0], [3.0]]}]},
        400,
        "more values",
    ),
    (lambda m: {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, None]}]}, 400, "not numbers"),
    (lambda m: {"inputs": [{"name": "x", "shape": [2], "datatype": "BOOL", "data": [1, 0]}]}, 400, "true or false"),
    (_wrong_datatype, 400, "is BYTES but the model's column 'mean area' is double"),
    (_values_not_of_datatype, 400, "not numbers"),
    (_missing_column, 400, "lacks the model's column 'mean texture'"),
    (_unknown_column, 400, "'not-a-column' is not a column"),
    (_shape_mismatch, 400, "holds 6 values but data has 5"),
    (_uneven_rows, 400, "has 5 rows; the inputs before it have 4"),
    (_int_out_of_range, 400, "outside INT8's range"),
    (lambda m: {**_columns_request(m), "outputs": [{"name": MARKER}]}, 400, "no output named"),
]


@pytest.mark.parametrize("make, status, words", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_a_bad_inference_request_is_a_clear_4xx_that_never_echoes_the_body(server, model_dir, make, status, words):
    got, error = _post(server, INFER, make(model_dir))
    assert got == status, error
    assert set(error) == {"error"} and words in error["error"], error
    assert MARKER not in error["error"] or "no output named" in words  # a name asked for is named (cut at 60)
    assert len(error["error"]) <= 503
    assert server.request("GET", "/v2/health/ready")[0] == 200  # and it keeps serving


def test_wrong_routes_methods_and_content_types(server, model_dir):
    body = json.dumps(_columns_request(model_dir)).encode()
    assert server.request("GET", INFER)[0] == 405
    assert server.request("POST", "/v2/health/live", b"{}", {"Content-Type": "application/json"})[0] == 405
    status, text, _ = server.request("POST", f"/v2/models/{MARKER}/infer", body, {"Content-Type": "application/json"})
    assert status == 404 and "this server serves 'cancer'" in json.loads(text)["error"]
    status, text, _ = server.request("GET", "/v2/models/cancer/versions/3/ready")
    assert status == 404 and "no version" in json.loads(text)["error"]
    assert server.request("GET", "/v2/models/cancer/explain")[0] == 404
    assert server.request("GET", "/v2/repository/index")[0] == 404
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        status, text, _ = server.request("POST", INFER, body, headers)
        assert status == 415 and "application/json" in json.loads(text)["error"]
    status, text, _ = server.request(
        "POST", INFER, body, {"Content-Type": "application/json", "Inference-Header-Content-Length": "10"}
    )
    assert status == 415 and "binary tensor extension" in json.loads(text)["error"]
    status, text, _ = server.request("POST", INFER, body, {"Content-Type": "application/json", "Host": "evil.example"})
    assert status == 400  # DNS rebinding: the same Host check as /invocations


def test_an_oversize_body_is_refused_by_its_length(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(
            b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        reply = b""
        while chunk := s.recv(65536):  # the server closes after its answer; head and body may come apart
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"over the server's limit" in reply


def test_a_body_that_stops_is_refused_in_time(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(
            b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"inputs": ['
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"no part of the body" in reply
    assert not _closed_by_server(socket.create_connection(("127.0.0.1", server.port), timeout=30), wait=0.5)

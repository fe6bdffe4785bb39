"""``gitml models export --target mlserver|kserve|docker``: the MLServer folder served by a real
``mlserver start`` (MLServer 1.7.1 in its own venv, outside the clone: benchmarks/setup_mlserver.sh)
on loopback, answering V2 requests as ``gitml serve`` does; the manifests checked against schema
subsets of KServe's CRDs and MLServer's settings (tests/data/schemas); the Docker context's
build-time check and entry point run for real (no Docker daemon here: the image is not built)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT
from tests.mlserver_venv import ensure_mlserver_python
from tests.serving.test_serving import Server, _env

SCHEMAS = os.path.join(ROOT, "tests", "data", "schemas")


def _schema(name: str) -> dict:
    with open(os.path.join(SCHEMAS, name)) as f:
        return json.load(f)


def _errors(document, schema_name: str) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gitml.sklearn
    from gitml.models import infer_signature

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    folder = tmp_path_factory.mktemp("export-model") / "model"
    gitml.sklearn.save_model(model, folder, signature=infer_signature(X, model.predict(X)))
    rows = X.iloc[:8]
    return {"path": folder, "columns": list(X.columns), "rows": rows, "expected": model.predict(rows).tolist()}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    home = tmp_path_factory.mktemp("export-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    return {"home": home, "env": _env(home), "repo": tmp_path_factory.mktemp("export-repo")}


def _export(place, model_dir, dst, target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gitml",
            "models",
            "export",
            str(model_dir["path"]),
            str(dst),
            "--target",
            target,
            *args,
        ],
        env=place["env"],
        capture_output=True,
        text=True,
    )


def _v2_request(model_dir) -> dict:
    rows = model_dir["rows"]
    return {
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
            for c in model_dir["columns"]
        ]
    }


def _post(port: int, path: str, payload) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, {"raw": body.decode(errors="replace")[:2000]}
    finally:
        conn.close()


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def mlserver_python() -> str:
    if os.environ.get("GITML_SKIP_MLSERVER") == "1":
        pytest.skip("GITML_SKIP_MLSERVER=1")
    return ensure_mlserver_python()


def _start_mlserver(mlserver_python: str, root, env: dict, log_path):
    ports = _free_ports(3)
    env = {
        **env,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(ports[0]),
        "MLSERVER_GRPC_PORT": str(ports[1]),
        "MLSERVER_METRICS_PORT": str(ports[2]),
        "PYTHONPATH": ROOT,
    }  # gitml from this checkout; MLServer and the rest from its venv
    log = open(log_path, "wb")
    mlserver = os.path.join(os.path.dirname(mlserver_python), "mlserver")
    proc = subprocess.Popen(
        [mlserver, "start", str(root)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=os.path.dirname(log_path),
    )
    log.close()
    return proc, ports[0]


def _stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_mlserver_start_serves_the_export_as_gitml_serve_does(place, model_dir, tmp_path, mlserver_python):
    """``mlserver start`` on the export answers V2 requests with the outputs ``gitml serve``
    gives (and refuses a bad one with the same words), and MLServer's own scikit-learn runtime
    on the same pickle predicts the same; started on an export whose pickle
    changed afterwards, it stops before serving: the hash is checked before unpickling."""
    good = tmp_path / "models" / "good"
    done = _export(place, model_dir, good, "mlserver", "--name", "cancer")
    assert done.returncode == 0, done.stderr
    settings = json.loads((good / "model-settings.json").read_text())
    assert _errors(settings, "mlserver-model-settings.json") == []
    assert [t["name"] for t in settings["inputs"]] == model_dir["columns"]
    # beside it, the same pickle under MLServer's own scikit-learn runtime (which checks no hash)
    native = tmp_path / "models" / "native"
    native.mkdir()
    shutil.copy(good / "model" / "model.pkl", native / "model.pkl")
    (native / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "cancer-sklearn",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.pkl"},
            }
        )
    )

    proc, port = _start_mlserver(mlserver_python, tmp_path / "models", place["env"], tmp_path / "good.log")
    gitml_server = Server(place["repo"], place["env"], "-m", str(model_dir["path"]), "--name", "cancer")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _get(port, "/v2/models/cancer/ready") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "good.log").read_text(errors="replace")[-3000:]
        request = _v2_request(model_dir)
        status, theirs = _post(port, "/v2/models/cancer/infer", request)
        assert status == 200, theirs
        status, ours = _post(gitml_server.port, "/v2/models/cancer/infer", request)
        assert status == 200, ours
        assert theirs["outputs"] == ours["outputs"]
        assert theirs["outputs"][0]["data"] == model_dir["expected"]
        rows = model_dir["rows"]
        table = {
            "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.values.tolist()}]
        }
        assert _post(port, "/v2/models/cancer/infer", table)[1]["outputs"] == ours["outputs"]
        while _get(port, "/v2/models/cancer-sklearn/ready") != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, native_out = _post(port, "/v2/models/cancer-sklearn/infer", table)
        assert status == 200 and native_out["outputs"][0]["data"] == ours["outputs"][0]["data"]
        bad = {"inputs": [{"name": "mean area", "shape": [1], "datatype": "BYTES", "data": ["lots"]}]}
        status, error = _post(port, "/v2/models/cancer/infer", bad)
        assert status == 400 and "is BYTES but the model's column 'mean area' is double" in error["error"]
        assert _post(gitml_server.port, "/v2/models/cancer/infer", bad)[0] == 400
    finally:
        gitml_server.stop()
        _stop(proc)

    done = _export(place, model_dir, tmp_path / "tampered", "mlserver", "--name", "tampered")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "tampered" / "model" / "model.pkl", "ab") as f:
        f.write(b"\0")
    proc, port = _start_mlserver(mlserver_python, tmp_path / "tampered", place["env"], tmp_path / "tampered.log")
    try:
        proc.wait(180)
    finally:
        _stop(proc)
    text = (tmp_path / "tampered.log").read_text(errors="replace")
    assert "ModelIntegrityError" in text and "'model.pkl' does not match its hash in model.sha256" in text


def test_the_runtime_refuses_a_changed_added_or_missing_file(place, model_dir, tmp_path):
    from gitml.errors import ModelIntegrityError
    from gitml.serving.export import verify_folder

    dst = tmp_path / "out"
    assert _export(place, model_dir, dst, "mlserver").returncode == 0
    folder, manifest = str(dst / "model"), str(dst / "model.sha256")
    verify_folder(folder, manifest)
    (dst / "model" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(ModelIntegrityError, match="'extra.pkl' is not in model.sha256"):
        verify_folder(folder, manifest)
    (dst / "model" / "extra.pkl").unlink()
    (dst / "model" / "MLmodel").unlink()
    with pytest.raises(ModelIntegrityError, match="'MLmodel' is listed in model.sha256 but missing"):
        verify_folder(folder, manifest)


def test_kserve_manifests_follow_the_crds(place, model_dir, tmp_path):
    dst = tmp_path / "kserve"
    done = _export(place, model_dir, dst, "kserve", "--name", "Cancer_Model")
    assert done.returncode == 0, done.stderr
    runtime, service = yaml.safe_load_all((dst / "kserve.yaml").read_text())
    assert _errors(runtime, "kserve-servingruntime.json") == []
    assert _errors(service, "kserve-inferenceservice.json") == []
    assert service["metadata"]["name"] == "cancer-model"
    assert service["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "gitml", "version": "1"},
        "runtime": runtime["metadata"]["name"],
        "protocolVersion": "v2",
    }
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    image = runtime["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"gitml-model-cancer-model:[0-9a-f]{12}", image)
    assert (dst / "Dockerfile").exists()  # the context the image is built from
    # the schemas are not vacuous: what KServe would refuse, they refuse
    broken = json.loads(json.dumps(service))
    broken["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    del broken["spec"]["predictor"]["model"]["modelFormat"]["name"]
    broken["metadata"]["name"] = "Cancer_Model"
    assert len(_errors(broken, "kserve-inferenceservice.json")) == 3
    broken = json.loads(json.dumps(runtime))
    broken["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    broken["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    assert len(_errors(broken, "kserve-servingruntime.json")) == 2
    # a given image is used as it is
    done = _export(
        place, model_dir, tmp_path / "kserve2", "kserve", "--image", "registry.example/churn@sha256:" + "a" * 64
    )
    assert done.returncode == 0, done.stderr
    runtime, _ = yaml.safe_load_all((tmp_path / "kserve2" / "kserve.yaml").read_text())
    assert runtime["spec"]["containers"][0]["image"] == "registry.example/churn@sha256:" + "a" * 64


def test_the_docker_context_checks_the_model_at_build_and_serves_with_its_own_gitml(
    place, model_dir, tmp_path, monkeypatch
):
    """The Dockerfile's RUN line that checks the model, run as the build runs it; its entry point
    run with the gitml the context carries (PYTHONPATH: the context, not this checkout)."""
    dst = tmp_path / "ctx"
    done = _export(place, model_dir, dst, "docker", "--name", "cancer")
    assert done.returncode == 0, done.stderr
    dockerfile = (dst / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)$", dockerfile, re.M)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", base) or "@sha256:" in base
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (dst / source).exists(), source
    requirements = (dst / "requirements.txt").read_text().split()
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", r) for r in requirements)
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"scikit-learn", "dulwich", "uvicorn", "orjson"} <= names
    (check,) = re.findall(r"^RUN cd /opt/model && (.+)$", dockerfile, re.M)
    command = check.replace("/opt/model.sha256", str(dst / "model.sha256"))
    assert subprocess.run(command, shell=True, cwd=dst / "model").returncode == 0
    pickle = dst / "model" / "model.pkl"
    original = pickle.read_bytes()
    pickle.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    failed = subprocess.run(command, shell=True, cwd=dst / "model", capture_output=True, text=True)
    assert failed.returncode != 0 and "model.pkl" in failed.stdout + failed.stderr
    pickle.write_bytes(original)

    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    assert entry[:4] == ["python", "-m", "gitml", "serve"] and "--name" in entry
    shutil.rmtree(dst / "gitml" / "serving" / "__pycache__", ignore_errors=True)
    env = {**place["env"], "PYTHONPATH": str(dst)}
    monkeypatch.chdir(tmp_path)  # `python -m` puts the working folder first on sys.path: not this checkout
    probe = subprocess.run(
        [sys.executable, "-c", "import gitml; print(gitml.__file__)"], env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip() == str(dst / "gitml" / "__init__.py")
    server = Server(place["repo"], env, "-m", str(dst / "model"), "--name", "cancer")
    try:
        status, response = _post(server.port, "/v2/models/cancer/infer", _v2_request(model_dir))
        assert status == 200 and response["outputs"][0]["data"] == model_dir["expected"]
    finally:
        server.stop()


def test_export_refuses_a_bad_target_name_or_folder(place, model_dir, tmp_path):
    done = _export(place, model_dir, tmp_path / "x", "docker", "--name", "a/b")
    assert done.returncode == 1 and "cannot stand in a V2 route" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing half-written is left
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = _export(place, model_dir, tmp_path / "full", "mlserver")
    assert done.returncode == 1 and "not empty" in done.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"

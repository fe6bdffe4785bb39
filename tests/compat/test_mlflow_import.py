"""``gitml import mlflow``: stores made by the real MLflow 3.17.2 come into git equal to the source.

MLflow's venv makes a file store and a sqlite store once per session (``tests/mlflow_stores.py``)
and reads them back (``mlflow.search_runs``, ``get_metric_history``, artifacts by hash);
``gitml import mlflow`` runs in that venv with this checkout on ``PYTHONPATH`` (as a user's
``pip install "gitml[mlflow]"`` would have it); what gitml then holds is compared here with
what MLflow read: runs, params, tags, metrics with full histories, statuses, times, parents,
inputs, artifacts, and ``gitml.search_runs``' frame against ``mlflow.search_runs``'.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from tests.conftest import ROOT, git
from tests.mlflow_stores import MAKE_STORE, READ_STORE
from tests.mlflow_venv import mlflow_python, plugin_pythonpath  # noqa: F401  (a fixture)

N_RUNS = 12
KINDS = ("file", "sqlite")


def _env(**extra: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_ALLOW_FILE_STORE="true",
        GIT_PYTHON_REFRESH="quiet",
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
        PYTHONPATH=plugin_pythonpath(),
        **extra,
    )
    return full


def _script(python: str, script: str, *args: str, cwd) -> dict:
    done = subprocess.run(
        [python, "-c", script, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def gitml_in_mlflow(python: str, *args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    """``gitml ARGS`` run by MLflow's Python (where MLflow is importable), in ``cwd``."""
    done = subprocess.run(
        [python, "-m", "gitml", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900
    )
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="session")
def code_repo(tmp_path_factory):
    """A project whose one commit the first MLflow run records as ``mlflow.source.git.commit``."""
    path = tmp_path_factory.mktemp("code") / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('training')\n")
    git(path, "add", ".")
    git(path, "-c", "user.name=A", "-c", "user.email=a@example.com", "commit", "-qm", "the code that ran")
    return path


@pytest.fixture(scope="session")
def mlflow_sources(mlflow_python, code_repo, tmp_path_factory):  # noqa: F811
    """``kind -> (tracking URI, what MAKE_STORE made, what READ_STORE read)`` for a file and a sqlite store."""
    commit = git(code_repo, "rev-parse", "HEAD").strip()
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(f"mlflow-{kind}")
        uri = str(folder / "mlruns") if kind == "file" else f"sqlite:///{folder / 'mlflow.db'}"
        made = _script(mlflow_python, MAKE_STORE, uri, str(N_RUNS), commit, cwd=folder)
        out[kind] = (uri, made, _script(mlflow_python, READ_STORE, uri, cwd=folder))
    return out


def _project(tmp_path, code_repo):
    """A clone of the code repository: the gitml repository the import writes into."""
    path = tmp_path / "project"
    git(tmp_path, "clone", "-q", str(code_repo), str(path))
    return path


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a == "nan" and isinstance(b, float) and math.isnan(b):
        return True
    return a == b


def assert_equal_to_source(repo, read: dict, *, models: bool = True) -> None:
    """What gitml holds in ``repo`` against what MLflow read from the source."""
    with gitml.ops.Operations(repo) as c:
        for run_id, src in read["runs"].items():
            run = c.get_run(run_id)  # the MLflow id kept
            info = run.info
            assert (info.run_name, info.status, info.start_time, info.end_time, info.user_id, info.lifecycle_stage) == (
                src["name"],
                src["status"],
                src["start"],
                src["end"],
                src["user"],
                src["stage"],
            ), run_id
            assert c.get_experiment(info.experiment_id).name == src["experiment"]
            assert run.data.params == src["params"]
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith("gitml.")}
            if "mlflow.log-model.history" in tags:  # gitml's record of the logged model it brought
                assert models
                tags.pop("mlflow.log-model.history")
                src["tags"].pop("mlflow.log-model.history", None)
            assert tags == src["tags"], run_id
            assert set(run.data.metrics) == set(src["metrics"])
            for key, value in src["metrics"].items():
                assert _same(value, run.data.metrics[key]), (run_id, key)
            for key, points in src["history"].items():
                got = [[m.step, m.timestamp, m.value] for m in c.get_metric_history(run_id, key)]
                assert len(got) == len(points) and all(
                    g[:2] == p[:2] and _same(p[2], g[2])
                    for g, p in zip(sorted(got, key=str), sorted(points, key=str), strict=False)
                ), (run_id, key)
            inputs = sorted(
                [d.dataset.name, d.dataset.digest, d.dataset.source, sorted((t.key, t.value) for t in d.tags)]
                for d in run.inputs.dataset_inputs
            )
            assert json.loads(json.dumps(inputs)) == src["inputs"]
            manifest = c.artifact_manifest(run_id)
            for path, sha in src["artifacts"].items():
                assert manifest[path]["sha256"] == sha, (run_id, path)
                assert c.artifacts.read_bytes(run_id, path)  # readable, verified against its hash
            extra = set(manifest) - set(src["artifacts"])
            assert all(p.startswith(("model/", "scorer/")) for p in extra), extra  # only the logged models' files
        for name, frame in read["frames"].items():
            assert_frames_equal(c, name, frame)


def assert_registry_imported(repo, read: dict, made: dict, summary: dict) -> None:
    """MLflow's versions 1, 2 and 3 with their numbers (version 2, a second version on one
    run, on a commit added to that run's history for it), runs, descriptions, tags, the
    Production stage and the champion alias; the registered model's description and tags;
    version 4 (deleted in MLflow) a gap."""
    source = read["registry"]["churn-model"]
    assert source["versions"]["1"]["stage"] == "Production" and source["aliases"] == {"champion": "3"}
    with gitml.ops.Operations(repo) as c:
        got = {mv.version: mv for mv in c.search_model_versions("name = 'churn-model'")}
        assert set(got) == {"1", "2", "3"}
        for number in ("1", "2", "3"):
            assert got[number].run_id == source["versions"][number]["run_id"]
            assert got[number].description == source["versions"][number]["description"]
        assert (
            got["1"].source == f"runs:/{made['runs'][0]}/model" and got["3"].source == f"runs:/{made['runs'][3]}/scorer"
        )
        assert c.get_model_version_by_alias("churn-model", "production").version == "1"
        assert c.get_model_version_by_alias("churn-model", "champion").version == "3"
        model = c.get_registered_model("churn-model")
        assert (model.description, model.tags) == ("predicts churn", {"owner": "ml"})
        assert got["2"].tags == {"t": "1"} and got["2"].source == got["1"].source
        assert gitml.pyfunc.load_model("models:/churn-model/2").metadata.run_id == made["runs"][0]
        assert c.get_run(made["runs"][0]).data.params == read["runs"][made["runs"][0]]["params"]  # the run as it was
        with pytest.raises(gitml.GitmlError, match="no version 4"):
            c.get_model_version("churn-model", "4")
    assert (summary["registered_models"], summary["model_versions"], summary["stages"]) == (1, 3, 2)
    assert not any("churn-model" in s["what"] for s in summary["skipped"])


def assert_frames_equal(c, experiment: str, expected: list[dict]) -> None:
    """``gitml.search_runs`` (as a frame) against ``mlflow.search_runs`` on the source."""
    from gitml.entities import ViewType

    found = c.get_experiment_by_name(experiment)
    assert found is not None, experiment
    frame = gitml.search_runs([found.experiment_id], run_view_type=ViewType.ALL)
    got = {row["run_id"]: row for row in json.loads(frame.to_json(orient="records", date_format="iso"))}
    assert set(got) == {r["run_id"] for r in expected}, experiment
    for want in expected:
        row = got[want["run_id"]]
        for column, value in want.items():
            if column.startswith("tags.mlflow.log-model"):
                continue
            assert _same(value, row.get(column)), (experiment, want["run_id"], column, value, row.get(column))
        extra = {k for k, v in row.items() if v is not None and k not in want and not k.startswith("tags.gitml.")}
        assert not {k for k in extra if k.startswith(("params.", "metrics.", "tags.")) and "log-model" not in k}, extra


@pytest.mark.mlflow
@pytest.mark.parametrize("kind", KINDS)
def test_import_equals_the_source_and_a_second_import_adds_nothing(
    kind,
    mlflow_python,  # noqa: F811  (the fixture imported above)
    mlflow_sources,
    code_repo,
    tmp_path,
    monkeypatch,
):
    uri, made, read = mlflow_sources[kind]
    repo = _project(tmp_path, code_repo)
    monkeypatch.chdir(repo)
    first = json.loads(gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, "--json", cwd=repo).stdout)
    assert first["runs"] == len(read["runs"]) and first["runs_present"] == 0
    assert first["metric_points"] == sum(len(p) for r in read["runs"].values() for p in r["history"].values())
    assert first["code_joined"] == 1 and first["logged_models"] == 2
    assert_equal_to_source(repo, read)
    assert_registry_imported(repo, read, made, first)

    code = git(repo, "rev-parse", "HEAD").strip()
    with gitml.ops.Operations(repo) as c:
        refs = {r.decode(): v for r, v in c.run_refs().items()}
        by_run = {ref.rsplit("/", 1)[1]: commit.decode() for ref, commit in refs.items()}
        # the run that recorded this repository's commit joins the code history; the others have no code
        # (its head is the commit its second registered version tags: the same record, on top)
        head = by_run[made["runs"][0]]
        assert git(repo, "rev-parse", f"{head}^{{tree}}").strip() == git(repo, "rev-parse", f"{head}^^{{tree}}").strip()
        assert git(repo, "rev-parse", f"{head}^^").strip() == code
        assert git(repo, "rev-list", "--parents", "-n1", by_run[made["runs"][1]]).split() == [by_run[made["runs"][1]]]
        assert c.get_run(made["runs"][0]).data.tags["mlflow.source.git.commit"] == code
        assert c.get_parent_run(made["runs"][1]).info.run_id == made["runs"][0]  # nested runs stay nested
        assert c.get_experiment_by_name("old-stuff").lifecycle_stage == "deleted"
        assert c.get_experiment_by_name("churn").tags == {"team": "ml", "note": "first"}
        model = c.download_artifacts(made["runs"][0], "model")
        assert os.path.exists(os.path.join(model, "MLmodel"))
        # the shared 16 KiB file of every run is one object in the artifact store
        shas = {c.artifact_manifest(r)["data/shared.bin"]["sha256"] for r in made["runs"]}
        assert len(shas) == 1
    git(repo, "fsck", "--strict")

    again = json.loads(gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, "--json", cwd=repo).stdout)
    assert again["runs"] == 0 and again["runs_present"] == len(read["runs"]) and again["experiments"] == 0
    assert again["model_versions"] == 0 and again["stages"] == 0
    with gitml.ops.Operations(repo) as c:
        assert {r.decode(): v for r, v in c.run_refs().items()} == refs  # nothing rewritten


@pytest.mark.mlflow
def test_a_killed_import_resumes_and_dry_run_counts_what_would_come(
    mlflow_python,  # noqa: F811  (the fixture imported above)
    mlflow_sources,
    code_repo,
    tmp_path,
    monkeypatch,
):
    uri, made, read = mlflow_sources["file"]
    repo = _project(tmp_path, code_repo)
    monkeypatch.chdir(repo)
    dry = json.loads(gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, "--dry-run", "--json", cwd=repo).stdout)
    assert dry["dry_run"] and dry["runs"] == len(read["runs"]) and dry["experiments"] == 3
    assert dry["artifacts"] == sum(len(r["artifacts"]) for r in read["runs"].values())
    assert not git(repo, "for-each-ref", "refs/gitml/runs")  # nothing written

    importing = subprocess.Popen(
        [mlflow_python, "-m", "gitml", "import", "mlflow", uri],
        cwd=repo,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while importing.poll() is None and len(git(repo, "for-each-ref", "refs/gitml/runs").split("\n")) < 4:
        time.sleep(0.05)  # polling for the first runs to land, not standing in for a time
    os.killpg(importing.pid, signal.SIGKILL)
    importing.wait()
    with gitml.ops.Operations(repo) as c:
        landed = {r.decode().rsplit("/", 1)[1] for r in c.run_refs()}
        for run_id in landed:  # a run is in whole or not at all
            assert c.get_run(run_id).data.params == read["runs"][run_id]["params"]
    rest = json.loads(gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, "--json", cwd=repo).stdout)
    assert rest["runs_present"] == len(landed) and rest["runs"] == len(read["runs"]) - len(landed)
    assert_equal_to_source(repo, read)
    git(repo, "fsck", "--strict")


@pytest.mark.mlflow
def test_import_selects_and_maps_experiments(mlflow_python, mlflow_sources, code_repo, tmp_path, monkeypatch):  # noqa: F811
    uri, made, read = mlflow_sources["sqlite"]
    repo = _project(tmp_path, code_repo)
    monkeypatch.chdir(repo)
    churn = [r for r, v in read["runs"].items() if v["experiment"] == "churn"]
    since = sorted(read["runs"][r]["start"] for r in churn)[2]
    out = json.loads(
        gitml_in_mlflow(
            mlflow_python,
            "import",
            "mlflow",
            uri,
            "-e",
            "churn",
            "--since",
            str(since),
            "--no-artifacts",
            "--no-registry",
            "--map-experiment",
            "churn=churn-from-mlflow",
            "--json",
            cwd=repo,
        ).stdout
    )
    wanted = {r for r in churn if read["runs"][r]["start"] >= since}
    assert out["runs"] == len(wanted) and out["artifacts"] == 0 and out["registered_models"] == 0
    with gitml.ops.Operations(repo) as c:
        assert c.get_experiment_by_name("churn") is None
        experiment = c.get_experiment_by_name("churn-from-mlflow")
        assert {r.info.run_id for r in c.search_runs([experiment.experiment_id])} == wanted
        assert all(not c.artifact_manifest(r) for r in wanted)
    bad = gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, "-e", "nope", cwd=repo, check=False)
    assert bad.returncode == 1 and "nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_import_without_mlflow_says_how_to_install_it(repo):
    """gitml's own Python has no MLflow: one line says what to install."""
    done = subprocess.run(
        [sys.executable, "-m", "gitml", "import", "mlflow", "./mlruns"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'gitml: import mlflow needs MLflow in this Python: pip install "gitml[mlflow]"'
    ]


@pytest.mark.mlflow
def test_import_of_a_path_that_is_no_store_is_one_line(mlflow_python, repo):  # noqa: F811
    done = gitml_in_mlflow(mlflow_python, "import", "mlflow", str(repo / "missing"), cwd=repo, check=False)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "neither an MLflow file store folder nor a tracking URI" in done.stderr


# -- a real `mlflow server` on loopback as the source ------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(python: str, folder) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` over a sqlite store in ``folder``, serving its artifacts; returns it and its URL."""
    import urllib.request

    port = _free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(python), "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # MLflow's server imports for a long while on a busy machine
    while True:
        if server.poll() is not None:
            raise AssertionError(server.stderr.read()[-3000:] if server.stderr else "mlflow server exited")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGTERM)
            raise AssertionError("mlflow server did not answer /health")
        time.sleep(0.5)  # polling the server's readiness, not standing in for a time


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)


@pytest.mark.mlflow
def test_import_from_a_real_mlflow_server(mlflow_python, code_repo, tmp_path, monkeypatch):  # noqa: F811
    folder = tmp_path / "server"
    folder.mkdir()
    server, url = start_mlflow_server(mlflow_python, folder)
    try:
        commit = git(code_repo, "rev-parse", "HEAD").strip()
        made = _script(mlflow_python, MAKE_STORE, url, "6", commit, "5", cwd=folder)
        read = _script(mlflow_python, READ_STORE, url, cwd=folder)
        repo = _project(tmp_path, code_repo)
        monkeypatch.chdir(repo)
        out = json.loads(gitml_in_mlflow(mlflow_python, "import", "mlflow", url, "--json", cwd=repo).stdout)
        assert out["runs"] == len(read["runs"]) and out["code_joined"] == 1 and out["logged_models"] == 2
        assert_equal_to_source(repo, read)
        assert_registry_imported(repo, read, made, out)
        with gitml.ops.Operations(repo) as c:
            assert os.path.exists(os.path.join(c.download_artifacts(made["runs"][0], "model"), "MLmodel"))
        # and back into the server (its experiments, beside the runs it holds): MLflow reads the same there
        back = json.loads(
            gitml_in_mlflow(mlflow_python, "export", "mlflow", url, "--no-registry", "--json", cwd=repo).stdout
        )
        assert back["runs"] == len(read["runs"]) and back["experiments"] == 0
        both = _script(mlflow_python, READ_STORE, url, cwd=folder)
        exported = {k: v for k, v in both["runs"].items() if "gitml.runId" in v["tags"]}
        assert_exported_equal({"runs": exported, "experiments": both["experiments"]}, read)
    finally:
        stop(server)


# -- the way back: gitml export mlflow ------------------------------------------------------------
def assert_exported_equal(back: dict, read: dict) -> None:
    """What MLflow reads from the export destination against what it read from the original source."""
    by_gitml_id = {r["tags"]["gitml.runId"]: (new_id, r) for new_id, r in back["runs"].items()}
    assert set(by_gitml_id) == set(read["runs"])
    new_ids = {old: new for old, (new, _) in by_gitml_id.items()}
    for run_id, src in read["runs"].items():
        _, got = by_gitml_id[run_id]
        for field in ("experiment", "name", "status", "start", "end", "user", "stage", "params", "metrics", "inputs"):
            assert got[field] == src[field], (run_id, field)
        want_tags = {
            k: (new_ids[v] if k == "mlflow.parentRunId" else v)
            for k, v in src["tags"].items()
            if k != "mlflow.log-model.history"
        }
        assert {
            k: v for k, v in got["tags"].items() if not k.startswith("gitml.") and k != "mlflow.log-model.history"
        } == want_tags
        for key, points in src["history"].items():
            assert sorted(got["history"][key], key=str) == sorted(points, key=str), (run_id, key)
        assert {p: s for p, s in got["artifacts"].items() if p in src["artifacts"]} == src["artifacts"]
    for name, experiment in read["experiments"].items():
        assert back["experiments"][name] == experiment


@pytest.mark.mlflow
def test_export_back_to_mlflow_file_and_sqlite(mlflow_python, mlflow_sources, code_repo, tmp_path, monkeypatch):  # noqa: F811
    uri, made, read = mlflow_sources["sqlite"]
    repo = _project(tmp_path, code_repo)
    monkeypatch.chdir(repo)
    gitml_in_mlflow(mlflow_python, "import", "mlflow", uri, cwd=repo)
    for dest in (str(tmp_path / "back-mlruns"), f"sqlite:///{tmp_path / 'back.db'}"):
        out = json.loads(gitml_in_mlflow(mlflow_python, "export", "mlflow", dest, "--json", cwd=repo).stdout)
        assert out["runs"] == len(read["runs"]) and out["model_versions"] == 3 and out["stages"] == 2
        back = _script(mlflow_python, READ_STORE, dest, cwd=tmp_path)
        assert_exported_equal(back, read)
        registry = back["registry"]["churn-model"]
        first = [r for r in back["runs"] if back["runs"][r]["tags"]["gitml.runId"] == made["runs"][0]][0]
        assert registry["versions"]["1"] == {"run_id": first, "stage": "Production", "description": "first"}
        assert registry["aliases"] == {"champion": "3"}  # MLflow numbers the versions it is given 1, 2, 3
        assert (registry["description"], registry["tags"]) == ("predicts churn", {"owner": "ml"})
        again = json.loads(gitml_in_mlflow(mlflow_python, "export", "mlflow", dest, "--json", cwd=repo).stdout)
        assert again["runs"] == 0 and again["runs_present"] == len(read["runs"]) and again["model_versions"] == 0


# -- Client.import_run, what the import writes with (no MLflow needed) ---------------------------
def test_client_import_run_writes_a_whole_run_in_one_commit(repo):
    (repo / "big.bin").write_bytes(b"x" * 300_000)
    head = git(repo, "rev-parse", "HEAD").strip()
    with gitml.ops.Operations(repo) as c:
        exp = c.create_experiment("imported")
        joined = c.import_run(
            exp,
            "a" * 32,
            run_name="from-mlflow",
            code=head,
            user_id="alice",
            status="FAILED",
            start_time=5,
            end_time=9,
            params={"lr": "0.1"},
            tags={"team": "ml", "mlflow.source.git.commit": head},
            metrics={"loss": [(0, 1, 0.5), (1, 2, 0.25), (1, 3, float("nan"))]},
            parent_run_id="b" * 32,
            inputs=[
                {
                    "name": "train",
                    "digest": "d1",
                    "source_type": "local",
                    "source": "x.csv",
                    "schema": None,
                    "profile": None,
                    "context": "training",
                    "tags": {"split": "a"},
                }
            ],
            artifact_files=[(str(repo / "big.bin"), "data/big.bin"), (str(repo / "train.py"), "code/train.py")],
        )
        assert joined
        run = c.get_run("a" * 32)
        assert (run.info.run_name, run.info.user_id, run.info.status, run.info.start_time, run.info.end_time) == (
            "from-mlflow",
            "alice",
            "FAILED",
            5,
            9,
        )
        assert run.data.params == {"lr": "0.1"} and run.data.tags["team"] == "ml"
        assert run.data.tags["mlflow.parentRunId"] == "b" * 32
        assert [(m.step, m.timestamp) for m in c.get_metric_history(run.info.run_id, "loss")] == [
            (0, 1),
            (1, 2),
            (1, 3),
        ]
        assert run.inputs.dataset_inputs[0].dataset.name == "train"
        assert c.artifacts.read_bytes(run.info.run_id, "data/big.bin") == b"x" * 300_000
        ref = f"refs/gitml/runs/{exp}/{'a' * 32}"
        assert git(repo, "rev-parse", f"{ref}^").strip() == head  # one commit, on the code that ran
        with pytest.raises(gitml.ConflictError) as refused:
            c.import_run(exp, "a" * 32, run_name="again")
        assert "exists already" in str(refused.value)
        assert not c.import_run(exp, "c" * 32, run_name="elsewhere", code="f" * 40)  # a commit this repository lacks
        assert git(repo, "rev-list", "--parents", "-n1", f"refs/gitml/runs/{exp}/{'c' * 32}").split()[1:] == []
        with pytest.raises(gitml.InvalidInputError):
            c.import_run(exp, "d" * 32, run_name="bad", status="DONE")
    assert "d" * 32 not in git(repo, "for-each-ref", "refs/gitml/runs")
    git(repo, "fsck", "--strict")

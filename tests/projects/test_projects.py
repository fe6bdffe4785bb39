"""Projects: MLproject entry points run as recorded runs, from a folder or a git URL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import gitml
import gitml.projects
from gitml.projects import condalock, envs
from gitml.projects.spec import load_project
from tests.conftest import ROOT, git

MLPROJECT = """\
name: demo
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.1}
      epochs: {type: int, default: 2}
      note: string
    command: "python train.py --alpha {alpha} --epochs {epochs} --note {note}"
  data:
    parameters:
      input: path
      where: uri
    command: "python train.py --input {input} --where {where}"
"""

TRAIN = """\
import json, os, sys
import gitml

args = sys.argv[1:]
with gitml.start_run() as run:
    gitml.log_metric("loss", 0.25)
    gitml.log_param("gitml_file", gitml.__file__)
    with open(os.environ["PROJECT_OUT"], "w") as f:
        json.dump({"argv": args, "run_id": run.info.run_id, "cwd": os.getcwd()}, f)
code = os.environ.get("PROJECT_EXIT")
sys.exit(int(code) if code else 0)
"""


def _write_project(folder, mlproject: str = MLPROJECT, python: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLproject").write_text(mlproject)
    (folder / "train.py").write_text(TRAIN)
    version = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "python_env.yaml").write_text(f'python: "{version}"\nbuild_dependencies: []\ndependencies: []\n')


@pytest.fixture
def project_env(tmp_path, monkeypatch):
    """An isolated cache, and the file the training script reports into."""
    monkeypatch.setenv("GITML_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.json"
    monkeypatch.setenv("PROJECT_OUT", str(out))
    return out


@pytest.fixture
def upstream(tmp_path):
    """A teammate's repository with the project in ``models/`` at tag v1, a later commit
    on main, and a bare copy of it served by path and file:// URL."""
    work = tmp_path / "upstream"
    _write_project(work / "models")
    git(work.parent, "init", "-q", str(work))
    git(work, "add", ".")
    git(work, "commit", "-qm", "v1")
    git(work, "tag", "-a", "v1", "-m", "release 1")
    (work / "models" / "train.py").write_text(TRAIN.replace("0.25", "0.5"))
    git(work, "commit", "-qam", "v2")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def _cli(cwd, *args, env=None, check=False) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", *args], cwd=cwd, env=full, capture_output=True, text=True
    )


def _only_run(client) -> gitml.Run:
    runs = client.search_runs()
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


# -- a local folder -------------------------------------------------------------
def test_local_project_records_a_run_the_script_logs_into(repo, client, project_env):
    _write_project(repo / "proj")
    git(repo, "add", "proj")
    git(repo, "commit", "-qm", "project")
    submitted = gitml.projects.run(str(repo / "proj"), parameters={"note": "hello", "alpha": 0.5}, env_manager="local")
    assert submitted.get_status() == "FINISHED"
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"loss": 0.25}  # the script's start_run() resumed this run
    assert run.data.params["alpha"] == "0.5" and run.data.params["epochs"] == "2" and run.data.params["note"] == "hello"
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "PROJECT"
    assert tags["mlflow.project.entryPoint"] == "main"
    assert tags["mlflow.project.env"] == "local"
    assert tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()
    report = __import__("json").loads(project_env.read_text())
    assert report["run_id"] == submitted.run_id
    assert report["argv"] == ["--alpha", "0.5", "--epochs", "2", "--note", "hello"]
    assert os.path.realpath(report["cwd"]) == os.path.realpath(repo / "proj")


def test_undeclared_parameters_pass_as_options_and_py_files_are_entry_points(repo, client, project_env):
    _write_project(repo / "proj")
    gitml.projects.run(str(repo / "proj"), "train.py", parameters={"batch-size": "32"}, env_manager="local")
    report = __import__("json").loads(project_env.read_text())
    assert report["argv"] == ["--batch-size", "32"]
    assert _only_run(client).data.tags["mlflow.project.entryPoint"] == "train.py"


def test_a_parameter_trying_shell_injection_is_one_argument(repo, client, project_env, tmp_path):
    _write_project(repo / "proj")
    marker = tmp_path / "pwned"
    hostile = f"1; touch {marker}; echo $(touch {marker}) `touch {marker}` '\" && touch {marker}"
    gitml.projects.run(str(repo / "proj"), parameters={"note": hostile, "x": hostile}, env_manager="local")
    report = __import__("json").loads(project_env.read_text())
    assert report["argv"][-4:] == ["--note", hostile, "--x", hostile]
    assert not marker.exists()
    # a name is a param key: one holding ';' is refused before anything runs
    with pytest.raises(gitml.InvalidInputError, match="parameter key 'x; touch"):
        gitml.projects.run(str(repo / "proj"), parameters={"note": "n", f"x; touch {marker}": "y"}, env_manager="local")
    # as a float, it is a type error before anything runs: no run, no command
    with pytest.raises(gitml.projects.ParameterError, match="'alpha'.*not a float"):
        gitml.projects.run(
            str(repo / "proj"), parameters={"note": "n", "alpha": f"1; touch {marker}"}, env_manager="local"
        )
    assert not marker.exists() and len(client.search_runs()) == 1


def test_path_and_uri_parameters(repo, client, project_env, tmp_path):
    _write_project(repo / "proj")
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    os.chdir(tmp_path)  # a path is relative to where gitml was started
    gitml.projects.run(
        str(repo / "proj"),
        "data",
        parameters={"input": "data.csv", "where": "s3://b/k"},
        env_manager="local",
        repo=repo,
    )
    report = __import__("json").loads(project_env.read_text())
    assert report["argv"] == ["--input", str(data), "--where", "s3://b/k"]
    with pytest.raises(gitml.projects.ParameterError, match="'where'.*not a URI"):
        gitml.projects.run(str(repo / "proj"), "data", parameters={"input": "data.csv", "where": "plain"}, repo=repo)
    with pytest.raises(gitml.projects.ParameterError, match="'input'.*no such file"):
        gitml.projects.run(str(repo / "proj"), "data", parameters={"input": "nope.csv", "where": "s3://b"}, repo=repo)


def test_a_failing_command_ends_the_run_failed(repo, client, project_env, monkeypatch):
    _write_project(repo / "proj")
    monkeypatch.setenv("PROJECT_EXIT", "3")
    with pytest.raises(gitml.projects.ProjectRunFailedError, match="status 3"):
        gitml.projects.run(str(repo / "proj"), parameters={"note": "n"}, env_manager="local")
    run = _only_run(client)
    assert run.info.status == "FAILED" and run.data.metrics == {"loss": 0.25}
    submitted = gitml.projects.run(str(repo / "proj"), parameters={"note": "n"}, env_manager="local", synchronous=False)
    assert submitted.wait() is False and submitted.get_status() == "FAILED"


def test_a_script_asking_for_another_experiment_is_told_to_say_so_on_the_command_line(repo, client, project_env):
    """As MLflow: the run `gitml run` made is in the experiment the command chose; a script that
    sets another never lands silently in Default, and naming it with --experiment works."""
    _write_project(repo / "proj")
    (repo / "proj" / "train.py").write_text(
        "import gitml\ngitml.set_experiment('mine')\nwith gitml.start_run():\n    gitml.log_metric('loss', 0.5)\n"
    )
    git(repo, "add", "proj")
    git(repo, "commit", "-qm", "project")
    failed = _cli(repo, "run", "proj", "-P", "note=n", "--env-manager", "local")
    assert failed.returncode == 1
    assert (
        "but this script asks for experiment 'mine': choose it on the command line (gitml run --experiment 'mine' ...)"
    ) in failed.stderr
    assert [r.data.metrics for r in client.search_runs(["0"])] == [{}]  # nothing logged into Default
    ok = _cli(repo, "run", "proj", "-P", "note=n", "--env-manager", "local", "--experiment", "mine")
    assert ok.returncode == 0, ok.stderr
    mine = client.get_experiment_by_name("mine").experiment_id
    assert [(r.info.status, r.data.metrics) for r in client.search_runs([mine])] == [("FINISHED", {"loss": 0.5})]


# -- a git URL at a version -----------------------------------------------------
@pytest.mark.parametrize("form", ["file", "path"])
def test_git_url_at_a_tag_is_recorded_with_that_commit_as_parent(repo, client, project_env, upstream, form):
    url = f"file://{upstream}" if form == "file" else str(upstream)
    tagged = git(upstream, "rev-parse", "v1^{commit}").strip()
    submitted = gitml.projects.run(f"{url}#models", version="v1", parameters={"note": "n"}, env_manager="local")
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 0.25}  # v1's script, not main's
    assert run.source.commit == tagged
    assert run.data.tags["mlflow.source.git.commit"] == tagged
    assert run.data.tags["mlflow.source.git.repoURL"] == url
    assert run.data.tags["mlflow.source.name"] == f"{url}#models"
    # the project's history is in the recording repository: git and gitml read it as any run
    run_commit = run.source.run_commit
    assert (
        git(repo, "rev-list", "--max-parents=0", run_commit).strip()
        == git(upstream, "rev-list", "--max-parents=0", "main").strip()
    )
    assert all(p.startswith(".gitml/run/") for p in git(repo, "diff", "--name-only", tagged, run_commit).split())
    git(repo, "fsck", "--strict", "--no-dangling")
    log = _cli(repo, "log", submitted.run_id)
    assert log.returncode == 0 and tagged[:10] in log.stdout and "release 1" not in log.stdout
    assert "v1" in log.stdout  # the source commit's subject
    # the checkout made for the run is gone; the cache repository stays for the next fetch
    assert not os.path.exists(__import__("json").loads(project_env.read_text())["cwd"])


def test_second_fetch_of_a_commit_needs_no_network(repo, client, project_env, upstream, tmp_path):
    tagged = git(upstream, "rev-parse", "v1^{commit}").strip()
    gitml.projects.run(f"file://{upstream}#models", version="v1", parameters={"note": "n"}, env_manager="local")
    moved = tmp_path / "moved.git"
    shutil.move(str(upstream), str(moved))  # the URL no longer answers...
    submitted = gitml.projects.run(
        f"file://{upstream}#models", version=tagged, parameters={"note": "n"}, env_manager="local"
    )
    assert client.get_run(submitted.run_id).source.commit == tagged  # ...and a full commit id comes from the cache


def test_branch_and_abbreviated_commit_versions(repo, client, project_env, upstream):
    head = git(upstream, "rev-parse", "main").strip()
    first = gitml.projects.run(f"{upstream}#models", version="main", parameters={"note": "n"}, env_manager="local")
    assert client.get_run(first.run_id).source.commit == head
    assert client.get_run(first.run_id).data.metrics == {"loss": 0.5}
    v1 = git(upstream, "rev-parse", "v1^{commit}").strip()
    second = gitml.projects.run(f"{upstream}#models", version=v1[:10], parameters={"note": "n"}, env_manager="local")
    assert client.get_run(second.run_id).source.commit == v1


# -- bad input: one line each, before anything runs --------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["proj", "-e", "nope"], "project 'demo' has no entry point 'nope' (entry points: data, main;"),
        (["proj"], "parameter 'note': required (string, no default): pass -P note=VALUE"),
        (["proj", "-P", "note=n", "-P", "epochs=1.5"], "parameter 'epochs': '1.5' is not an int"),
        (["proj", "-P", "note=n", "-P", "alpha=abc"], "parameter 'alpha': 'abc' is not a float"),
        (["broken"], "MLproject: invalid YAML"),
        (
            ["badtype"],
            "MLproject: entry point 'main': parameter 'a' has type 'bytes', not one of string, float, int, path, uri",
        ),
        (["badcommand"], "MLproject: entry point 'main': command names {b}, which is not one of its parameters"),
        (
            ["file:///nonexistent/repo.git"],
            "cannot fetch project file:///nonexistent/repo.git: no git repository there",
        ),
        (["https://127.0.0.1:9/x.git"], "cannot fetch project https://127.0.0.1:9/x.git: Connection refused"),
        (["UPSTREAM", "-v", "v9"], "has no branch, tag or commit 'v9'"),
        (["UPSTREAM#missing", "-v", "v1"], "has no folder 'missing'"),
        (["nowhere"], "project 'nowhere' is neither a folder nor a git URL"),
        (["proj", "-P", "novalue"], "'novalue' is not KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_runs_nothing(repo, project_env, upstream, args, message):
    _write_project(repo / "proj")
    (repo / "broken").mkdir()
    (repo / "broken" / "MLproject").write_text("name: [unclosed\n")
    (repo / "badtype").mkdir()
    (repo / "badtype" / "MLproject").write_text(
        "entry_points:\n  main:\n    parameters: {a: bytes}\n    command: echo {a}\n"
    )
    (repo / "badcommand").mkdir()
    (repo / "badcommand" / "MLproject").write_text("entry_points:\n  main:\n    command: echo {b}\n")
    args = [a.replace("UPSTREAM", str(upstream)) for a in args]
    done = _cli(repo, "run", *args, "--env-manager", "local")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert message in done.stderr, done.stderr
    assert len([line for line in lines if line.startswith(("gitml:", "Error:"))]) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not project_env.exists()  # the command never ran
    with gitml.Client(repo) as c:
        assert len(c.search_runs()) == 0


def test_malformed_mlproject_fields(tmp_path):
    cases = {
        "python_env: a.yaml\nconda_env: b.yaml\n": "give python_env or conda_env, not both",
        "docker_env: {image: x}\n": "docker_env is not supported",
        "entry_points: [a]\n": "entry_points is not a mapping",
        "entry_points:\n  main: {parameters: {}}\n": "entry point 'main' has no command",
        "python_env: ../outside.yaml\n": "is not a file inside the project",
        "nme: x\n": "unknown field 'nme'",
        "a: &x [1]\nb: *x\n": "anchors and aliases are not allowed",
    }
    for text, message in cases.items():
        (tmp_path / "MLproject").write_text(text)
        with pytest.raises(gitml.projects.ProjectSpecError, match=message):
            load_project(str(tmp_path))


def test_a_folder_without_mlproject_runs_its_scripts(tmp_path, repo, client, project_env):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    submitted = gitml.projects.run(str(folder), "train.py", repo=repo)
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 0.25}
    assert run.source.commit is None  # a folder outside git: no code recorded, its path named
    assert run.data.tags["mlflow.source.name"] == str(folder)
    with pytest.raises(gitml.projects.EntryPointNotFoundError, match="no entry point 'main'"):
        gitml.projects.run(str(folder), repo=repo)


# -- Ctrl-C -----------------------------------------------------------------------
def test_ctrl_c_stops_the_command_and_ends_the_run_killed(repo, project_env, tmp_path):
    folder = repo / "slow"
    folder.mkdir()
    ready = tmp_path / "ready"
    (folder / "MLproject").write_text("entry_points:\n  main:\n    command: python slow.py\n")
    (folder / "slow.py").write_text(
        "import os, time, gitml\n"
        "gitml.start_run()\n"
        "gitml.log_metric('started', 1)\n"
        f"open({str(ready)!r}, 'w').write(str(os.getpid()))\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitml.cli.main", "run", "slow", "--env-manager", "local"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a library an earlier test loaded may leave SIGINT
        # ignored in this process, and an ignored signal stays ignored across exec
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = int(ready.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "KILLED" in err
    with pytest.raises(ProcessLookupError):  # the command was stopped with it
        for _ in range(200):
            os.kill(child, 0)
            time.sleep(0.01)
    with gitml.Client(repo) as c:
        run = _only_run(c)
        assert run.info.status == "KILLED"
        assert run.data.metrics["started"] == 1


# -- environments -------------------------------------------------------------------
def test_virtualenv_is_built_once_and_the_script_imports_the_running_gitml(repo, client, project_env, tmp_path):
    _write_project(repo / "proj")
    (repo / "proj" / "requirements.txt").write_text("")
    (repo / "proj" / "python_env.yaml").write_text(
        f'python: "{sys.version_info.major}.{sys.version_info.minor}"\ndependencies: ["-r requirements.txt"]\n'
    )
    first = gitml.projects.run(str(repo / "proj"), parameters={"note": "a"})  # python_env: virtualenv by default
    assert first.environment.manager == "virtualenv" and not first.environment.reused
    second = gitml.projects.run(str(repo / "proj"), parameters={"note": "b"})
    assert second.environment.reused and second.environment.prefix == first.environment.prefix
    for submitted in (first, second):
        run = client.get_run(submitted.run_id)
        assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 0.25}
        assert os.path.realpath(run.data.params["gitml_file"]) == os.path.realpath(
            gitml.__file__
        )  # the very gitml that ran it
        assert run.data.tags["mlflow.project.env"] == "virtualenv"
    prefix = first.environment.prefix
    assert os.path.isfile(os.path.join(prefix, "bin", "python"))
    # the environment's own packages do not include gitml: it comes from the link folder
    site = [p for p in os.listdir(os.path.join(prefix, "lib")) if p.startswith("python")]
    assert not os.path.exists(os.path.join(prefix, "lib", site[0], "site-packages", "gitml"))
    assert "-m pip install" in open(prefix + ".log").read()  # the requirements went through pip


def _tiny_wheel(folder) -> str:
    """A wheel of one module made by hand (no build, no index): what pip installs offline."""
    import zipfile

    name = "gitml_tiny-0.1-py3-none-any.whl"
    files = {
        "gitml_tiny.py": "VALUE = 7\n",
        "gitml_tiny-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gitml-tiny\nVersion: 0.1\n",
        "gitml_tiny-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files["gitml_tiny-0.1.dist-info/RECORD"] = (
        "".join(f"{n},,\n" for n in files) + "gitml_tiny-0.1.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(folder / name, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return name


def test_an_environment_build_shows_its_steps_packages_and_log(repo, project_env):
    """A six-minute silent build is a bug: `gitml run` says each step, each package, and where the log is."""
    _write_project(repo / "proj")
    wheel = _tiny_wheel(repo / "proj")
    (repo / "proj" / "python_env.yaml").write_text(
        f'python: "{sys.version_info.major}.{sys.version_info.minor}"\ndependencies: ["./{wheel}"]\n'
    )
    (repo / "proj" / "train.py").write_text(
        "import gitml, gitml_tiny\nwith gitml.start_run():\n    gitml.log_metric('tiny', gitml_tiny.VALUE)\n"
    )
    git(repo, "add", "proj")
    git(repo, "commit", "-qm", "project")
    done = _cli(repo, "run", "proj", "-P", "note=n", env={"PIP_NO_INDEX": "1"})
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("gitml: environment: ")]
    assert said[0].startswith("gitml: environment: creating the environment (python -m venv); the log is ")
    log = said[0].split("; the log is ")[1]
    assert os.path.isfile(log) and "-m pip install" in open(log).read()
    assert any("installing the dependencies (1 line of requirements)" in line for line in said)
    assert any(line.startswith("gitml: environment: processing ") and wheel in line for line in said)
    assert any("installed" in line and "gitml-tiny" in line.replace("_", "-") for line in said)
    again = _cli(repo, "run", "proj", "-P", "note=n", env={"PIP_NO_INDEX": "1"})
    assert again.returncode == 0 and "gitml: environment:" not in again.stderr  # reused: nothing to build


def test_uv_without_uv_says_how_to_install_it(repo, project_env, monkeypatch, tmp_path):
    _write_project(repo / "proj")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(gitml.projects.ProjectEnvError, match="needs uv, which is not on PATH: pip install uv"):
        gitml.projects.run(str(repo / "proj"), parameters={"note": "n"}, env_manager="uv")


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_uv_builds_and_reuses_an_environment(repo, client, project_env):
    _write_project(repo / "proj")
    (repo / "proj" / "requirements.txt").write_text("# nothing to install\n")
    (repo / "proj" / "python_env.yaml").write_text(
        f'python: "{sys.version_info.major}.{sys.version_info.minor}"\ndependencies: ["-r requirements.txt"]\n'
    )
    first = gitml.projects.run(str(repo / "proj"), parameters={"note": "a"}, env_manager="uv")
    second = gitml.projects.run(str(repo / "proj"), parameters={"note": "b"}, env_manager="uv")
    assert not first.environment.reused and second.environment.reused
    assert client.get_run(second.run_id).data.metrics == {"loss": 0.25}
    assert "uv pip install" in open(first.environment.prefix + ".log").read()


def test_python_env_asking_for_a_missing_python(repo, project_env):
    _write_project(repo / "proj", python="3.2")
    with pytest.raises(gitml.projects.ProjectEnvError, match="asks for Python 3.2, and no python3.2 is on PATH"):
        gitml.projects.run(str(repo / "proj"), parameters={"note": "n"})


# -- conda-lock ----------------------------------------------------------------------
LOCK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "conda-lock.yml")


def test_conda_lock_file_packages_per_platform():
    lock = condalock.read_lock(LOCK)
    linux = condalock.packages_for(lock, "linux-64")
    assert [(p["name"], p["manager"]) for p in linux] == [
        ("python", "conda"),
        ("numpy", "conda"),
        ("requests", "pip"),
    ]
    assert [p["name"] for p in condalock.packages_for(lock, "osx-arm64")] == ["python", "numpy"]
    with pytest.raises(
        gitml.projects.ProjectSpecError,
        match="locks linux-64, osx-arm64, not this machine's win-64: run `gitml env lock -p win-64`",
    ):
        condalock.packages_for(lock, "win-64")
    assert condalock.install_command("/bin/conda-lock", LOCK, "/envs/x") == [
        "/bin/conda-lock",
        "install",
        "--prefix",
        "/envs/x",
        LOCK,
    ]
    assert condalock.lock_command("conda-lock", "conda.yaml", "conda-lock.yml", ["linux-64", "osx-arm64"]) == [
        "conda-lock",
        "lock",
        "--file",
        "conda.yaml",
        "--lockfile",
        "conda-lock.yml",
        "--platform",
        "linux-64",
        "--platform",
        "osx-arm64",
    ]


def test_malformed_lock_files(tmp_path):
    text = open(LOCK).read()
    cases = {
        "version: 2\n": "not a conda-lock lock file of version 1",
        text.replace("manager: pip", "manager: brew"): "manager 'brew', not conda or pip",
        text.replace("platform: osx-arm64", "platform: linux-32"): "is for linux-32, not a platform of the file",
        text.replace("    sha256: 0f3b", "    sha1: 0f3b").replace(
            "    md5: 9a3e", "    sha1: 9a3e"
        ): "has no sha256 or md5 hash",
    }
    for body, message in cases.items():
        (tmp_path / "conda-lock.yml").write_text(body)
        with pytest.raises(gitml.projects.ProjectSpecError, match=message):
            condalock.read_lock(str(tmp_path / "conda-lock.yml"))


def test_conda_env_manager_needs_a_lock_file_and_conda_lock(repo, project_env, monkeypatch, tmp_path):
    folder = repo / "condaproj"
    folder.mkdir()
    (folder / "MLproject").write_text("conda_env: conda.yaml\nentry_points:\n  main:\n    command: python -c pass\n")
    (folder / "conda.yaml").write_text("channels: [conda-forge]\ndependencies: [python=3.11]\n")
    with pytest.raises(gitml.projects.ProjectSpecError, match="conda-lock.yml: not found .*run `gitml env lock`"):
        gitml.projects.run(str(folder))  # conda_env: the conda manager by default
    shutil.copy(LOCK, folder / "conda-lock.yml")
    monkeypatch.setattr(condalock, "current_platform", lambda: "linux-64")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(
        gitml.projects.ProjectEnvError, match=r'conda-lock, which is not on PATH: pip install "gitml\[conda\]"'
    ):
        gitml.projects.run(str(folder))
    with pytest.raises(gitml.projects.ProjectEnvError, match="gitml env lock runs conda-lock, which is not on PATH"):
        gitml.projects.lock(str(folder))
    with pytest.raises(gitml.InvalidInputError, match="names a conda environment"):
        gitml.projects.run(str(folder), env_manager="virtualenv")
    with gitml.Client(repo) as c:
        assert len(c.search_runs()) == 0


def test_environment_hash_follows_requirement_files(tmp_path):
    _write_project(tmp_path / "p")
    (tmp_path / "p" / "req.txt").write_text("a\n")
    (tmp_path / "p" / "python_env.yaml").write_text('python: "3.11"\ndependencies: ["-r req.txt", "b==1"]\n')
    project = load_project(str(tmp_path / "p"))
    spec = envs.python_env(project)
    assert spec.dependencies == ("-r req.txt", "b==1")
    before = envs.spec_hash(project, spec, "virtualenv", sys.executable)
    assert envs.spec_hash(project, spec, "uv", sys.executable) != before
    (tmp_path / "p" / "req.txt").write_text("a\nc\n")
    assert envs.spec_hash(project, spec, "virtualenv", sys.executable) != before
    assert f"-r {tmp_path / 'p' / 'req.txt'}" in envs._requirements(project, spec.dependencies)


def test_a_folder_in_another_repository_brings_its_head(repo, client, project_env, tmp_path):
    other = tmp_path / "other"
    _write_project(other)
    git(tmp_path, "init", "-q", str(other))
    git(other, "add", ".")
    git(other, "commit", "-qm", "theirs")
    (other / "train.py").write_text(TRAIN + "\n# edited\n")  # an uncommitted change
    submitted = gitml.projects.run(str(other), parameters={"note": "n"}, env_manager="local", repo=repo)
    run = client.get_run(submitted.run_id)
    head = git(other, "rev-parse", "HEAD").strip()
    assert run.source.commit == head and run.source.dirty
    assert run.data.tags.get("mlflow.source.git.repoURL") is None
    git(repo, "cat-file", "-e", head)  # the commit is here now
    git(repo, "fsck", "--strict", "--no-dangling")


def test_a_fetched_tree_is_written_safely(repo, client, project_env, tmp_path):
    work = tmp_path / "links"
    _write_project(work)
    (work / "outside").symlink_to("/etc")
    git(tmp_path, "init", "-q", str(work))
    git(work, "add", ".")
    git(work, "commit", "-qm", "with a link")
    (work / "MLproject").write_text(
        MLPROJECT.replace("python train.py", "test -L outside && test -x run.sh && python train.py")
    )
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    git(work, "add", ".")
    git(work, "commit", "-qm", "check the link")
    submitted = gitml.projects.run(f"file://{work}", version="main", parameters={"note": "n"}, env_manager="local")
    assert client.get_run(submitted.run_id).info.status == "FINISHED"  # the link stays a link, modes kept
    # a tree naming `..` is refused before anything runs (git fsck would flag such a commit too)
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    bad = tmp_path / "bad.git"
    with Repo.init_bare(str(bad), mkdir=True) as r:
        blob = Blob.from_string(b"x")
        tree = Tree()
        tree.add(b"..", 0o100644, blob.id)
        commit = Commit()
        commit.tree, commit.message = tree.id, b"bad\n"
        commit.author = commit.committer = b"a <a@a>"
        commit.author_time = commit.commit_time = 0
        commit.author_timezone = commit.commit_timezone = 0
        for obj in (blob, tree, commit):
            r.object_store.add_object(obj)
        r.refs[b"refs/heads/main"] = commit.id
        r.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    with pytest.raises(gitml.InvalidInputError, match="holds a file named '..'"):
        gitml.projects.run(f"file://{bad}", version="main", env_manager="local")
    assert len(client.search_runs()) == 1


def test_cli_run_with_dash_c_reads_uri_and_paths_from_there(repo, project_env, tmp_path):
    _write_project(repo / "proj")
    (repo / "data.csv").write_text("x\n")
    done = _cli(
        tmp_path,
        "-C",
        str(repo),
        "run",
        "proj",
        "-e",
        "data",
        "-P",
        "input=data.csv",
        "-P",
        "where=file:///x",
        "--env-manager",
        "local",
        "--experiment",
        "projects",
        "--run-name",
        "first",
    )
    assert done.returncode == 0, done.stderr
    assert "FINISHED" in done.stderr
    report = __import__("json").loads(project_env.read_text())
    assert report["argv"] == ["--input", str(repo / "data.csv"), "--where", "file:///x"]
    with gitml.Client(repo) as c:
        run = c.get_run(report["run_id"])
        assert run.info.run_name == "first"
        assert c.get_experiment(run.info.experiment_id).name == "projects"


# -- credentials in URLs ----------------------------------------------------------
def test_credentials_in_the_url_are_never_recorded_or_pushed(repo, client, project_env, upstream, tmp_path):
    """``gitml run http://user:token@host/repo``: the run records (and a push carries) the URL
    without its userinfo, in the repoURL tags and the source name alike."""
    from tests.store.test_http_backend import http_backend

    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    with http_backend(tmp_path) as (root, _):
        secret_url = root.replace("http://", "http://ci-bot:s3cret-t0ken@") + "/upstream.git"
        done = _cli(repo, "run", f"{secret_url}#models", "-v", "v1", "-P", "note=n", "--env-manager", "local")
        assert done.returncode == 0, done.stderr
        failed = _cli(repo, "run", secret_url.replace("upstream", "nothing"), "--env-manager", "local")
    assert failed.returncode != 0 and "ci-bot" not in failed.stderr and "s3cret" not in failed.stderr
    assert "cannot fetch project http://127.0.0.1:" in failed.stderr
    run = _only_run(client)
    clean = f"{root}/upstream.git"
    assert run.data.tags["mlflow.source.git.repoURL"] == clean and run.data.tags["mlflow.gitRepoURL"] == clean
    assert run.data.tags["mlflow.source.name"] == f"{clean}#models"
    assert _cli(repo, "push", str(origin)).returncode == 0
    assert run.info.run_id in git(origin, "for-each-ref", "refs/gitml/runs")
    for ref in git(origin, "for-each-ref", "--format=%(refname)", "refs/gitml").split():
        assert git(origin, "grep", "-I", "-c", "s3cret", ref, check=False) == ""
        assert "s3cret" not in git(origin, "log", "--format=%B", ref)
    # a tag set by hand (as MLflow's git context writes the remote's URL) is cleaned the same way
    client.set_tag(
        run.info.run_id,
        "mlflow.source.git.repoURL",
        "https://x-access-token:ghs_abc@github.com/t/c.git?private_token=t&ref=main",
    )
    assert (
        client.get_run(run.info.run_id).data.tags["mlflow.source.git.repoURL"] == "https://github.com/t/c.git?ref=main"
    )


@pytest.mark.parametrize(
    "url, clean",
    [
        ("https://user:token@host/repo.git", "https://host/repo.git"),
        ("https://ghp_token@github.com/t/r", "https://github.com/t/r"),
        (
            "https://host:8443/r.git?X-Amz-Signature=abc&Signature=1&sig=2&access_token=3&keep=1",
            "https://host:8443/r.git?keep=1",
        ),
        ("http://u:p@[::1]:8080/r#sub", "http://[::1]:8080/r#sub"),
        ("ssh://git:pw@github.com/t/r", "ssh://git@github.com/t/r"),
        ("git@github.com:t/r.git", "git@github.com:t/r.git"),
        ("file:///srv/r.git", "file:///srv/r.git"),
        ("/srv/r.git", "/srv/r.git"),
    ],
)
def test_redact_url(url, clean):
    from gitml.store.urls import redact_url

    assert redact_url(url) == clean and redact_url(clean) == clean

"""Shared fixtures: isolated HOME and git config, real repositories in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The suite starts thousands of Pythons (the CLI, hooks, scripts, the peers). Where bytecode is
# not to be written beside the sources (PYTHONDONTWRITEBYTECODE, as in this machine's
# environment), each of them compiled gitml's modules again: ~0.2 s of CPU per process. They
# keep their bytecode in a cache outside the clone instead, keyed by each source's path and
# checked against its mtime and size as usual, so nothing is written into a checkout.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(_cache, "gitml", "pycache")
    del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_sessionfinish(session):
    """The bytecode of the modules tests wrote under the temporary folder goes with them."""
    import shutil
    import tempfile

    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    if prefix:
        shutil.rmtree(os.path.join(prefix, tempfile.gettempdir().lstrip(os.sep)), ignore_errors=True)


def git(cwd, *args, check=True, input_text: str | None = None) -> str:
    """Run the real git binary (tests only) and return its stdout."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input_text)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


# The fast lane is ``pytest -m "not slow"``. These files are slow as a whole (engines and
# model flavors, peer venvs, servers and long processes, scale, stress, the type check); a
# slow test elsewhere carries ``@pytest.mark.slow`` itself; every test that uses a peer
# (the ``mlflow`` marker, the MLflow or GTO venv) is slow too. All of them still run in the
# default ``pytest``.
SLOW_FILES = {
    "test_types.py",  # mypy over the package: a minute or more on 2 cores
    "test_mlflow_differential.py",
    "test_mlflow_plugin.py",
    "test_mlflow_import.py",
    "test_models_mlflow.py",
    "test_registry_gto.py",
    "test_registry_gto_reading.py",
    "test_evaluate.py",  # MLflow / GTO peers
    "test_pyfunc_spark.py",
    "test_pyfunc_dask.py",
    "test_ray_tune.py",
    "test_optuna.py",
    "test_autolog.py",  # engines
    "test_export.py",  # model export: a Docker context built and served
    "test_models.py",
    "test_serving.py",
    "test_serving_v2.py",
    "test_serving_hostile.py",  # model flavors, servers
    "test_projects.py",
    "test_examples.py",
    "test_ci_templates.py",
    "test_ui_browser.py",  # envs, scripts, a browser
    "test_stress.py",
    "test_scale.py",
    "test_read_scale.py",
    "test_refs_scale.py",
    "test_remote_scale.py",
    "test_show_scale.py",
    "test_push_proportional.py",
    "test_transfer_memory.py",  # scale and stress
    "test_long_process.py",
    "test_durability.py",
    "test_index_segments.py",
    "test_concurrency.py",
    "test_recovery.py",
    "test_temp_cleanup.py",  # processes killed and waited for
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        peers = {"mlflow_python", "gto_python"} & set(getattr(item, "fixturenames", ()))
        if os.path.basename(str(item.fspath)) in SLOW_FILES or item.get_closest_marker("mlflow") or peers:
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    """Build the peer venvs (MLflow, GTO) the collected tests use before the first test runs:
    an install takes minutes once per machine, and no test's timeout may cut it short. A failed
    install is reported here in one line; the tests that need the peer then fail with its reason."""
    from tests.peer_venv import FAILED

    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    peers = [
        ("gto_python", "GITML_SKIP_GTO", "tests.gto_venv", "ensure_gto_python"),
        ("mlflow_python", "GITML_SKIP_MLFLOW", "tests.mlflow_venv", "ensure_mlflow_python"),
        ("mlserver_python", "GITML_SKIP_MLSERVER", "tests.mlserver_venv", "ensure_mlserver_python"),
    ]
    for fixture, skip, module, ensure in peers:
        if fixture in wanted and os.environ.get(skip) != "1":
            import importlib

            try:
                getattr(importlib.import_module(module), ensure)()
            except RuntimeError:
                print(f"\n{FAILED.get(fixture.split('_')[0], 'peer install failed').splitlines()[0]}", file=sys.stderr)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for name in ("GITML_REPO", "GITML_RUN_ID", "GITML_EXPERIMENT_NAME", "GITML_EXPERIMENT_ID", "GITML_FLUSH_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI"):  # runs logged by the suite in CI get no CI tags
        monkeypatch.delenv(name, raising=False)
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    yield
    import gitml.fluent as fluent

    stack = getattr(fluent._state, "stack", None)
    if stack:
        stack.clear()
    fluent.set_tracking_uri(None)
    fluent._experiment_id = None


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with one commit (train.py), as the current directory."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('training')\n")
    (path / "README.md").write_text("# project\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "initial")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def client(repo):
    import gitml.ops

    c = gitml.ops.Operations(repo)
    yield c
    c.close()


def run_python(code: str, cwd, env=None, check=True) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with gitml importable."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"python failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture(scope="session")
def installed_python(tmp_path_factory) -> str:
    """A Python with this checkout's gitml *installed*: a virtualenv over this Python's
    packages whose site-packages names this checkout in a ``.pth`` file. Hooks and CI
    scripts run gitml in isolated mode (``python -I``, which ignores PYTHONPATH), so through
    this Python they run the code under test, not whatever gitml the machine has installed."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(site, "gitml-under-test.pth"), "w") as f:
        f.write(ROOT + "\n")
    found = subprocess.run(
        [python, "-I", "-c", "import gitml; print(gitml.__file__)"], cwd="/", check=True, capture_output=True, text=True
    ).stdout.strip()
    assert found == os.path.join(ROOT, "gitml", "__init__.py"), found
    return python


# -- engines: one of each per test session (a SparkSession starts a JVM: ~10-30 s here) -------
# Engine workers import this checkout's gitml, and the test modules (models pickled by reference
# to a class of a test module, which pytest imports by its bare name from its folder, tests/<area>/)
_TESTS = os.path.join(ROOT, "tests")
_ENGINE_PATH = os.pathsep.join(
    [ROOT, _TESTS]
    + sorted(
        os.path.join(_TESTS, n)
        for n in os.listdir(_TESTS)
        if os.path.isdir(os.path.join(_TESTS, n, "")) and n != "data"
    )
)


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession with 2 cores; its Python workers run this Python with this checkout's
    gitml importable (as a cluster's executors would have gitml installed)."""
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("gitml-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.executorEnv.PYTHONPATH", _ENGINE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def dask_client():
    """A dask.distributed LocalCluster of 2 worker processes (one thread each), on loopback."""
    from dask.distributed import Client, LocalCluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _ENGINE_PATH + os.pathsep + (saved or "")  # the workers import this checkout's gitml
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, memory_limit="1GiB"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="session")
def ray_local():
    """Ray on this machine with 2 CPUs (``ray.init(num_cpus=2)``), no dashboard."""
    import ray

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _ENGINE_PATH + os.pathsep + (saved or "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved

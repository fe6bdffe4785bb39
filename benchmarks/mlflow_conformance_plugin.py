"""A pytest plugin (``-p benchmarks.mlflow_conformance_plugin``) that runs MLflow's own tests
with a fresh ``gitml:`` repository as the store of each test.

MLflow's ``tests/conftest.py`` gives every test a fresh SQLite URI through its ``db_uri``
fixture, which its autouse ``tracking_uri_mock`` makes the tracking (and so the registry) URI.
A conftest's fixture wins over a plugin's of the same name, so this plugin does not define
``db_uri``: it wraps pytest's fixture setup and makes the value of MLflow's ``db_uri``
``gitml:<fresh folder>/repo`` (the fixture graph is unchanged). ``GITML_CONFORMANCE_STORE=sqlite``
leaves MLflow's fixture alone (the baseline run). Used by ``benchmarks/mlflow_conformance.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

STORE = os.environ.get("GITML_CONFORMANCE_STORE", "gitml")


def _fresh_repository() -> tuple[str, str]:
    folder = tempfile.mkdtemp(prefix="gitml-conformance-")
    return folder, f"gitml:{folder}/repo"


def _remove(folder: str) -> None:
    try:
        import gitml.mlflow_plugin as plugin

        with plugin._registry_lock:  # the Clients of this test's repository go with it
            for path in [p for p in plugin._clients if p.startswith(folder)]:
                client = plugin._clients.pop(path)
                plugin._locks.pop(path, None)
                if client not in plugin._clients.values():
                    client.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001  (a test that broke its client must not break the next)
        pass
    shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """MLflow's ``db_uri`` runs as written (a fresh SQLite copy nobody uses); its value becomes
    a fresh ``gitml:`` repository, removed when the fixture is torn down."""
    result = yield
    if STORE != "gitml" or fixturedef.argname != "db_uri":
        return result
    folder, uri = _fresh_repository()
    fixturedef.cached_result = (uri, fixturedef.cache_key(request), None)
    fixturedef.addfinalizer(lambda: _remove(folder))
    return uri

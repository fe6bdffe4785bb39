"""The type check and the lint are part of the suite (mypy and ruff, configured in pyproject.toml)."""

import os
import shutil
import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.conftest import ROOT

# mypy spends most of a cold run on the libraries gitml imports (pandas, dulwich, ...): 83 s
# here against 12 s from a warm cache (gitml's own modules changed). The warm cache is a seed
# outside the clone, one per mypy version, written once by a run that passed; each run checks
# with a private copy of it (mypy's incremental mode re-checks every module whose source hash
# differs, so a seed from other code is only slower, never wrong), so no two runs write one cache.
_SEED = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "gitml",
    f"mypy-{version('mypy')}-py{sys.version_info[0]}.{sys.version_info[1]}",
)


@pytest.mark.timeout(300)
def test_package_type_checks(tmp_path):
    cache = str(tmp_path / "mypy-cache")
    if os.path.isdir(_SEED):
        shutil.copytree(_SEED, cache, symlinks=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--cache-dir", cache], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        if not os.path.isdir(_SEED):
            staged = f"{_SEED}.{os.getpid()}"
            shutil.copytree(cache, staged, symlinks=True)
            try:
                os.rename(staged, _SEED)  # atomic; another run's seed, made meanwhile, stays
            except OSError:
                shutil.rmtree(staged, ignore_errors=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.timeout(120)
def test_lint_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_code_is_formatted():
    """``ruff format`` (line length 120) leaves every file as it is: style is settled by the tool, not in review."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

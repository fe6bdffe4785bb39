"""The peer venvs (MLflow, GTO, MLServer) are built once even when two processes need one at once.

Under pytest-xdist each worker asks for the peers the collected tests use, and on a clean
machine (CI) none exists yet: the second process must wait for the first's install and reuse
its venv, neither installing it again nor using it half-built. Here a setup script stands in for
``benchmarks/setup_*.sh``: it makes a real venv in a cache of the test's own (``GITML_PEERS``),
makes the package importable, then waits for the test's word before it finishes the install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from tests.conftest import ROOT

SETUP = textwrap.dedent(
    """\
    set -euo pipefail
    venv="$GITML_PEERS/gitml-probe-$PROBE_VERSION"
    echo "$$" >> "$PROBE_DIR/installs"
    [ -x "$venv/bin/python" ] || python3 -m venv --without-pip "$venv"
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    mkdir -p "$site/gitml_probe-$PROBE_VERSION.dist-info"
    printf 'Metadata-Version: 2.1\\nName: gitml-probe\\nVersion: %s\\n' "$PROBE_VERSION" \\
      > "$site/gitml_probe-$PROBE_VERSION.dist-info/METADATA.part"
    mv "$site/gitml_probe-$PROBE_VERSION.dist-info/METADATA.part" "$site/gitml_probe-$PROBE_VERSION.dist-info/METADATA"
    # the package is importable now; the rest of the install (its dependencies) is still to come
    while [ ! -e "$PROBE_DIR/go" ]; do sleep 0.05; done
    touch "$venv/complete"
    """
)

ASK = (
    "import os; from tests.peer_venv import ensure_peer_python\n"
    "python = ensure_peer_python('gitml-probe', '1.0', setup={setup!r}, version_env='PROBE_VERSION', skip_env='X')\n"
    "print(python, os.path.exists(os.path.join(os.path.dirname(os.path.dirname(python)), 'complete')))\n"
)


def _wait_for(condition, what: str, process: subprocess.Popen) -> None:
    """Poll ``condition`` until it holds; fail at once when ``process`` ends first (pytest-timeout guards a hang)."""
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.communicate()}")
        time.sleep(0.02)


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether ``pid`` waits for a file lock (Linux lists waiters in /proc/locks after ``->``)."""
    with open("/proc/locks") as f:
        return any("->" in line and line.split("->")[1].split()[3] == str(pid) for line in f)


def test_a_second_process_waits_for_the_install_under_way_and_reuses_the_venv(tmp_path):
    peers, probe = tmp_path / "peers", tmp_path / "probe"
    probe.mkdir()
    setup = tmp_path / "setup_probe.sh"
    setup.write_text(SETUP)
    env = {**os.environ, "GITML_PEERS": str(peers), "PROBE_DIR": str(probe), "PYTHONPATH": ROOT}
    code = ASK.format(setup=str(setup))

    def ask() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    first = ask()
    second: subprocess.Popen | None = None
    try:
        metadata = peers / "gitml-probe-1.0" / "lib"
        _wait_for(
            lambda: any(metadata.glob("python*/site-packages/gitml_probe-1.0.dist-info/METADATA")),
            "the first install make the package importable",
            first,
        )
        second = ask()
        # the package already answers the version check, but the install is not done: the second
        # process must wait on the lock rather than take the venv as it is
        _wait_for(lambda: _blocked_on_a_lock(second.pid), "the second process wait for the lock", second)
    finally:
        (probe / "go").touch()  # the install ends either way: no process is left waiting
    assert second is not None
    out_first, err_first = first.communicate(timeout=120)
    out_second, err_second = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err_first + err_second
    python = str(peers / "gitml-probe-1.0" / "bin" / "python")
    assert out_first.split() == out_second.split() == [python, "True"]
    assert len((probe / "installs").read_text().split()) == 1  # installed once, by the first

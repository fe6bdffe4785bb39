"""Terminal escapes and bidirectional overrides a teammate pushes through a real remote
(``git daemon``): in a registration tag (its tagger, its message's ``by``), in a run's
params and tags. ``gitml registry show/history``, ``gitml show``, ``gitml
runs`` and the pages of ``gitml ui`` show each as its escape (``\\x1b``, ``\\u202e``): none
reaches the terminal or the page as it is, and the rest of the output is intact."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml
from click.testing import CliRunner

import gitml
from gitml import sync
from gitml.cli.main import cli
from gitml.store import yamlout
from tests.conftest import ROOT, git
from tests.registry.test_hostile_registry_metadata import c, team  # noqa: F401  (fixtures)
from tests.store.test_remote import git_daemon
from tests.tracking.test_hostile_records import forge

# retitles the terminal (OSC 0), rings, turns text red, then reads right to left
ESC = "\x1b]0;pwned\x07\x1b[31mred\u202eevil"
RAW = ("\x1b", "\x07", "\u202e")


def _out(repo, *args) -> str:
    result = CliRunner().invoke(cli, ["-C", str(repo), *args])
    assert result.exit_code == 0, result.output
    return result.output


def _clean(text: str) -> bool:
    return not any(ch in text for ch in RAW)


@pytest.fixture
def hostile(c, repo, team, tmp_path):  # noqa: F811
    """The team's remote given, with plumbing, a registration tag ``churn@v2.0.0`` whose tagger
    and ``by`` hold escapes, and a run whose param and tag do; fetched here."""
    remote, url, (r1, _) = team
    orig = git(remote, "cat-file", "tag", "refs/tags/churn@v1.0.0")
    body = (
        orig.replace("churn@v1.0.0", "churn@v2.0.0")
        .replace("version: v1.0.0", "version: v2.0.0")
        .replace('by: "Test User', 'by: "Mal\\e[2J')
        .replace("tagger Test User", "tagger Mal" + ESC)
        + "\n"
    )
    made = subprocess.run(
        ["git", "hash-object", "-t", "tag", "-w", "--stdin", "--literally"],
        cwd=remote,
        input=body.encode(),
        capture_output=True,
        check=True,
    )
    git(remote, "update-ref", "refs/tags/churn@v2.0.0", made.stdout.decode().strip())
    # a run, forged in a teammate's clone and pushed
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(remote), str(mate))
    git(mate, "fetch", "-q", "origin", "+refs/gitml/*:refs/gitml/*")
    source = next(r for r in git(mate, "for-each-ref", "--format=%(refname)", "refs/gitml/runs").split() if r1 in r)
    bad = "d" * 32
    meta = yaml.safe_load(git(mate, "cat-file", "blob", f"{source}:.gitml/run/meta.yaml").replace(r1, bad))
    meta = {**meta, "run_name": "hostile"}  # (a source branch with escapes is a corrupt record, refused)
    ref = forge(mate, source, bad, {})
    forge(
        mate,
        ref,
        bad,
        {
            "meta.yaml": yamlout.dump(meta),
            "params.yaml": yamlout.dump({"p": ESC}),
            "tags.yaml": yamlout.dump({"note": ESC, "mlflow.runName": "hostile"}),
        },
    )
    git(mate, "push", "-q", str(remote), f"{ref}:{ref}")
    with git_daemon(remote.parent) as port:
        sync.fetch(c, f"git://127.0.0.1:{port}/{remote.name}")
    return {"run": bad}


def test_registry_listings_show_a_pushed_taggers_escapes_as_text(repo, hostile):
    for args in (("registry", "show", "churn"), ("registry", "history", "churn")):
        out = _out(repo, *args)
        assert _clean(out), (args, out)
        assert "Mal\\x1b]0;pwned\\x07\\x1b[31mred\\u202eevil <test@example.com>" in out, out
        assert "Test User <test@example.com>" in out  # the honest row as it is


def test_run_views_show_a_pushed_runs_escapes_as_text(repo, hostile):
    out = _out(repo, "show", hostile["run"])
    assert _clean(out), out
    assert out.count("\\x1b]0;pwned\\x07\\x1b[31mred\\u202eevil") == 2  # the param, the tag
    out = _out(repo, "runs")
    assert _clean(out) and "hostile" in out


def test_the_ui_pages_show_a_pushed_taggers_escapes_as_text(repo, hostile):
    server = subprocess.Popen(  # --port 0: the server binds a free port itself and prints it
        [sys.executable, "-m", "gitml.cli.main", "-C", str(repo), "ui", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        printed = re.search(r"serving http://127\.0\.0\.1:(\d+)/", server.stderr.readline())
        assert printed
        port = int(printed.group(1))
        for path in ("/models/churn", f"/run/{hostile['run']}"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{urllib.parse.quote(path)}", timeout=60) as r:
                page = r.read().decode()
            assert _clean(page), path
            assert "\\x1b]0;pwned\\x07\\x1b[31mred\\u202eevil" in page, path
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_error_naming_a_value_never_carries_its_escapes(repo, hostile):
    """The CLI's one error line: whatever a message quotes is shown escaped."""
    result = CliRunner().invoke(cli, ["-C", str(repo), "registry", "show", ESC])
    assert result.exit_code == 1 and _clean(result.output) and result.output.count("\n") == 1


def test_shown_keeps_lines_only_when_asked():
    from gitml.cli.common import shown

    assert shown("a\tb\nc\x1b") == "a\\tb\\nc\\x1b"
    assert shown("a\tb\nc\x1b", lines=True) == "a\tb\nc\\x1b"
    assert shown("plain ü 名前") == "plain ü 名前"
    gitml.set_tracking_uri(None)

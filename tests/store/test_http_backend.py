"""Push and fetch through git's own smart-HTTP server: the ``git http-backend`` CGI
behind a small HTTP server on loopback (written here: Python's http.server has no
CGI handler for POST bodies sent in chunks, which dulwich sends)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

import gitml
from gitml.cli.main import cli
from gitml.store.git import open_store
from gitml.store.remote import fetch_refs, push_refs
from tests.conftest import git
from tests.store.test_fetch_verify import check_refusals, hostile_remote
from tests.store.test_remote import for_each_ref, make_runs

pytestmark = pytest.mark.timeout(60)

BACKEND = os.path.join(
    subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip(), "git-http-backend"
)


class GitHTTPBackend(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` per request, as a web server runs a CGI program."""

    protocol_version = "HTTP/1.1"
    root = ""
    chunked_bodies = 0  # requests whose body came in chunks

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._body()
        env = {
            name: os.environ[name]
            for name in ("PATH", "HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL")
            if name in os.environ
        }
        env.update(
            GIT_PROJECT_ROOT=self.root,
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=unquote(path),
            QUERY_STRING=query,
            REQUEST_METHOD=self.command,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),  # the body is handed over whole, chunks joined
            REMOTE_ADDR="127.0.0.1",
        )
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        out = subprocess.run([BACKEND], input=body, env=env, capture_output=True, check=False).stdout
        split = out.find(b"\r\n\r\n")
        head, payload = (out[:split], out[split + 4 :]) if split >= 0 else out.split(b"\n\n", 1)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            type(self).chunked_bodies += 1
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format, *args) -> None:
        pass


@contextlib.contextmanager
def http_backend(root: Path):
    """``http://127.0.0.1:PORT/`` serving the repositories under ``root``."""
    handler = type("Handler", (GitHTTPBackend,), {"root": str(root), "chunked_bodies": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_push_and_fetch_runs_through_git_http_backend(repo, tmp_path):
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "repo.git")
    git(base / "repo.git", "config", "http.receivepack", "true")
    git(repo, "push", "-q", str(base / "repo.git"), "main")
    run_ids = make_runs(2)
    gitml.set_experiment("bigger")
    for i in range(3):
        with gitml.start_run():
            gitml.log_text(os.urandom(20_000).hex(), f"blob{i}.txt")
    gitml.flush()
    git(repo, "config", "http.postBuffer", "8192")  # larger request bodies are sent in chunks, as git does
    with http_backend(base) as (root, handler):
        url = f"{root}/repo.git"
        result = CliRunner().invoke(cli, ["-C", str(repo), "push", url])
        assert result.exit_code == 0, result.output
        with open_store(repo) as store:
            local = store.refs_under("refs/gitml/")
            assert push_refs(store, url, local) == {ref: "ok" for ref in local}  # up to date
        assert for_each_ref(base / "repo.git") == local
        victim = tmp_path / "victim"
        git(tmp_path, "clone", "-q", url, str(victim))  # the real git, over the same server
        result = CliRunner().invoke(cli, ["-C", str(victim), "fetch", url])
        assert result.exit_code == 0, result.output
        assert handler.chunked_bodies > 0  # the pack came in chunks, and they were read
    assert for_each_ref(victim) == local
    git(base / "repo.git", "fsck", "--strict")
    git(victim, "fsck", "--strict")
    with gitml.Client(victim) as client:
        for i, run_id in enumerate(run_ids):
            assert client.get_run(run_id).data.params == {"i": str(i)}


def test_hostile_refs_are_refused_over_http(repo, tmp_path):
    base = tmp_path / "served"
    base.mkdir()
    bare, good = hostile_remote(repo, base)
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))
    with http_backend(base) as (root, _handler), open_store(victim) as store:
        result = fetch_refs(store, f"{root}/{bare.name}")
    check_refusals(result.refused)
    assert sorted(result.created) == sorted(good)
    assert for_each_ref(victim) == good
    assert (
        git(
            victim,
            "cat-file",
            "-t",
            git(bare, "rev-parse", "refs/gitml/runs/123/0123456789abcdef0123456789abcdef").strip(),
        ).strip()
        == "commit"
    )  # it came, unnamed
    git(victim, "fsck", "--strict")

"""``gitml ui``: a local, read-only web UI over a repository's runs (an optional extra:
``pip install "gitml[ui]"``, which brings Starlette, uvicorn and Jinja2).

>>> from gitml.ui import serve
>>> serve("path/to/repo", host="127.0.0.1", port=5000)

Modules: ``app`` (routes, Host allow-list), ``pages`` (what each page shows),
``tables`` (the runs table), ``series`` (M4 downsampling, EMA, groups),
``previews`` (artifact previews). Assets are vendored in ``static/vendor`` with their
hashes in ``static/vendor/MANIFEST.json``.
"""

from __future__ import annotations

import os

from gitml.errors import MissingExtraError

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_installed() -> None:
    """Raise MissingExtraError with the install hint when the ``ui`` extra is missing."""
    MissingExtraError.unless_installed("ui", ("starlette", "uvicorn", "jinja2", "httptools"))


def allowed_hosts(host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The Host header names the server answers to: the address it listens on, the
    loopback names when it listens on loopback, and ``extra``."""
    names = {host.lower(), f"[{host.lower()}]" if ":" in host else host.lower(), *(h.lower() for h in extra)}
    if host in LOOPBACK or host.startswith("127."):
        names.update(("127.0.0.1", "localhost", "[::1]"))
    return sorted(names)


def serve(
    repo: str | os.PathLike | None,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    allow_hosts: list[str] | tuple[str, ...] = (),
    open_browser: bool = False,
    ready=None,
) -> None:
    """Serve the repository's runs until interrupted. ``ready(url)`` is called once listening."""
    check_installed()
    import uvicorn

    from gitml.ops import Operations
    from gitml.serving.workers import Limits, guarded_protocol
    from gitml.ui.app import make_app

    client = Operations(repo)
    try:
        app = make_app(client, allowed_hosts=allowed_hosts(host, allow_hosts))
        # the limits gitml serve's clients meet (a head counted as it streams, a head timeout,
        # a connection cap): uvicorn's httptools protocol gathered a header line that never
        # ends for ever (300 MB sent, 300 MB more of the UI's memory)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            http=guarded_protocol(Limits(fds_per_connection=2)),  # a connection streaming an artifact holds its file
        )
        server = uvicorn.Server(config)

        async def started() -> None:
            bound = next((sock.getsockname()[1] for s in server.servers for sock in s.sockets), port)
            url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"  # --port 0: the one given
            if ready is not None:
                ready(url)
            if open_browser:
                import webbrowser

                webbrowser.open(url)

        _on_startup(server, started)
        server.run()
    finally:
        client.close()


def _on_startup(server, callback) -> None:
    """Call ``callback`` once uvicorn listens (after its own startup)."""
    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        if server.started:
            await callback()

    server.startup = startup

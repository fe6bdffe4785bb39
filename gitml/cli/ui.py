"""``gitml ui``: serve the repository's runs in a browser (the ``ui`` extra, imported
only when the command runs, so ``gitml --help`` stays fast)."""

from __future__ import annotations

import click

from gitml.cli.common import echo, repo_path, secho


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="Port to listen on (0: a free one)."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a browser.")
@click.option(
    "--allow-host",
    "--allowed-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer to this Host header name (repeatable).",
)
@click.pass_context
def ui(ctx, host, port, open_browser, allow_hosts):
    """Serve a read-only web UI of the runs: tables, charts, comparisons, artifacts."""
    from gitml.store.git import open_store
    from gitml.ui import LOOPBACK, check_installed, serve

    check_installed()
    repo = repo_path(ctx)
    open_store(repo).close()  # a UI reads: it must not create a store

    if host not in LOOPBACK and not host.startswith("127."):
        secho(f"gitml ui: listening on {host}: anyone who can reach it can read every run", fg="yellow", err=True)

    def ready(url: str) -> None:
        echo(f"gitml ui serving {url} (Ctrl-C stops it)", err=True)

    serve(repo, host=host, port=port, allow_hosts=allow_hosts, open_browser=open_browser, ready=ready)

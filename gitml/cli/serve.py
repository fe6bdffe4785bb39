"""``gitml serve``: a model behind MLflow's scoring protocol (the ``serve`` extra,
imported only when the command runs, so ``gitml --help`` stays fast)."""

from __future__ import annotations

import click

from gitml.cli.common import repo_path


@click.command()
@click.option(
    "-m",
    "--model-uri",
    "model_uri",
    required=True,
    help="A model folder, runs:/<run>/<path>, models:/<name>/<version> or models:/<name>@<stage> "
    "(e.g. models:/churn@production).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option(
    "-p",
    "--port",
    type=click.IntRange(0, 65535),
    default=5001,
    show_default=True,
    help="Port to listen on (0: a free one).",
)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes (forked after the model loads).",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Refuse request bodies over this size (413).",
)
@click.option(
    "--allow-host",
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header is NAME (behind a proxy or a DNS name; '*': any). "
    "IP addresses and localhost are always answered.",
)
@click.option(
    "--head-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's line and headers (and the longest pause in a body).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Open connections per worker; past it the longest-idle one is closed.",
)
@click.option(
    "--name",
    "model_name",
    metavar="NAME",
    help="The model's name in the V2 routes (default: the registered name, else the model folder's name).",
)
@click.pass_context
def serve(ctx, model_uri, host, port, workers, max_body_mb, allowed_hosts, head_timeout, max_connections, model_name):
    """Serve a model over HTTP (MLflow's and the V2 protocol).

    GET /ping, /health, /version; POST /invocations with JSON (dataframe_split,
    dataframe_records, instances or inputs, with optional params) or CSV, answering
    {"predictions": ...}. Beside it the V2 (Open Inference, KServe) protocol:
    GET /v2/health/live, /v2/health/ready, /v2/models/NAME[/ready]; POST
    /v2/models/NAME/infer with tensors named after the signature's columns.
    A model from a run is checked file by file against the run's
    recorded hashes before it loads. Bad requests get a 4xx with a short JSON message;
    a POST needs one of those content types (415), and a Host header that is not an IP
    address, localhost or an --allow-host name is refused (400: DNS rebinding).
    """
    from gitml.serving import check_installed
    from gitml.serving import serve as serve_model

    check_installed()
    repo = repo_path(ctx)
    if repo is not None:  # model URIs naming runs are read from the -C repository
        from gitml import fluent

        fluent.set_tracking_uri(repo)
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        click.secho(
            f"gitml serve: listening on {host}: anyone who can reach it can query the model "
            "(by an IP address, localhost or an --allow-host name)",
            fg="yellow",
            err=True,
        )

    def ready(url: str) -> None:
        click.echo(
            f"gitml serve: {model_uri} on {url} with {workers} worker{'s' if workers > 1 else ''} (Ctrl-C stops it)",
            err=True,
        )

    serve_model(
        model_uri,
        host=host,
        port=port,
        workers=workers,
        max_body_mb=max_body_mb,
        allowed_hosts=allowed_hosts,
        head_timeout=head_timeout,
        max_connections=max_connections,
        ready=ready,
        name=model_name,
    )

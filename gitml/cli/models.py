"""``gitml predict`` (batch scoring) and ``gitml models export``."""

from __future__ import annotations

import sys

import click

from gitml.cli.common import echo, repo_path

_PROGRESS_ROWS = 50_000  # inputs this large show a progress bar (on a terminal)


def _use_repo(ctx) -> None:
    """Model URIs naming runs are read from the ``-C`` repository."""
    repo = repo_path(ctx)
    if repo is not None:
        from gitml import fluent

        fluent.set_tracking_uri(repo)


@click.command()
@click.option(
    "-m",
    "--model-uri",
    "model_uri",
    required=True,
    help="A model folder, runs:/<run>/<path>, models:/<name>/<version> or models:/<name>@<stage> "
    "(e.g. models:/churn@production).",
)
@click.option(
    "-i",
    "--input-path",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Input table: .csv, .json or .parquet.",
)
@click.option(
    "-o",
    "--output-path",
    "output_path",
    type=click.Path(dir_okay=False),
    help="Write predictions here (JSON; CSV for a .csv name). Default: stdout.",
)
@click.option(
    "-t",
    "--content-type",
    type=click.Choice(["csv", "json", "parquet"]),
    help="Input format, when the extension does not say.",
)
@click.pass_context
def predict(ctx, model_uri, input_path, output_path, content_type):
    """Score a table with a model (batch, through pandas).

    A model from a run is checked file by file against the run's recorded hashes before
    it is loaded. JSON input takes MLflow's scoring forms (dataframe_split,
    dataframe_records, instances, inputs, with optional params).
    """
    from gitml.pyfunc.batch import predict_file

    _use_repo(ctx)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total < _PROGRESS_ROWS or not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=total, label="Scoring rows", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        text = predict_file(model_uri, input_path, output_path, content_type=content_type, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if text is not None:
        click.echo(text)


@click.group()
def models():
    """Model folders: export."""


@models.command("export")
@click.argument("model_uri")
@click.argument("dst", type=click.Path(file_okay=False))
@click.option(
    "-t",
    "--target",
    type=click.Choice(["mlflow", "mlserver", "kserve", "docker"]),
    default="mlflow",
    show_default=True,
    help="mlflow: a plain MLmodel folder; mlserver: a model-settings folder for "
    "`mlserver start`; docker: a build context serving it with gitml; kserve: that context and a "
    "ServingRuntime + InferenceService (V2 protocol) manifest.",
)
@click.option(
    "--name",
    "model_name",
    metavar="NAME",
    help="The model's name on the V2 routes (default: the registered name, else the folder's).",
)
@click.option(
    "--image",
    metavar="IMAGE",
    help="kserve: the image the runtime runs (default: gitml-model-NAME:<hash of the model files>).",
)
@click.pass_context
def models_export(ctx, model_uri, dst, target, model_name, image):
    """Write MODEL_URI as a folder DST for other servers.

    The plain folder loads in MLServer, KServe or `mlflow models serve`; the other
    targets add what MLServer, Docker and KServe need, with the model files' hashes
    in DST/model.sha256 (checked when MLServer loads it and when the image builds).
    A run's model is checked file by file against the run's recorded hashes first.
    """
    from gitml.serving.export import export

    _use_repo(ctx)
    path = export(model_uri, dst, target=target, name=model_name, image=image)
    echo(f"Exported {model_uri} to {path}" + (f" ({target})" if target != "mlflow" else ""))

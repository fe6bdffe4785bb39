"""``gitml import mlflow SOURCE`` and ``gitml export mlflow DEST``: moving to and from MLflow.

Both read and write MLflow through MLflow's own client, so they need MLflow in the Python
that runs gitml (``pip install "gitml[mlflow]"``); it is imported only when one of these
commands runs, with a one-line install hint when it is missing.
"""

from __future__ import annotations

import contextlib
import sys

import click

from gitml.cli.common import echo, emit_json, experiment_option, json_option, open_client, secho

INSTALL_HINT = '{verb} mlflow needs MLflow in this Python: pip install "gitml[mlflow]"'


def _require_mlflow(verb: str) -> None:
    import importlib.util

    from gitml.errors import MissingExtraError

    if importlib.util.find_spec("mlflow") is None:
        raise MissingExtraError(INSTALL_HINT.format(verb=verb))


class _Bar:
    """A one-line progress display on a terminal (nothing when piped): runs done per experiment."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, what: str, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        width = 30
        filled = width * done // total if total else width
        click.echo(f"\r{what}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs", err=True, nl=False)
        if done >= total:
            click.echo("", err=True)


@click.group("import")
def import_group():
    """Bring runs from another tracker into this repository."""


@import_group.command("mlflow")
@click.argument("source")
@experiment_option(help="Only this experiment (name or id; repeatable).")
@click.option("--since", help="Only runs started at or after this date (2024-05-01), ISO time or ms.")
@click.option("--no-artifacts", is_flag=True, help="Leave artifacts and logged models' files out.")
@click.option("--no-registry", is_flag=True, help="Leave the model registry out.")
@click.option(
    "--map-experiment",
    "maps",
    multiple=True,
    metavar="SOURCE=TARGET",
    help="Import experiment SOURCE under the name TARGET (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Count what would come; write nothing.")
@json_option("Print the summary as JSON.")
@click.pass_context
def import_mlflow_command(ctx, source, experiments, since, no_artifacts, no_registry, maps, dry_run, as_json):
    """Import an MLflow tracking store: runs (ids kept), artifacts, registry.

    SOURCE: a file store folder (./mlruns), a database URI (sqlite:///mlflow.db,
    postgresql://...) or a tracking server (http://host:5000). A second import adds only
    what is new; an interrupted one resumes.

    \b
      gitml import mlflow ./mlruns
      gitml import mlflow sqlite:///mlflow.db -e churn --since 2024-05-01
      gitml import mlflow http://localhost:5000 --dry-run
    """
    _require_mlflow("import")
    from gitml.mlflow_plugin.importer import import_mlflow, parse_experiment_map, parse_since

    with open_client(ctx, create=True) as c, contextlib.redirect_stdout(sys.stderr):  # MLflow may print
        summary = import_mlflow(
            c,
            source,
            experiments=experiments,
            since=parse_since(since),
            artifacts=not no_artifacts,
            registry=not no_registry,
            dry_run=dry_run,
            experiment_map=parse_experiment_map(maps),
            progress=_Bar(),
        )
    if as_json:
        emit_json(summary.as_dict())
        return
    _print_summary(summary, source)


def _print_summary(summary, source: str) -> None:
    verb = "would import" if summary.dry_run else "imported"
    click.echo(
        f"{source}: {verb} {summary.runs} run(s) in {summary.experiments} new experiment(s); "
        f"{summary.runs_present} run(s) already here"
    )
    rows = [
        ("params", summary.params),
        ("tags", summary.tags),
        ("metric points", summary.metric_points),
        ("dataset inputs", summary.datasets),
        ("artifacts", summary.artifacts),
        ("artifact MiB", f"{summary.artifact_bytes / 2**20:.1f}"),
        ("logged models", summary.logged_models),
        ("runs joined to their code", summary.code_joined),
        ("registered models", summary.registered_models),
        ("model versions", summary.model_versions),
        ("stages and aliases", summary.stages),
    ]
    for name, value in rows:
        if value not in (0, "0.0"):
            echo(f"  {name}: {value}")
    if summary.skipped:
        secho(f"skipped {len(summary.skipped)}:", fg="yellow", err=True)
        for what, why in summary.skipped:
            secho(f"  {what}: {why}", fg="yellow", err=True)


@click.group("export")
def export_group():
    """Write this repository's runs into another tracker."""


@export_group.command("mlflow")
@click.argument("dest")
@experiment_option(help="Only this experiment (name; repeatable).")
@click.option("--no-artifacts", is_flag=True, help="Leave artifacts out.")
@click.option("--no-registry", is_flag=True, help="Leave the model registry out.")
@json_option("Print the summary as JSON.")
@click.pass_context
def export_mlflow_command(ctx, dest, experiments, no_artifacts, no_registry, as_json):
    """Export runs and the registry into an MLflow tracking URI: the way back.

    DEST: a file store folder, a database URI (sqlite:///mlflow.db) or a tracking server
    (http://host:5000). MLflow gives each run a new id; the run keeps gitml's in the tag
    gitml.runId, so a second export adds only what is new.

    \b
      gitml export mlflow sqlite:///mlflow.db
      gitml export mlflow http://localhost:5000 -e churn
    """
    _require_mlflow("export")
    from gitml.mlflow_plugin.exporter import export_mlflow

    with open_client(ctx) as c, contextlib.redirect_stdout(sys.stderr):  # MLflow prints "View run ..." links
        summary = export_mlflow(
            c, dest, experiments=experiments, artifacts=not no_artifacts, registry=not no_registry, progress=_Bar()
        )
    if as_json:
        emit_json(summary.as_dict())
        return
    click.echo(
        f"{dest}: exported {summary.runs} run(s), {summary.metric_points} metric point(s), "
        f"{summary.artifacts} artifact(s), {summary.model_versions} model version(s), {summary.stages} stage(s); "
        f"{summary.runs_present} run(s) already there"
    )
    for what, why in summary.skipped:
        secho(f"  skipped {what}: {why}", fg="yellow", err=True)

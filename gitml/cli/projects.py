"""``gitml run`` and ``gitml env lock``: projects (registered on the root group by main)."""

from __future__ import annotations

import sys

import click

from gitml.cli.common import echo, secho


def _parameter(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        out[key] = value
    return out


@click.command("run")
@click.argument("uri", default=".")
@click.option(
    "-e", "--entry-point", default="main", show_default=True, help="Entry point, or a .py/.sh file of the project."
)
@click.option(
    "-P",
    "--param",
    "parameters",
    multiple=True,
    callback=_parameter,
    metavar="KEY=VALUE",
    help="A parameter (repeatable); undeclared ones are passed as --KEY VALUE.",
)
@click.option("-v", "--version", "version", help="Branch, tag or commit of a git project.")
@click.option(
    "--env-manager",
    type=click.Choice(["local", "virtualenv", "uv", "conda"]),
    help="Where the command runs (default: the environment the MLproject names, else local).",
)
@click.option(
    "--experiment-name",
    "--experiment",
    "experiment_name",
    help="Record the run in this experiment (created if absent).",
)
@click.option("--experiment-id", help="Record the run in the experiment of this id.")
@click.option("--run-name", help="The run's name.")
@click.pass_context
def run_command(ctx, uri, entry_point, parameters, version, env_manager, experiment_name, experiment_id, run_name):
    """Run a project's entry point as a run of this repository.

    URI is a folder (default: .) or a git URL (a path, file://, ssh://, https://),
    with #SUBDIR for a project inside the repository. The command gets the run's id
    in GITML_RUN_ID, so its gitml.start_run() logs into the run; the exit status ends
    the run FINISHED or FAILED, Ctrl-C stops it and ends it KILLED.
    """
    import os

    from gitml.errors import ProjectRunFailedError
    from gitml.projects import run

    if ctx.obj.get("repo"):
        os.chdir(ctx.obj["repo"])  # as git -C: URI, paths and the repository are read from there
    submitted = None
    try:
        submitted = run(
            uri,
            entry_point,
            version,
            parameters,
            experiment_name=experiment_name,
            experiment_id=experiment_id,
            run_name=run_name,
            env_manager=env_manager,
            synchronous=False,
            progress=lambda line: echo(f"gitml: environment: {line}", err=True),
        )
        click.echo(
            f"gitml: run {submitted.run_id} started ({submitted.environment.manager} environment"
            f"{', reused' if submitted.environment.reused else ''})",
            err=True,
        )
        ok = submitted.wait()
    except KeyboardInterrupt:
        if submitted is not None:
            submitted.cancel()  # (done already when wait() was interrupted; not when the Ctrl-C came before it)
            secho(f"gitml: run {submitted.run_id} stopped (KILLED)", fg="red", err=True)
        sys.exit(130)
    if not ok:
        raise ProjectRunFailedError(submitted.run_id, submitted.returncode)
    echo(f"gitml: run {submitted.run_id} FINISHED", err=True)


@click.group("env")
def env_group():
    """Project environments."""


@env_group.command("lock")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-p", "--platform", "platforms", multiple=True, help="conda platform to lock (repeatable; default: this machine's)."
)
def env_lock(path, platforms):
    """Solve conda.yaml into conda-lock.yml beside it (with conda-lock)."""
    from gitml.projects import lock

    echo(f"Wrote {lock(path, list(platforms) or None)}")

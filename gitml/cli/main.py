"""``gitml``: git-style commands over the tracking API.

Every command opens the repository, calls the library, and formats. Errors
from gitml print as one red line and exit 1 (``--traceback`` shows the stack);
anything else is reported as an unexpected error.

This module is the root group and the one place commands are registered: the
command modules define theirs and share helpers through :mod:`gitml.cli.common`;
none imports this module (no import circle).
"""

from __future__ import annotations

import sys

import click

from gitml import __version__

_TRACEBACK = False


class GitmlGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # the reader went away (gitml runs | head): stop quietly, as git does
            _stdout_to_devnull()
            sys.exit(141)
        except Exception as e:  # the one handler at the edge
            from gitml.cli.common import shown
            from gitml.errors import GitmlError

            if _TRACEBACK:
                raise
            if isinstance(e, GitmlError):  # a value in a message cannot drive the terminal
                click.secho(f"gitml: {shown(e, lines=True)}", fg="red", err=True)
            else:
                click.secho(
                    f"gitml: unexpected error, please report it: {type(e).__name__}: {shown(e, lines=True)} "
                    "(--traceback shows where)",
                    fg="red",
                    err=True,
                )
            sys.exit(1)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. under CliRunner)
        pass


@click.group(cls=GitmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--traceback", is_flag=True, help="Show the full stack of an error.")
@click.option(
    "-C",
    "repo",
    metavar="PATH",
    type=click.Path(exists=True, file_okay=False),
    help="Run as if started in PATH (like git -C).",
)
@click.version_option(__version__, prog_name="gitml")
@click.pass_context
def cli(ctx, traceback, repo):
    """gitml: ML experiments on git. Runs are refs, artifacts go by content hash; no server."""
    global _TRACEBACK
    _TRACEBACK = traceback
    ctx.obj = {"repo": repo}


def _register() -> None:
    from gitml.cli import hooks, migrate, models, projects, registry, report, serve, storage, sync, tracking, ui

    commands = [
        tracking.init,
        tracking.experiments,
        tracking.runs,
        tracking.show,
        tracking.diff,
        tracking.log_,
        tracking.checkout,
        tracking.recover,
        storage.config_,
        storage.artifacts,
        storage.fsck,
        storage.gc,
        sync.push,
        sync.fetch,
        sync.pull,
        ui.ui,
        serve.serve,
        models.predict,
        models.models,
        projects.run_command,
        projects.env_group,
        registry.registry_group,
        report.compare_command,
        hooks.hooks,
        migrate.import_group,
        migrate.export_group,
    ]
    for command in commands:
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="gitml")


if __name__ == "__main__":  # python -m gitml.cli.main
    main()

"""``gitml``: git-style commands over the tracking API.

Every command opens the repository, calls the library, and formats. Errors
from gitml print as one red line and exit 1 (``--traceback`` shows the stack);
anything else is reported as an unexpected error.

This module is the root group and the one place commands are registered: the
command modules define theirs and share helpers through :mod:`gitml.cli.common`;
none imports this module (no import circle).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping

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


# name -> (module, attribute): a command's module is imported when the command is looked up,
# not at start-up (`gitml runs` imported all eleven command modules and what they import)
COMMANDS = {
    "init": ("tracking", "init"),
    "experiments": ("tracking", "experiments"),
    "runs": ("tracking", "runs"),
    "show": ("tracking", "show"),
    "diff": ("tracking", "diff"),
    "log": ("tracking", "log_"),
    "checkout": ("tracking", "checkout"),
    "recover": ("tracking", "recover"),
    "config": ("storage", "config_"),
    "artifacts": ("storage", "artifacts"),
    "fsck": ("storage", "fsck"),
    "gc": ("storage", "gc"),
    "push": ("sync", "push"),
    "fetch": ("sync", "fetch"),
    "pull": ("sync", "pull"),
    "ui": ("ui", "ui"),
    "serve": ("serve", "serve"),
    "predict": ("models", "predict"),
    "models": ("models", "models"),
    "run": ("projects", "run_command"),
    "env": ("projects", "env_group"),
    "registry": ("registry", "registry_group"),
    "compare": ("report", "compare_command"),
    "hooks": ("hooks", "hooks"),
    "import": ("migrate", "import_group"),
    "export": ("migrate", "export_group"),
}


class _LazyCommands(MutableMapping):
    """The root group's commands by name, each imported when first looked up."""

    def __init__(self, lazy: dict[str, tuple[str, str]]):
        self._lazy = dict(lazy)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attribute = self._lazy[name]  # KeyError for an unknown command, as a dict
            self._loaded[name] = getattr(importlib.import_module(f"gitml.cli.{module}"), attribute)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command
        self._lazy.setdefault(name, ("", ""))

    def __delitem__(self, name: str) -> None:
        del self._lazy[name]
        self._loaded.pop(name, None)

    def __iter__(self):
        return iter(self._lazy)

    def __len__(self) -> int:
        return len(self._lazy)


cli.commands = _LazyCommands(COMMANDS)


def main() -> None:
    cli(prog_name="gitml")


if __name__ == "__main__":  # python -m gitml.cli.main
    main()

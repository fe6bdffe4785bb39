"""The CLI reference (docs/cli.md), generated from every command's --help.

    python -m gitml.cli.reference > docs/cli.md

tests/cli/test_reference.py fails when docs/cli.md lacks a command or option.
"""

from __future__ import annotations

import click

from gitml.cli.main import cli


def _commands(group: click.Group, prefix: list[str]):
    for name in sorted(group.commands):
        command = group.commands[name]
        yield [*prefix, name], command
        if isinstance(command, click.Group):
            yield from _commands(command, [*prefix, name])


def reference() -> str:
    parts = ["# gitml command reference", "", "Generated from `--help` by `python -m gitml.cli.reference`.", ""]
    settings: dict = {"terminal_width": 100, "help_option_names": ["-h", "--help"]}
    with click.Context(cli, info_name="gitml", **settings) as ctx:
        parts += ["## gitml", "", "```", cli.get_help(ctx), "```", ""]
    for path, command in _commands(cli, []):
        parent = click.Context(cli, info_name="gitml", **settings)
        with click.Context(command, info_name=" ".join(path), parent=parent, **settings) as ctx:
            parts += [f"## gitml {' '.join(path)}", "", "```", command.get_help(ctx), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")

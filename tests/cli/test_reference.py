"""docs/cli.md is the CLI reference generated from --help: it must name every command and option.

(Exact text depends on click's version, so the test checks content, not bytes.)
"""

import os

import click

from gitml.cli.main import cli
from gitml.cli.reference import _commands
from tests.conftest import ROOT


def test_cli_reference_covers_every_command_and_option():
    with open(os.path.join(ROOT, "docs", "cli.md")) as f:
        text = f.read()
    missing = []
    for path, command in _commands(cli, []):
        if f"## gitml {' '.join(path)}\n" not in text:
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    if flag not in text:
                        missing.append(f"{' '.join(path)} {flag}")
    assert not missing, f"docs/cli.md lacks {missing}; run: python -m gitml.cli.reference > docs/cli.md"


def test_every_command_and_option_has_help_and_the_reference_is_current():
    with open(os.path.join(ROOT, "docs", "cli.md")) as f:
        text = " ".join(f.read().split())
    lacking, stale = [], []
    for path, command in _commands(cli, []):
        name = " ".join(path)
        if not (command.help or "").strip():
            lacking.append(name)
        elif " ".join(command.help.split("\n\n")[0].split()) not in text:
            stale.append(name)  # its description changed since docs/cli.md was generated
        for param in command.params:
            if (
                isinstance(param, click.Option)
                and not param.hidden
                and not (param.help or "").strip()
                and "--help" not in param.opts
            ):
                lacking.append(f"{name} {param.opts[0]}")
    assert not lacking, f"commands or options without help: {lacking}"
    assert not stale, f"docs/cli.md is stale for {stale}; run: python -m gitml.cli.reference > docs/cli.md"

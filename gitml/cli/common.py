"""What the command modules share: the repository and Client (``Operations``) of ``-C``, and output
(JSON, tables, times). The root group, which registers every command, is in
:mod:`gitml.cli.main`; nothing here imports it.
"""

from __future__ import annotations

import json

import click


def repo_path(ctx) -> str | None:
    """The repository holding the ``-C`` directory (found upwards, as git does), or None."""
    path = ctx.obj.get("repo")
    if path is None:
        return None
    from dulwich.errors import NotGitRepository

    from gitml.store.git import discover_repo

    try:
        repo = discover_repo(path)
    except NotGitRepository:
        return path  # open_store looks for ./gitml-runs there, or says what is missing
    try:
        return repo.path
    finally:
        repo.close()


def open_client(ctx, *, create: bool = False):
    from gitml.ops import Operations
    from gitml.store.git import open_store

    repo = repo_path(ctx)
    if not create:
        open_store(repo).close()  # a read must not create a store
    return Operations(repo)


# -- the options several commands share: one definition each ------------------------------
def json_option(help: str = "Print JSON."):
    """``--json`` (``as_json``): machine-readable output instead of the table or the text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def experiment_option(dest: str = "experiments", help: str = "Experiment name or id (repeatable; default: all)."):
    """``-e/--experiment`` (repeatable): the experiments a command looks at."""
    return click.option("-e", "--experiment", dest, multiple=True, help=help)


def filter_option(help: str = "MLflow filter, plus OR and parentheses."):
    """``-f/--filter`` (``filter_string``): MLflow's search grammar, plus OR and parentheses."""
    return click.option("-f", "--filter", "filter_string", default="", help=help)


def order_option(help: str = 'e.g. "metrics.auc DESC" (repeatable).'):
    """``-o/--order-by`` (repeatable): MLflow's ``order_by`` clauses."""
    return click.option("-o", "--order-by", multiple=True, help=help)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str, allow_nan=True))


CELL_MAX = 60  # characters of a value shown in a table cell


def fmt(value, *, whole: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if not text.isprintable():  # a newline or tab in a value would break the table's lines
        text = text.encode("unicode_escape").decode("ascii")
    return text if whole or len(text) <= CELL_MAX else text[: CELL_MAX - 1] + "…"  # whole: --json, show


def shown(text: object, *, lines: bool = False) -> str:
    """``text`` safe for a terminal: every control character, escape sequence and
    bidirectional override (anything not printable) written as its escape (``\\x1b``,
    ``\\u202e``), so a value a teammate pushed (a tag's tagger, a branch, a remote's
    message) cannot retitle the terminal, hide a line, or read as something else;
    ``lines``: newlines and tabs are kept."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (lines and c in "\n\t") else c.encode("unicode_escape").decode("ascii") for c in text
    )


def echo(message: object = "", **kwargs) -> None:
    """``click.echo`` of ``message`` made :func:`shown` (lines kept)."""
    click.echo(shown(message, lines=True), **kwargs)


def secho(message: object = "", **kwargs) -> None:
    """``click.secho`` of ``message`` made :func:`shown` (lines kept), then styled."""
    click.secho(shown(message, lines=True), **kwargs)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    headers = [shown(h) for h in headers]
    rows = [[shown(c) for c in row] for row in rows]
    widths = [max(_width(h), *(_width(r[i]) for r in rows)) if rows else _width(h) for i, h in enumerate(headers)]
    click.echo(click.style("  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=False)).rstrip(), bold=True))
    for row in rows:
        click.echo("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=False)).rstrip())


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: wide (CJK, most emoji) characters take two."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def experiment_id(c, spec: str) -> str:
    """The id of the experiment named ``spec``, else of the one whose id is ``spec``."""
    from gitml.errors import ExperimentNotFoundError

    experiment = c.get_experiment_by_name(spec)
    if experiment is not None:
        return experiment.experiment_id
    if not spec.isdigit():  # not an id either: say so, not "id is not a number"
        raise ExperimentNotFoundError(spec)
    return c.get_experiment(spec).experiment_id

"""``gitml compare``: runs side by side as Markdown, HTML or JSON (``gitml.report``)."""

from __future__ import annotations

import os

import click

from gitml.cli.common import echo, experiment_option, filter_option


@click.command("compare")
@click.argument("runs", nargs=-1)
@click.option("--baseline", metavar="RUN", help="The run deltas are taken to (default: the first selected).")
@filter_option("Select runs by filter (MLflow's grammar, OR, parentheses).")
@click.option(
    "-b",
    "--branch",
    "branches",
    multiple=True,
    metavar="REV",
    help="The latest runs of REV's history (a branch, ref or commit; repeatable).",
)
@experiment_option("experiments_")
@click.option(
    "-n",
    "--max",
    "max_results",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Newest runs taken by --filter alone.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "html", "json"]),
    default="markdown",
    show_default=True,
    help="Markdown (pull requests, job summaries), one HTML page, or JSON.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (charts beside it, with matplotlib).")
@click.pass_context
def compare_command(ctx, runs, baseline, filter_string, branches, experiments_, max_results, fmt, output):
    """Compare runs: params and metrics side by side, deltas, the best marked.

    RUN is a run id, a prefix of one, or a run name. With -o and matplotlib
    installed, metric histories are drawn as PNG files beside the report.
    """
    from gitml.cli.common import experiment_id, open_client
    from gitml.report import compare_runs, render, write_charts
    from gitml.runlog.ci import missing_runs_hint

    with open_client(ctx) as c:
        ids = [experiment_id(c, e) for e in experiments_] or None
        hint = missing_runs_hint(os.environ, has_runs=bool(c.search_rows(max_results=1)))
        if hint:
            click.secho(hint, fg="yellow", err=True)
        report = compare_runs(
            c,
            list(runs),
            baseline=baseline,
            filter_string=filter_string,
            branches=list(branches),
            experiment_ids=ids,
            max_results=max_results,
        )
        charts = {}
        folder = os.path.dirname(os.path.abspath(output)) if output else ""
        if folder:
            os.makedirs(folder, exist_ok=True)
        if output and fmt != "json":
            charts = write_charts(c, report, folder, os.path.splitext(os.path.basename(output))[0])
            if report.metrics and not _has_matplotlib():
                click.secho(
                    "gitml: no charts: they are drawn with matplotlib, which is not installed "
                    "(pip install 'gitml[report]')",
                    fg="yellow",
                    err=True,
                )
        text = render(report, fmt, charts)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        echo(f"wrote {output}" + (f" and {len(charts)} chart(s)" if charts else ""), err=True)
    else:
        click.echo(text, nl=False)


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401  (write_charts imported it already when it is there)
    except ImportError:
        return False
    return True

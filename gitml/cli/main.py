"""``gitml``: git-style commands over the tracking API.

Every command opens the repository, calls the library, and formats. Errors
from gitml print as one red line and exit 1 (``--traceback`` shows the stack);
anything else is reported as an unexpected error.
"""

from __future__ import annotations

import json
import sys
import time

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
            from gitml.errors import GitmlError

            if _TRACEBACK:
                raise
            if isinstance(e, GitmlError):
                click.secho(f"gitml: {e}", fg="red", err=True)
            else:
                click.secho(
                    f"gitml: unexpected error, please report it: {type(e).__name__}: {e} (--traceback shows where)",
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


def _repo(ctx) -> str | None:
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


def _client(ctx, *, create: bool = False):
    from gitml.client import Client
    from gitml.store.git import open_store

    repo = _repo(ctx)
    if not create:
        open_store(repo).close()  # a read must not create a store
    return Client(repo)


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str, allow_nan=True))


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _duration(start: int | None, end: int | None) -> str:
    if not start:
        return "-"
    seconds = ((end or time.time() * 1000) - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


CELL_MAX = 60  # characters of a value shown in a table cell


def _fmt(value, *, whole: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if not text.isprintable():  # a newline or tab in a value would break the table's lines
        text = text.encode("unicode_escape").decode("ascii")
    return text if whole or len(text) <= CELL_MAX else text[: CELL_MAX - 1] + "…"  # whole: --json, show


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(_width(h), *(_width(r[i]) for r in rows)) if rows else _width(h) for i, h in enumerate(headers)]
    click.echo(click.style("  ".join(_pad(h, w) for h, w in zip(headers, widths)).rstrip(), bold=True))
    for row in rows:
        click.echo("  ".join(_pad(c, w) for c, w in zip(row, widths)).rstrip())


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: wide (CJK, most emoji) characters take two."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


# -- init -----------------------------------------------------------------------
@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.pass_context
def init(ctx, path):
    """Make PATH a git repository ready for gitml (git init if needed)."""
    import os

    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    from gitml.store.git import discover_repo

    if ctx.obj.get("repo") is not None:
        path = os.path.join(ctx.obj["repo"], path)  # relative to -C, as in git
    os.makedirs(path, exist_ok=True)
    try:
        repo = discover_repo(path)  # refuses a format gitml would damage, before writing
        created = False
    except NotGitRepository:
        repo = Repo.init(path)
        created = True
    gitml_dir = os.path.join(repo.commondir(), "gitml")
    os.makedirs(gitml_dir, exist_ok=True)
    where = repo.path
    repo.close()
    click.echo(f"{'Initialized a git repository' if created else 'Using the git repository'} in {where}")
    click.echo("Runs are stored as refs/gitml/runs/*; see `gitml runs`.")


# -- experiments ----------------------------------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include deleted experiments (when listing).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (when listing).")
@click.pass_context
def experiments(ctx, show_all, as_json):
    """List and manage experiments (list by default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(experiments_list, show_all=show_all, as_json=as_json)
    elif show_all or as_json:
        raise click.UsageError(f"--all and --json go after the subcommand: gitml experiments {ctx.invoked_subcommand} ...")


@experiments.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deleted experiments.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def experiments_list(ctx, show_all=False, as_json=False):
    """List experiments."""
    from gitml.tracking.entities import ViewType

    with _client(ctx) as c:
        found = c.search_experiments(ViewType.ALL if show_all else ViewType.ACTIVE_ONLY)
        if as_json:
            _emit_json([vars(e) for e in found])
            return
        _table(
            ["ID", "NAME", "STAGE", "CREATED"],
            [[e.experiment_id, e.name, e.lifecycle_stage, _when(e.creation_time)] for e in found],
        )


@experiments.command("create")
@click.argument("name")
@click.pass_context
def experiments_create(ctx, name):
    """Create an experiment."""
    with _client(ctx, create=True) as c:
        click.echo(c.create_experiment(name))


def _experiment_id(c, spec: str) -> str:
    """The id of the experiment named ``spec``, else of the one whose id is ``spec``."""
    from gitml.errors import ExperimentNotFoundError

    experiment = c.get_experiment_by_name(spec)
    if experiment is not None:
        return experiment.experiment_id
    if not spec.isdigit():  # not an id either: say so, not "id is not a number"
        raise ExperimentNotFoundError(spec)
    return c.get_experiment(spec).experiment_id


@experiments.command("rename")
@click.argument("experiment")
@click.argument("new_name")
@click.pass_context
def experiments_rename(ctx, experiment, new_name):
    """Rename EXPERIMENT (a name or id) to NEW_NAME."""
    with _client(ctx) as c:
        c.rename_experiment(_experiment_id(c, experiment), new_name)


@experiments.command("delete")
@click.argument("experiment")
@click.pass_context
def experiments_delete(ctx, experiment):
    """Mark EXPERIMENT (a name or id) deleted; its runs stay."""
    with _client(ctx) as c:
        c.delete_experiment(_experiment_id(c, experiment))


@experiments.command("restore")
@click.argument("experiment")
@click.pass_context
def experiments_restore(ctx, experiment):
    """Restore a deleted EXPERIMENT (a name or id)."""
    with _client(ctx) as c:
        c.restore_experiment(_experiment_id(c, experiment))


# -- runs -----------------------------------------------------------------------
@cli.command()
@click.option("-e", "--experiment", "experiments_", multiple=True, help="Experiment name or id (repeatable; default: all).")
@click.option("-f", "--filter", "filter_string", default="", help="MLflow filter, plus OR and parentheses.")
@click.option("-o", "--order-by", multiple=True, help='e.g. "metrics.auc DESC" (repeatable).')
@click.option("-n", "--max", "max_results", type=click.IntRange(min=0), default=None, help="At most this many runs.")
@click.option("--deleted", is_flag=True, help="Show deleted runs instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(ctx, experiments_, filter_string, order_by, max_results, deleted, as_json):
    """List runs, newest first."""
    import os

    from gitml.tracking.entities import ViewType
    from gitml.tracking.tracker import search_rows

    with _client(ctx) as c:
        ids = [_experiment_id(c, e) for e in experiments_] or None
        view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
        rows = search_rows(c.tracker, ids, filter_string, view=view, max_results=max_results, order_by=list(order_by))
        if not rows:
            from gitml.tracking.ci import missing_runs_hint

            hint = missing_runs_hint(os.environ, has_runs=bool(c.search_rows(view=ViewType.ALL, max_results=1)))
            if hint:
                click.secho(hint, fg="yellow", err=True)
        if as_json:
            _emit_json(rows)
            return
        metric_keys = sorted({k for r in rows for k in r["metrics"]})[:6]
        param_keys = sorted({k for r in rows for k in r["params"]})[:4]
        headers = ["RUN", "NAME", "STATUS", "STARTED", "TIME", *metric_keys, *param_keys]
        table = [
            [
                r["run_id"][:8],
                r["run_name"],
                r["status"],
                _when(r["start_time"]),
                _duration(r["start_time"], r["end_time"]),
                *(_fmt(r["metrics"].get(k)) for k in metric_keys),
                *(_fmt(r["params"].get(k)) for k in param_keys),
            ]
            for r in rows
        ]
        _table(headers, table)


@cli.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx, run, as_json):
    """Show a run: status, source, params, metrics, tags."""
    with _client(ctx) as c:
        r = c.get_run(c.tracker.resolve(run))
        if as_json:
            _emit_json({"info": vars(r.info), "source": vars(r.source), **vars(r.data)})
            return
        i, s = r.info, r.source
        click.echo(click.style(f"run {i.run_id}", fg="yellow") + f"  ({i.run_name})")
        from gitml.errors import GitmlError

        try:
            experiment = f"{c.get_experiment(i.experiment_id).name} ({i.experiment_id})"
        except GitmlError:
            experiment = i.experiment_id
        click.echo(f"Experiment: {experiment}")
        click.echo(f"Status:     {i.status}{'  [deleted]' if i.lifecycle_stage == 'deleted' else ''}")
        click.echo(f"Started:    {_when(i.start_time)}   Ended: {_when(i.end_time)}   ({_duration(i.start_time, i.end_time)})")
        dirty = " + uncommitted changes" if s.dirty else ""
        click.echo(f"Source:     {s.commit or '(no commit)'}{dirty}  on {s.branch or '(detached)'}")
        click.echo(f"Run commit: {s.run_commit}")
        for title, data in (("Params", r.data.params), ("Metrics", r.data.metrics), ("Tags", r.data.tags)):
            if data:
                click.echo(f"\n{title}:")
                width = max(len(k) for k in data)
                for k in sorted(data):
                    click.echo(f"  {k.ljust(width)}  {_fmt(data[k], whole=True)}")


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--code", is_flag=True, help="Also show the diff of the code that ran.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def diff(ctx, run_a, run_b, code, as_json):
    """Compare two runs: params and metrics side by side, changes marked."""
    from gitml.tracking.lineage import code_diff, compare

    with _client(ctx) as c:
        a, b = (c.get_run(c.tracker.resolve(x)) for x in (run_a, run_b))
        sections = {"params": compare(a.data.params, b.data.params), "metrics": compare(a.data.metrics, b.data.metrics)}
        patch = None
        if code:
            patch = code_diff(
                c.tracker.store, a.source.run_commit.encode(), b.source.run_commit.encode(),
                labels=(a.info.run_id[:8], b.info.run_id[:8]),
            )
        if as_json:
            _emit_json(
                {
                    "a": a.info.run_id,
                    "b": b.info.run_id,
                    **{s: [{"key": k, "a": x, "b": y, "changed": ch} for k, x, y, ch in rows] for s, rows in sections.items()},
                    **({"code": patch} if code else {}),
                }
            )
            return
        for title, rows in sections.items():
            if not rows:
                continue
            click.echo(click.style(title, bold=True))
            table = [[("* " if ch else "  ") + k, _fmt(x), _fmt(y)] for k, x, y, ch in rows]
            _table(["  KEY", a.info.run_id[:8] + " " + a.info.run_name, b.info.run_id[:8] + " " + b.info.run_name], table)
            click.echo()
        if code:
            for line in patch.splitlines():
                color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                click.secho(line, fg=color)


@cli.command("log")
@click.argument("run")
@click.option("-n", "--max-count", type=click.IntRange(min=1), default=20, help="Source commits to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def log_(ctx, run, max_count, as_json):
    """Lineage of a run: its own commits, then its source commit and history."""
    from gitml.tracking.lineage import lineage

    with _client(ctx) as c:
        r = c.get_run(c.tracker.resolve(run))
        entries = lineage(c.tracker.store, r.source.run_commit.encode(), limit=max_count)
        if as_json:
            _emit_json([vars(e) for e in entries])
            return
        for e in entries:
            mark = click.style("run   ", fg="cyan") if e.is_run_commit else "source"
            click.echo(f"{click.style(e.commit[:10], fg='yellow')} {mark} {_when(e.time * 1000)}  {e.summary}")


def _branch_name(ctx, param, value: str | None) -> str | None:
    """Refuse a branch name git would refuse, before anything is touched."""
    if value is None:
        return None
    from dulwich.refs import check_ref_format

    if value.startswith("-") or not check_ref_format(f"refs/heads/{value}".encode()):
        raise click.BadParameter(f"{value!r} is not a valid branch name")
    return value


@cli.command()
@click.argument("run")
@click.option("-b", "branch", callback=_branch_name, help="Create this branch at the run's source commit.")
@click.pass_context
def checkout(ctx, run, branch):
    """Restore the code a run ran (its source commit plus its uncommitted changes)."""
    from gitml.errors import InvalidInputError
    from gitml.names import RECORD_DIR
    from gitml.store.worktree import restore

    with _client(ctx) as c:
        r = c.get_run(c.tracker.resolve(run))
        store = c.tracker.store
        source = r.source.commit.encode() if r.source.commit else None
        if source is None and branch:
            raise InvalidInputError(
                f"run {r.info.run_id[:8]} ran before the repository's first commit: there is no commit "
                f"to start branch {branch!r} at (check it out without -b)"
            )
        run_tree = store.commit(r.source.run_commit.encode()).tree
        restore(store, source, run_tree, branch=branch, skip=RECORD_DIR)
        if source is None:
            where = "the current HEAD (the run had no source commit)"
        else:
            where = f"branch {branch}" if branch else "a detached HEAD"
        extra = ", with its uncommitted changes in the work tree" if r.source.dirty else ""
        click.echo(f"Checked out the code of run {r.info.run_id[:8]} ({r.info.run_name}) on {where}{extra}.")


@cli.command()
@click.pass_context
def recover(ctx):
    """Commit what killed processes left in the journal; mark their runs KILLED."""
    with _client(ctx) as c:
        recovered = c.tracker.recovered + c.tracker.recover()
        if not recovered:
            click.echo("Nothing to recover.")
        for run_id in recovered:
            click.echo(f"recovered run {run_id} (marked KILLED)")


from gitml.cli import hooks, models, storage, sync, ui  # noqa: E402,F401  (they register their commands on `cli`)
from gitml.cli import serve  # noqa: E402,F401
from gitml.cli.projects import env_group, run_command  # noqa: E402

cli.add_command(run_command)
cli.add_command(env_group)
from gitml.cli.registry import registry_group  # noqa: E402

cli.add_command(registry_group)
from gitml.cli.report import compare_command  # noqa: E402

cli.add_command(compare_command)
cli.add_command(hooks.hooks)


def main() -> None:
    cli(prog_name="gitml")


if __name__ == "__main__":  # `python -m gitml.cli.main`: use the imported module, where commands register
    from gitml.cli.main import main as _main

    _main()

"""``gitml init``, ``experiments``, ``runs``, ``show``, ``diff``, ``log``, ``checkout``
and ``recover``: the tracking commands (registered on the root group by main)."""

from __future__ import annotations

import click

from gitml.cli.common import (
    echo,
    emit_json,
    experiment_id,
    experiment_option,
    filter_option,
    fmt,
    json_option,
    open_client,
    order_option,
    print_table,
    secho,
    shown,
)
from gitml.runviews import duration, when


# -- init -----------------------------------------------------------------------
@click.command()
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
    echo(f"{'Initialized a git repository' if created else 'Using the git repository'} in {where}")
    click.echo("Runs are stored as refs/gitml/runs/*; see `gitml runs`.")


# -- experiments ----------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include deleted experiments (when listing).")
@json_option("Print JSON (when listing).")
@click.pass_context
def experiments(ctx, show_all, as_json):
    """List and manage experiments (list by default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(experiments_list, show_all=show_all, as_json=as_json)
    elif show_all or as_json:
        raise click.UsageError(
            f"--all and --json go after the subcommand: gitml experiments {ctx.invoked_subcommand} ..."
        )


@experiments.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deleted experiments.")
@json_option()
@click.pass_context
def experiments_list(ctx, show_all=False, as_json=False):
    """List experiments."""
    from gitml.runlog.entities import ViewType

    with open_client(ctx) as c:
        found = c.search_experiments(ViewType.ALL if show_all else ViewType.ACTIVE_ONLY)
        if as_json:
            emit_json([vars(e) for e in found])
            return
        print_table(
            ["ID", "NAME", "STAGE", "CREATED"],
            [[e.experiment_id, e.name, e.lifecycle_stage, when(e.creation_time)] for e in found],
        )


@experiments.command("create")
@click.argument("name")
@click.pass_context
def experiments_create(ctx, name):
    """Create an experiment."""
    with open_client(ctx, create=True) as c:
        click.echo(c.create_experiment(name))


@experiments.command("rename")
@click.argument("experiment")
@click.argument("new_name")
@click.pass_context
def experiments_rename(ctx, experiment, new_name):
    """Rename EXPERIMENT (a name or id) to NEW_NAME."""
    with open_client(ctx) as c:
        c.rename_experiment(experiment_id(c, experiment), new_name)


@experiments.command("delete")
@click.argument("experiment")
@click.pass_context
def experiments_delete(ctx, experiment):
    """Mark EXPERIMENT (a name or id) deleted; its runs stay."""
    with open_client(ctx) as c:
        c.delete_experiment(experiment_id(c, experiment))


@experiments.command("restore")
@click.argument("experiment")
@click.pass_context
def experiments_restore(ctx, experiment):
    """Restore a deleted EXPERIMENT (a name or id)."""
    with open_client(ctx) as c:
        c.restore_experiment(experiment_id(c, experiment))


# -- runs -----------------------------------------------------------------------
def _listing_options(command):
    """The options of listing runs, on ``gitml runs`` and ``gitml runs list`` alike."""
    for option in reversed(
        [
            experiment_option("experiments_"),
            filter_option(),
            order_option(),
            click.option(
                "-n", "--max", "max_results", type=click.IntRange(min=0), default=None, help="At most this many runs."
            ),
            click.option("--deleted", is_flag=True, help="Show deleted runs instead."),
            json_option(),
        ]
    ):
        command = option(command)
    return command


@click.group(invoke_without_command=True)
@_listing_options
@click.pass_context
def runs(ctx, **listing):
    """List runs, newest first; delete and restore them.

    `gitml runs` lists (as `gitml runs list`); `gitml runs delete RUN...` and
    `gitml runs restore RUN...` mark runs deleted or active again."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(runs_list, **listing)
    elif any(value not in (None, "", (), False) for value in listing.values()):
        raise click.UsageError(f"listing options go after the subcommand: gitml runs {ctx.invoked_subcommand} ...")


@runs.command("delete")
@click.argument("run_specs", metavar="RUN...", nargs=-1, required=True)
@click.pass_context
def runs_delete(ctx, run_specs):
    """Mark runs deleted (by id, id prefix or name).

    Searches leave them out; their commits stay, and `gitml runs restore` brings them
    back. As `mlflow runs delete`."""
    _each_run(ctx, run_specs, "delete_run", "deleted")


@runs.command("restore")
@click.argument("run_specs", metavar="RUN...", nargs=-1, required=True)
@click.pass_context
def runs_restore(ctx, run_specs):
    """Restore deleted runs (by id, id prefix or name).

    As `mlflow runs restore`."""
    _each_run(ctx, run_specs, "restore_run", "restored")


def _each_run(ctx, run_specs, method: str, done: str) -> None:
    """Resolve each RUN (id, prefix or name) and call the Client's ``method`` on it, saying so."""
    with open_client(ctx) as c:
        for spec in run_specs:
            run_id = c.resolve_run(spec)
            getattr(c, method)(run_id)
            echo(f"{done} run {run_id}")


@runs.command("list")
@_listing_options
@click.pass_context
def runs_list(ctx, experiments_, filter_string, order_by, max_results, deleted, as_json):
    """List runs, newest first."""
    import os

    from gitml.runlog.entities import ViewType

    with open_client(ctx) as c:
        ids = [experiment_id(c, e) for e in experiments_] or None
        view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
        rows = c.search_rows(ids, filter_string, view=view, max_results=max_results, order_by=list(order_by))
        if not rows:
            from gitml.runlog.ci import missing_runs_hint

            has_runs = bool(c.search_rows(view=ViewType.ALL, max_results=1))
            hint = missing_runs_hint(os.environ, has_runs=has_runs, remotes=c.remote_names())
            if has_runs and filter_string:
                hint = c.missing_keys_hint(filter_string, ids)
            if hint:
                click.secho(hint, fg="yellow", err=True)
        if as_json:
            emit_json(rows)
            return
        metric_keys = sorted({k for r in rows for k in r["metrics"]})[:6]
        param_keys = sorted({k for r in rows for k in r["params"]})[:4]
        headers = ["RUN", "NAME", "STATUS", "STARTED", "TIME", *metric_keys, *param_keys]
        table = [
            [
                r["run_id"][:8],
                r["run_name"],
                r["status"],
                when(r["start_time"]),
                duration(r["start_time"], r["end_time"]),
                *(fmt(r["metrics"].get(k)) for k in metric_keys),
                *(fmt(r["params"].get(k)) for k in param_keys),
            ]
            for r in rows
        ]
        print_table(headers, table)


@click.command()
@click.argument("run")
@json_option()
@click.pass_context
def show(ctx, run, as_json):
    """Show a run: status, source, params, metrics, tags."""
    with open_client(ctx) as c:
        r = c.get_run(c.resolve_run(run))
        if as_json:
            emit_json({"info": vars(r.info), "source": vars(r.source), **vars(r.data)})
            return
        i, s = r.info, r.source
        click.echo(click.style(f"run {i.run_id}", fg="yellow") + f"  ({shown(i.run_name)})")
        from gitml.errors import GitmlError

        try:
            experiment = f"{c.get_experiment(i.experiment_id).name} ({i.experiment_id})"
        except GitmlError:
            experiment = i.experiment_id
        echo(f"Experiment: {experiment}")
        echo(f"Status:     {i.status}{'  [deleted]' if i.lifecycle_stage == 'deleted' else ''}")
        click.echo(
            f"Started:    {when(i.start_time)}   Ended: {when(i.end_time)}   ({duration(i.start_time, i.end_time)})"
        )
        dirty = " + uncommitted changes" if s.dirty else ""
        echo(f"Source:     {s.commit or '(no commit)'}{dirty}  on {s.branch or '(detached)'}")
        echo(f"Run commit: {s.run_commit}")
        for title, data in (("Params", r.data.params), ("Metrics", r.data.metrics), ("Tags", r.data.tags)):
            if data:
                echo(f"\n{title}:")
                width = max(len(k) for k in data)
                for k in sorted(data):
                    echo(f"  {k.ljust(width)}  {fmt(data[k], whole=True)}")


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--code", is_flag=True, help="Also show the diff of the code that ran.")
@json_option()
@click.pass_context
def diff(ctx, run_a, run_b, code, as_json):
    """Compare two runs: params and metrics side by side, changes marked."""
    from gitml.runlog.lineage import compare

    with open_client(ctx) as c:
        a, b = (c.get_run(c.resolve_run(x)) for x in (run_a, run_b))
        sections = {"params": compare(a.data.params, b.data.params), "metrics": compare(a.data.metrics, b.data.metrics)}
        patch = c.runs_code_diff(a.info.run_id, b.info.run_id) if code else None
        if as_json:
            emit_json(
                {
                    "a": a.info.run_id,
                    "b": b.info.run_id,
                    **{
                        s: [{"key": k, "a": x, "b": y, "changed": ch} for k, x, y, ch in rows]
                        for s, rows in sections.items()
                    },
                    **({"code": patch} if code else {}),
                }
            )
            return
        for title, rows in sections.items():
            if not rows:
                continue
            click.echo(click.style(title, bold=True))
            table = [[("* " if ch else "  ") + k, fmt(x), fmt(y)] for k, x, y, ch in rows]
            print_table(
                ["  KEY", a.info.run_id[:8] + " " + a.info.run_name, b.info.run_id[:8] + " " + b.info.run_name], table
            )
            click.echo()
        if code and not patch:
            click.echo("The code is identical: both runs ran the same source tree.")
        elif code:
            for line in patch.splitlines():
                color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                secho(line, fg=color)


@click.command("log")
@click.argument("run")
@click.option("-n", "--max-count", type=click.IntRange(min=1), default=20, help="Source commits to show.")
@json_option()
@click.pass_context
def log_(ctx, run, max_count, as_json):
    """Lineage of a run: its own commits, then its source commit and history."""
    with open_client(ctx) as c:
        entries = c.run_lineage(c.resolve_run(run), limit=max_count)
        if as_json:
            emit_json([vars(e) for e in entries])
            return
        for e in entries:
            mark = click.style("run   ", fg="cyan") if e.is_run_commit else "source"
            click.echo(f"{click.style(e.commit[:10], fg='yellow')} {mark} {when(e.time * 1000)}  {shown(e.summary)}")


def _branch_name(ctx, param, value: str | None) -> str | None:
    """Refuse a branch name git would refuse, before anything is touched."""
    if value is None:
        return None
    from dulwich.refs import check_ref_format

    from gitml.store.ids import refname

    if value.startswith("-") or not check_ref_format(refname(f"refs/heads/{value}".encode())):
        raise click.BadParameter(f"{value!r} is not a valid branch name")
    return value


@click.command()
@click.argument("run")
@click.option("-b", "branch", callback=_branch_name, help="Create this branch at the run's source commit.")
@click.pass_context
def checkout(ctx, run, branch):
    """Restore the code a run ran (its source commit plus its uncommitted changes)."""
    with open_client(ctx) as c:
        r = c.checkout_run(run, branch=branch)
        if r.source.commit is None:
            where = "the current HEAD (the run had no source commit)"
        else:
            where = f"branch {branch}" if branch else "a detached HEAD"
        extra = ", with its uncommitted changes in the work tree" if r.source.dirty else ""
        echo(f"Checked out the code of run {r.info.run_id[:8]} ({r.info.run_name}) on {where}{extra}.")


@click.command()
@click.pass_context
def recover(ctx):
    """Commit what killed processes left in the journal; mark their runs KILLED."""
    with open_client(ctx) as c:
        recovered = c.recover_runs()
        if not recovered:
            click.echo("Nothing to recover.")
        for run_id in recovered:
            echo(f"recovered run {run_id} (marked KILLED)")

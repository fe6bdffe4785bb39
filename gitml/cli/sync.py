"""``gitml push``, ``gitml fetch`` and ``gitml pull``."""

from __future__ import annotations

import sys

import click

from gitml.cli.common import echo, experiment_option, open_client, secho


def _progress(verb: str):
    """A one-line progress display on a terminal (nothing when piped)."""
    if not sys.stderr.isatty():
        return None

    def show(files: int, total: int, done_bytes: int, total_bytes: int) -> None:
        mib = f", {done_bytes / 2**20:.1f}/{total_bytes / 2**20:.1f} MiB" if total_bytes else ""
        end = "\n" if files >= total else ""
        click.echo(f"\r{verb} artifacts: {files}/{total} files{mib}", err=True, nl=False)
        if end:
            click.echo("", err=True)

    return show


@click.command()
@click.argument("remote", required=False)
@experiment_option(help="Only the runs of this experiment (repeatable).")
@click.option("-r", "--run", "runs", multiple=True, help="Only this run (id, prefix or name; repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every run and experiment (the default when nothing is selected).")
@click.option("--force", is_flag=True, help="Overwrite remote runs that are not ancestors of the local ones.")
@click.option(
    "--allow-local-artifacts",
    is_flag=True,
    help="Push runs whose large artifacts stay in this user's default store, to a remote others reach.",
)
@click.pass_context
def push(ctx, remote, experiments, runs, all_, force, allow_local_artifacts):
    """Push runs to a git remote (default origin), uploading their artifacts first.

    REMOTE is a configured remote's name, a URL (ssh, git, http(s), file) or a path.
    """
    from gitml import sync
    from gitml.cli.hooks import warn_stale_hooks
    from gitml.store.remote import NON_FAST_FORWARD

    warn_stale_hooks(ctx)

    if all_ and (experiments or runs):
        raise click.UsageError("--all pushes everything: give it without --experiment or --run")
    with open_client(ctx) as c:
        result = sync.push(
            c,
            remote,
            experiments=None if all_ else list(experiments),
            runs=None if all_ else list(runs),
            force=force,
            progress=_progress("uploading"),
            allow_local_artifacts=allow_local_artifacts,
        )
        rejected = result.rejected  # made from every ref's status: once
        click.echo(
            f"{result.url}: {len(result.pushed)} ref(s) pushed, {result.unchanged} already there; "
            f"{result.uploaded} artifact object(s) uploaded ({result.uploaded_bytes / 2**20:.1f} MiB)"
        )
        from gitml.content.config import default_remote

        if result.local_artifact_remote == default_remote():
            click.secho(
                f"note: artifacts are in the default store {result.local_artifact_remote}, a folder of this user on "
                "this machine; for teammates, share one: gitml config --committed artifacts.remote s3://bucket/path",
                fg="yellow",
                err=True,
            )
        for ref, note in sorted(result.notes.items()):
            secho(f"  {ref}: {note}", fg="yellow", err=True)
        for line in result.remote_messages:
            if result.refusal is None or line.strip() not in result.refusal:  # the refusal's line names it
                echo(f"remote: {line}", err=True)
        if result.refusal is not None:
            sent = len(result.pushed)
            click.secho(
                f"error: {result.refusal}; {sent} ref(s) went in pushes of up to {result.batch_refs} refs "
                f"before it, {len(rejected)} did not: `gitml push` again sends only those "
                "(`gitml config push.batch_refs N` sets the batch)",
                fg="red",
                err=True,
            )
            sys.exit(1)
        by_status: dict[str, list[str]] = {}
        for ref, status in sorted(rejected.items()):
            by_status.setdefault(status, []).append(ref)
        for status, refs in by_status.items():
            for ref in refs[:3]:
                secho(f"  {ref}: {status}", fg="red", err=True)
            if len(refs) > 3:
                secho(f"  ... and {len(refs) - 3} more ref(s): {status}", fg="red", err=True)
        if any(status == NON_FAST_FORWARD for status in rejected.values()):
            click.secho(
                "hint: those runs were written here and in another clone; `gitml fetch --force` takes the "
                "remote's history, `gitml push --force` this clone's",
                fg="yellow",
                err=True,
            )
        if rejected:
            sys.exit(1)


def _fetch(ctx, remote, artifacts: bool, force: bool) -> None:
    from gitml import sync
    from gitml.cli.hooks import warn_stale_hooks

    warn_stale_hooks(ctx)

    with open_client(ctx) as c:
        outcome = sync.fetch(c, remote, artifacts=artifacts, force=force, progress=_progress("downloading"))
        r = outcome.result
        click.echo(
            f"{outcome.url}: {len(r.created)} new, {len(r.updated)} updated, {len(r.unchanged)} unchanged"
            + (f", {len(r.ahead)} ahead (push them)" if r.ahead else "")
            + (f"; {outcome.downloaded} artifact object(s) downloaded" if artifacts else "")
        )
        for ref in r.diverged:
            click.secho(
                f"  {ref.decode()}: diverged (written in two places); kept the local one (--force takes the remote's)",
                fg="yellow",
                err=True,
            )
        for ref, why in r.refused.items():  # a remote's name, shown with no control character
            name = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in ref.decode("utf-8", "replace"))
            secho(f"  {name}: refused: {why}", fg="red", err=True)
        for message in sorted(outcome.failed.values()):
            secho(f"  {message}", fg="red", err=True)
        if outcome.failed:
            secho(f"{len(outcome.failed)} artifact object(s) or run(s) could not be had", fg="red", err=True)
        if outcome.failed or r.refused:
            sys.exit(1)


@click.command()
@click.argument("remote", required=False)
@click.option("--artifacts", is_flag=True, help="Download the runs' artifacts now instead of on first access.")
@click.option(
    "--force", is_flag=True, help="A run written here and there: take the remote's history (this clone's is dropped)."
)
@click.pass_context
def fetch(ctx, remote, artifacts, force):
    """Fetch runs and experiments (refs/gitml/*) from a git remote (default origin)."""
    _fetch(ctx, remote, artifacts, force)


@click.command()
@click.argument("remote", required=False)
@click.option(
    "--force", is_flag=True, help="A run written here and there: take the remote's history (this clone's is dropped)."
)
@click.pass_context
def pull(ctx, remote, force):
    """Fetch runs and experiments from a git remote, with their artifacts."""
    _fetch(ctx, remote, True, force)

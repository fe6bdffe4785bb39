"""``gitml config``, ``gitml artifacts``, ``gitml fsck`` and ``gitml gc``."""

from __future__ import annotations

import os
import sys
import time

import click

from gitml.cli.common import echo, emit_json, experiment_option, json_option, open_client, print_table, repo_path, secho


@click.command("config")
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.option(
    "--committed",
    is_flag=True,
    help="Write the committed .gitml/config.yaml (shared with the team) instead of this clone's.",
)
@click.option("--list", "list_all", is_flag=True, help="Show every effective setting.")
@json_option("Print the settings shown as a JSON object.")
@click.option(
    "--trust-committed",
    is_flag=True,
    help="Let this clone contact, upload to and delete from the artifact remote the committed .gitml/config.yaml sets.",
)
@click.pass_context
def config_(ctx, key, value, committed, list_all, trust_committed, as_json):
    """Get or set a setting (artifacts.remote, artifacts.timeout, ...).

    An artifact remote set by the committed file is read from as it is when it is a
    folder; uploads and deletes there wait for --trust-committed (again whenever the
    committed value changes), and so does any contact with one that can reach a network
    service (http(s)://, a scheme this clone does not use yet, committed storage options).
    """
    from gitml.content import config
    from gitml.store.git import open_store

    if trust_committed and (key or committed or list_all or as_json):
        raise click.UsageError("--trust-committed takes no key, value or other option")
    if as_json and value is not None:
        raise click.UsageError("--json shows settings; it does not set one")
    if key is not None and key not in config.KEYS:
        raise click.UsageError(f"unknown setting {key!r}; known: {', '.join(config.KEYS)}")
    with open_store(repo_path(ctx)) as store:
        if trust_committed:
            trusted = config.trust_committed(store)
            shown = ", ".join(f"{name} {value!r}" for name, value in trusted.items())
            echo(f"this clone now writes to and deletes from the committed artifact remote ({shown})")
            return
        if value is not None:  # set without reading the other settings: a bad one stays repairable
            parsed = config.check_value(key, config.parse_text(key, value))
            path = config.set_value(store, key, parsed, committed=committed)
            echo(f"{key}={parsed}  ({os.path.relpath(path)})")
            return
        settings = config.load(store)
        if as_json:
            emit_json({name: settings[name] for name in sorted(settings) if list_all or key in (None, name)})
            return
        if list_all or key is None:
            for name in sorted(settings):
                echo(f"{name}={settings[name]}")
            return
        click.echo(settings[key])


@click.group()
def artifacts():
    """List and download a run's artifacts."""


@artifacts.command("ls")
@click.argument("run")
@click.argument("path", required=False)
@json_option()
@click.pass_context
def artifacts_ls(ctx, run, path, as_json):
    """List the artifacts directly inside PATH (the root by default)."""
    with open_client(ctx) as c:
        entries = c.list_artifacts(c.resolve_run(run), _root(path))
        if as_json:
            emit_json([vars(e) for e in entries])
            return
        print_table(
            ["PATH", "SIZE"],
            [[e.path + ("/" if e.is_dir else ""), "-" if e.is_dir else _size(e.file_size)] for e in entries],
        )


@artifacts.command("get")
@click.argument("run")
@click.argument("path")
@click.option("-o", "--output", "dst", default=".", show_default=True, help="Folder to download into.")
@click.pass_context
def artifacts_get(ctx, run, path, dst):
    """Download an artifact file or folder ("." for all), each file verified."""
    with open_client(ctx) as c:
        click.echo(c.download_artifacts(c.resolve_run(run), _root(path), dst))


def _root(path: str | None) -> str | None:
    """``.`` and ``/`` name the run's whole artifact folder, as in a shell."""
    return "" if path in (".", "./", "/") else path


@click.command()
@click.option("--no-remote", is_flag=True, help="Check the local cache only.")
@click.pass_context
def fsck(ctx, no_remote):
    """Check that every artifact object the runs reference is present and intact.

    Both the local cache and the artifact remote are checked (read whole and hashed).
    """
    with open_client(ctx) as c:
        content = c.artifacts.content
        broken: dict[bytes, str] = {}
        sizes: dict[str, int] = {}
        objects = c.artifacts.referenced_objects(broken=broken, sizes=sizes)
        problems = len(broken)
        for ref, why in sorted(broken.items()):
            echo(f"unreadable run {ref.decode()}: {why}")
        local_ok = 0
        for sha, (run_id, path) in sorted(objects.items(), key=lambda kv: kv[1]):
            if content.has_local(sha):
                if content.verify_local(sha):
                    local_ok += 1
                else:
                    problems += 1
                    echo(f"corrupt in cache: run {run_id} {path} {sha}")
            elif c.artifacts.inline_copy(run_id, path, sha) is not None:
                local_ok += 1  # a small file: its intact copy is in the run's git tree
        remote_ok = unpushed = 0
        if not no_remote:
            bad_on_remote = []
            for sha, (run_id, path) in sorted(objects.items(), key=lambda kv: kv[1]):
                state = content.verify_remote(sha, size=sizes.get(sha))
                if state == "ok":
                    remote_ok += 1
                    continue
                here = content.has_local(sha) or c.artifacts.inline_copy(run_id, path, sha) is not None
                if state == "missing" and here:
                    unpushed += 1  # not uploaded yet (or deleted there): `gitml push` sends it
                    bad_on_remote.append(sha)
                    continue
                bad_on_remote.append(sha)
                if not here:
                    problems += 1
                    echo(f"{state} on remote (and not here): run {run_id} {path} {sha}")
                else:
                    echo(f"{state} on remote (intact here; `gitml push` uploads it): run {run_id} {path} {sha}")
                    problems += 1
            content.forget_remote(bad_on_remote)  # so that the next push looks and uploads again
        where = f"; {remote_ok} intact on the remote" if not no_remote else ""
        later = f"; {unpushed} only here (`gitml push` uploads them)" if unpushed else ""
        echo(f"{len(objects)} objects referenced; {local_ok} intact here{where}{later}; {problems} problem(s)")
        if problems:
            sys.exit(1)


@click.command()
@click.option("--remote", is_flag=True, help="Also list the remote's objects no run references.")
@click.option("--delete", is_flag=True, help="With --remote: delete them (run without it first to see the list).")
@click.option(
    "--keep-recent",
    default=3600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Keep objects added in the last this many seconds (a run may be logging or pushing them).",
)
@click.option("--git-remote", help="With --remote: the git remote whose runs must all be here first (default origin).")
@click.option(
    "--purge",
    is_flag=True,
    help="First remove deleted runs for good (their refs; with --remote, on the git remote too).",
)
@click.option(
    "--older-than", metavar="AGE", help="With --purge: only runs deleted at least this long ago (30d, 12h, 2w)."
)
@experiment_option("experiments_", help="With --purge: only this experiment's runs (repeatable).")
@click.option("--dry-run", is_flag=True, help="With --purge: list what would be removed, and remove nothing.")
@click.pass_context
def gc(ctx, remote, delete, keep_recent, git_remote, purge, older_than, experiments_, dry_run):
    """Drop cached artifact objects that no run references; pack run refs.

    With --remote, also list the artifact remote's unreferenced objects (refused for the
    default store, which every repository shares, and while the git remote has runs this
    clone lacks); --delete marks them, and deletes those an earlier gc marked at least
    --keep-recent seconds ago that no run uses and no push wrote since (two phases, so a
    teammate pushing meanwhile never loses an object).

    With --purge, deleted runs are first removed for good, as `mlflow gc` does: their refs
    here and, with --remote, on the git remote (each only while it holds what this clone
    holds). A run a registry tag points into is never purged. Their artifact objects then go
    with the unreferenced ones (the cache; with --remote --delete, the artifact store).
    """
    if (delete or git_remote) and not remote:
        raise click.UsageError("--delete and --git-remote apply to --remote")
    if (older_than or experiments_ or dry_run) and not purge:
        raise click.UsageError("--older-than, --experiment and --dry-run apply to --purge")
    with open_client(ctx) as c:
        content = c.artifacts.content
        if delete and not dry_run:
            content.check_writable()  # before anything: a remote the committed config set needs confirming
        if purge:
            from gitml.cli.common import experiment_id
            from gitml.purge import parse_age, purge_plan
            from gitml.purge import purge as purge_runs
            from gitml.runviews import when

            ids = [experiment_id(c, e) for e in experiments_] or None
            plan = purge_plan(c, older_than=parse_age(older_than) if older_than else 0, experiment_ids=ids)
            for run_id, why in sorted(plan.kept.items()):
                echo(f"keeping run {run_id}: {why}")
            if dry_run:
                for r in plan.runs:
                    echo(f"would purge run {r.run_id} ({r.run_name}), deleted {when(r.deleted_at * 1000)}")
                click.echo(
                    f"{len(plan.runs)} run(s) would be purged" + (" here and on the git remote" if remote else "")
                )
                return
            done = purge_runs(c, plan, remote=git_remote, all_remotes=remote)
            for r in done.purged:
                echo(f"purged run {r.run_id} ({r.run_name})")
            for run_id, why in sorted(done.kept.items()):
                if run_id not in plan.kept:
                    secho(f"kept run {run_id}: {why}", fg="yellow", err=True)
            where = f" here and on {done.remote_url}" if done.remote_url else ""
            echo(f"{len(done.purged)} run(s) purged{where}")
        keep = set(c.artifacts.referenced_objects())
        dropped = freed = 0
        grace = time.time() - keep_recent
        for sha in sorted(content.local_objects() - keep):
            path = content.cache_path(sha)
            st = os.stat(path)
            if max(st.st_mtime, st.st_ctime) > grace:
                continue
            content.drop_local(sha)
            dropped += 1
            freed += st.st_size
        echo(f"dropped {dropped} cached object(s), {_size(freed)}")
        stale = c.drop_stale_temporaries(grace)
        if stale:
            echo(f"removed {stale} half-written file(s) left by killed processes")
        packed = c.pack_run_refs()
        if packed:
            echo(f"packed {packed} run ref(s)")
        if not remote:
            return
        from gitml import sync

        for _round in range(2 if keep_recent == 0 and delete else 1):  # no grace: what is marked now is due now
            garbage = sync.remote_garbage(c, git_remote=git_remote, keep_recent=keep_recent)
            for sha in sorted(garbage.due):
                echo(f"{'deleting' if delete else 'would delete'} {content.remote_url}/{sha[:2]}/{sha[2:]}")
                if delete:
                    content.delete_remote(sha)
            if delete:
                for mark in garbage.marks:
                    if not mark.shas - set(garbage.due) or all(content.remote_modified(s) is None for s in mark.shas):
                        content.drop_gc_mark(mark)  # every object it named is gone or was kept for good reason
                if garbage.fresh:
                    content.write_gc_mark(garbage.fresh)
                    click.echo(
                        f"marked {len(garbage.fresh)} unreferenced remote object(s): a gc at least "
                        f"{keep_recent} s from now deletes those still unreferenced and not written since"
                    )
            elif garbage.fresh:
                verb = "would delete" if keep_recent == 0 else "would mark"  # what --delete would do now
                for sha in garbage.fresh:
                    echo(f"{verb} {content.remote_url}/{sha[:2]}/{sha[2:]}")
                click.echo(
                    f"{len(garbage.fresh)} unreferenced remote object(s); `--delete` marks them, "
                    "and a later gc deletes them (two-phase: a push meanwhile keeps what it uses)"
                )


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"

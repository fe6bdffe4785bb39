"""``gitml hooks install``: the git hooks of gitml, put into a repository."""

from __future__ import annotations

import os
import shlex
import stat
import sys

import click

from gitml.cli.main import _repo, cli

PRE_PUSH = """#!/bin/sh
# gitml pre-push hook: when you `git push REMOTE ...`, also push your runs and
# experiments to REMOTE, uploading their artifacts first (`gitml push REMOTE`).
# Install with `gitml hooks install`. A failure is reported but never blocks your push.
remote="$1"
python="python3"  # `gitml hooks install` puts the Python that has gitml here
# git runs this hook for `git push --dry-run` too: then push nothing
if [ -r "/proc/$PPID/cmdline" ] && tr '\\0' '\\n' < "/proc/$PPID/cmdline" | grep -qxE -e '--dry-run|-[vqfud46]*n[vqfud46]*'; then
    exit 0
fi
# the Python that installed the hook first (the project's venv), then a gitml command on the PATH
if [ -x "$python" ]; then
    "$python" -m gitml.cli.main push "$remote" >&2
elif command -v gitml >/dev/null 2>&1; then
    gitml push "$remote" >&2
else
    python3 -m gitml.cli.main push "$remote" >&2
fi || echo "gitml: runs were not pushed to $remote (see above); run 'gitml push $remote' later" >&2
exit 0
"""


def pre_push_hook(python: str) -> str:
    """The hook's text, calling ``python`` when no ``gitml`` command is on the PATH."""
    return PRE_PUSH.replace('python="python3"', f"python={shlex.quote(python)}", 1)




@cli.group()
def hooks():
    """Git hooks that keep runs in step with your pushes."""


def _hooks_folder(store) -> str:
    """Where git looks for hooks: ``core.hooksPath`` (relative to the work tree, as
    git reads it) or the ``hooks`` folder of the common git folder (shared by worktrees)."""
    try:
        configured = store.repo.get_config_stack().get((b"core",), b"hooksPath").decode()
    except KeyError:
        return os.path.join(store.commondir, "hooks")
    configured = os.path.expanduser(configured)
    return os.path.join(store.workdir or store.commondir, configured)


@hooks.command("install")
@click.option("--force", is_flag=True, help="Replace a hook of the same name that is not gitml's.")
@click.pass_context
def hooks_install(ctx, force):
    """Install the pre-push hook: git push then also pushes runs and artifacts.

    An existing hook of the same name is kept unless it is gitml's or --force is given.
    """
    from gitml.store.git import open_store

    with open_store(_repo(ctx)) as store:
        folder = _hooks_folder(store)
        os.makedirs(folder, exist_ok=True)
        for name, text in {"pre-push": pre_push_hook(sys.executable)}.items():
            path = os.path.join(folder, name)
            if os.path.exists(path) and not force:
                with open(path) as f:
                    if "gitml" not in f.read():
                        raise click.ClickException(f"{path} exists and is not gitml's; use --force to replace it")
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            click.echo(f"installed {path}")

"""``gitml registry ...``: the model registry (registered on the root group by main)."""

from __future__ import annotations

import time

import click

from gitml.cli.common import echo, emit_json, json_option, open_client, print_table, secho


def _sign_option(f):
    return click.option("--sign/--no-sign", "sign", default=None, help="Sign the tag (default: git's tag.gpgSign).")(f)


def _force_option(f):
    return click.option(
        "--force",
        is_flag=True,
        help="Override failing gates: the tag must be signed by a trusted key; it records the override.",
    )(f)


def _numbered(mv) -> str:
    """``3 (v2.1.0)``: MLflow's number beside the tag's semantic version."""
    return f"{mv.number} ({mv.version})"


def _when(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


@click.group("registry")
def registry_group():
    """Registered models: versions and stages as git tags (GTO's format)."""


@registry_group.command("register")
@click.argument("name")
@click.argument("run_path", metavar="RUN[:PATH]")
@click.option("--version", help="The version (vX.Y.Z); default: the next by --bump.")
@click.option(
    "--bump",
    type=click.Choice(["major", "minor", "patch"]),
    default="major",
    show_default=True,
    help="Which part of the greatest version grows.",
)
@click.option("-m", "--message", "description", default="", help="A description of the version.")
@_sign_option
@click.pass_context
def register(ctx, name, run_path, version, bump, description, sign):
    """Register the model at PATH of run RUN as the next version of NAME."""
    run, sep, path = run_path.partition(":")
    with open_client(ctx) as c:
        mv = c.registry.register(
            name, run, path if sep else None, version=version, bump_part=bump, description=description, sign_tag=sign
        )
        click.echo(
            f"Registered {name} version {mv.number} ({mv.version}): run {mv.run_id[:8]}, "
            f"model {mv.path or '.'} (tag {mv.tag})"
        )


@registry_group.command("promote")
@click.argument("name")
@click.argument("version")
@click.argument("stage")
@_sign_option
@_force_option
@click.pass_context
def promote(ctx, name, version, stage, sign, force):
    """Put VERSION of NAME in STAGE (tag NAME#STAGE#N).

    VERSION is MLflow's number (3: the third registration) or a semantic version (v1.1.0).
    The stage's gates in the policy must pass (metric thresholds, no regression against the
    version the stage holds); --force overrides them with a tag signed by a trusted key."""
    from gitml import gitops

    with open_client(ctx) as c:
        tag, created = gitops.promote(c, name, version, stage, sign_tag=sign, force=force)
        click.echo(
            f"{name}: {stage} now holds {version} (tag {tag})"
            if created
            else f"{name}: {stage} already holds {version}"
        )


@registry_group.command("demote")
@click.argument("name")
@click.argument("stage")
@_sign_option
@click.pass_context
def demote(ctx, name, stage, sign):
    """Empty STAGE of NAME (tag NAME#STAGE!#N)."""
    with open_client(ctx) as c:
        tags = c.registry.unassign(name, stage, sign_tag=sign)
        echo(f"{name}: {stage} emptied (tag {', '.join(tags)})")


@registry_group.command("deprecate")
@click.argument("name")
@click.argument("version", required=False)
@_sign_option
@click.pass_context
def deprecate(ctx, name, version, sign):
    """Withdraw VERSION of NAME, or the whole model."""
    with open_client(ctx) as c:
        tag = (
            c.registry.deregister(name, version, sign_tag=sign)
            if version
            else c.registry.deprecate(name, sign_tag=sign)
        )
        echo(f"{name}{' ' + version if version else ''} deprecated (tag {tag})")


@registry_group.command("list")
@json_option()
@click.pass_context
def list_models(ctx, as_json):
    """Registered models: latest version and what each stage holds."""

    with open_client(ctx) as c:
        models = c.registry.models()
        if as_json:
            emit_json(
                {
                    n: {
                        "latest": s.latest.version if s.latest else None,
                        "latest_number": s.latest.number if s.latest else None,
                        "stages": s.stages,
                        "stage_numbers": {st: s.versions[v].number for st, v in s.stages.items()},
                        "deprecated": s.deprecated,
                        "versions": len(s.versions),
                    }
                    for n, s in models.items()
                }
            )
            return
        print_table(
            ["model", "latest", "versions", "stages"],
            [
                [
                    n + (" (deprecated)" if s.deprecated else ""),
                    _numbered(s.latest) if s.latest else "-",
                    str(len(s.versions)),
                    ", ".join(f"{st}={_numbered(s.versions[v])}" for st, v in sorted(s.stages.items())) or "-",
                ]
                for n, s in models.items()
            ],
        )
        _say_policy(c.registry)


@registry_group.command("show")
@click.argument("name")
@json_option()
@click.pass_context
def show(ctx, name, as_json):
    """NAME's versions: number, run, model path, stages, who and when.

    The number is MLflow's: the N-th registration of NAME (models:/NAME/N)."""

    with open_client(ctx) as c:
        state = c.registry.model(name, report=True)
        policy = c.registry.policy
        versions = sorted(state.versions.values(), key=lambda v: v.number)
        if as_json:
            emit_json(
                {
                    "name": name,
                    "deprecated": state.deprecated,
                    "stages": state.stages,
                    "ignored": state.ignored,
                    "policy": policy.source,
                    "policy_pending": policy.pending,
                    "versions": [
                        {
                            "number": v.number,
                            "version": v.version,
                            "run_id": v.run_id,
                            "path": v.path,
                            "commit": v.commit,
                            "stages": v.stages,
                            "deregistered": v.deregistered,
                            "by": v.registered_by,
                            "at": v.registered_at,
                            "description": v.description,
                        }
                        for v in versions
                    ],
                }
            )
            return
        print_table(
            ["#", "version", "run", "model", "stages", "registered by", "at"],
            [
                [
                    str(v.number),
                    v.version + (" (deregistered)" if v.deregistered else ""),
                    v.run_id[:8],
                    v.path or ".",
                    ", ".join(sorted(v.stages)) or "-",
                    v.registered_by,
                    _when(v.registered_at),
                ]
                for v in versions
            ],
        )
        _say_policy(c.registry)
        for tag, why in state.ignored.items():
            secho(f"ignored {tag}: {why}", fg="yellow", err=True)


@registry_group.command("history")
@click.argument("name")
@json_option()
@click.pass_context
def history(ctx, name, as_json):
    """NAME's events, oldest first: tag, who, when, signature.

    Ordered by tag time, as GTO orders them, then by the counter N."""

    with open_client(ctx) as c:
        reg = c.registry
        state = reg.model(name, report=True)
        rows = []
        for e in state.events:
            why = state.ignored.get(e.tag.name) or reg.rejection(e, deep=True)
            version = state.version_of(e)
            found = state.versions.get(version) if version else None
            rows.append(
                {
                    "tag": e.tag.name,
                    "event": e.tag.action.value,
                    "version": version,
                    "number": found.number if found else None,
                    "stage": e.tag.stage,
                    "by": e.tagger,
                    "at": e.time,
                    "signature": str(reg.verification(e)),
                    "decision": f"ignored: {why}" if why else "counts",
                    "policy": reg.policy.source,
                }
            )
        if as_json:
            emit_json(rows)
            return
        print_table(
            ["tag", "event", "by", "at", "signature", "decision"],
            [[r["tag"], r["event"], r["by"], _when(r["at"]), r["signature"], r["decision"]] for r in rows],
        )
        _say_policy(reg)


@registry_group.command("verify")
@click.pass_context
def verify(ctx):
    """Check every registry tag against its run and the policy."""
    from gitml.registry.audit import verify_registry

    with open_client(ctx) as c:
        problems, checked = verify_registry(c.registry)
        for tag, why in problems:
            secho(f"{tag}: {why}", fg="red")
        echo(f"{checked} registry tag(s) checked under {c.registry.policy.source}, {len(problems)} problem(s)")
        for note in c.registry.policy_notes():
            secho(f"note: {note}", fg="yellow")
        if problems:
            ctx.exit(1)


def _say_policy(reg) -> None:
    secho(f"decided under {reg.policy.source}", err=True)
    for note in reg.policy_notes():
        secho(f"note: {note}", fg="yellow", err=True)


@registry_group.command("policy")
@click.option("--accept", is_flag=True, help="Accept, for this clone, the policy now on the trusted ref.")
@click.option("--ref", help="Read the policy from this ref from now on (e.g. origin/release); accepts its policy.")
@json_option()
@click.pass_context
def policy_(ctx, accept, ref, as_json):
    """Show the trust policy that decides, and its ref.

    --accept takes the trusted ref's policy. The policy (.gitml/registry.yaml) is read from the
    trusted ref (the remote's default branch as fetched, else the local default branch), never from
    the checked-out branch.
    A new policy fetched there decides once this clone accepts it.
    """
    with open_client(ctx) as c:
        reg = c.registry
        policy = reg.accept_policy(ref) if accept or ref else reg.policy
        required = policy.require_signature
        shown = {
            "source": policy.source,
            "pending": policy.pending,
            "notes": reg.policy_notes(),
            "require_signature": required if required is True else sorted(required),
            "stages": list(policy.stages) if policy.stages is not None else None,
            "trusted_gpg_keys": sorted(policy.trusted_gpg_keys),
            "allowed_signers": policy.allowed_signers,
            "on_untrusted": policy.on_untrusted,
            "repository": policy.repository,
            "gates": {
                stage: [str(g) for g in (*gates.require, *gates.no_worse)]
                + ([f"evaluated on dataset {gates.dataset}"] if gates.dataset else [])
                for stage, gates in sorted(policy.gates.items())
            },
        }
        if as_json:
            emit_json(shown)
            return
        click.echo(("accepted: " if accept or ref else "deciding: ") + policy.source)
        for key, value in shown.items():
            if key not in ("source", "pending", "notes"):
                echo(f"  {key}: {value}")
        for note in reg.policy_notes():
            secho(f"note: {note}", fg="yellow")


@registry_group.command("propose")
@click.argument("name")
@click.argument("version")
@click.argument("stage")
@click.option("-b", "--branch", help="Branch to create (default: gitml/promote/NAME/STAGE/VERSION).")
@click.pass_context
def propose(ctx, name, version, stage, branch):
    """Commit a stage change to .gitml/stages.yaml on a new branch."""
    from gitml import gitops

    with open_client(ctx) as c:
        made, commit = gitops.propose(c, name, version, stage, branch=branch)
        click.echo(
            f"Committed {commit[:12]} on branch {made}: push it and open a pull request (git push origin {made})"
        )


@registry_group.command("check")
@click.option("--base", default="main", show_default=True, help="Compare .gitml/stages.yaml with this branch.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the Markdown report here.")
@click.option("--no-load", is_flag=True, help="Do not load the models (only download and verify them).")
@click.pass_context
def check(ctx, base, report_path, no_load):
    """Validate the proposed stage changes; write a Markdown report."""
    from gitml import gitops

    with open_client(ctx) as c:
        result = gitops.check(c, base=base, load=not no_load)
        if report_path:
            with open(report_path, "w") as f:
                f.write(result.report)
        else:
            click.echo(result.report)
        if not result.ok:
            ctx.exit(1)


@registry_group.command("apply")
@_sign_option
@_force_option
@click.pass_context
def apply(ctx, sign, force):
    """Create the tags .gitml/stages.yaml asks for (once).

    A promotion that fails a gate of the policy is refused before any tag is written."""
    from gitml import gitops

    with open_client(ctx) as c:
        done = gitops.apply(c, sign_tag=sign, force=force)
        for a in done:
            echo(f"{a.model}: {a.stage} -> {a.version or '(empty)'} ({', '.join(a.tags)})")
        if not done:
            click.echo("Nothing to do: the registry already matches .gitml/stages.yaml.")

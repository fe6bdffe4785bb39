"""A run is who it says it is: a fetched ref claiming the id of a run this clone knows
(under another experiment, with an unrelated history) is refused by name while the rest
arrives; two refs arriving with one new id are both refused; and an id that two refs
claim anyway (brought by plain ``git fetch``) is an error for every reader, never a pick.

The hostile refs are forged with git's plumbing in a real bare remote, as a teammate
with push rights could write them, and fetched over the local path, ``git daemon`` and
smart HTTP. The runs a teammate legitimately advanced or wrote on in two places still
arrive as before.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.errors import DuplicateRunIdError
from gitml.runlog.identity import rewritten
from gitml.store.git import open_store
from gitml.store.remote import fetch_refs
from tests.conftest import ROOT, git
from tests.store.test_remote import for_each_ref, serve

pytestmark = pytest.mark.timeout(120)

OTHER_EXPERIMENT = "999"
TRANSPORTS = ["path", "git", "http"]


def gitml_cli(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def plumbing(repo: Path):
    """``git`` in ``repo`` with an index of its own (the forger's work area)."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / "forge-index")}

    def run(*args, stdin: str | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, input=stdin, capture_output=True, text=True, check=True
        ).stdout.strip()

    return run


def forge_run(
    bare: Path,
    genuine: str,
    *,
    experiment: str,
    parent: str | None,
    params: str = 'lr: "666"\n',
    edit=lambda line: line,
) -> str:
    """A commit claiming run ``genuine``'s id: its tree is the genuine run's with
    ``meta.yaml`` rewritten for ``experiment`` (so the record checks pass) and other
    params, its message carries the run's trailer, its parent is ``parent`` (the source
    commit: a first commit of its own). Returns the commit."""
    run = plumbing(bare)
    meta = run("cat-file", "-p", f"{genuine}:.gitml/run/meta.yaml")
    run_id = next(line.split(":", 1)[1].strip().strip('"') for line in meta.splitlines() if line.startswith("run_id:"))
    meta = (
        "\n".join(
            f'experiment_id: "{experiment}"'
            if line.startswith("experiment_id:")
            else "run_name: impostor"
            if line.startswith("run_name:")
            else edit(line)
            for line in meta.splitlines()
        )
        + "\n"
    )
    run("read-tree", genuine)
    for name, text in ((".gitml/run/meta.yaml", meta), (".gitml/run/params.yaml", params)):
        blob = run("hash-object", "-w", "--stdin", stdin=text)
        run("update-index", "--cacheinfo", f"100644,{blob},{name}")
    tree = run("write-tree")
    (bare / "forge-index").unlink()
    message = f"gitml: run impostor FINISHED\n\nGitml-Run: {run_id}\n"
    return run("commit-tree", tree, *(["-p", parent] if parent else []), stdin=message)


@pytest.fixture
def team(repo, tmp_path, monkeypatch):
    """The teammate's clone (``repo``) with one run pushed to a bare remote under
    ``tmp_path/served``, and a victim clone that fetched it."""
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    base = tmp_path / "served"
    base.mkdir()
    bare = base / "remote.git"
    git(base, "init", "-q", "--bare", "remote.git")
    gitml.set_experiment("exp")
    with gitml.start_run(run_name="genuine") as run:
        gitml.log_param("lr", "0.1")
        gitml.log_text("genuine notes", "notes.txt")
    gitml.flush()
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    gitml_cli(repo, "push")
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))
    gitml_cli(victim, "fetch")
    run_id = run.info.run_id
    (genuine,) = [r.decode() for r in for_each_ref(bare) if r.endswith(run_id.encode())]
    source = git(bare, "rev-parse", f"{genuine}^").strip()
    return {"bare": bare, "base": base, "victim": victim, "run_id": run_id, "ref": genuine, "source": source}


def victims_view(victim: Path, run_id: str) -> str:
    with gitml.ops.Operations(victim) as c:
        run = c.get_run(run_id)
        return f"{run.info.run_name} {run.data.params['lr']} {run.info.experiment_id}"


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_known_id_under_another_experiment_is_refused_and_the_rest_arrives(team, repo, kind):
    bare, victim, run_id = team["bare"], team["victim"], team["run_id"]
    before = victims_view(victim, run_id)
    impostor = f"refs/gitml/runs/{OTHER_EXPERIMENT}/{run_id}"
    git(bare, "update-ref", impostor, forge_run(bare, team["ref"], experiment=OTHER_EXPERIMENT, parent=team["source"]))
    with gitml.start_run(run_name="new one") as fresh:  # a good run arrives beside it
        gitml.log_param("lr", "0.2")
    gitml.flush()
    gitml_cli(repo, "push")

    with serve(kind, team["base"], "remote.git") as url, open_store(victim) as store:
        result = fetch_refs(store, url)
    assert list(result.refused) == [impostor.encode()]
    assert f"claims run id {run_id}, which this clone holds as {team['ref']}" in result.refused[impostor.encode()]
    assert any(ref.endswith(fresh.info.run_id.encode()) for ref in result.created)
    assert impostor.encode() not in for_each_ref(victim)
    assert victims_view(victim, run_id) == before == f"genuine 0.1 {team['ref'].split('/')[3]}"
    git(victim, "fsck", "--strict")


def test_gitml_pull_names_the_impostor_and_show_load_and_runs_uri_keep_the_genuine_run(team):
    bare, victim, run_id = team["bare"], team["victim"], team["run_id"]
    impostor = f"refs/gitml/runs/{OTHER_EXPERIMENT}/{run_id}"
    git(bare, "update-ref", impostor, forge_run(bare, team["ref"], experiment=OTHER_EXPERIMENT, parent=team["source"]))
    pulled = gitml_cli(victim, "pull", code=1)
    assert f"{impostor}: refused: claims run id {run_id}" in pulled.output
    shown = gitml_cli(victim, "show", run_id).output
    # the forged param's value, as `gitml show` would print it (a bare "666" also turns up in commit ids)
    assert "genuine" in shown and "impostor" not in shown and not re.search(r"\blr\b.*\b666\b", shown)
    with gitml.ops.Operations(victim) as c:
        assert c.artifacts.read_bytes(run_id, "notes.txt") == b"genuine notes"


@pytest.mark.parametrize("kind", ["path", "git"])
def test_an_unrelated_history_at_the_same_ref_is_refused_even_with_force(team, kind):
    """The same ref moved to a run with a first commit of its own (built on the same
    source commit): not the run written on in two places, so not 'diverged' either."""
    bare, victim, run_id, ref = team["bare"], team["victim"], team["run_id"], team["ref"]
    here = for_each_ref(victim)[ref.encode()]
    experiment = ref.split("/")[3]
    for parent in (team["source"], None):  # the same source commit; no parent at all
        git(bare, "update-ref", ref, forge_run(bare, ref, experiment=experiment, parent=parent))
        for force in (False, True):
            with serve(kind, team["base"], "remote.git") as url, open_store(victim) as store:
                result = fetch_refs(store, url, force=force)
            assert list(result.refused) == [ref.encode()] and result.diverged == []
            assert "shares no commit with this clone's run" in result.refused[ref.encode()]
            assert for_each_ref(victim)[ref.encode()] == here
    assert victims_view(victim, run_id) == f"genuine 0.1 {experiment}"
    out = gitml_cli(victim, "fetch", "--force", code=1).output
    assert f"{ref}: refused:" in out and "another run claiming it" in out


def test_the_same_run_advanced_or_written_on_in_two_places_still_arrives(team, repo):
    """The legitimate cases: a teammate's run that moved on fast-forwards; a run written
    on in two clones is 'diverged', and --force takes the remote's history as before."""
    victim, run_id, ref = team["victim"], team["run_id"], team["ref"]
    with gitml.start_run(run_id=run_id):
        gitml.log_metric("loss", 0.5)
    gitml.flush()
    gitml_cli(repo, "push")
    assert "1 updated" in gitml_cli(victim, "fetch").output
    with gitml.ops.Operations(victim) as c:
        assert c.get_run(run_id).data.metrics == {"loss": 0.5}
        c.log_metric(run_id, "victim", 1.0)  # both sides write on: diverged
    with gitml.start_run(run_id=run_id):
        gitml.log_metric("loss", 0.25)
    gitml.flush()
    gitml_cli(repo, "push")
    out = gitml_cli(victim, "fetch").output
    assert f"{ref}: diverged" in out
    assert "1 updated" in gitml_cli(victim, "fetch", "--force").output
    with gitml.ops.Operations(victim) as c:
        assert c.get_run(run_id).data.metrics == {"loss": 0.25}


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_two_refs_bringing_one_new_id_are_both_refused(team, repo, kind):
    bare, victim = team["bare"], team["victim"]
    with gitml.start_run(run_name="second") as second:
        gitml.log_param("lr", "0.3")
    gitml.flush()
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")  # plain git push: the victim has not seen it
    ref = [r.decode() for r in for_each_ref(bare) if r.endswith(second.info.run_id.encode())][0]
    twin = f"refs/gitml/runs/{OTHER_EXPERIMENT}/{second.info.run_id}"
    git(bare, "update-ref", twin, forge_run(bare, ref, experiment=OTHER_EXPERIMENT, parent=team["source"]))
    with gitml.start_run(run_name="third") as third:
        pass
    gitml.flush()
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")

    with serve(kind, team["base"], "remote.git") as url, open_store(victim) as store:
        result = fetch_refs(store, url)
    assert sorted(result.refused) == sorted([ref.encode(), twin.encode()])
    assert all(f"run id {second.info.run_id} arrives under 2 refs" in why for why in result.refused.values())
    assert any(r.endswith(third.info.run_id.encode()) for r in result.created)
    with gitml.ops.Operations(victim) as c, pytest.raises(gitml.exceptions.MlflowException, match="no run matches"):
        c.get_run(second.info.run_id)


def test_an_id_two_refs_claim_anyway_is_an_error_for_every_reader(team, tmp_path):
    """Plain ``git fetch`` of ``refs/gitml/*`` takes what gitml refused: `gitml show`,
    ``runs:/`` URIs, model loading, the UI and the search index's lookups then say that
    two refs claim the id, and never pick one."""
    bare, victim, run_id = team["bare"], team["victim"], team["run_id"]
    impostor = f"refs/gitml/runs/{OTHER_EXPERIMENT}/{run_id}"
    git(bare, "update-ref", impostor, forge_run(bare, team["ref"], experiment=OTHER_EXPERIMENT, parent=team["source"]))
    with gitml.ops.Operations(victim) as c:  # a long-lived reader (a UI, a server) that resolved the run already
        assert c.get_run(run_id).info.run_name == "genuine"
        git(victim, "fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
        with pytest.raises(DuplicateRunIdError, match=f"run id {run_id} is claimed by 2 refs"):
            c.get_run(run_id)
    line = gitml_cli(victim, "show", run_id, code=1).stderr.strip()
    assert line.startswith("gitml: ") and "claimed by 2 refs" in line and impostor in line and "\n" not in line
    gitml_cli(victim, "show", run_id[:8], code=1)
    gitml.set_tracking_uri(str(victim))
    with pytest.raises(DuplicateRunIdError):
        gitml.artifacts.load_text(f"runs:/{run_id}/notes.txt")
    with pytest.raises(DuplicateRunIdError):
        gitml.pyfunc.load_model(f"runs:/{run_id}/model")
    starlette = pytest.importorskip("starlette.testclient")
    from gitml.ui import allowed_hosts
    from gitml.ui.app import make_app

    with gitml.ops.Operations(victim) as c:
        web = starlette.TestClient(make_app(c, allowed_hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")
        page = web.get(f"/run/{run_id}")
        assert page.status_code != 200 and "claimed by 2 refs" in page.text and "impostor" not in page.text
        api = web.get(f"/api/run/{run_id}")
        assert api.status_code != 200 and "claimed by 2 refs" in api.json()["error"]


@pytest.mark.parametrize("kind", ["path", "git"])
def test_a_later_commit_rewriting_what_never_changes_in_a_run_is_refused(team, kind):
    """A commit on top of the run (so a fast-forward) that rewrites a logged param, or the
    run's start time or source, is another run wearing its id: refused, with --force too;
    one that only adds to the run and renames it moves the ref as before."""
    bare, victim, run_id, ref = team["bare"], team["victim"], team["run_id"], team["ref"]
    experiment = ref.split("/")[3]
    tip = git(bare, "rev-parse", ref).strip()
    here = for_each_ref(victim)[ref.encode()]
    rewrites = {
        "param 'lr'": dict(params='lr: "666"\n'),
        "start_time": dict(
            params='lr: "0.1"\n', edit=lambda line: "start_time: 1" if line.startswith("start_time:") else line
        ),
        "source": dict(
            params='lr: "0.1"\n',
            edit=lambda line: '  commit: "' + "0" * 40 + '"' if line.startswith("  commit:") else line,
        ),
    }
    for what, how in rewrites.items():
        git(bare, "update-ref", ref, forge_run(bare, tip, experiment=experiment, parent=tip, **how))
        for force in (False, True):
            with serve(kind, team["base"], "remote.git") as url, open_store(victim) as store:
                result = fetch_refs(store, url, force=force, vet=lambda a, b, s=store: rewritten(s, a, b))
            assert list(result.refused) == [ref.encode()], (what, result)
            assert what in result.refused[ref.encode()]
            assert for_each_ref(victim)[ref.encode()] == here
    assert f"{ref}: refused: its later commit" in gitml_cli(victim, "pull", code=1).output  # through gitml's own fetch
    # adding a param and renaming the run is what a later commit of the run does
    git(
        bare,
        "update-ref",
        ref,
        forge_run(bare, tip, experiment=experiment, parent=tip, params='lr: "0.1"\nmore: "1"\n'),
    )
    assert "1 updated" in gitml_cli(victim, "fetch").output
    assert victims_view(victim, run_id) == f"impostor 0.1 {experiment}"


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_runs_commit_replayed_under_a_new_id_is_refused_by_name(team, repo, kind):
    """A teammate's ref under a new id pointing at the genuine run's commit (a copy of the
    run, renamed): the commit's ``Gitml-Run`` trailer names the genuine run, so the fetch
    refuses the ref by name (it had been taken, and then every reader skipped it and every
    ``gitml gc`` stopped at it), and the genuine run and a new one arrive."""
    bare, run_id = team["bare"], team["run_id"]
    replayed_id = "b" * 32
    replayed = team["ref"].rsplit("/", 1)[0] + "/" + replayed_id
    tip = git(bare, "rev-parse", team["ref"]).strip()
    git(bare, "update-ref", replayed, tip)
    with gitml.start_run(run_name="new one") as fresh:
        gitml.log_param("lr", "0.2")
    gitml.flush()
    gitml_cli(repo, "push")
    victim = team["victim"].parent / "fresh-victim"
    git(victim.parent, "init", "-q", str(victim))
    with serve(kind, team["base"], "remote.git") as url, open_store(victim) as store:
        result = fetch_refs(store, url)
    why = result.refused[replayed.encode()]
    assert why == f"its commit {tip} is run {run_id}'s (Gitml-Run trailer), not run {replayed_id}'s"
    assert list(result.refused) == [replayed.encode()]
    assert sorted(r.decode().rsplit("/", 1)[1] for r in result.created if b"/runs/" in r) == sorted(
        [run_id, fresh.info.run_id]
    )
    assert gitml_cli(victim, "gc").exit_code == 0
    git(victim, "fsck", "--strict")


def test_hostile_run_refs_a_plain_git_fetch_took_are_skipped_by_name_everywhere(team, tmp_path):
    """What ``gitml fetch`` refuses, a plain ``git fetch refs/gitml/*`` takes: names that
    are no run id, run refs at a blob, a tree or an annotated tag, a run's commit under
    another id. ``gitml runs`` and the UI list the genuine run alone, each bad run named in
    one warning line; ``gitml show`` and the UI's run pages answer each with one line,
    never with the genuine run's data; a push holds them back by name; the rest works."""
    bare, victim, run_id = team["bare"], team["victim"], team["run_id"]
    exp = team["ref"].split("/")[3]
    tip = git(bare, "rev-parse", team["ref"]).strip()
    named = {  # run id -> what the ref holds
        "b" * 32: tip,  # the genuine run's commit under another id
        "f" * 32: git(bare, "hash-object", "-w", "--stdin", input_text="not a run\n").strip(),
        "1" * 32: git(bare, "rev-parse", f"{tip}^{{tree}}").strip(),
        "2" * 32: git(
            bare, "mktag", input_text=f"object {tip}\ntype commit\ntag t\ntagger M <m@e> 1 +0000\n\nx\n"
        ).strip(),
    }
    odd = [f"refs/gitml/runs/{exp}/not-a-run", f"refs/gitml/runs/{exp}/{'C' * 32}", f"refs/gitml/runs/{'e' * 32}"]
    for bad, sha in named.items():
        git(bare, "update-ref", f"refs/gitml/runs/{exp}/{bad}", sha)
    for ref in odd:
        git(bare, "update-ref", ref, tip)
    git(victim, "fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    assert len(for_each_ref(victim, "refs/gitml/runs")) == 1 + len(named) + len(odd)

    listed = subprocess.run(  # a process of its own: the warnings go to its stderr
        [sys.executable, "-m", "gitml", "-C", str(victim), "runs"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line and not line.startswith("RUN")]
    assert len(rows) == 1 and rows[0].startswith(run_id[:8]) and "genuine" in rows[0]
    warnings = [line for line in listed.stderr.splitlines() if "skipping unreadable run" in line]
    assert sorted(w.split("corrupt record run ", 1)[1][:32] for w in warnings) == sorted(named)
    assert "names run " + run_id in next(w for w in warnings if "b" * 32 in w)
    for bad in [*named, "not-a-run", "C" * 32, "e" * 32]:
        shown = gitml_cli(victim, "show", bad, code=1)
        line = shown.stderr.strip()
        assert line.startswith("gitml: ") and "\n" not in line and "genuine" not in shown.stdout + line, bad
    assert "genuine" in gitml_cli(victim, "show", run_id).stdout

    starlette = pytest.importorskip("starlette.testclient")
    from gitml.ui import allowed_hosts
    from gitml.ui.app import make_app

    with gitml.ops.Operations(victim) as c:
        web = starlette.TestClient(make_app(c, allowed_hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")
        assert [row["run_id"] for row in web.get("/api/runs").json()["rows"]] == [run_id]
        for bad in [*named, "not-a-run", "C" * 32]:
            api = web.get(f"/api/run/{bad}")
            assert api.status_code != 200 and "\n" not in api.json()["error"], bad
            page = web.get(f"/run/{bad}")
            assert page.status_code != 200 and "genuine" not in page.text, bad
        assert web.get(f"/run/{run_id}").status_code == 200

    other = tmp_path / "other.git"
    git(tmp_path, "init", "-q", "--bare", str(other))
    pushed = gitml_cli(victim, "push", str(other), code=1)
    held = [line.strip().split(":", 1)[0] for line in pushed.output.splitlines() if "rejected:" in line]
    assert sorted(held) == sorted(f"refs/gitml/runs/{exp}/{bad}" for bad in named)
    assert [r.decode() for r in for_each_ref(other, "refs/gitml/runs")] == [team["ref"]]
    stopped = gitml_cli(victim, "gc", code=1).stderr.strip()  # gc stops at a run it cannot read (design.md)
    assert "\n" not in stopped and any(f"refs/gitml/runs/{exp}/{bad}" in stopped for bad in named)

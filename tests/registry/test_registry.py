"""The model registry on real repositories: tags, stages by counter, MLflow's calls, models:/
URIs with the chain checked, the CLI, push/fetch of tags, promotion by pull request."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
import gitml.pyfunc
from gitml import gitops
from gitml.cli.main import cli
from gitml.errors import ConflictError, CorruptRecordError, InvalidInputError, NotFoundError
from gitml.registry import RegisteredModelNotFound
from gitml.registry.tags import Action, RegistryTag, bump, check_model_name, check_version, parse_tag
from tests.conftest import git


class AddN(gitml.pyfunc.PythonModel):
    def __init__(self, n: float):
        self.n = n

    def predict(self, context, model_input, params=None):
        return [x + self.n for x in model_input]


def _run(client, n: float, *, auc: float | None = None, name: str | None = None) -> str:
    """A finished run holding a loadable pyfunc model under ``model``."""
    with gitml.start_run(run_name=name) as run:
        gitml.pyfunc.log_model(name="model", python_model=AddN(n))
        gitml.log_param("n", n)
        if auc is not None:
            gitml.log_metric("auc", auc)
    return run.info.run_id


@pytest.fixture
def reg_client(repo):
    gitml.set_tracking_uri(str(repo))
    c = gitml.ops.Operations(repo)
    yield c
    c.close()


# -- the tag table ------------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        RegistryTag(Action.REGISTER, "churn", version="v1.0.0"),
        RegistryTag(Action.REGISTER, "team/churn_2-b", version="v10.2.3-rc.1+build.5"),
        RegistryTag(Action.DEREGISTER, "churn", version="v1.0.0", counter=7),
        RegistryTag(Action.ASSIGN, "a", stage="production", counter=1),
        RegistryTag(Action.UNASSIGN, "x/y", stage="Staging-2", counter=123456),
        RegistryTag(Action.DEPRECATE, "churn", counter=3),
        # GTO 1.10.1's other forms: counter-less (its default for deregistration and deprecation, `--simple true`)
        # and a counted registration (`--simple false`, re-registration)
        RegistryTag(Action.DEREGISTER, "churn", version="v1.0.0"),
        RegistryTag(Action.DEPRECATE, "churn"),
        RegistryTag(Action.REGISTER, "churn", version="v1.0.0", counter=4),
        RegistryTag(Action.ASSIGN, "churn", stage="prod"),
        RegistryTag(Action.UNASSIGN, "churn", stage="prod"),
    ],
)
def test_tag_names_round_trip(tag):
    assert parse_tag(tag.name) == tag
    assert parse_tag(tag.ref) == tag


@pytest.mark.parametrize(
    "name",
    [
        "churn",
        "v1.0.0",
        "churn@",
        "churn@v1.0",
        "churn@1.0.0",
        "churn@v01.0.0",
        "churn@deprecated!",
        "churn#prod#0",
        "churn#prod#01",
        "-churn@v1.0.0",
        "churn-@v1.0.0",
        "a//b@v1.0.0",
        "churn@deprecated!#2",
        "churn@created#1",
        "churn#pro/d#1",
        "ch urn@v1.0.0",
        "churn@v1.0.0!!",
        "churn@v1.0.0#01",
        "churn#prod!#",
        "ch\u00e9rn@v1.0.0",
        "churn#prod#1\n",
        "churn@v1.0.0\x00",
        "/churn@v1.0.0",
        "churn/@v1.0.0",
    ],
)
def test_other_and_hostile_tag_names_are_not_registry_tags(name):
    assert parse_tag(name) is None


@pytest.mark.parametrize(
    "name", ["", "churn model", "a//b", "-a", "a-", "a@b", "a#b", "a.b", "../x", "x" * 201, None, 3]
)
def test_hostile_model_names_are_refused(name):
    with pytest.raises(InvalidInputError, match="registered model name"):
        check_model_name(name)


def test_versions_read_as_mlflow_numbers():
    assert bump([]) == "v1.0.0" and bump(["v1.0.0", "v2.0.0"]) == "v3.0.0"
    assert bump(["v2.0.0"], "minor") == "v2.1.0" and bump(["v2.1.0"], "patch") == "v2.1.1"
    assert check_version("2") == check_version(2) == "v2.0.0" and check_version("2.1.0") == "v2.1.0"
    with pytest.raises(InvalidInputError):
        check_version("two")


# -- registering and stages ---------------------------------------------------
def test_register_promote_and_resolve(reg_client, repo):
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg = reg_client.registry
    assert reg.register("churn", r1, "model", description="first").version == "v1.0.0"
    assert reg.register("churn", r2).version == "v2.0.0"  # the one model of the run is found
    assert reg.assign("churn", "v1.0.0", "production") == ("churn#production#1", True)
    assert reg.assign("churn", "1", "production") == ("", False)  # already there: nothing written
    assert reg.assign("churn", "2", "production")[0] == "churn#production#2"
    assert reg.resolve("churn", stage="production").run_id == r2
    tags = set(git(repo, "tag", "-l").split())
    assert tags == {"churn@v1.0.0", "churn@v2.0.0", "churn#production#1", "churn#production#2"}
    assert git(repo, "cat-file", "-t", "churn@v1.0.0").strip() == "tag"  # annotated
    assert git(repo, "rev-parse", "churn@v2.0.0^{commit}").strip() == reg.resolve("churn", "2").commit
    assert "path: model" in git(repo, "cat-file", "-p", "churn@v1.0.0")
    git(repo, "fsck", "--strict")
    assert gitml.pyfunc.load_model("models:/churn@production").predict([1]) == [3]
    assert gitml.pyfunc.load_model("models:/churn/1").predict([1]) == [2]
    assert gitml.pyfunc.load_model("models:/churn/production").predict([1]) == [3]
    assert gitml.pyfunc.load_model("models:/churn/latest").predict([1]) == [3]
    assert reg.unassign("churn", "production") == ["churn#production!#3", "churn#production!#4"]
    with pytest.raises(
        RegisteredModelNotFound, match="stage 'production' of registered model 'churn' holds no version"
    ):
        reg.resolve("churn", stage="production")


def test_register_refuses_what_it_cannot_register(reg_client):
    r1 = _run(reg_client, 1)
    reg = reg_client.registry
    with pytest.raises(NotFoundError, match="no model at 'nothing'"):
        reg.register("churn", r1, "nothing")
    with pytest.raises(NotFoundError, match="no run matches"):
        reg.register("churn", "0" * 32, "model")
    reg.register("churn", r1, "model")
    with pytest.raises(ConflictError, match="already has version v1.0.0"):
        reg.register("churn", _run(reg_client, 2), "model", version="v1.0.0")
    with pytest.raises(ConflictError, match="already is version v1.0.0"):
        reg.register("churn", r1, "model")
    with pytest.raises(InvalidInputError, match="registered model name"):
        reg.register("churn:model", r1, "model")  # MLflow's rule refuses ':' too


def test_a_clock_behind_still_writes_the_newest_event(reg_client, repo, monkeypatch):
    """Events are ordered by tag time (GTO's rule); gitml writes each tag past the model's
    newest, so a clock behind another writer's still makes the newest event."""
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.register("churn", r2)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000100 +0000")
    reg.assign("churn", "1", "production")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")  # a clock behind
    reg.assign("churn", "2", "production")
    state = reg.models()["churn"]
    assert state.stages == {"production": "v2.0.0"}
    times = {e.tag.name: e.time for e in state.events}
    assert times["churn#production#2"] > times["churn#production#1"] >= 1700000100
    reg.unassign("churn", "production")
    reg.assign("churn", "1", "production")
    assert reg.resolve("churn", stage="production").version == "v1.0.0"


def test_deregister_and_deprecate(reg_client):
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.register("churn", r2)
    reg.assign("churn", "2", "production")
    assert reg.deregister("churn", "v2.0.0") == "churn@v2.0.0!#2"
    state = reg.model("churn")
    assert state.stages == {} and state.latest.version == "v1.0.0"
    with pytest.raises(RegisteredModelNotFound, match="deregistered"):
        reg.resolve("churn", "2")
    assert reg.register("churn", _run(reg_client, 3)).version == "v3.0.0"  # never reused
    assert reg.deprecate("churn") == "churn@deprecated#3"
    with pytest.raises(RegisteredModelNotFound, match="deprecated"):
        reg.resolve("churn")
    before = set(reg.tag_refs())
    with pytest.raises(ConflictError, match="deprecated"):  # refused before a tag is written
        reg.register("churn", _run(reg_client, 4))
    assert set(reg.tag_refs()) == before


def test_register_returns_the_version_as_resolved_and_reads_no_stage_or_policy(reg_client, repo):
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.assign("churn", "1", "production")
    (repo / ".gitml").mkdir()
    (repo / ".gitml" / "registry.yaml").write_text("stages: [oops\n")  # a policy that does not parse
    git(repo, "add", ".gitml")
    git(repo, "commit", "-qm", "broken policy")
    with gitml.ops.Operations(repo) as c:
        mv = c.registry.register("churn", r2, "model", description="second")
        assert (mv.version, mv.run_id, mv.path, mv.description, mv.tag) == (
            "v2.0.0",
            r2,
            "model",
            "second",
            "churn@v2.0.0",
        )
        assert mv.registered_by == "Test User <test@example.com>" and mv.registered_at > 0
        assert mv.commit == git(repo, "rev-parse", "refs/tags/churn@v2.0.0^{commit}").strip()
        with pytest.raises(CorruptRecordError, match="registry.yaml"):  # what needs the policy still refuses
            c.registry.resolve("churn", stage="production")


def test_a_run_that_changed_its_model_after_registration_is_refused(reg_client):
    r1 = _run(reg_client, 1)
    reg_client.registry.register("churn", r1)
    with gitml.start_run(run_id=r1):
        gitml.pyfunc.log_model(name="model", python_model=AddN(100))  # the files under model/ change
    with pytest.raises(gitml.registry.ModelChangedError, match="changed the files of 'model'"):
        gitml.pyfunc.load_model("models:/churn/1")


def test_stages_outside_the_committed_policy_are_refused(reg_client, repo):
    os.makedirs(repo / ".gitml", exist_ok=True)
    (repo / ".gitml" / "registry.yaml").write_text("stages: [staging, production]\n")
    git(repo, "add", ".gitml/registry.yaml")
    git(repo, "commit", "-qm", "policy")
    r1 = _run(reg_client, 1)
    reg = gitml.ops.Operations(repo).registry
    reg.register("churn", r1)
    with pytest.raises(
        InvalidInputError, match="not one of the stages .gitml/registry.yaml allows: staging, production"
    ):
        reg.assign("churn", "1", "prod")


# -- MLflow's calls -----------------------------------------------------------
def test_mlflow_registry_calls(reg_client):
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    c = reg_client
    assert c.create_registered_model("churn").name == "churn"
    mv = gitml.register_model(f"runs:/{r1}/model", "churn")
    assert (mv.name, mv.version, mv.run_id, mv.source, mv.current_stage) == (
        "churn",
        "1",
        r1,
        f"runs:/{r1}/model",
        "None",
    )
    assert c.create_model_version("churn", f"runs:/{r2}/model", r2).version == "2"
    c.set_registered_model_alias("churn", "champion", "1")
    assert c.get_model_version_by_alias("churn", "champion").run_id == r1
    assert c.transition_model_version_stage("churn", "2", "Production").current_stage == "Production"
    assert c.get_registered_model("churn").aliases == {"champion": "1"}  # a stage is current_stage, as in MLflow
    assert [v.version for v in c.get_latest_versions("churn", stages=["Production"])] == ["2"]
    assert c.get_model_version("churn", "1").aliases == ["champion"]
    assert [m.name for m in c.search_registered_models("name LIKE 'ch%'")] == ["churn"]
    assert [v.version for v in c.search_model_versions(f"run_id = '{r2}'")] == ["2"]
    assert gitml.pyfunc.load_model("models:/churn@champion").predict([0]) == [1]
    c.delete_registered_model_alias("churn", "champion")
    with pytest.raises(RegisteredModelNotFound):
        c.get_model_version_by_alias("churn", "champion")
    with pytest.raises(ConflictError, match="already exists"):
        c.create_registered_model("churn")


# -- CLI ----------------------------------------------------------------------
def test_cli_registry_commands(reg_client, repo):
    _run(reg_client, 1, name="base")
    r2 = _run(reg_client, 2)
    runner = CliRunner()

    def run(*args, code=0):
        out = runner.invoke(cli, ["-C", str(repo), "registry", *args])
        assert out.exit_code == code, out.output
        return out.output

    assert "Registered churn version 1 (v1.0.0)" in run("register", "churn", "base:model", "-m", "baseline")
    assert "v1.1.0" in run("register", "churn", r2, "--bump", "minor")
    assert "(tag churn#production#1)" in run("promote", "churn", "v1.1.0", "production")
    listed = json.loads(run("list", "--json"))
    assert listed["churn"]["stages"] == {"production": "v1.1.0"} and listed["churn"]["latest"] == "v1.1.0"
    shown = json.loads(run("show", "churn", "--json"))
    assert [v["description"] for v in shown["versions"]] == ["baseline", ""]
    history = json.loads(run("history", "churn", "--json"))
    assert [h["tag"] for h in history][-1] == "churn#production#1" and history[0]["signature"] == "not signed"
    assert "0 problem(s)" in run("verify")
    assert "emptied" in run("demote", "churn", "production")
    assert "no model" in run("register", "other", f"{r2}:nothing", code=1)


# -- sharing ------------------------------------------------------------------
def _clone(tmp_path, remote, name):
    path = tmp_path / name
    git(tmp_path, "clone", "-q", str(remote), str(path))
    return path


def test_push_carries_registry_tags_with_their_runs_and_fetch_brings_them(reg_client, repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.register("churn", r2)
    reg.assign("churn", "2", "production")
    from gitml import sync

    result = sync.push(reg_client, "origin", runs=[r1])  # only r1: r2's tags stay here
    assert "refs/tags/churn@v1.0.0" in result.pushed
    assert not any("v2.0.0" in r or "production" in r for r in result.pushed)
    assert git(remote, "tag", "-l").split() == ["churn@v1.0.0"]
    sync.push(reg_client, "origin")
    assert set(git(remote, "tag", "-l").split()) == {"churn@v1.0.0", "churn@v2.0.0", "churn#production#1"}
    git(remote, "fsck", "--strict")
    other = _clone(tmp_path, remote, "other")
    git(other, "tag", "-d", "churn@v1.0.0", "churn@v2.0.0", "churn#production#1")
    with gitml.ops.Operations(other) as c:
        outcome = sync.fetch(c, "origin")
        assert b"refs/tags/churn#production#1" in outcome.result.created
        assert c.registry.resolve("churn", stage="production").run_id == r2


def test_tags_of_runs_the_remote_holds_as_counted_refs_go_too(reg_client, repo, tmp_path):
    from gitml import sync

    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    r1 = _run(reg_client, 1)
    gitml.flush()
    git(repo, "pack-refs", "--all")
    sync.push(reg_client, str(remote))
    git(remote, "pack-refs", "--all")  # both packed-refs hold the run as the same line
    reg_client.registry.register("churn", r1)
    result = sync.push(reg_client, str(remote))
    assert not any(r1 in ref for ref in result.refs) and result.held >= 1  # the run was counted, not looked at
    assert result.pushed == ["refs/tags/churn@v1.0.0"]
    assert git(remote, "tag", "-l").split() == ["churn@v1.0.0"]


def test_concurrent_promotion_from_two_clones(reg_client, repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    reg_client.registry.register("churn", r1)
    reg_client.registry.register("churn", r2)
    from gitml import sync

    sync.push(reg_client, "origin")
    other = _clone(tmp_path, remote, "other")
    with gitml.ops.Operations(other) as c:
        sync.fetch(c, "origin")
        c.registry.assign("churn", "1", "production")  # churn#production#1 -> v1 there
        reg_client.registry.assign("churn", "2", "production")  # churn#production#1 -> v2 here
        assert sync.push(c, "origin").rejected == {}
        result = sync.push(reg_client, "origin")
        assert "another tag of this name" in result.rejected["refs/tags/churn#production#1"]
        outcome = sync.fetch(reg_client, "origin")
        assert b"refs/tags/churn#production#1" in outcome.result.diverged  # ours kept, reported
    # the loser deletes its tag, fetches the winner's and promotes again: the counter moves on
    git(repo, "tag", "-d", "churn#production#1")
    reg_client.registry.store.refresh_refs()
    sync.fetch(reg_client, "origin")
    reg_client.registry._events.clear()
    assert reg_client.registry.assign("churn", "2", "production")[0] == "churn#production#2"
    assert sync.push(reg_client, "origin").rejected == {}
    with gitml.ops.Operations(other) as c:
        sync.fetch(c, "origin")
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"


# -- promotion by pull request -------------------------------------------------
def test_propose_check_apply(reg_client, repo):
    r1, r2 = _run(reg_client, 1, auc=0.8), _run(reg_client, 2, auc=0.9)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.register("churn", r2)
    reg.assign("churn", "1", "production")
    branch, commit = gitops.propose(reg_client, "churn", "2", "production")
    assert branch == "gitml/promote/churn/production/v2.0.0"
    assert git(repo, "show", f"{branch}:.gitml/stages.yaml") == "churn:\n  production: v2.0.0\n"
    assert git(repo, "status", "--porcelain") == ""  # the work tree is untouched
    git(repo, "checkout", "-q", branch)
    with gitml.ops.Operations(repo) as c:
        result = gitops.check(c, base="main")
        assert result.ok, result.report
        assert "| auc | 0.8 | 0.9 | +0.1 |" in result.report and "| n | 1 | 2 | changed |" in result.report
        assert "### churn: production → v2.0.0" in result.report and "Now: v1.0.0" in result.report
        git(repo, "checkout", "-q", "main")
        git(repo, "merge", "-q", "--ff-only", branch)
    with gitml.ops.Operations(repo) as c:
        done = gitops.apply(c)
        assert [(a.stage, a.version, a.tags) for a in done] == [("production", "v2.0.0", ["churn#production#2"])]
        assert gitops.apply(c) == []  # idempotent
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"


def test_check_reports_a_version_that_does_not_exist_or_a_broken_artifact(reg_client, repo):
    r1 = _run(reg_client, 1)
    reg_client.registry.register("churn", r1)
    os.makedirs(repo / ".gitml", exist_ok=True)
    (repo / ".gitml" / "stages.yaml").write_text("churn:\n  production: v9.0.0\n")
    git(repo, "add", ".gitml/stages.yaml")
    git(repo, "commit", "-qm", "ask for v9")
    with gitml.ops.Operations(repo) as c:
        result = gitops.check(c, base=None)
        assert not result.ok and "has no version v9.0.0" in result.report
        with pytest.raises(RegisteredModelNotFound):
            gitops.apply(c)
        assert c.registry.model("churn").stages == {}
    out = CliRunner().invoke(cli, ["-C", str(repo), "registry", "check", "--base", "main~1"])
    assert out.exit_code == 1 and "problems found" in out.output


def test_tag_refs_of_one_model_leave_out_models_whose_names_start_alike(reg_client):
    r1, r2, r3 = _run(reg_client, 1), _run(reg_client, 2), _run(reg_client, 3)
    reg = reg_client.registry
    reg.register("churn", r1)
    reg.register("churn2", r2)
    reg.register("churn/eu", r3)
    reg.assign("churn", "1", "production")
    assert sorted(t.name for t in reg.tag_refs("churn")) == ["churn#production#1", "churn@v1.0.0"]
    assert [t.name for t in reg.tag_refs("churn/eu")] == ["churn/eu@v1.0.0"]
    assert reg.register("churn", r2).version == "v2.0.0"  # churn2's run is free to be churn's too
    assert len(reg.tag_refs()) == 5


def test_verify_reads_a_model_name_carried_encoded_in_its_tags(reg_client, repo):
    """``Model 1``'s tags are ``Model-1-<hash>@v1.0.0``; their messages name ``Model 1``: one model."""
    from click.testing import CliRunner

    from gitml.cli.main import cli

    run_id = _run(reg_client, 1)
    reg_client.create_model_version("Model 1", f"runs:/{run_id}/model", run_id)
    out = CliRunner().invoke(cli, ["-C", str(repo), "registry", "verify"])
    assert out.exit_code == 0 and "0 problem(s)" in out.output, out.output

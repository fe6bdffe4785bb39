"""MLflow's version numbers over GTO's semantic versions: ``models:/name/N`` is the model's N-th
registration, whatever bump made its tag; a deregistered version keeps its number; tags GTO or
``git tag`` wrote are numbered by their tag time, as GTO orders them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
import gitml.pyfunc
from gitml.cli.main import cli
from gitml.registry import RegisteredModelNotFound
from tests.conftest import git
from tests.registry.test_registry import _run


@pytest.fixture
def reg_client(repo):
    gitml.set_tracking_uri(str(repo))
    c = gitml.ops.Operations(repo)
    yield c
    c.close()


def test_numbers_follow_registration_order_not_semver(reg_client, monkeypatch):
    reg = reg_client.registry
    r = [_run(reg_client, i) for i in range(4)]
    assert reg.register("wine", r[0]).number == 1  # v1.0.0
    assert reg.register("wine", r[1], bump_part="minor").number == 2  # v1.1.0
    assert reg.register("wine", r[2], version="v0.5.0").number == 3  # an older semver, registered third
    assert reg.register("wine", r[3], bump_part="patch").version == "v1.1.1"
    state = reg.model("wine")
    assert state.numbers == {1: "v1.0.0", 2: "v1.1.0", 3: "v0.5.0", 4: "v1.1.1"}
    assert reg.resolve("wine", "2").version == "v1.1.0"  # not v2.0.0
    assert reg.resolve("wine", "3").run_id == r[2]
    assert reg.resolve("wine", "v1.1.0").number == 2 and reg.resolve("wine", "1.1.0").number == 2
    assert gitml.pyfunc.load_model("models:/wine/2").predict([0]) == [1]
    assert gitml.pyfunc.load_model("models:/wine/3").predict([0]) == [2]
    # a deregistered version keeps its number, and the next registration takes the next one
    reg.deregister("wine", "2")
    with pytest.raises(
        RegisteredModelNotFound, match=r"version 2 \(v1.1.0\) of registered model 'wine' is deregistered"
    ):
        reg.resolve("wine", "2")
    assert reg.register("wine", _run(reg_client, 5)).number == 5
    assert reg.resolve("wine", "5").version == "v2.0.0"  # the bump is from the greatest semver
    assert reg.model("wine").numbers[5] == "v2.0.0"
    # a missing number lists what there is
    with pytest.raises(
        RegisteredModelNotFound,
        match=r"no version 9 \(MLflow's number\); it has 1 \(v1.0.0\), "
        r"2 \(v1.1.0, deregistered\), 3 \(v0.5.0\)",
    ):
        reg.resolve("wine", "9")
    with pytest.raises(RegisteredModelNotFound, match=r"no version v7.0.0; it has 1 \(v1.0.0\)"):
        reg.resolve("wine", "v7.0.0")


def test_the_client_speaks_numbers(reg_client):
    c = reg_client
    r1, r2, r3 = (_run(c, i) for i in range(3))
    c.registry.register("wine", r1)
    c.registry.register("wine", r2, bump_part="minor")
    mv = c.create_model_version("wine", f"runs:/{r3}/model", r3)
    assert (mv.version, mv.tag_version) == ("3", "v2.0.0")
    got = c.get_model_version("wine", "2")
    assert (got.version, got.tag_version, got.run_id) == ("2", "v1.1.0", r2)
    assert c.get_model_version("wine", 2).run_id == r2
    c.set_registered_model_alias("wine", "champion", "2")
    assert c.get_registered_model("wine").aliases == {"champion": "2"}
    assert c.get_model_version_by_alias("wine", "champion").version == "2"
    assert sorted(v.version for v in c.search_model_versions("name = 'wine'")) == ["1", "2", "3"]
    c.delete_model_version("wine", "2")  # deregisters v1.1.0
    assert c.get_model_version("wine", "1").version == "1"
    with pytest.raises(RegisteredModelNotFound, match="no version 4"):
        c.get_model_version("wine", "4")
    assert c.create_model_version("wine", f"runs:/{_run(c, 9)}/model").version == "4"


def test_cli_shows_the_number_beside_the_semver(reg_client, repo):
    r1, r2 = _run(reg_client, 1), _run(reg_client, 2)
    runner = CliRunner()

    def run(*args, code=0):
        out = runner.invoke(cli, ["-C", str(repo), "registry", *args])
        assert out.exit_code == code, out.output
        return out.output

    assert "Registered wine version 1 (v1.0.0)" in run("register", "wine", r1)
    assert "Registered wine version 2 (v1.1.0)" in run("register", "wine", r2, "--bump", "minor")
    assert "production now holds 2" in run("promote", "wine", "2", "production")
    shown = json.loads(run("show", "wine", "--json"))
    assert [(v["number"], v["version"]) for v in shown["versions"]] == [(1, "v1.0.0"), (2, "v1.1.0")]
    assert "2 (v1.1.0)" in run("list")
    listed = json.loads(run("list", "--json"))["wine"]
    assert listed["latest_number"] == 2 and listed["stage_numbers"] == {"production": 2}
    history = json.loads(run("history", "wine", "--json"))
    assert [(h["tag"], h["number"]) for h in history] == [
        ("wine@v1.0.0", 1),
        ("wine@v1.1.0", 2),
        ("wine#production#1", 2),
    ]
    assert "no version 3" in run("promote", "wine", "3", "production", code=1)


def test_tags_written_by_git_are_numbered_by_tag_time(reg_client, repo, monkeypatch):
    """Registrations written by hand (GTO's form, `git tag -a`) are numbered by their tag time,
    as GTO orders events, not by their names or semvers."""
    r1, r2, r3 = (_run(reg_client, i) for i in range(3))
    commits = {r: reg_client.registry._run_head(r)[0].decode() for r in (r1, r2, r3)}
    for when, (version, run) in zip(
        (1_700_000_300, 1_700_000_100, 1_700_000_200),
        (("v0.0.1", r1), ("v0.0.3", r2), ("v0.0.2", r3)),
        strict=True,
    ):
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"{when} +0000")
        git(repo, "tag", "-a", f"gto-model@{version}", "-m", f"Registering version {version}", commits[run])
    git(repo, "tag", "gto-model@v0.0.9", commits[r1])  # lightweight: GTO ignores it, so does gitml
    with gitml.ops.Operations(repo) as c:
        state = c.registry.model("gto-model")
        assert state.numbers == {1: "v0.0.3", 2: "v0.0.2", 3: "v0.0.1"}
        assert c.get_model_version("gto-model", "1").commit == commits[r2]


# -- stage names: case and the policy --------------------------------------------
def test_a_stage_differing_only_by_case_is_refused_with_a_hint(reg_client, repo):
    c = reg_client
    reg = c.registry
    reg.register("churn", _run(c, 1))
    reg.register("churn", _run(c, 2))
    reg.assign("churn", "1", "production")
    before = set(git(repo, "tag", "-l").split())
    with pytest.raises(
        gitml.errors.InvalidInputError,
        match="stage 'Production' of registered model 'churn' differs only by case from its stage "
        "'production': use 'production'",
    ):
        reg.assign("churn", "2", "Production")
    with pytest.raises(gitml.errors.InvalidInputError, match="differs only by case"):
        c.set_registered_model_alias("churn", "PRODUCTION", "2")
    with pytest.raises(gitml.errors.InvalidInputError, match="use 'production'"):
        reg.unassign("churn", "Production")
    assert set(git(repo, "tag", "-l").split()) == before  # nothing written
    # MLflow's stage names map onto the registry's lower-case stages, so this is the same stage
    assert c.transition_model_version_stage("churn", "2", "Production").current_stage == "Production"
    assert reg.resolve("churn", stage="production").number == 2
    # an emptied stage still owns its spelling
    reg.unassign("churn", "production")
    with pytest.raises(gitml.errors.InvalidInputError, match="differs only by case"):
        reg.assign("churn", "1", "PRODUCTION")
    # another model may spell it its own way
    reg.register("other", _run(c, 3))
    assert reg.assign("other", "1", "Production")[1]


def test_the_policy_stages_are_enforced_with_a_hint_and_mlflows_reserved_aliases(reg_client, repo):
    (repo / ".gitml").mkdir()
    (repo / ".gitml" / "registry.yaml").write_text("stages: [Staging, Production]\n")
    git(repo, "add", ".gitml/registry.yaml")
    git(repo, "commit", "-qm", "policy")
    with gitml.ops.Operations(repo) as c:
        c.registry.register("churn", _run(c, 1))
        with pytest.raises(
            gitml.errors.InvalidInputError,
            match=r"not one of the stages .gitml/registry.yaml allows: Staging, Production "
            r"\(did you mean 'Production'\?\)",
        ):
            c.registry.assign("churn", "1", "production")
        with pytest.raises(gitml.errors.InvalidInputError, match="allows: Staging, Production$"):
            c.set_registered_model_alias("churn", "champion", "1")
        # MLflow's transition takes the policy's spelling
        assert c.transition_model_version_stage("churn", "1", "production").current_stage == "Production"
        assert c.registry.model("churn").stages == {"Production": "v1.0.0"}
        for reserved in ("latest", "Latest", "v1", "V12"):
            with pytest.raises(gitml.errors.InvalidInputError, match="is reserved"):
                c.set_registered_model_alias("churn", reserved, "1")


def test_a_registration_may_name_its_number_and_a_gap_stays(reg_client):
    """An import from MLflow keeps MLflow's numbers where a version was not brought: the
    registration tag names its number (above every number the model has), the versions
    after it count on from there, and GTO's reading of the tags is unchanged."""
    reg = reg_client.registry
    r = [_run(reg_client, i) for i in range(4)]
    assert reg.register("wine", r[0], version="v1.0.0", number=1).number == 1
    assert reg.register("wine", r[1], version="v3.0.0", number=3).number == 3  # MLflow's 2 was not brought
    assert reg.register("wine", r[2]).number == 4  # the next one counts on from the gap
    assert reg.model("wine").numbers == {1: "v1.0.0", 3: "v3.0.0", 4: "v4.0.0"}
    assert reg.resolve("wine", "3").run_id == r[1] and reg.resolve("wine", "4").run_id == r[2]
    with pytest.raises(RegisteredModelNotFound, match=r"no version 2 \(MLflow's number\)"):
        reg.resolve("wine", "2")
    for bad in (4, 0, True, "5"):  # not above the highest, or not a whole number
        with pytest.raises(gitml.GitmlError, match="must be a whole number above 4"):
            reg.register("wine", r[3], number=bad)
    assert gitml.ops.Operations(reg_client.repo_path).registry.model("wine").numbers[3] == "v3.0.0"  # read back

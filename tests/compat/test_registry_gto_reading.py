"""gitml reads every registry GTO 1.10.1 writes as GTO does: GTO's own ``gto register /
assign / deprecate`` (its default counter-less deregistration ``m@v1!`` and deprecation
``m@deprecated``, counted registration ``m@v1#N`` on re-registration), gitml, plain ``git
tag`` (lightweight tags ignored by both) and all of them in turn; after every step, ``gto
show --json`` and ``gto check-ref --json`` are compared with gitml's JSON output.

GTO orders events by tag time. Its tag times come from ``time.time()`` (dulwich), so the
test runs ``gto`` with that clock pinned to distinct seconds (no sleeps); ``git`` and
gitml take ``GIT_COMMITTER_DATE``.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import gitml
import gitml.ops
from gitml.registry import RegisteredModelNotFound
from gitml.registry.tags import model_slug
from tests.conftest import git
from tests.gto_venv import gto_python  # noqa: F401  (the fixture)
from tests.registry.test_registry import _run
from tests.runlog.test_hostile_records import gitml_cli

_PINNED_GTO = (
    "import os, sys, time\n"
    "pinned = os.environ.get('GTO_TEST_TIME')\n"
    "if pinned:\n"
    "    time.time = lambda: float(pinned)\n"
    "from gto.cli import app\n"
    "sys.argv = ['gto', *sys.argv[1:]]\n"
    "sys.exit(app())\n"
)


class World:
    """One repository written by GTO, gitml and git, each at pinned, distinct seconds."""

    def __init__(self, repo, python: str, monkeypatch):
        self.repo, self.python, self.monkeypatch = repo, python, monkeypatch
        self.clock = 1_700_000_000

    def tick(self) -> int:
        self.clock += 10
        self.monkeypatch.setenv("GIT_COMMITTER_DATE", f"{self.clock} +0000")  # git and gitml
        return self.clock

    def gto(self, *args: str, at: int | None = None, check: bool = True) -> str:
        env = {**os.environ, "GTO_TEST_TIME": str(at if at is not None else self.tick())}
        out = subprocess.run(
            [self.python, "-c", _PINNED_GTO, *args], cwd=self.repo, env=env, capture_output=True, text=True
        )
        if check:
            assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def commit(self, message: str) -> str:
        self.tick()
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD").strip()

    def agree(self) -> dict:
        """GTO's and gitml's readings, compared; gitml's ``registry list --json``."""
        gto_all = json.loads(self.gto("show", "--json", "--deprecated", at=0) or "{}")
        gto_active = json.loads(self.gto("show", "--json", at=0) or "{}")
        ours = json.loads(gitml_cli(self.repo, "registry", "list", "--json") or "{}")
        assert set(gto_all) == {model_slug(n) for n in ours}  # a name GTO's rule refuses: its tags' encoding
        assert set(gto_active) == {model_slug(n) for n, s in ours.items() if not s["deprecated"]}
        for name, state in ours.items():
            theirs = gto_all[model_slug(name)]
            assert theirs["active"] is not state["deprecated"], name
            assert theirs["version"] == state["latest"], name
            assert {s: v for s, v in theirs["stage"].items() if v} == state["stages"], name
            self._agree_on_tags(name)
        return ours

    def _agree_on_tags(self, name: str) -> None:
        """Each tag's event and version (a stage tag's: the version registered at its
        commit): ``gto check-ref`` against ``gitml registry history``."""
        history = json.loads(gitml_cli(self.repo, "registry", "history", name, "--json"))
        events = {
            "register": "registration",
            "deregister": "deregistration",
            "assign": "assignment",
            "unassign": "unassignment",
            "deprecate": "deprecation",
        }
        for row in history:
            if row["decision"] != "counts":
                continue
            theirs = json.loads(self.gto("check-ref", row["tag"], "--json", at=0))
            assert theirs["event"] == events[row["event"]], (row, theirs)
            assert theirs.get("version") == row["version"], (row, theirs)


@pytest.fixture
def world(repo, monkeypatch, gto_python):  # noqa: F811
    gitml.set_tracking_uri(str(repo))
    return World(repo, gto_python, monkeypatch)


def test_gto_defaults_deregister_deprecate_and_re_register(world):
    a, b = world.commit("a"), world.commit("b")
    world.gto("register", "m", a)  # m@v0.0.1
    world.gto("register", "m", b)  # m@v0.0.2
    world.gto("assign", "m", "--version", "v0.0.1", "--stage", "prod")  # m#prod#1
    world.gto("assign", "m", "--version", "v0.0.2", "--stage", "staging")  # m#staging#2
    assert world.agree()["m"]["stages"] == {"prod": "v0.0.1", "staging": "v0.0.2"}
    world.gto("deprecate", "m", "v0.0.1")  # GTO's default deregistration: m@v0.0.1! (no counter)
    assert "m@v0.0.1!" in git(world.repo, "tag", "-l")
    state = world.agree()["m"]
    assert state["stages"] == {"staging": "v0.0.2"} and state["latest"] == "v0.0.2"
    with pytest.raises(
        RegisteredModelNotFound, match="is deregistered"
    ):  # gitml no longer promotes a withdrawn version
        with gitml.ops.Operations(world.repo) as c:
            c.registry.assign("m", "v0.0.1", "prod")
    assert "m#prod#3" not in git(world.repo, "tag", "-l")
    world.gto("register", "m", a, "--version", "v0.0.1", "--simple", "false")  # re-registration: m@v0.0.1#3
    assert "m@v0.0.1#3" in git(world.repo, "tag", "-l")
    assert world.agree()["m"]["stages"] == {"prod": "v0.0.1", "staging": "v0.0.2"}  # its assignment holds again
    world.gto("deprecate", "m", "v0.0.2", "staging")  # unassign: m#staging!#4
    world.gto("deprecate", "m")  # GTO's default deprecation: m@deprecated
    assert "m@deprecated" in git(world.repo, "tag", "-l")
    assert world.agree()["m"]["deprecated"] is True
    c_ = world.commit("c")
    world.gto("register", "m", c_, "--force")  # a newer event revives the model (GTO's rule)
    assert world.agree()["m"]["deprecated"] is False


def test_lightweight_tags_are_ignored_everywhere(world):
    a, b = world.commit("a"), world.commit("b")
    world.gto("register", "m", a, "--version", "v1.0.0")
    world.gto("register", "m", b, "--version", "v2.0.0")
    world.gto("assign", "m", "--version", "v2.0.0", "--stage", "prod")
    world.gto("register", "n", a, "--version", "v1.0.0")
    world.tick()
    git(world.repo, "tag", "m@v2.0.0!#2", b)  # lightweight: GTO ignores them all
    git(world.repo, "tag", "n@deprecated#1", a)
    git(world.repo, "tag", "m#prod!#99", b)
    ours = world.agree()
    assert ours["m"]["stages"] == {"prod": "v2.0.0"} and ours["m"]["latest"] == "v2.0.0"
    assert ours["n"]["deprecated"] is False
    with gitml.ops.Operations(world.repo) as c:
        state = c.registry.model("m", report=True)
        assert "lightweight" in state.ignored["m@v2.0.0!#2"]
        assert c.registry.resolve("m", "v2.0.0").version == "v2.0.0"
        # a lightweight tag never sets the next counter
        world.tick()
        assert c.registry.unassign("m", "prod") == ["m#prod!#2"]
    assert world.agree()["m"]["stages"] == {}


def test_gitml_gto_and_git_in_turn(world):
    with gitml.ops.Operations(world.repo) as c:
        runs = [_run(c, n) for n in range(3)]
        reg = c.registry
        for run_id in runs:
            world.tick()
            reg.register("churn", run_id)  # v1, v2, v3
        world.tick()
        reg.assign("churn", "1", "production")
        world.tick()
        reg.assign("churn", "2", "staging")
    world.agree()
    v2 = git(world.repo, "rev-parse", "churn@v2.0.0^{commit}").strip()
    world.gto("assign", "churn", "--version", "v2.0.0", "--stage", "production")  # GTO's counter follows gitml's
    assert world.agree()["churn"]["stages"] == {"production": "v2.0.0", "staging": "v2.0.0"}
    world.gto("deprecate", "churn", "v2.0.0")  # churn@v2.0.0! : production falls back to v1
    assert world.agree()["churn"]["stages"] == {"production": "v1.0.0"}
    world.tick()
    git(world.repo, "tag", "-a", "-m", "by hand", "churn#staging#9", v2)  # a deregistered version holds no stage
    world.tick()
    git(
        world.repo,
        "tag",
        "-a",
        "-m",
        "by hand",
        "churn#production!#10",
        git(world.repo, "rev-parse", "churn@v1.0.0^{commit}").strip(),
    )
    assert world.agree()["churn"]["stages"] == {}
    with gitml.ops.Operations(world.repo) as c:
        world.tick()
        c.registry.assign("churn", "3", "production")  # counter past git's #10
    assert "churn#production#11" in git(world.repo, "tag", "-l")
    # m@deprecated after gitml's tags and the run commits (their times: the real clock)
    world.clock = max(int(t) for t in git(world.repo, "log", "--all", "--format=%ct").split())
    world.gto("deprecate", "churn")
    assert world.agree()["churn"]["deprecated"] is True
    with gitml.ops.Operations(world.repo) as c, pytest.raises(RegisteredModelNotFound, match="deprecated"):
        c.registry.resolve("churn", stage="production")


def test_gto_stage_tags_carry_their_version_in_history(world):
    """A stage tag GTO wrote has no gitml message: its version is the one registered at
    its commit, as ``gto check-ref`` reports it (compared in ``agree``)."""
    a = world.commit("a")
    world.gto("register", "m", a, "--version", "v1.2.0")
    world.gto("assign", "m", "--version", "v1.2.0", "--stage", "prod")
    world.gto("deprecate", "m", "v1.2.0", "prod")  # unassign
    world.agree()
    history = json.loads(gitml_cli(world.repo, "registry", "history", "m", "--json"))
    assert [(h["tag"], h["version"]) for h in history] == [
        ("m@v1.2.0", "v1.2.0"),
        ("m#prod#1", "v1.2.0"),
        ("m#prod!#2", "v1.2.0"),
    ]


def test_a_deprecation_older_than_a_version_commit_does_not_hold(world):
    """GTO counts each version's commit, at its commit time, as an event of the model: a
    deprecation older than one does not hold, in gitml either; gitml's own deprecation is
    written past those commits."""
    a = world.commit("a")
    world.clock += 1000
    b = world.commit("b (a clock ahead)")
    world.clock -= 1000
    world.gto("register", "m", a, "--version", "v1.0.0")
    world.gto("register", "m", b, "--version", "v2.0.0")
    world.gto("deprecate", "m")
    assert world.agree()["m"]["deprecated"] is False
    world.tick()
    gitml_cli(world.repo, "registry", "deprecate", "m")
    assert world.agree()["m"]["deprecated"] is True


def test_promotions_within_one_second_read_the_same_in_gto(world):
    """A script promotes v1 then v2 to production in the same second (the clock pinned):
    gitml writes each tag past the model's newest, so GTO, which orders by tag time, also
    says v2."""
    with gitml.ops.Operations(world.repo) as c:
        runs = [_run(c, n) for n in range(2)]
        world.tick()  # every write below at this same second
        for run_id in runs:
            c.registry.register("churn", run_id)
        c.registry.assign("churn", "1", "production")
        c.registry.assign("churn", "2", "production")
        c.registry.unassign("churn", "production")  # v2 then v1 undone: empty
        c.registry.assign("churn", "1", "production")
        times = [e.time for e in c.registry.model("churn").events]
    assert times == sorted(times) and len(set(times)) == len(times)  # strictly increasing per model
    assert world.agree()["churn"]["stages"] == {"production": "v1.0.0"}
    with gitml.ops.Operations(world.repo) as c:
        c.registry.assign("churn", "2", "production")
    assert world.agree()["churn"]["stages"] == {"production": "v2.0.0"}


@pytest.mark.slow
def test_mlflow_names_renames_copies_and_deletions_read_the_same_in_gto(world):
    """What MLflow's calls write (a name GTO's rule refuses, aliases, stages, a deleted
    version, a rename, a copy, a deleted model) is tags GTO reads as gitml does; GTO
    registering into the encoded model is read by gitml under the MLflow name."""
    runs = [_run(None, i) for i in range(4)]
    with gitml.Client(world.repo) as c:
        for run in runs[:3]:
            world.tick()
            c.create_model_version("Model 1", f"runs:/{run}/model", run, tags={"k": "v"})
        world.tick()
        c.set_registered_model_alias("Model 1", "champion", "2")
        world.tick()
        c.transition_model_version_stage("Model 1", "1", "Production")
        world.tick()
        c.delete_model_version("Model 1", "3")
    assert world.agree()["Model 1"]["stages"] == {"champion": "v2.0.0", "production": "v1.0.0"}
    slug = model_slug("Model 1")
    commit = git(world.repo, "rev-parse", f"refs/gitml/runs/0/{runs[3]}").strip()
    world.gto("register", slug, commit, "--version", "v9.0.0")  # GTO writes into the encoded model
    with gitml.Client(world.repo) as c:
        assert c.get_model_version("Model 1", "4").tag_version == "v9.0.0"
        world.tick()
        c.rename_registered_model("Model 1", "Renamed Model.v2")
        world.tick()
        c.copy_model_version("models:/Renamed Model.v2@champion", "copies")
    ours = world.agree()
    assert ours["Model 1"]["deprecated"] is True and ours["Renamed Model.v2"]["stages"] == ours["Model 1"]["stages"]
    assert ours["copies"]["latest"] == "v1.0.0"
    with gitml.Client(world.repo) as c:
        world.tick()
        c.delete_registered_model("copies")
    assert world.agree()["copies"]["deprecated"] is True

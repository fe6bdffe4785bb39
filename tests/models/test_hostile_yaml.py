"""Hostile YAML arriving through a real bare remote: a model's ``MLmodel``, a project's
``MLproject`` and the registry's ``.gitml/registry.yaml``. Each is read with the guarded
reader (gitml.yamlread): an alias bomb or an oversize file is refused with one line naming
the file, and nothing else in the repository is lost or stops working."""

from __future__ import annotations

import os

import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from gitml import sync
from gitml.errors import CorruptRecordError, InvalidInputError
from gitml.yamlread import MAX_YAML_BYTES
from tests.conftest import git, run_python

# nine anchors, each aliasing the one before nine times: 9**9 leaves for anything that walks it
ALIAS_BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)).encode()
# valid YAML (one long comment) just over the limit: only the size refuses it
OVERSIZE = b"flavors: {}\n#" + b"x" * MAX_YAML_BYTES + b"\n"


class Doubler(gitml.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [2 * x for x in model_input]


def _one_line(error: Exception, name: str) -> str:
    message = str(error)
    assert "\n" not in message and name in message, message
    return message


@pytest.fixture
def team(tmp_path, repo, monkeypatch):
    """A bare origin and a shared artifact folder for ``repo`` (the current directory)."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    return origin


def _clone(tmp_path, origin, name: str):
    path = tmp_path / name
    git(tmp_path, "clone", "-q", str(origin), str(path))
    return path


# -- MLmodel --------------------------------------------------------------------
def test_hostile_mlmodel_of_a_pushed_run_is_refused_naming_the_file(tmp_path, repo, team):
    with gitml.start_run() as good:
        gitml.pyfunc.log_model(name="model", python_model=Doubler())
    with gitml.start_run() as bomb:
        gitml.log_text(ALIAS_BOMB.decode(), "model/MLmodel")
    with gitml.start_run() as big:
        gitml.log_text(OVERSIZE.decode(), "model/MLmodel")
    gitml.flush()
    with gitml.ops.Operations(repo) as c:
        assert not sync.push(c, "origin").rejected
    git(team, "fsck", "--strict")
    clone = _clone(tmp_path, team, "clone")
    with gitml.ops.Operations(clone) as c:
        sync.fetch(c, "origin")
    gitml.set_tracking_uri(str(clone))
    for run, why in ((bomb, "anchors and aliases"), (big, "over the limit")):
        uri = f"runs:/{run.info.run_id}/model"
        with pytest.raises(CorruptRecordError, match=why) as e:
            gitml.pyfunc.load_model(uri)
        assert _one_line(e.value, "MLmodel").startswith(f"corrupt record MLmodel of model {uri}: ")
    with gitml.ops.Operations(clone) as c:
        assert all(c.get_run(r.info.run_id).info.status == "FINISHED" for r in (good, bomb, big))  # the runs are intact
    assert gitml.pyfunc.load_model(f"runs:/{good.info.run_id}/model").predict([1, 2]) == [2, 4]  # the good model loads


def test_an_mlmodel_that_never_ends_is_refused_after_the_limit(tmp_path):
    """A model folder whose MLmodel is 4 GiB (a sparse file): read up to the limit, not to its end
    (in a process limited to 1 GiB of memory, so a regression fails instead of eating the machine).
    An MLmodel linked out of the folder (to /dev/zero, say) is refused before any read: test_hostile_models.py."""
    folder = tmp_path / "model"
    folder.mkdir()
    with open(folder / "MLmodel", "wb") as f:
        f.truncate(4 << 30)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from gitml.modelformat.mlmodel import Model\n"
        "from gitml.errors import CorruptRecordError\n"
        "try:\n"
        f"    Model.load({str(folder)!r})\n"
        "except CorruptRecordError as e:\n"
        "    print(e)\n"
    )
    out = run_python(code, tmp_path).stdout
    assert "MLmodel" in out and "over" in out and "bytes of YAML" in out


# -- MLproject ------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, why", [(ALIAS_BOMB, "anchors and aliases"), (OVERSIZE, "over")], ids=["alias bomb", "oversize"]
)
def test_hostile_mlproject_from_a_git_url_is_refused_before_anything_runs(tmp_path, repo, content, why):
    work = tmp_path / "upstream"
    work.mkdir()
    (work / "MLproject").write_bytes(content)
    (work / "train.py").write_text("open('ran', 'w').write('yes')\n")
    git(tmp_path, "init", "-q", str(work))
    git(work, "add", ".")
    git(work, "commit", "-qm", "hostile project")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    gitml.set_tracking_uri(str(repo))
    with pytest.raises(InvalidInputError, match=why) as e:
        gitml.projects.run(f"file://{bare}", version="main", env_manager="local")
    _one_line(e.value, "MLproject")
    with gitml.ops.Operations(repo) as c:
        assert c.tracker.run_refs() == {}  # no run recorded
    assert not any("ran" in names for _, _, names in os.walk(tmp_path / "upstream.git"))


# -- .gitml/registry.yaml --------------------------------------------------------
@pytest.mark.parametrize(
    "content, why", [(ALIAS_BOMB, "anchors and aliases"), (OVERSIZE, "over the limit")], ids=["alias bomb", "oversize"]
)
def test_hostile_registry_policy_from_a_clone_fails_closed_naming_the_file(tmp_path, repo, team, content, why):
    with gitml.start_run() as run:
        gitml.pyfunc.log_model(name="model", python_model=Doubler())
    with gitml.start_run() as later:
        gitml.pyfunc.log_model(name="model", python_model=Doubler())
    with gitml.ops.Operations(repo) as c:
        c.registry.register("churn", run.info.run_id)
        c.registry.assign("churn", "1", "production")
        (repo / ".gitml").mkdir(exist_ok=True)
        (repo / ".gitml" / "registry.yaml").write_bytes(content)
        git(repo, "add", ".gitml/registry.yaml")
        git(repo, "commit", "-qm", "a hostile policy")
        git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
        assert not sync.push(c, "origin").rejected
    git(team, "fsck", "--strict")
    clone = _clone(tmp_path, team, "clone")
    with gitml.ops.Operations(clone) as c:
        sync.fetch(c, "origin")
        with pytest.raises(CorruptRecordError, match=why) as e:
            c.registry.resolve("churn", stage="production")
        _one_line(e.value, ".gitml/registry.yaml")
        # registering needs no policy: it still works, and the runs and tags are intact
        assert c.registry.register("churn", later.info.run_id).version == "v2.0.0"
        assert c.get_run(run.info.run_id).info.status == "FINISHED"
        assert "churn#production#1" in git(clone, "tag", "-l")
    # a sane policy on the trusted ref (the remote's main, as fetched) puts the registry back as it was
    (clone / ".gitml" / "registry.yaml").write_text("stages: [staging, production]\n")
    git(clone, "commit", "-qam", "a sane policy")
    with gitml.ops.Operations(clone) as c, pytest.raises(CorruptRecordError, match=why):
        c.registry.resolve("churn", stage="production")  # committed here only: origin/main still decides
    git(clone, "push", "-q", "origin", "main")
    with gitml.ops.Operations(clone) as c:
        assert c.registry.resolve("churn", stage="production").run_id == run.info.run_id


@pytest.mark.parametrize(
    "content, why", [(ALIAS_BOMB, "anchors and aliases"), (OVERSIZE, "over the limit")], ids=["alias bomb", "oversize"]
)
def test_hostile_desired_stages_file_is_refused_naming_it(content, why):
    from gitml.registry.policy import parse_stages

    with pytest.raises(CorruptRecordError, match=why) as e:
        parse_stages(content, ".gitml/stages.yaml at 0123456789ab")
    _one_line(e.value, ".gitml/stages.yaml")


def test_a_hostile_yaml_dict_artifact_is_refused_naming_it(repo):
    with gitml.start_run() as run:
        gitml.log_text(ALIAS_BOMB.decode(), "bomb.yaml")
        gitml.log_dict({"lr": 0.1}, "fine.yaml")
    with pytest.raises(CorruptRecordError, match="bomb.yaml"):
        gitml.artifacts.load_dict(f"runs:/{run.info.run_id}/bomb.yaml")
    assert gitml.artifacts.load_dict(f"runs:/{run.info.run_id}/fine.yaml") == {"lr": 0.1}

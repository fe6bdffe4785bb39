"""A hostile teammate's registry metadata (``refs/gitml/registry/<model>``), written with git
plumbing straight into the team's bare remote and fetched through ``git daemon``: a record
claiming another model's name, a name with control characters, a YAML bomb, an oversized
``model.yaml``, a record with no ``model.yaml``. Each is refused at fetch with its reason,
the others still arrive, every listing of the registry still works, and what a ``models:/``
URI resolves to is decided by the signed tags alone."""

from __future__ import annotations

import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from gitml import sync
from gitml.yamlread import MAX_YAML_BYTES
from tests.conftest import git
from tests.registry.test_registry import _run
from tests.runlog.test_hostile_records import BOMB
from tests.store.test_remote import git_daemon


@pytest.fixture
def c(repo):
    gitml.set_tracking_uri(str(repo))
    client = gitml.ops.Operations(repo)
    yield client
    client.close()


def plant(remote, ref: str, files: dict[str, bytes], parents: list[str] = ()) -> str:
    """A commit holding ``files`` written into the bare ``remote`` with plumbing, ``ref`` set to it."""
    lines = []
    for name, data in files.items():
        blob = git(remote, "hash-object", "-w", "--stdin", input_text=data.decode("utf-8", "surrogateescape")).strip()
        lines.append(f"100644 blob {blob}\t{name}\n")
    tree = git(remote, "mktree", input_text="".join(lines)).strip()
    commit = git(remote, "commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-m", "hostile").strip()
    git(remote, "update-ref", ref, commit)
    return commit


@pytest.fixture
def team(c, repo, tmp_path):
    """Our clone with two models pushed (``churn`` v1 -> run 1, ``Model 1`` v1 -> run 2) to a
    bare remote served by ``git daemon``; yields ``(remote folder, git:// url, run ids)``."""
    base = tmp_path / "served"
    base.mkdir()
    remote = base / "team.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    r1, r2 = _run(c, 1), _run(c, 2)
    c.create_registered_model("churn", description="honest")
    c.create_model_version("churn", f"runs:/{r1}/model", r1)
    c.create_model_version("Model 1", f"runs:/{r2}/model", r2)
    with git_daemon(base) as port:
        url = f"git://127.0.0.1:{port}/team.git"
        sync.push(c, url)
        assert "refs/gitml/registry/churn" in git(remote, "for-each-ref", "--format=%(refname)")
        yield remote, url, (r1, r2)


def _listings_work(client, expect: set[str]) -> None:
    assert {m.name for m in client.search_registered_models()} == expect
    assert {v.name for v in client.search_model_versions()} == expect


def test_metadata_claiming_another_models_name_is_refused_and_never_changes_a_models_uri(c, repo, team):
    remote, url, (r1, r2) = team
    churn = "refs/gitml/registry/churn"
    # churn's ref, a descendant of the honest record, claims to be "Model 1" (with churn's versions)
    honest = git(remote, "rev-parse", churn).strip()
    plant(remote, churn, {"model.yaml": b"name: Model 1\ndescription: i am model 1 now\n"}, [honest])
    # a ref of its own for "evil" claiming "churn"; a name with an escape sequence and a newline
    plant(remote, "refs/gitml/registry/evil", {"model.yaml": b"name: churn\ndescription: the real churn\n"})
    plant(remote, "refs/gitml/registry/term", {"model.yaml": b'name: "\\e[2J\\e[31mterm\\nFAKE: ok"\n'})
    c.set_registered_model_tag("churn", "here", "1")  # diverged from the remote's: fetch would join them
    outcome = sync.fetch(c, url)
    refused = outcome.result.refused
    assert "names model 'Model 1'" in refused[churn.encode()] and "this clone's is kept" in refused[churn.encode()]
    assert "names model 'churn'" in refused[b"refs/gitml/registry/evil"]
    assert "no registered model name" in refused[b"refs/gitml/registry/term"]
    assert all("\n" not in why for why in refused.values())  # one line each, the hostile text quoted by repr
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/registry/").split() == [churn]
    assert c.get_registered_model("churn").description == "honest"
    _listings_work(c, {"churn", "Model 1"})
    # the models:/ URIs still resolve by the signed tags, whatever the metadata says
    assert gitml.pyfunc.load_model("models:/churn/1").predict([0]) == [1]
    assert gitml.pyfunc.load_model("models:/Model 1/1").predict([0]) == [2]


def test_metadata_bombs_oversized_and_empty_records_are_refused_at_fetch(c, repo, team, tmp_path):
    remote, url, _ = team
    plant(remote, "refs/gitml/registry/bomb", {"model.yaml": b"name: bomb\n" + BOMB})
    deep = b"name: deep\ntags: " + b"{a: " * 200 + b"x" + b"}" * 200 + b"\n"
    plant(remote, "refs/gitml/registry/deep", {"model.yaml": deep})
    plant(
        remote,
        "refs/gitml/registry/huge",
        {"model.yaml": b"name: huge\ndescription: " + b"x" * (MAX_YAML_BYTES + 1) + b"\n"},
    )
    plant(remote, "refs/gitml/registry/empty", {"README": b"no model.yaml\n"})
    plant(
        remote,
        "refs/gitml/registry/versions",
        {"model.yaml": b"name: versions\nversions: {v1: {tags: {k: " + b"v" * 6000 + b"}}}\n"},
    )
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", url, str(other))
    with gitml.ops.Operations(other) as o:
        refused = sync.fetch(o, url).result.refused
        why = {ref.decode().rsplit("/", 1)[1]: text for ref, text in refused.items()}
        assert "anchors and aliases" in why["bomb"]
        assert "nested more than" in why["deep"]
        assert "over the limit" in why["huge"]
        assert "no model.yaml" in why["empty"]
        assert "at most 5000 characters" in why["versions"]
        assert sorted(o.registry_metadata.refs()) == ["churn"]
        _listings_work(o, {"churn", "Model 1"})


def test_a_merge_over_a_long_forged_history_with_a_hostile_merge_base_still_joins(c, repo, team):
    remote, url, _ = team
    churn = "refs/gitml/registry/churn"
    valid = {"model.yaml": b"name: churn\ndescription: honest\n"}
    # a hostile record buried under a valid tip: the tip is what a fetch checks, so it arrives
    hostile = plant(
        remote,
        churn,
        {"model.yaml": b"name: churn\ntags: [not, a, mapping]\n"},
        [git(remote, "rev-parse", churn).strip()],
    )
    plant(remote, churn, valid, [hostile])
    assert churn.encode() in sync.fetch(c, url).result.updated
    c.set_registered_model_tag("churn", "here", "1")  # this clone edits on top of it...
    tip = hostile  # ... while the teammate writes 300 commits from the hostile one: it is the merge base
    for i in range(300):
        blob = git(remote, "hash-object", "-w", "--stdin", input_text=f"name: churn\ndescription: edit {i}\n").strip()
        tree = git(remote, "mktree", input_text=f"100644 blob {blob}\tmodel.yaml\n").strip()
        tip = git(remote, "commit-tree", tree, "-p", tip, "-m", f"edit {i}").strip()
    git(remote, "update-ref", churn, tip)
    outcome = sync.fetch(c, url)
    assert churn.encode() in outcome.result.updated  # joined; the hostile base read as none, so
    rm = c.get_registered_model("churn")  # every field this clone holds is taken as its edit
    assert rm.tags == {"here": "1"} and rm.description == "honest"
    assert git(repo, "rev-parse", f"{churn}^2").strip() == tip  # their history kept as the join's parent
    _listings_work(c, {"churn", "Model 1"})

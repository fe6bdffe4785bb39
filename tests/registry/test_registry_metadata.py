"""MLflow's registry metadata kept in git: registered-model and version tags and descriptions,
renames, copies, deletions, MLflow's names (``Model 1``) under GTO-readable tags, searches
with MLflow's grammar, order and pages, every change a commit of the model's metadata ref
that travels with push and fetch (and joins when two clones edited it)."""

from __future__ import annotations

import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from gitml import sync
from gitml.errors import ConflictError, InvalidInputError
from gitml.registry import RegisteredModelNotFound
from gitml.registry.tags import model_slug, parse_tag
from tests.conftest import git
from tests.registry.test_registry import _run


@pytest.fixture
def c(repo):
    gitml.set_tracking_uri(str(repo))
    client = gitml.ops.Operations(repo)
    yield client
    client.close()


def test_names_mlflow_allows_are_carried_encoded_in_gto_readable_tags(c, repo):
    r1 = _run(c, 1)
    slug = model_slug("Model 1")
    assert slug.startswith("Model-1-") and model_slug("churn") == "churn" and model_slug("team/churn") == "team/churn"
    assert model_slug("model 1") != slug  # case kept: two names, two models
    for bad in ("", "  ", "a/b c", "a:b", "a\nb", "..", "x" * 501):
        with pytest.raises(InvalidInputError, match="registered model name"):
            model_slug(bad)
    mv = c.create_model_version("Model 1", f"runs:/{r1}/model", r1)
    assert (mv.name, mv.version) == ("Model 1", "1")
    tags = git(repo, "tag", "-l").split()
    assert tags == [f"{slug}@v1.0.0"] and parse_tag(tags[0]).model == slug
    assert 'model: "Model 1"' in git(repo, "cat-file", "-p", tags[0])  # the name, in the (signable) message
    c.set_registered_model_alias("Model 1", "champion", "1")
    assert c.registry.resolve("Model 1", stage="champion").run_id == r1
    assert list(c.registry.models()) == ["Model 1"]
    assert gitml.pyfunc.load_model("models:/Model 1@champion").predict([0]) == [1]
    assert gitml.pyfunc.load_model("models:/Model 1/1").predict([0]) == [1]
    # a tag named like an encoded name whose message names another model is not that model
    git(
        repo,
        "tag",
        "-a",
        f"{slug}@v9.0.0",
        "-m",
        "gitml-registry:\n  model: Model 2\n",
        git(repo, "rev-parse", tags[0] + "^{commit}").strip(),
    )
    state = c.registry.model("Model 1")
    hostile = next(e for e in state.events if e.tag.version == "v9.0.0")
    assert "its message names model 'Model 2'" in c.registry.rejection(hostile, deep=True)  # `registry verify` says so
    assert list(c.registry.models()) == ["Model 1"]


def test_registered_model_and_version_metadata(c, repo, monkeypatch):
    r1, r2 = _run(c, 1), _run(c, 2)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    rm = c.create_registered_model("Churn Model", tags={"team": "growth"}, description="predicts churn")
    assert (rm.name, rm.tags, rm.description, rm.creation_timestamp) == (
        "Churn Model",
        {"team": "growth"},
        "predicts churn",
        1_700_000_000_000,
    )
    assert c.get_registered_model("Churn Model").latest_versions == []
    with pytest.raises(ConflictError, match="already exists"):
        c.create_registered_model("Churn Model")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000010 +0000")
    mv = c.create_model_version("Churn Model", f"runs:/{r1}/model", r1, tags={"k": "v"}, description="first")
    assert (mv.version, mv.tags, mv.description, mv.creation_timestamp) == ("1", {"k": "v"}, "first", 1_700_000_010_000)
    gitml.register_model(f"runs:/{r2}/model", "Churn Model", tags={"via": "fluent"})  # tags never dropped
    assert c.get_model_version("Churn Model", "2").tags == {"via": "fluent"}
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000100 +0000")
    c.update_model_version("Churn Model", "1", description="the first, described again")
    c.set_model_version_tag("Churn Model", "1", "k2", 3)
    c.delete_model_version_tag("Churn Model", "1", "k")
    c.update_registered_model("Churn Model", description="churn, monthly")
    c.set_registered_model_tag("Churn Model", "owner", "ana")
    c.delete_registered_model_tag("Churn Model", "team")
    got = c.get_model_version("Churn Model", "1")
    assert (got.description, got.tags, got.last_updated_timestamp) == (
        "the first, described again",
        {"k2": "3"},
        1_700_000_100_000,
    )
    rm = c.get_registered_model("Churn Model")
    assert (rm.description, rm.tags, rm.last_updated_timestamp) == (
        "churn, monthly",
        {"owner": "ana"},
        1_700_000_100_000,
    )
    assert [v.version for v in rm.latest_versions] == ["2"]
    assert c.get_model_version_download_uri("Churn Model", "1") == f"runs:/{r1}/model"
    # the registration tag keeps what it was registered with; the metadata is the model's ref
    assert "description: first" in git(repo, "cat-file", "-p", f"{model_slug('Churn Model')}@v1.0.0")
    ref = f"refs/gitml/registry/{model_slug('Churn Model')}"
    log = git(repo, "log", "--format=%an|%at|%s", ref).splitlines()
    assert log[0] == "Test User|1700000100|delete tag team of registered model Churn Model"
    assert log[-1] == "Test User|1700000000|create registered model Churn Model"
    assert [h["message"] for h in c.registry_history("Churn Model")][:2] == [
        "delete tag team of registered model Churn Model",
        "set tag owner of registered model Churn Model",
    ]
    git(repo, "fsck", "--strict")
    with pytest.raises(InvalidInputError, match="tag key"):
        c.set_registered_model_tag("Churn Model", "", "x")
    with pytest.raises(RegisteredModelNotFound, match="no version 7"):
        c.set_model_version_tag("Churn Model", "7", "k", "v")


def test_delete_rename_and_copy(c, repo):
    r1, r2, r3 = _run(c, 1), _run(c, 2), _run(c, 3)
    c.create_registered_model("src", description="d", tags={"t": "1"})
    c.create_model_version("src", f"runs:/{r1}/model", r1, tags={"a": "1"})
    c.create_model_version("src", f"runs:/{r2}/model", r2)
    c.create_model_version("src", f"runs:/{r3}/model", r3)
    c.delete_model_version("src", "2")  # a deregistration tag, and hidden as MLflow hides it
    with pytest.raises(RegisteredModelNotFound, match="was deleted"):
        c.get_model_version("src", "2")
    assert [v.version for v in c.search_model_versions("name = 'src'")] == ["3", "1"]
    c.set_registered_model_alias("src", "champion", "3")
    c.transition_model_version_stage("src", "1", "Staging")
    # rename: the versions (numbers kept), stages and aliases move under the new name as tags
    renamed = c.rename_registered_model("src", "Renamed Model")
    assert (renamed.name, renamed.description, renamed.tags, renamed.aliases) == (
        "Renamed Model",
        "d",
        {"t": "1"},
        {"champion": "3"},
    )
    assert c.get_model_version("Renamed Model", "1").tags == {"a": "1"}
    assert c.get_model_version("Renamed Model", "1").current_stage == "Staging"
    assert c.get_model_version("Renamed Model", "3").run_id == r3
    with pytest.raises(RegisteredModelNotFound):
        c.get_model_version("Renamed Model", "2")
    with pytest.raises(RegisteredModelNotFound, match="does not exist"):
        c.get_registered_model("src")
    assert c.registry.model("src").deprecated  # as GTO reads it: the old name withdrawn
    assert gitml.pyfunc.load_model("models:/Renamed Model@champion").predict([0]) == [3]
    assert [m.name for m in c.search_registered_models()] == ["Renamed Model"]
    # copy: the next version of the destination (made when missing), tags and source as MLflow
    copied = c.copy_model_version("models:/Renamed Model/1", "dst")
    assert (copied.name, copied.version, copied.run_id, copied.tags, copied.source) == (
        "dst",
        "1",
        r1,
        {"a": "1"},
        "models:/Renamed Model/1",
    )
    assert gitml.pyfunc.load_model("models:/dst/1").predict([0]) == [1]
    assert c.copy_model_version("models:/Renamed Model@champion", "dst").version == "2"
    # delete the model: deprecated, hidden, its name refused while its tags remain
    c.delete_registered_model("dst")
    with pytest.raises(RegisteredModelNotFound):
        c.get_registered_model("dst")
    with pytest.raises(ConflictError, match="registry tags remain"):
        c.create_registered_model("dst")
    assert [m.name for m in c.search_registered_models()] == ["Renamed Model"]
    for tag in git(repo, "tag", "-l").split():
        assert parse_tag(tag) is not None
    git(repo, "fsck", "--strict")


def test_search_filters_orders_and_pages(c, monkeypatch):
    runs = [_run(c, i) for i in range(5)]
    for i, name in enumerate(["alpha", "Beta", "gamma model", "delta"]):
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"{1_700_000_000 + 100 * i} +0000")
        c.create_registered_model(name, tags={"team": "a" if i % 2 else "b"})
        c.create_model_version(name, f"runs:/{runs[i]}/model", runs[i], tags={"i": str(i)})
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700001000 +0000")
    c.create_model_version("alpha", f"runs:/{runs[4]}/model", runs[4])
    names = lambda found: [m.name for m in found]  # noqa: E731
    assert names(c.search_registered_models()) == ["Beta", "alpha", "delta", "gamma model"]
    assert names(c.search_registered_models("name LIKE '%a'")) == ["Beta", "alpha", "delta"]
    assert names(c.search_registered_models("name ILIKE 'B%'")) == ["Beta"]
    assert names(c.search_registered_models("name LIKE 'b%'")) == []
    assert names(c.search_registered_models("tags.team = 'a'")) == ["Beta", "delta"]
    assert names(c.search_registered_models("name != 'alpha' AND tags.team = 'b'")) == ["gamma model"]
    assert names(c.search_registered_models(order_by=["last_updated_timestamp DESC"])) == [
        "alpha",
        "delta",
        "gamma model",
        "Beta",
    ]
    assert names(c.search_registered_models(order_by=["name DESC"])) == ["gamma model", "delta", "alpha", "Beta"]
    first = c.search_registered_models(max_results=3)
    assert names(first) == ["Beta", "alpha", "delta"] and first.token
    rest = c.search_registered_models(max_results=3, page_token=first.token)
    assert names(rest) == ["gamma model"] and rest.token is None
    versions = c.search_model_versions()
    assert [(v.name, v.version) for v in versions] == [
        ("alpha", "2"),
        ("delta", "1"),
        ("gamma model", "1"),
        ("Beta", "1"),
        ("alpha", "1"),
    ]
    assert [(v.name, v.version) for v in c.search_model_versions("name = 'alpha'", order_by=["version_number"])] == [
        ("alpha", "1"),
        ("alpha", "2"),
    ]
    assert [v.name for v in c.search_model_versions("tags.i = '2'")] == ["gamma model"]
    assert [v.name for v in c.search_model_versions(f"run_id IN ('{runs[1]}', '{runs[3]}')")] == ["delta", "Beta"]
    assert [v.version for v in c.search_model_versions("version_number > 1")] == ["2"]
    assert len(c.search_model_versions("source_path LIKE 'runs:/%/model'")) == 5
    page = c.search_model_versions(max_results=2)
    assert len(page) == 2 and len(c.search_model_versions(max_results=2, page_token=page.token)) == 2
    with pytest.raises(InvalidInputError):
        c.search_model_versions("nonsense.x = 1")
    with pytest.raises(InvalidInputError, match="page token"):
        c.search_registered_models(page_token="garbage")


def test_metadata_travels_by_push_and_fetch_and_joins_when_edited_in_two_clones(c, repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    r1 = _run(c, 1)
    c.create_registered_model("Model 1", tags={"team": "a"}, description="first")
    c.create_model_version("Model 1", f"runs:/{r1}/model", r1, tags={"k": "v"})
    result = sync.push(c, "origin")
    ref = f"refs/gitml/registry/{model_slug('Model 1')}"
    assert ref in result.pushed
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    with gitml.ops.Operations(other) as o:
        sync.fetch(o, "origin")
        assert o.get_registered_model("Model 1").tags == {"team": "a"}
        assert o.get_model_version("Model 1", "1").tags == {"k": "v"}
        o.set_registered_model_tag("Model 1", "from", "other")  # edited there...
        o.update_model_version("Model 1", "1", "described there")
        sync.push(o, "origin")
    c.set_model_version_tag("Model 1", "1", "k", "changed here")  # ... and here, meanwhile
    c.update_registered_model("Model 1", "described here")
    refused = sync.push(c, "origin")
    assert "gitml fetch" in refused.refs[ref]
    outcome = sync.fetch(c, "origin")
    assert ref.encode() in outcome.result.updated and not outcome.result.diverged
    rm = c.get_registered_model("Model 1")
    assert (rm.tags, rm.description) == ({"team": "a", "from": "other"}, "described here")
    mv = c.get_model_version("Model 1", "1")
    assert (mv.tags, mv.description) == ({"k": "changed here"}, "described there")
    assert sync.push(c, "origin").refs[ref] == "ok"
    git(remote, "fsck", "--strict")


def test_a_hostile_metadata_ref_is_refused_by_name_or_by_content(c, repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    r1 = _run(c, 1)
    c.create_model_version("churn", f"runs:/{r1}/model", r1)
    sync.push(c, str(remote))
    blob = git(remote, "hash-object", "-w", "--stdin", input_text="name: churn\ntags: [not, a, mapping]\n").strip()
    tree = git(remote, "mktree", input_text=f"100644 blob {blob}\tmodel.yaml\n").strip()
    commit = git(remote, "commit-tree", tree, "-m", "hostile").strip()
    git(remote, "update-ref", "refs/gitml/registry/churn", commit)
    git(remote, "update-ref", "refs/gitml/registry/-bad-", commit)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    with gitml.ops.Operations(other) as o:
        outcome = sync.fetch(o, str(remote))
        assert b"refs/gitml/registry/-bad-" in outcome.result.refused
        assert "tags is not a mapping" in outcome.result.refused[b"refs/gitml/registry/churn"]  # by content, at fetch
        assert o.get_registered_model("churn").name == "churn"
        assert o.registry.resolve("churn", "1").run_id == r1  # what a URI resolves to never reads it

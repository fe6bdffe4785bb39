"""A teammate's hostile model, pushed through a real bare remote: a model folder committed on
a branch whose files are symbolic links out of it (git checks links out as links), an MLmodel
or an input example that is such a link, a pickle reached through a link, and a registered
model whose unpickling would run code. Exporting, shipping to workers and reading the
signature read nothing outside the folder and unpickle nothing; loading refuses the link
before anything is unpickled. Each refusal is one line naming the file."""

from __future__ import annotations

import json
import os
import pickle

import pandas as pd
import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from gitml.errors import CorruptRecordError, InvalidInputError, ModelIntegrityError
from gitml.models import infer_signature
from gitml.pyfunc.shipping import ship_model
from tests.conftest import git
from tests.registry.test_registry_trust import Boobytrap
from tests.runlog.test_hostile_records import gitml_cli

SECRET = "aws_secret_access_key = ZZ-SECRET-7f3a"
FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})


@pytest.fixture
def origin(repo, tmp_path):
    """Our clone's main pushed to a bare origin."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    return bare


def _teammate(origin, tmp_path):
    clone = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    return clone


def _save_python_model(folder, marker) -> None:
    gitml.pyfunc.save_model(folder, python_model=Boobytrap(str(marker)), signature=infer_signature(FRAME, ["x", "y"]))


@pytest.fixture
def linked(repo, origin, tmp_path):
    """A teammate's branch ``linked`` holding ``models/churn``: a real model folder plus a
    file and a folder that are links to a secret outside it; checked out here from origin."""
    secret = tmp_path / "home" / ".aws"
    secret.mkdir(parents=True)
    (secret / "credentials").write_text(SECRET)
    mate = _teammate(origin, tmp_path)
    folder = mate / "models" / "churn"
    _save_python_model(folder, tmp_path / "unused-marker")
    os.symlink(str(secret / "credentials"), folder / "notes.txt")
    git(mate, "checkout", "-q", "-b", "linked")
    git(mate, "add", "models")
    git(mate, "commit", "-qm", "a model with a link out of it")
    git(mate, "push", "-q", "origin", "linked")
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", "linked", "origin/linked")
    here = repo / "models" / "churn"
    assert os.path.islink(here / "notes.txt")  # the premise: git checked the link out
    return {"folder": here, "secret": secret}


def _nothing_holds_the_secret(top) -> None:
    """No regular file under ``top`` holds the secret's bytes."""
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            assert os.path.islink(path) or SECRET.encode() not in open(path, "rb").read(), path


@pytest.mark.parametrize("target", ["mlflow", "mlserver", "docker"])
def test_export_refuses_a_model_folder_holding_a_link_and_copies_nothing(repo, linked, tmp_path, target):
    out = tmp_path / f"export-{target}"
    text = gitml_cli(repo, "models", "export", str(linked["folder"]), str(out), "--target", target, code=1)
    assert text.count("\n") == 1 and "'notes.txt' is a symbolic link" in text and "Traceback" not in text
    assert not out.exists() or not os.listdir(out)
    if out.exists():
        _nothing_holds_the_secret(out)
    _nothing_holds_the_secret(tmp_path / "teammate")


def test_a_linked_folder_is_refused_too(repo, origin, tmp_path):
    """A folder inside the model that is a link (``data -> ~/.aws``) is refused the same way."""
    secret = tmp_path / "home" / ".aws"
    secret.mkdir(parents=True)
    (secret / "credentials").write_text(SECRET)
    mate = _teammate(origin, tmp_path)
    folder = mate / "models" / "churn"
    _save_python_model(folder, tmp_path / "unused-marker")
    os.symlink(str(secret), folder / "data")
    git(mate, "add", "models")
    git(mate, "commit", "-qm", "a model with a linked folder")
    git(mate, "push", "-q", "origin", "main")
    git(repo, "pull", "-q", "origin", "main")
    text = gitml_cli(repo, "models", "export", "models/churn", str(tmp_path / "out"), code=1)
    assert "'data' is a symbolic link" in text
    with pytest.raises(ModelIntegrityError, match="'data' is a symbolic link"):
        ship_model(str(repo / "models" / "churn"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_shipping_a_folder_to_workers_never_reads_a_linked_file(linked):
    with pytest.raises(ModelIntegrityError, match="'notes.txt' is a symbolic link") as e:
        ship_model(str(linked["folder"]))
    assert SECRET not in str(e.value)


def test_an_mlmodel_or_input_example_linked_out_of_the_folder_is_refused(repo, origin, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    mate = _teammate(origin, tmp_path)
    good = mate / "models" / "good"
    _save_python_model(good, tmp_path / "unused-marker")
    (outside / "MLmodel").write_text((good / "MLmodel").read_text())
    (outside / "example.json").write_text(json.dumps({"columns": ["a"], "data": [[SECRET]]}))
    by_mlmodel = mate / "models" / "by-mlmodel"
    _save_python_model(by_mlmodel, tmp_path / "unused-marker")
    os.unlink(by_mlmodel / "MLmodel")
    os.symlink(str(outside / "MLmodel"), by_mlmodel / "MLmodel")
    by_example = mate / "models" / "by-example"
    gitml.pyfunc.save_model(
        by_example, python_model=Boobytrap(str(tmp_path / "unused-marker")), input_example=FRAME.iloc[:1]
    )
    os.unlink(by_example / "input_example.json")
    os.symlink(str(outside / "example.json"), by_example / "input_example.json")
    git(mate, "add", "models")
    git(mate, "commit", "-qm", "links")
    git(mate, "push", "-q", "origin", "main")
    git(repo, "pull", "-q", "origin", "main")
    with pytest.raises(CorruptRecordError, match="MLmodel: is a symbolic link out of the model folder"):
        gitml.models.Model.load(repo / "models" / "by-mlmodel")
    text = gitml_cli(repo, "predict", "-m", "models/by-mlmodel", "-i", str(tmp_path / "none.csv"), code=1)
    assert "symbolic link out of the model folder" in text
    meta = gitml.models.Model.load(repo / "models" / "by-example")
    with pytest.raises(CorruptRecordError, match="input example path 'input_example.json' leaves the model folder"):
        meta.load_input_example()


def test_a_pickle_reached_through_a_link_is_never_unpickled(repo, origin, tmp_path):
    """``model.pkl -> ../../payload.pkl``: the link leaves the folder; nothing is unpickled."""
    from sklearn.linear_model import LinearRegression

    import gitml.sklearn

    marker = tmp_path / "pwned"
    mate = _teammate(origin, tmp_path)
    folder = mate / "models" / "churn"
    gitml.sklearn.save_model(LinearRegression().fit(FRAME, [0, 1]), folder)
    (mate / "payload.pkl").write_bytes(pickle.dumps(Boobytrap(str(marker))))
    os.unlink(folder / "model.pkl")
    os.symlink("../../payload.pkl", folder / "model.pkl")
    git(mate, "add", ".")
    git(mate, "commit", "-qm", "a pickle through a link")
    git(mate, "push", "-q", "origin", "main")
    git(repo, "pull", "-q", "origin", "main")
    with pytest.raises(InvalidInputError, match="leaves the model folder"):
        gitml.pyfunc.load_model(repo / "models" / "churn")
    FRAME.to_csv(tmp_path / "in.csv", index=False)
    text = gitml_cli(repo, "predict", "-m", "models/churn", "-i", str(tmp_path / "in.csv"), code=1)
    assert "leaves the model folder" in text and text.count("\n") == 1
    assert not marker.exists()


def test_exporting_a_teammates_registered_model_for_mlserver_never_unpickles_it(repo, origin, tmp_path):
    """The V2 signature an MLServer export writes comes from MLmodel: a teammate's registered
    pyfunc whose unpickling runs code is exported (hashes, settings) without running it."""
    marker = tmp_path / "pwned"
    mate = _teammate(origin, tmp_path)
    gitml.set_tracking_uri(str(mate))
    with gitml.ops.Operations(mate) as c:
        with gitml.start_run() as run:
            gitml.pyfunc.log_model(
                name="model", python_model=Boobytrap(str(marker)), signature=infer_signature(FRAME, ["x", "y"])
            )
        c.registry.register("churn", run.info.run_id)
    gitml.set_tracking_uri(None)
    gitml_cli(mate, "push")
    gitml_cli(repo, "fetch", "origin")
    out = tmp_path / "deploy"
    gitml_cli(repo, "models", "export", "models:/churn/1", str(out), "--target", "mlserver")
    settings = json.loads((out / "model-settings.json").read_text())
    assert [i["name"] for i in settings["inputs"]] == ["a", "b"]
    assert settings["outputs"] and (out / "model.sha256").read_text().count("\n") >= 3
    assert not marker.exists()  # nothing was unpickled


@pytest.mark.parametrize("key, value", [("code", "../../site"), ("data", "/etc"), ("model_path", "../x.pkl")])
def test_a_loader_gitml_leaves_to_mlflow_gets_no_path_out_of_the_folder(repo, origin, tmp_path, key, value):
    """A model for an ``mlflow.*`` loader gitml does not have goes to MLflow's own loader, which
    takes MLmodel's paths as they are (``code`` goes on sys.path): gitml refuses first."""
    mate = _teammate(origin, tmp_path)
    folder = mate / "models" / "other"
    _save_python_model(folder, tmp_path / "unused-marker")
    text = (folder / "MLmodel").read_text().replace("loader_module: gitml.pyfunc.model", "loader_module: mlflow.other")
    (folder / "MLmodel").write_text(text.replace("python_function:\n", f"python_function:\n    {key}: {value}\n", 1))
    git(mate, "add", "models")
    git(mate, "commit", "-qm", "a loader gitml has not")
    git(mate, "push", "-q", "origin", "main")
    git(repo, "pull", "-q", "origin", "main")
    with pytest.raises(InvalidInputError, match=f"{key} path '{value}'"):
        gitml.pyfunc.load_model(repo / "models" / "other")

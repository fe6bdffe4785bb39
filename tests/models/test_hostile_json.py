"""Hostile JSON a teammate pushes inside a run: a model's signature (a JSON string in
``MLmodel``), its input example, a dict or table artifact. A few kilobytes of ``[`` exhaust
Python's JSON parser, which raises RecursionError (no ValueError): each is refused with one
line naming what it is, and nothing else in the repository stops working. The UI shows such
a file as text (tests/ui/test_ui.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import gitml
import gitml.artifacts
import gitml.ops
import gitml.pyfunc
from gitml import sync
from gitml.errors import CorruptRecordError
from tests.conftest import ROOT, git

DEEP = "[" * 50_000 + "]" * 50_000  # 100 kB; Python's parser gives up about 1,000 deep
PYFUNC = "flavors:\n  python_function: {loader_module: gitml.pyfunc.model, python_model: python_model.pkl}\n"


class Doubler(gitml.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [2 * x for x in model_input]


@pytest.fixture
def pushed(tmp_path, repo, monkeypatch):
    """A teammate's runs, pushed to a bare origin and fetched by a clone: ids by role, the clone."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    gitml.set_tracking_uri(str(repo))
    ids = {}
    with gitml.start_run() as run:
        gitml.pyfunc.log_model(name="model", python_model=Doubler(), input_example=[1, 2])
    ids["good"] = run.info.run_id
    with gitml.start_run() as run:  # a signature nested past the parser's stack
        gitml.log_text(PYFUNC + f"signature:\n  inputs: '{DEEP}'\n", "model/MLmodel")
    ids["signature"] = run.info.run_id
    with gitml.start_run() as run:  # an input example nested past it
        gitml.pyfunc.log_model(name="model", python_model=Doubler(), input_example=[1, 2])
        gitml.log_text(DEEP, "model/input_example.json")  # logged again over the model's own
        gitml.log_text(DEEP, "deep.json")
        gitml.log_text('{"columns": ["a"], "data": ' + DEEP + "}", "table.json")
        gitml.log_text('{"rows": 1}', "nottable.json")
    ids["files"] = run.info.run_id
    gitml.flush()
    with gitml.ops.Operations(repo) as c:
        assert not sync.push(c, "origin").rejected
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    with gitml.ops.Operations(clone) as c:
        sync.fetch(c, "origin")
    gitml.set_tracking_uri(str(clone))
    return ids, clone


def _one_line(error: Exception, *names: str) -> str:
    message = str(error)
    assert "\n" not in message and all(n in message for n in names), message
    return message


def test_a_signature_nested_past_the_parser_is_one_line_naming_the_mlmodel(pushed):
    ids, clone = pushed
    uri = f"runs:/{ids['signature']}/model"
    with pytest.raises(CorruptRecordError, match="nested deeper than the parser's stack") as e:
        gitml.pyfunc.load_model(uri)
    _one_line(e.value, "MLmodel", uri)
    # the CLI's one line, not "unexpected error" (nothing is scored: the model never loads)
    result = subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", "-C", str(clone), "predict", "-m", uri, "-i", "-"],
        input="[1]",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 1 and "unexpected" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "MLmodel" in result.stderr, result.stderr
    assert gitml.pyfunc.load_model(f"runs:/{ids['good']}/model").predict([1, 2]) == [2, 4]  # the rest still loads


def test_an_input_example_dict_or_table_nested_past_the_parser_is_one_line_naming_it(pushed):
    ids, _ = pushed
    run = ids["files"]
    model = gitml.pyfunc.load_model(f"runs:/{run}/model")
    with pytest.raises(CorruptRecordError, match="nested deeper") as e:
        _ = model.input_example
    _one_line(e.value, "input_example.json")
    with pytest.raises(CorruptRecordError, match="nested deeper") as e:
        gitml.artifacts.load_dict(f"runs:/{run}/deep.json")
    _one_line(e.value, "deep.json")
    with pytest.raises(CorruptRecordError, match="nested deeper") as e:
        gitml.artifacts.load_table(f"runs:/{run}/table.json")
    _one_line(e.value, "table.json")
    with pytest.raises(CorruptRecordError, match='"columns" and "data"') as e:
        gitml.artifacts.load_table(f"runs:/{run}/nottable.json")
    _one_line(e.value, "nottable.json")
    good = gitml.pyfunc.load_model(f"runs:/{ids['good']}/model")
    assert good.input_example == [1, 2]

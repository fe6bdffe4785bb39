"""Models: MLmodel folders, signatures and their enforcement, model URIs, verified loading,
batch scoring and export. Real repositories, real scikit-learn and torch models."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
import gitml.pyfunc
import gitml.sklearn
from gitml.errors import ConflictError, GitmlError, InvalidInputError, ModelIntegrityError, NotFoundError
from gitml.modelformat.enforce import enforce_params, enforce_schema
from gitml.modelformat.uri import verify_folder
from gitml.models import (
    ColSpec,
    DataType,
    Model,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    RegisteredModelNotFoundError,
    Schema,
    SchemaEnforcementError,
    TensorSpec,
    infer_signature,
    parse_model_uri,
)
from tests.conftest import run_python


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=500).fit(X, y)


# -- signatures ------------------------------------------------------------------
def test_signature_is_written_in_mlflows_json_forms(iris):
    X, model = iris
    signature = infer_signature(X, model.predict(X), params={"k": 3, "names": ["a"]})
    d = signature.to_dict()
    # the strings MLflow 3.17.2 writes for the same data (see its MLmodel files)
    assert d["inputs"].startswith('[{"type": "double", "name": "sepal length (cm)", "required": true}, ')
    assert d["outputs"] == '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
    assert json.loads(d["params"]) == [
        {"name": "k", "type": "long", "default": 3, "shape": None},
        {"name": "names", "type": "string", "default": ["a"], "shape": [-1]},
    ]
    assert ModelSignature.from_dict(d) == signature
    frame = pd.DataFrame(
        {
            "i": np.array([1], dtype="int32"),
            "f": np.array([1.0], dtype="float32"),
            "s": ["x"],
            "b": [True],
            "t": pd.to_datetime(["2024-01-01"]),
            "n": [None],
        }
    ).astype({"n": float})
    kinds = {c.name: (c.type, c.required) for c in infer_signature(frame).inputs}
    assert kinds == {
        "i": (DataType.integer, True),
        "f": (DataType.float, True),
        "s": (DataType.string, True),
        "b": (DataType.boolean, True),
        "t": (DataType.datetime, True),
        "n": (DataType.double, False),
    }
    tensor = infer_signature(np.zeros((4, 3, 2), dtype="float32")).inputs
    assert tensor.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3, 2]}}]


def test_signature_reads_complex_types_and_refuses_unknown_ones():
    text = '[{"type": "array", "items": {"type": "string"}, "name": "tags", "required": false}]'
    schema = Schema.from_json(text)
    assert json.loads(schema.to_json()) == json.loads(text)  # kept as MLflow wrote it
    with pytest.raises(InvalidInputError, match="unknown type 'decimal'"):
        Schema.from_json('[{"type": "decimal", "name": "x"}]')
    with pytest.raises(InvalidInputError, match="not JSON"):
        Schema.from_json("[{")


# -- enforcement -----------------------------------------------------------------
def _schema(**types) -> Schema:
    return Schema([ColSpec(t, name) for name, t in types.items()])


def test_enforcement_names_the_missing_column_and_drops_extra_ones():
    schema = _schema(a="double", b="long")
    with pytest.raises(SchemaEnforcementError, match="lacks column 'b'"):
        enforce_schema(pd.DataFrame({"a": [1.0]}), schema)
    out = enforce_schema(pd.DataFrame({"extra": ["x"], "b": [1], "a": [2.0]}), schema)
    assert list(out.columns) == ["a", "b"]  # the signature's order, the extra column gone
    with pytest.raises(SchemaEnforcementError, match="lacks columns 'a', 'b'"):
        enforce_schema(np.array([[1.0, 2]]), schema)  # never matched to names by position (as MLflow)


def test_enforcement_widens_safely_and_refuses_unsafe_conversions_naming_the_column():
    widened = enforce_schema(
        pd.DataFrame({"a": np.array([1], "int32"), "b": np.array([1.5], "float32"), "c": np.array([7], "int32")}),
        _schema(a="long", b="double", c="double"),
    )
    assert [str(t) for t in widened.dtypes] == ["int64", "float64", "float64"]
    cases = [
        ({"a": [1.5]}, _schema(a="long"), "column 'a': cannot safely convert float64 to long"),
        ({"a": ["x"]}, _schema(a="double"), "column 'a'"),
        ({"a": np.array([1.5], "float64")}, _schema(a="float"), "column 'a': cannot safely convert float64 to float"),
        ({"a": [10, 20]}, _schema(a="double"), "column 'a': cannot safely convert int64 to double"),  # as MLflow
    ]
    for data, schema, message in cases:
        with pytest.raises(SchemaEnforcementError, match=message):
            enforce_schema(pd.DataFrame(data), schema)
    assert enforce_schema(pd.DataFrame({"a": [0, 1]}), _schema(a="double"))["a"].dtype == np.float64  # 0/1 longs pass
    ints = pd.DataFrame({"a": [1.0, None]})
    with pytest.raises(SchemaEnforcementError, match="missing values"):
        enforce_schema(ints, _schema(a="long"))


def test_enforcement_of_tensors_and_params():
    spec = Schema([TensorSpec("float32", (-1, 2))])
    assert enforce_schema(np.zeros((3, 2), "float16"), spec).dtype == np.float32
    with pytest.raises(SchemaEnforcementError, match="shape"):
        enforce_schema(np.zeros((3, 3), "float32"), spec)
    with pytest.raises(SchemaEnforcementError, match="float64"):
        enforce_schema(np.zeros((3, 2), "float64"), spec)
    params = ParamSchema([ParamSpec("k", "long", 3), ParamSpec("t", "double", 0.5)])
    assert enforce_params(None, params) == {"k": 3, "t": 0.5}
    assert enforce_params({"k": 5, "t": 1, "other": 1}, params) == {"k": 5, "t": 1.0}
    with pytest.raises(SchemaEnforcementError, match="param 'k'"):
        enforce_params({"k": 1.5}, params)
    with pytest.raises(SchemaEnforcementError, match="param 'k'"):
        enforce_params({"k": True}, params)


# -- URIs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        "models:/churn/3",
        "models:/churn@champion",
        "models:/a b/latest",
        "models:/té/Production",
        "models:/a/b/7",
        "models:/a@b@prod",
        "runs:/0123abcd/model",
        "runs:/baseline/models/net",
        "some/folder",
    ],
)
def test_model_uris_round_trip(uri):
    assert str(parse_model_uri(uri)) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "models:/",
        "models:/x",
        "models:/x@",
        "models:/@a",
        "models:/x/",
        "models:/x@a/b",
        "runs:/",
        "runs:/r/../x",
        "s3://bucket/model",
        "models:/x\n/1",
        "runs:/r/a\x00b",
    ],
)
def test_bad_model_uris_are_refused(uri):
    with pytest.raises(InvalidInputError):
        parse_model_uri(uri)


def test_models_uri_of_an_unknown_registered_model_is_not_found(repo):
    with pytest.raises(RegisteredModelNotFoundError, match="no registered model 'churn'"):
        gitml.pyfunc.load_model("models:/churn/1")
    assert isinstance(RegisteredModelNotFoundError("x"), NotFoundError)


# -- save, log, load -------------------------------------------------------------
def test_loading_a_model_folder_imports_no_git_store_and_no_saving_code(iris, tmp_path):
    """The cold start of `gitml serve` and `load_model`: only loading's modules are imported."""
    X, model = iris
    gitml.sklearn.save_model(model, tmp_path / "m", input_example=X.head(3))
    code = (
        "import sys, gitml.pyfunc\n"
        f"m = gitml.pyfunc.load_model({str(tmp_path / 'm')!r})\n"
        "print(sorted(k for k in sys.modules if k.startswith(("
        "'dulwich', 'gitml.store', 'gitml.runlog', 'gitml.tracking', 'gitml.client', 'gitml.modelformat.save', "
        "'gitml.modelformat.environment', 'click'))))\n"
    )
    assert run_python(code, tmp_path).stdout.strip() == "[]"
    models = __import__("gitml.models", fromlist=["__all__"])
    assert all(getattr(models, name) is not None for name in gitml.models.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope  # noqa: B018


def test_saved_folder_has_mlflows_layout(iris, tmp_path):
    X, model = iris
    gitml.sklearn.save_model(model, tmp_path / "m", input_example=X.head(3))
    names = sorted(os.listdir(tmp_path / "m"))
    assert names == [
        "MLmodel",
        "conda.yaml",
        "input_example.json",
        "model.pkl",
        "python_env.yaml",
        "requirements.txt",
        "serving_input_example.json",
    ]
    meta = Model.load(tmp_path / "m")
    pyfunc = meta.flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.sklearn" and pyfunc["env"] == {
        "conda": "conda.yaml",
        "virtualenv": "python_env.yaml",
    }
    assert pyfunc["python_version"].count(".") == 2
    assert meta.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    assert meta.signature.inputs.input_names() == list(X.columns)  # inferred from the example
    assert meta.saved_input_example_info == {
        "artifact_path": "input_example.json",
        "type": "dataframe",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
    }
    requirements = (tmp_path / "m" / "requirements.txt").read_text().split("\n")
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in requirements and any(
        r.startswith("cloudpickle==") for r in requirements
    )
    assert json.loads((tmp_path / "m" / "serving_input_example.json").read_text())["dataframe_split"][
        "columns"
    ] == list(X.columns)
    pd.testing.assert_frame_equal(meta.load_input_example(), X.head(3))
    with pytest.raises(ConflictError, match="not empty"):
        gitml.sklearn.save_model(model, tmp_path / "m")


def test_log_model_records_the_folder_and_loads_by_id_prefix_or_name(iris, repo):
    X, model = iris
    with gitml.start_run(run_name="baseline") as run:
        info = gitml.sklearn.log_model(model, name="model", input_example=X.head(2))
    run_id = run.info.run_id
    assert info.model_uri == f"runs:/{run_id}/model" and info.run_id == run_id
    files = {f.path for f in gitml.ops.Operations(repo).list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/model.pkl", "model/requirements.txt", "model/conda.yaml"} <= files
    expected = model.predict(X)
    for uri in (info.model_uri, f"runs:/{run_id[:8]}/model", "runs:/baseline/model"):
        loaded = gitml.pyfunc.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(X), expected)
        assert loaded.metadata.run_id == run_id and loaded.metadata.artifact_path == "model"
    assert type(gitml.sklearn.load_model(info.model_uri)).__name__ == "LogisticRegression"
    with pytest.raises(NotFoundError, match="no model at 'nothing'"):
        gitml.pyfunc.load_model(f"runs:/{run_id}/nothing")


def test_registered_model_name_registers_and_a_bad_name_is_refused_before_anything_is_written(iris, repo):
    X, model = iris
    with gitml.start_run() as run:
        with pytest.raises(InvalidInputError, match="registered model name 'churn:model'"):
            gitml.sklearn.log_model(model, name="model", registered_model_name="churn:model")
    assert gitml.Client(repo).list_artifacts(run.info.run_id) == []
    with gitml.start_run() as run:
        info = gitml.sklearn.log_model(model, name="model", registered_model_name="churn")
    assert info.registered_model_version == "1"
    loaded = gitml.pyfunc.load_model("models:/churn/1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.metadata.run_id == run.info.run_id


class Doubler(gitml.pyfunc.PythonModel):
    def __init__(self, size: int = 0):
        self.padding = b"x" * size  # makes python_model.pkl large enough to live in the cache, not in git

    def load_context(self, context):
        with open(context.artifacts["offset"]) as f:
            self.offset = float(f.read())

    def predict(self, context, model_input, params=None):
        return model_input["x"] * (params or {}).get("factor", 2) + self.offset


def test_python_model_with_artifacts_and_params(repo, tmp_path):
    (tmp_path / "offset.txt").write_text("0.5")
    signature = ModelSignature(_schema(x="double"), None, ParamSchema([ParamSpec("factor", "double", 2.0)]))
    with gitml.start_run():
        info = gitml.pyfunc.log_model(
            name="m", python_model=Doubler(), artifacts={"offset": str(tmp_path / "offset.txt")}, signature=signature
        )
    loaded = gitml.pyfunc.load_model(info.model_uri)
    assert loaded.predict(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [2.5, 4.5]
    assert loaded.predict(pd.DataFrame({"x": [1.0]}), params={"factor": 3}).tolist() == [3.5]
    assert isinstance(loaded.unwrap_python_model(), Doubler)
    conf = loaded.metadata.flavors["python_function"]
    assert (
        conf["loader_module"] == "gitml.pyfunc.model" and conf["artifacts"]["offset"]["path"] == "artifacts/offset.txt"
    )


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_cached_artifact_is_refused_before_it_is_unpickled(repo, tmp_path):
    (tmp_path / "offset.txt").write_text("1")
    with gitml.start_run():
        info = gitml.pyfunc.log_model(
            name="m", python_model=Doubler(200_000), artifacts={"offset": str(tmp_path / "offset.txt")}
        )
    client = gitml.ops.Operations(repo)
    sha = client.artifact_manifest(info.run_id)["m/python_model.pkl"]["sha256"]
    cached = repo / ".git" / "gitml" / "cache" / sha[:2] / sha[2:]
    assert cached.exists()  # over the inline limit: the bytes are in the cache, not in git
    marker = tmp_path / "pwned"
    os.chmod(cached, 0o644)
    cached.write_bytes(pickle.dumps(Evil(str(marker))))
    with pytest.raises(GitmlError, match="m/python_model.pkl"):
        gitml.pyfunc.load_model(info.model_uri)
    assert not marker.exists()


def test_the_folder_is_checked_against_the_manifest_as_a_whole(tmp_path):
    import hashlib

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "model.pkl").write_bytes(b"good")
    files = {
        n: {"sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest(), "size": (folder / n).stat().st_size}
        for n in ("MLmodel", "model.pkl")
    }
    verify_folder(str(folder), files, "model")
    (folder / "model.pkl").write_bytes(b"evil")
    with pytest.raises(ModelIntegrityError, match="file 'model.pkl' does not match"):
        verify_folder(str(folder), files, "model")
    (folder / "model.pkl").write_bytes(b"good")
    (folder / "extra.py").write_text("")
    with pytest.raises(ModelIntegrityError, match="'extra.py' is not in the run's manifest"):
        verify_folder(str(folder), files, "model")
    (folder / "extra.py").unlink()
    (folder / "model.pkl").unlink()
    with pytest.raises(ModelIntegrityError, match="'model.pkl' is missing"):
        verify_folder(str(folder), files, "model")


def test_paths_in_mlmodel_never_leave_the_folder(iris, tmp_path):
    X, model = iris
    gitml.sklearn.save_model(model, tmp_path / "m")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil(str(tmp_path / "pwned"))))
    text = (tmp_path / "m" / "MLmodel").read_text().replace("model_path: model.pkl", "model_path: ../evil.pkl")
    (tmp_path / "m" / "MLmodel").write_text(text)
    with pytest.raises(InvalidInputError, match="leaves the model folder"):
        gitml.pyfunc.load_model(tmp_path / "m")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "m" / "model.pkl").unlink()
    (tmp_path / "m" / "MLmodel").write_text(text.replace("../evil.pkl", "model.pkl"))
    with pytest.raises(NotFoundError, match="lacks its model_path 'model.pkl'"):
        gitml.pyfunc.load_model(tmp_path / "m")


def test_unknown_loaders_are_not_imported(tmp_path):
    (tmp_path / "m").mkdir()
    Model(flavors={"python_function": {"loader_module": "os"}}).save(str(tmp_path / "m"))
    with pytest.raises(gitml.pyfunc.UnsupportedFlavorError, match="loader 'os' is not one gitml has"):
        gitml.pyfunc.load_model(tmp_path / "m")
    with pytest.raises(NotFoundError, match="no model folder"):
        gitml.pyfunc.load_model(tmp_path / "nothing")


def test_pytorch_model_saved_logged_and_loaded(repo):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    with gitml.start_run():
        info = gitml.pytorch.log_model(net, name="net", input_example=x)
    assert info.signature.inputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}
    ]
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(gitml.pyfunc.load_model(info.model_uri).predict(x), expected, rtol=1e-6)
    raw = gitml.pytorch.load_model(info.model_uri)
    np.testing.assert_allclose(raw(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-6)
    with pytest.raises(SchemaEnforcementError, match="shape"):
        gitml.pyfunc.load_model(info.model_uri).predict(x[:, :3])


# -- batch scoring and export ---------------------------------------------------
def test_predict_command_reads_csv_json_and_parquet(iris, repo, tmp_path):
    from gitml.cli.main import cli

    X, model = iris
    with gitml.start_run(run_name="iris"):
        gitml.sklearn.log_model(model, name="model", input_example=X.head(2))
    gitml.flush()
    expected = model.predict(X.head(5)).tolist()
    X.head(5).to_csv(tmp_path / "in.csv", index=False)
    X.head(5).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "in.json").write_text(json.dumps({"dataframe_records": X.head(5).to_dict(orient="records")}))
    (tmp_path / "in.txt").write_text(X.head(5).to_csv(index=False))
    runner = CliRunner()
    for args in (
        ["-i", str(tmp_path / "in.csv")],
        ["-i", str(tmp_path / "in.json")],
        ["-i", str(tmp_path / "in.parquet")],
        ["-i", str(tmp_path / "in.txt"), "--content-type", "csv"],
    ):
        result = runner.invoke(cli, ["predict", "-m", "runs:/iris/model", *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"predictions": expected}
    result = runner.invoke(
        cli, ["predict", "-m", "runs:/iris/model", "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]
    )
    assert result.exit_code == 0 and pd.read_csv(tmp_path / "out.csv").iloc[:, 0].tolist() == expected
    X.head(5).drop(columns=[X.columns[2]]).to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(cli, ["predict", "-m", "runs:/iris/model", "-i", str(tmp_path / "bad.csv")])
    assert (
        result.exit_code == 1
        and "lacks column 'petal length (cm)'" in result.output
        and "Traceback" not in result.output
    )
    (tmp_path / "broken.json").write_text("{not json")
    result = runner.invoke(cli, ["predict", "-m", "runs:/iris/model", "-i", str(tmp_path / "broken.json")])
    assert result.exit_code == 1 and "is not readable as json" in result.output


def test_large_inputs_are_scored_in_chunks_with_progress(iris, tmp_path):
    from gitml.pyfunc.batch import CHUNK_ROWS, predict_file

    X, model = iris
    gitml.sklearn.save_model(model, tmp_path / "m")
    big = pd.concat([X] * (2 * CHUNK_ROWS // len(X) + 1), ignore_index=True)
    big.to_csv(tmp_path / "big.csv", index=False)
    seen = []
    out = predict_file(
        str(tmp_path / "m"), str(tmp_path / "big.csv"), progress=lambda done, total: seen.append((done, total))
    )
    assert json.loads(out)["predictions"] == model.predict(big).tolist()
    assert len(seen) == 3 and seen[-1] == (len(big), len(big)) and seen[0] == (CHUNK_ROWS, len(big))


def test_export_writes_a_verified_plain_folder(iris, repo, tmp_path):
    from gitml.cli.main import cli

    X, model = iris
    with gitml.start_run():
        info = gitml.sklearn.log_model(model, name="model")
    gitml.flush()
    result = CliRunner().invoke(cli, ["models", "export", info.model_uri, str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "MLmodel" in os.listdir(tmp_path / "out") and "model.pkl" in os.listdir(tmp_path / "out")
    np.testing.assert_array_equal(gitml.pyfunc.load_model(tmp_path / "out").predict(X), model.predict(X))
    result = CliRunner().invoke(cli, ["models", "export", info.model_uri, str(tmp_path / "out")])
    assert result.exit_code == 1 and "not empty" in result.output
    result = CliRunner().invoke(cli, ["models", "export", str(tmp_path / "out"), str(tmp_path / "copy")])
    assert result.exit_code == 0 and sorted(os.listdir(tmp_path / "copy")) == sorted(os.listdir(tmp_path / "out"))

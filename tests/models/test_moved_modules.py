"""``gitml.models``' code moved to ``gitml.modelformat``: MLflow's public path
``gitml.models.signature`` still imports, the internal paths are gone, and a model an older
gitml pickled naming the old module paths still loads (in a fresh interpreter, nothing aliased)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_python

# What an older gitml wrote: its classes lived in gitml.models.*, so a pickled PythonModel
# holding a Model, a loaded NativeModel and a signature names those modules.
SAVE_AS_OLD_GITML = """
import sys
import gitml.modelformat.flavor, gitml.modelformat.mlmodel, gitml.modelformat.signature
import gitml.pyfunc
from gitml.modelformat.flavor import NativeModel
from gitml.modelformat.mlmodel import Model
from gitml.modelformat.signature import ColSpec, DataType, ModelSignature, Schema

for name in ("flavor", "mlmodel", "signature"):
    sys.modules["gitml.models." + name] = sys.modules["gitml.modelformat." + name]
NativeModel.__module__ = "gitml.models.flavor"
Model.__module__ = "gitml.models.mlmodel"
for cls in (ColSpec, DataType, ModelSignature, Schema):
    cls.__module__ = "gitml.models.signature"


class Times:
    def predict(self, data):
        return [v * 3 for v in data]


class Holder(gitml.pyfunc.PythonModel):
    def __init__(self):
        self.meta = Model(artifact_path="inner")
        self.inner = NativeModel(Times())
        self.sig = ModelSignature(inputs=Schema([ColSpec("double", "x")]))

    def predict(self, context, model_input, params=None):
        return self.inner.predict(list(model_input))


gitml.pyfunc.save_model(sys.argv[1] if len(sys.argv) > 1 else "model", python_model=Holder())
"""

LOAD = """
import json, sys
import gitml.pyfunc
model = gitml.pyfunc.load_model("model")
held = model.unwrap_python_model()
print(json.dumps({
    "predicted": list(model.predict([1, 2])),
    "classes": [type(o).__module__ + "." + type(o).__name__ for o in (held.meta, held.inner, held.sig)],
    "artifact_path": held.meta.artifact_path,
    "old_modules": sorted(m for m in sys.modules if m.startswith("gitml.models.")),
}))
"""


def test_a_model_pickled_under_the_old_module_paths_loads(tmp_path):
    run_python(SAVE_AS_OLD_GITML, cwd=tmp_path)
    pickled = next((tmp_path / "model").glob("*.pkl")).read_bytes()
    assert b"gitml.models.flavor" in pickled and b"gitml.models.mlmodel" in pickled
    assert b"gitml.modelformat" not in pickled  # written as an older gitml wrote it

    got = json.loads(run_python(LOAD, cwd=tmp_path).stdout)
    assert got["predicted"] == [3, 6]
    assert got["classes"] == [
        "gitml.modelformat.mlmodel.Model",
        "gitml.modelformat.flavor.NativeModel",
        "gitml.modelformat.signature.ModelSignature",
    ]
    assert got["artifact_path"] == "inner"
    assert got["old_modules"] == ["gitml.models.signature"]  # the public face only, no alias of the rest


def test_mlflows_public_submodule_path_is_a_face_and_the_internal_ones_are_gone():
    import gitml.modelformat.signature as code
    import gitml.models
    from gitml.models.signature import ModelSignature, infer_signature

    assert infer_signature is code.infer_signature and ModelSignature is code.ModelSignature
    assert gitml.models.Model.__module__ == "gitml.modelformat.mlmodel"
    for moved in ("enforce", "mlmodel", "environment", "uri", "save", "flavor"):
        with pytest.raises(ModuleNotFoundError):
            __import__(f"gitml.models.{moved}")

"""An MLServer runtime that loads a model folder through gitml (``implementation`` of the
model-settings.json that ``gitml models export --target mlserver`` writes).

MLServer imports it inside its own environment, which needs gitml and ``mlserver`` (no
MLflow). ``load`` checks every file of the folder against the export's ``model.sha256``
before anything in it is unpickled; ``predict`` answers through the same V2 encoding as
``gitml serve`` (:mod:`gitml.serving.v2`), so both give a request the same outputs.
"""

from __future__ import annotations

import os

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from gitml.errors import RequestError


class GitmlRuntime(MLModel):
    """Loads ``parameters.uri`` (the model folder) after checking it against
    ``parameters.extra.manifest`` (beside the settings file); raises ModelIntegrityError when
    a file changed, was added or went missing since the export."""

    async def load(self) -> bool:
        from gitml.pyfunc import load_model
        from gitml.serving.export import MANIFEST, verify_folder
        from gitml.serving.v2 import V2Model

        folder = await get_model_uri(self.settings)
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        manifest = os.path.join(os.path.dirname(os.path.abspath(folder)), str(extra.get("manifest", MANIFEST)))
        verify_folder(folder, manifest)
        self._v2 = V2Model(load_model(folder), name=self.name, version=self.version, platform="gitml")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request = payload.model_dump(exclude_none=True)
        try:
            response = self._v2.infer(request)
        except RequestError as e:
            raise MLServerError(str(e), status_code=e.status) from None
        response.pop("model_name", None)
        response.pop("model_version", None)
        return InferenceResponse(model_name=self.name, model_version=self.version, **response)

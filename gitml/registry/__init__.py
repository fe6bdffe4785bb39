"""The model registry: GTO-format git tags, signed as git signs, under a committed policy.

    client = gitml.Client()
    client.create_model_version("churn", f"runs:/{run_id}/model")   # tag churn@v1.0.0
    client.set_registered_model_alias("churn", "production", 1)     # tag churn#production#1
    gitml.pyfunc.load_model("models:/churn@production")

(the :class:`Registry` itself, with signing and policy, is the internal facade's
``gitml.ops.Operations.registry``, and the CLI's ``gitml registry``).

Modules: ``tags`` (the tag table and its parser), ``signing`` (gpg / ssh-keygen as git
uses them), ``policy`` (``.gitml/registry.yaml`` and ``.gitml/stages.yaml``), ``trust``
(which policy decides: the trusted ref's, as the clone accepted it), ``events``
(the state as read: tags, versions, models), ``state`` (:class:`Registry`: reading the state
from tags, writing events, resolving), ``mlflow_api``
(MLflow's registry calls on ``Client``), ``stagesfile`` (the committed desired state of
the stages: promotion by pull request is :mod:`gitml.gitops`, above the models it loads).
"""

from typing import TYPE_CHECKING

from gitml.errors import ModelChangedError, PolicyError, RegisteredModelNotFound, SigningError, UntrustedTagError

if TYPE_CHECKING:
    from gitml.registry.policy import Policy
    from gitml.registry.signing import Verification
    from gitml.registry.state import ModelState, ModelVersion, Registry
    from gitml.registry.tags import Action, RegistryTag, parse_tag

_MODULES = {  # imported when a name is first used: ``Client`` loads this package for any command
    "Policy": "policy",
    "Verification": "signing",
    **dict.fromkeys(("ModelState", "ModelVersion", "Registry"), "state"),
    **dict.fromkeys(("Action", "RegistryTag", "parse_tag"), "tags"),
}


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Action",
    "ModelChangedError",
    "ModelState",
    "ModelVersion",
    "Policy",
    "PolicyError",
    "RegisteredModelNotFound",
    "Registry",
    "RegistryTag",
    "SigningError",
    "UntrustedTagError",
    "Verification",
    "parse_tag",
]

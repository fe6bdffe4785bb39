"""The model registry: GTO-format git tags, signed as git signs, under a committed policy.

    client = gitml.Client()
    client.registry.register("churn", run_id, "model")          # tag churn@v1.0.0
    client.registry.assign("churn", "v1.0.0", "production")     # tag churn#production#1
    gitml.pyfunc.load_model("models:/churn@production")

Modules: ``tags`` (the tag table and its parser), ``signing`` (gpg / ssh-keygen as git
uses them), ``policy`` (``.gitml/registry.yaml`` and ``.gitml/stages.yaml``), ``events``
(the state as read: tags, versions, models), ``state`` (:class:`Registry`: reading the state
from tags, writing events, resolving), ``mlflow_api``
(MLflow's registry calls on ``Client``), ``gitops`` (propose / check / apply: promotion
by pull request).
"""

from gitml.registry.policy import Policy, PolicyError
from gitml.registry.signing import SigningError, Verification
from gitml.registry.state import ModelChangedError, ModelState, ModelVersion, RegisteredModelNotFound, Registry, UntrustedTagError
from gitml.registry.tags import Action, RegistryTag, parse_tag

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

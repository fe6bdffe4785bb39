"""``gitml.autolog()``: autologging for every flavor that has it, at once, as ``mlflow.autolog()``
enables each ``mlflow.<flavor>.autolog``.

    import gitml
    gitml.autolog()                          # every integration whose library is importable
    gitml.autolog(log_models=False, extra_tags={"team": "churn"})

It sits above the flavors it names: each integration of :mod:`gitml.autologging` (the engine,
below them) logs its models with the ``log_model`` of its flavor (``gitml.sklearn.log_model``,
...), which this module hands it, as the flavor's own ``autolog()`` does. A flavor module is
imported here, not its library: ``gitml.autolog()`` imports no framework.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from gitml import keras, lightgbm, pytorch, sklearn, xgboost
from gitml.autologging import INTEGRATIONS, configure

# the flavor whose log_model each integration of gitml.autologging logs its models with
AUTOLOGGED = {"sklearn": sklearn, "xgboost": xgboost, "lightgbm": lightgbm, "keras": keras, "pytorch": pytorch}


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: dict | None = None,
    **options: Any,
) -> None:
    """Enable (or ``disable``) autologging for every integration whose library is installed,
    with MLflow's arguments. ``options`` go to the integrations that take them
    (``pos_label``, ``max_tuning_runs`` for scikit-learn)."""
    for name, (library, _) in INTEGRATIONS.items():
        if library in sys.modules or importlib.util.find_spec(library) is not None:
            configure(
                name,
                AUTOLOGGED[name].log_model,
                log_input_examples=log_input_examples,
                log_model_signatures=log_model_signatures,
                log_models=log_models,
                log_datasets=log_datasets,
                disable=disable,
                exclusive=exclusive,
                silent=silent,
                extra_tags=extra_tags,
                **options,
            )


__all__ = ["AUTOLOGGED", "autolog"]

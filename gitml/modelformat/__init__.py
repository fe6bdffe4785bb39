"""MLflow's model format, below the loader: the ``MLmodel`` folder and its file (``mlmodel``),
signatures and their schemas (``signature``), checking input against a signature
(``enforce``), environment files (``environment``: requirements.txt, python_env.yaml,
conda.yaml), model URIs, download and verification (``uri``), what every flavor's save/log
shares (``save``) and what the native flavors share when they load (``flavor``).

Users import these names from ``gitml.models`` (MLflow's ``mlflow.models``), the face above
``gitml.pyfunc``; this package takes nothing from it, and its ``__init__`` imports nothing.
"""

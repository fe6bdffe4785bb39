"""The environment files of a model folder, as MLflow writes them: ``requirements.txt``
(the packages the model needs, pinned to the installed versions), ``python_env.yaml``
(MLflow's virtualenv spec) and ``conda.yaml``."""

from __future__ import annotations

import importlib.metadata
import os
import platform

REQUIREMENTS = "requirements.txt"
PYTHON_ENV = "python_env.yaml"
CONDA = "conda.yaml"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned(packages: list[str]) -> list[str]:
    """``name==version`` for each installed package (names with a specifier are kept as given)."""
    out = []
    for package in packages:
        if any(c in package for c in "<>=!~ ;@"):
            out.append(package)
            continue
        version = _version(package)
        out.append(f"{package}=={version}" if version else package)
    return out


def write_environment(
    folder: str,
    packages: list[str],
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
) -> list[str]:
    """Write the three files; returns the requirements written."""
    import yaml

    requirements = list(pip_requirements) if pip_requirements is not None else pinned(packages)
    requirements += list(extra_pip_requirements or [])
    python = platform.python_version()
    pip = _version("pip")
    with open(os.path.join(folder, REQUIREMENTS), "w") as f:
        f.write("\n".join(requirements))
    env = {
        "python": python,
        "build_dependencies": [f"pip=={pip}" if pip else "pip", *pinned(["setuptools"]), "wheel"],
        "dependencies": [f"-r {REQUIREMENTS}"],
    }
    with open(os.path.join(folder, PYTHON_ENV), "w") as f:
        yaml.safe_dump(env, f, default_flow_style=False, sort_keys=False)
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", f"pip<={pip}" if pip else "pip", {"pip": requirements}],
        "name": "mlflow-env",
    }
    with open(os.path.join(folder, CONDA), "w") as f:
        yaml.safe_dump(conda, f, default_flow_style=False)
    return requirements


def pyfunc_env() -> dict:
    """The ``env`` entry of a ``python_function`` flavor."""
    return {"conda": CONDA, "virtualenv": PYTHON_ENV}

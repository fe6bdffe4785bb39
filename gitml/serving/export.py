"""``gitml models export --target mlserver|kserve|docker``: a model made ready for the servers
of Kubernetes, each folder carrying the model's files and their hashes.

    mlserver   model-settings.json + model/ + model.sha256: ``mlserver start DST`` serves it
               through :class:`gitml.serving.mlserver.GitmlRuntime` (V2 protocol), which checks
               every file against model.sha256 before anything in it is unpickled
    docker     a build context: Dockerfile (a base image pinned by exact tag), requirements.txt
               (the model's pins and gitml's, every line ``name==version``), the exporting
               gitml package, model/ checked against model.sha256 by ``sha256sum`` during the
               build; ``gitml serve`` (MLflow's and the V2 protocol) on port 8080 as entry point
    kserve     the docker context plus kserve.yaml: a ServingRuntime running that image and an
               InferenceService (V2 protocol) using it

A run's model is checked file by file against the run's manifest while it is exported
(:func:`gitml.pyfunc.batch.export_model`); ``model.sha256`` carries those hashes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil

from gitml.errors import ConflictError, InvalidInputError, ModelIntegrityError

MANIFEST = "model.sha256"
MODEL_DIR = "model"
PORT = 8080
TARGETS = ("mlflow", "mlserver", "docker", "kserve")
RUNTIME = "gitml.serving.mlserver.GitmlRuntime"
# what a served model needs of gitml's own dependencies (pyproject's dependencies and ``serve`` extra)
_GITML_RUNTIME = (
    "dulwich",
    "click",
    "pyyaml",
    "pandas",
    "numpy",
    "fsspec",
    "cloudpickle",
    "uvicorn",
    "httptools",
    "uvloop",
    "orjson",
)
_K8S_NAME = re.compile(r"[^a-z0-9-]+")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: str) -> list[str]:
    from gitml.modelformat.mlmodel import model_files

    return model_files(folder)


def write_manifest(folder: str, manifest: str) -> str:
    """Write ``manifest`` in ``sha256sum``'s format (``<hex>  <path>``, paths relative to
    ``folder``), so ``cd folder && sha256sum --strict --check manifest`` checks the files."""
    lines = [f"{_sha256(os.path.join(folder, rel))}  {rel}\n" for rel in _files(folder)]
    with open(manifest, "w") as f:
        f.writelines(lines)
    return manifest


def verify_folder(folder: str, manifest: str) -> None:
    """Check every file of ``folder`` against ``manifest``: each listed file present with its
    hash, no file beside them. Raises ModelIntegrityError naming the first file that fails."""
    listed: dict[str, str] = {}
    try:
        with open(manifest) as f:
            for line in f:
                if line.strip():
                    digest, rel = line.rstrip("\n").split("  ", 1)
                    listed[rel] = digest
    except (OSError, ValueError) as e:
        raise ModelIntegrityError(
            f"{manifest}: the model's manifest is missing or unreadable ({type(e).__name__})"
        ) from None
    present = set(_files(folder))
    for rel, expected in sorted(listed.items()):
        if rel not in present:
            raise ModelIntegrityError(f"{folder}: {rel!r} is listed in {os.path.basename(manifest)} but missing")
        if _sha256(os.path.join(folder, rel)) != expected:
            raise ModelIntegrityError(
                f"{folder}: {rel!r} does not match its hash in {os.path.basename(manifest)} (changed after export)"
            )
    extra = sorted(present - set(listed))
    if extra:
        raise ModelIntegrityError(f"{folder}: {extra[0]!r} is not in {os.path.basename(manifest)} (added after export)")


def export(
    model_uri: str, dst: str, *, target: str = "mlflow", name: str | None = None, image: str | None = None
) -> str:
    """Export the model at ``model_uri`` into the new folder ``dst`` for ``target`` (one of
    :data:`TARGETS`); ``name`` is the model's name on the V2 routes (default: the registered
    name, else the folder's), ``image`` the image a KServe runtime runs (default
    ``gitml-model-<name>:<12 hex of model.sha256>``). Returns ``dst``.

    >>> export("models:/churn@production", "deploy/churn", target="kserve")

    Raises InvalidInputError, ConflictError (``dst`` not empty), NotFoundError,
    ModelIntegrityError (a run's file that fails its recorded hash).
    """
    from gitml.pyfunc.batch import export_model
    from gitml.serving.v2 import model_name_of

    if target not in TARGETS:
        raise InvalidInputError(f"export target {target!r} is not one of {', '.join(TARGETS)}")
    if target == "mlflow":
        return export_model(model_uri, dst)
    dst = os.path.abspath(dst)
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise ConflictError(f"{dst!r} exists and is not empty: export writes a new folder")
    default_name, version = model_name_of(str(model_uri))
    name = name or default_name
    if not name or len(name) > 200 or any(c in name for c in '/\\\n\r\t"'):
        raise InvalidInputError(
            f"model name {name!r} cannot stand in a V2 route (no slashes, quotes or control characters)"
        )
    os.makedirs(dst, exist_ok=True)
    try:
        folder = export_model(model_uri, os.path.join(dst, MODEL_DIR))
        write_manifest(folder, os.path.join(dst, MANIFEST))
        if target == "mlserver":
            _mlserver(dst, folder, name, version)
        else:
            _docker(dst, folder, name)
            if target == "kserve":
                _kserve(dst, name, image)
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    return dst


def _signature_tensors(folder: str) -> tuple[list[dict], list[dict]]:
    """The V2 inputs and outputs of the model's signature, read from its MLmodel: exporting
    never loads (unpickles) the model, which would run its code."""
    from gitml.modelformat.mlmodel import Model
    from gitml.serving.v2 import V2Model

    meta = Model.load(folder)
    return V2Model.tensors(meta.get_input_schema()), V2Model.tensors(meta.get_output_schema())


def _mlserver(dst: str, folder: str, name: str, version: str | None) -> None:
    inputs, outputs = _signature_tensors(folder)
    parameters: dict = {"uri": f"./{MODEL_DIR}", "extra": {"manifest": MANIFEST}}
    if version is not None:
        parameters["version"] = version
    settings = {"name": name, "implementation": RUNTIME, "parameters": parameters, "inputs": inputs, "outputs": outputs}
    with open(os.path.join(dst, "model-settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")


def locked_requirements(folder: str) -> list[str]:
    """The model's ``requirements.txt`` and gitml's runtime dependencies, each ``name==version``
    (the model's pin wins for a package both name; an unpinned line of the model's is pinned
    to the version installed here). InvalidInputError for a line that cannot be pinned."""
    from gitml.modelformat.environment import pinned

    wanted: dict[str, str] = {}
    path = os.path.join(folder, "requirements.txt")
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise InvalidInputError(
                f"the model's requirement {line!r} is a pip option: a locked image takes name==version lines"
            )
        (spec,) = pinned([re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0]]) if "==" not in line else (line,)
        if "==" not in spec:
            raise InvalidInputError(
                f"the model's requirement {line!r} has no version and is not installed here to pin it"
            )
        wanted.setdefault(_canonical(spec.split("==")[0]), spec)
    for spec in pinned(list(_GITML_RUNTIME)):
        if "==" in spec:
            wanted.setdefault(_canonical(spec.split("==")[0]), spec)
    return [wanted[key] for key in sorted(wanted)]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0].strip()).lower()


def base_image() -> str:
    """The image the Dockerfile starts from: Python's slim image of exactly this Python."""
    return f"python:{platform.python_version()}-slim-bookworm"


def _docker(dst: str, folder: str, name: str) -> None:
    import gitml

    requirements = locked_requirements(folder)
    with open(os.path.join(dst, "requirements.txt"), "w") as f:
        f.write("\n".join(requirements) + "\n")
    package = os.path.dirname(os.path.abspath(gitml.__file__))
    shutil.copytree(package, os.path.join(dst, "gitml"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    entry = [
        "python",
        "-m",
        "gitml",
        "serve",
        "-m",
        f"/opt/{MODEL_DIR}",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--allow-host",
        "*",
        "--name",
        name,
    ]
    dockerfile = f"""# Built by `gitml models export --target docker`: the model {name!r},
# served by gitml on port {PORT} (MLflow's /invocations and the V2 protocol's /v2/...).
# The base image is pinned by exact tag.
FROM {base_image()}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/opt/gitml-src
WORKDIR /opt
COPY requirements.txt /opt/requirements.txt
RUN pip install --no-cache-dir -r /opt/requirements.txt && pip check
COPY gitml /opt/gitml-src/gitml
COPY {MANIFEST} /opt/{MANIFEST}
COPY {MODEL_DIR} /opt/{MODEL_DIR}
# the model's files are checked against the hashes recorded at export: a changed file fails the build
RUN cd /opt/{MODEL_DIR} && sha256sum --strict --check --quiet /opt/{MANIFEST}
USER 65532
EXPOSE {PORT}
ENTRYPOINT {json.dumps(entry)}
"""
    with open(os.path.join(dst, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    with open(os.path.join(dst, ".dockerignore"), "w") as f:
        f.write("**/__pycache__\n*.pyc\n")


def _kserve(dst: str, name: str, image: str | None) -> None:
    import yaml

    if image is None:
        with open(os.path.join(dst, MANIFEST), "rb") as f:
            image = f"gitml-model-{_k8s_name(name)}:{hashlib.sha256(f.read()).hexdigest()[:12]}"
    resource = _k8s_name(name)
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}}
    runtime_name = f"gitml-{resource}"[:63].rstrip("-")
    runtime: dict = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": runtime_name},
        "spec": {
            "supportedModelFormats": [{"name": "gitml", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                    "readinessProbe": probe,
                    "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}},
                }
            ],
        },
    }
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": resource, "annotations": {"gitml.model-name": name}},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "gitml", "version": "1"},
                    "runtime": runtime_name,
                    "protocolVersion": "v2",
                }
            }
        },
    }
    with open(os.path.join(dst, "kserve.yaml"), "w") as f:
        f.write(f"# Build and push the image from this folder first: docker build -t {image} .\n")
        yaml.safe_dump_all([runtime, service], f, sort_keys=False)


def _k8s_name(name: str) -> str:
    """A Kubernetes object name (a DNS-1035 label) for a model name: ``Churn_v2`` -> ``churn-v2``."""
    text = _K8S_NAME.sub("-", name.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = "m-" + text
    return text[:63].rstrip("-")

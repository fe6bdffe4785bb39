"""A model verified once where a job starts, then shipped as bytes to the processes that score.

    bundle = ship_model("models:/churn@production")   # on the driver: downloaded and verified
    ...                                                # the engine carries bundle.files to workers
    key = bundle.key()                                 # hashes only: what each task carries
    model = key.load(files)                            # on a worker: re-checked, loaded once per process

The driver reads the model's files into memory and checks every byte against the run's manifest
hashes (a ``runs:/`` or ``models:/`` URI; a folder is taken as it is, as ``load_model`` takes it),
so the bytes an engine carries are the bytes that were verified. A worker checks them again
against the hashes carried beside them, in the task's closure, before it writes them to a
folder and unpickles anything: a broadcast or a scattered object damaged on its way (or on a
worker's disk) is refused there. Each worker process loads a model once: the next batches, tasks
and partitions reuse it.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitml.errors import ModelIntegrityError

if TYPE_CHECKING:
    from gitml.modelformat.mlmodel import Model
    from gitml.ops import Operations
    from gitml.pyfunc import PyFuncModel


def _digest(hashes: dict[str, str]) -> str:
    text = "".join(f"{name}\0{sha}\n" for name, sha in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ShippedModel:
    """What a driver sends: the model's file bytes (``files``, the heavy part an engine carries
    once) and, kept apart in every task, each file's SHA-256 (``hashes``), their ``digest`` (the
    key of a worker's loaded models); ``metadata`` is the model's MLmodel, for the driver."""

    uri: str
    files: dict[str, bytes] = field(repr=False)
    hashes: dict[str, str]
    digest: str
    metadata: Model = field(repr=False)

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())

    def key(self) -> ShippedKey:
        """The small part a task closure carries (no bytes)."""
        return ShippedKey(self.uri, dict(self.hashes), self.digest)


@dataclass(frozen=True)
class ShippedKey:
    """The hashes a worker checks shipped bytes against, and the model's name for messages."""

    uri: str
    hashes: dict[str, str]
    digest: str

    def load(
        self, files: Callable[[], dict[str, bytes]] | dict[str, bytes], model_config: dict | None = None
    ) -> PyFuncModel:
        """The model, loaded once per process: the first call checks ``files`` (bytes, or a
        function returning them: called only on a process's first load) and loads them; later
        calls return that model. Raises ModelIntegrityError naming a file that differs, before
        anything of the model is written or read."""
        return load_shipped(self, files, model_config)


def ship_model(model_uri: str | os.PathLike, *, client: Operations | None = None) -> ShippedModel:
    """Read the model at ``model_uri`` into memory, verified (see the module's docstring).

    Raises NotFoundError, RegisteredModelNotFoundError, ModelIntegrityError (a file that does not
    match the run's manifest: refused before anything reads it)."""
    from gitml.modelformat.uri import ModelURI, model_on_disk, resolve_model_uri, run_model_files

    run_id, path = resolve_model_uri(client, model_uri)
    manifest: dict[str, dict] | None = None
    if run_id is not None:
        if client is None:
            from gitml import fluent

            client = fluent.client()
        manifest = run_model_files(client, run_id, path)
        source = str(ModelURI("runs", path, run=run_id))
    else:
        source = path
    from gitml.modelformat.mlmodel import Model, model_files

    files: dict[str, bytes] = {}
    with model_on_disk(source, client=client) as folder:  # a run's model: verified as downloaded
        metadata = Model.load(folder)
        for name in model_files(folder):  # regular files only: a link would ship a file from outside it
            with open(os.path.join(folder, name), "rb") as f:
                files[name] = f.read()
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    if manifest is not None:  # the bytes held in memory, checked again: these are what ship
        what = f"model {model_uri}"
        for name in sorted(set(hashes) | set(manifest)):
            entry = manifest.get(name)
            if (
                entry is None
                or name not in hashes
                or hashes[name] != entry["sha256"]
                or len(files[name]) != entry["size"]
            ):
                raise ModelIntegrityError(
                    f"{what}: file {name!r} does not match the run's manifest; refusing to ship it"
                )
    return ShippedModel(str(model_uri), files, hashes, _digest(hashes), metadata)


_LOADED: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
_FOLDERS: list[str] = []


def _remove_folders() -> None:
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_remove_folders)


def check_shipped(key: ShippedKey, files: dict[str, bytes]) -> None:
    """Raise ModelIntegrityError unless ``files`` holds exactly the files of ``key``, each
    matching its hash."""
    if not isinstance(files, dict):
        raise ModelIntegrityError(f"model {key.uri}: what arrived is not the model's files; refusing to load it")
    for name in sorted(set(files) | set(key.hashes)):
        data = files.get(name)
        if (
            name not in key.hashes
            or not isinstance(data, bytes)
            or hashlib.sha256(data).hexdigest() != key.hashes[name]
        ):
            raise ModelIntegrityError(
                f"model {key.uri}: shipped file {name!r} does not match the hash the driver "
                "verified; refusing to load it"
            )


def load_shipped(
    key: ShippedKey, files: Callable[[], dict[str, bytes]] | dict[str, bytes], model_config: dict | None = None
) -> PyFuncModel:
    """:meth:`ShippedKey.load`."""
    from gitml.pyfunc import inside, load_folder

    cache_key = (key.digest, repr(sorted((model_config or {}).items())))
    with _LOCK:
        model = _LOADED.get(cache_key)
        if model is not None:
            return model
        data = files() if callable(files) else files
        check_shipped(key, data)
        folder = tempfile.mkdtemp(prefix="gitml-shipped-")
        _FOLDERS.append(folder)
        for name, content in data.items():
            target = inside(folder, name, "shipped file", exists=False)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(content)
        model = load_folder(folder, model_config)
        _LOADED[cache_key] = model
        return model

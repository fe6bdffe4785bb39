"""Artifacts of runs, as MLflow's ``mlflow.artifacts`` module offers them.

    gitml.artifacts.download_artifacts(run_id=..., artifact_path="model", dst_path="out")
    gitml.artifacts.load_dict("runs:/<run_id>/config.json")

Storage lives in the submodules: ``cas`` (content-addressed objects, cache and
remote), ``config`` (settings), ``service`` (a run's manifest), ``formats``.
"""

from __future__ import annotations


def _client():
    from gitml import fluent

    return fluent.client()


def _locate(artifact_uri: str | None, run_id: str | None, artifact_path: str | None) -> tuple[str, str]:
    from gitml.errors import InvalidInputError
    from gitml.names import parse_runs_uri

    if artifact_uri is not None:
        if run_id is not None or artifact_path is not None:
            raise InvalidInputError("give either artifact_uri, or run_id (and artifact_path)")
        run, path = parse_runs_uri(artifact_uri)
    elif run_id is None:
        raise InvalidInputError("give artifact_uri or run_id")
    else:
        run, path = run_id, artifact_path or ""
    client = _client()
    return client.resolve_run(run), path


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
) -> str:
    """Download a run's artifact (file or folder), verified; returns its local path."""
    run, path = _locate(artifact_uri, run_id, artifact_path)
    return _client().download_artifacts(run, path, dst_path)


def list_artifacts(artifact_uri: str | None = None, run_id: str | None = None, artifact_path: str | None = None):
    """The entries directly inside an artifact folder (``path``, ``is_dir``, ``file_size``)."""
    run, path = _locate(artifact_uri, run_id, artifact_path)
    return _client().list_artifacts(run, path or None)


def load_text(artifact_uri: str) -> str:
    run, path = _locate(artifact_uri, None, None)
    return _client().artifacts.read_bytes(run, path).decode()


def load_dict(artifact_uri: str) -> dict:
    from gitml.content.formats import parse_dict

    run, path = _locate(artifact_uri, None, None)
    return parse_dict(_client().artifacts.read_bytes(run, path), path)


def load_table(artifact_uri: str):
    from gitml.content.formats import parse_table

    run, path = _locate(artifact_uri, None, None)
    return parse_table(_client().artifacts.read_bytes(run, path), path)


def load_image(artifact_uri: str):
    """An image artifact as a ``PIL.Image.Image`` (needs Pillow: ``pip install pillow``)."""
    import io

    from gitml.errors import InvalidInputError

    try:
        from PIL import Image
    except ImportError:
        raise InvalidInputError("load_image needs Pillow: pip install pillow") from None
    run, path = _locate(artifact_uri, None, None)
    image = Image.open(io.BytesIO(_client().artifacts.read_bytes(run, path)))
    image.load()
    return image


__all__ = ["download_artifacts", "list_artifacts", "load_dict", "load_image", "load_table", "load_text"]

"""Turning Python objects into artifact bytes, and back: text, dicts, tables, images, figures."""

from __future__ import annotations

import io
import json
import struct
import zlib

from gitml.errors import InvalidInputError


def dict_bytes(data: dict, artifact_file: str) -> bytes:
    """JSON for ``.json`` files, YAML for ``.yaml``/``.yml`` (MLflow's rule; JSON otherwise)."""
    import yaml

    if artifact_file.endswith((".yaml", ".yml")):
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    return json.dumps(data, indent=2, allow_nan=True).encode()


def parse_dict(data: bytes, artifact_file: str) -> dict:
    """A dict artifact's bytes parsed; YAML through the guarded reader (it may come from a
    teammate's push: aliases, oversize and deep nesting are a CorruptRecordError naming it;
    JSON too, invalid or nested past the parser's stack)."""
    from gitml.yamlread import load_json, load_yaml

    if artifact_file.endswith((".yaml", ".yml")):
        return load_yaml(data, artifact_file)
    return load_json(data, artifact_file)


def table_bytes(data) -> bytes:
    """A table (pandas DataFrame or dict of columns) as MLflow's JSON: ``{"columns", "data"}``."""
    import pandas as pd

    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    return frame.to_json(orient="split", index=False).encode()


def parse_table(data: bytes, artifact_file: str = "table"):
    """A table artifact's bytes (MLflow's ``{"columns", "data"}``) as a DataFrame; bytes
    that are not such JSON are a CorruptRecordError naming ``artifact_file``."""
    import pandas as pd

    from gitml.errors import CorruptRecordError
    from gitml.yamlread import load_json

    payload = load_json(data, artifact_file)
    if not isinstance(payload, dict) or not {"data", "columns"} <= payload.keys():
        raise CorruptRecordError(artifact_file, 'a table artifact is JSON with "columns" and "data"')
    return pd.DataFrame(payload["data"], columns=payload["columns"])


def image_bytes(image, artifact_file: str) -> bytes:
    """A numpy array (H×W, H×W×3, H×W×4; uint8, or floats in [0, 1]) or a PIL image, as PNG."""
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if artifact_file.lower().endswith(".png") else None)
        return buffer.getvalue()
    import numpy as np

    array = np.asarray(image)
    if array.dtype != np.uint8:
        if array.dtype.kind == "f":
            if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
                raise InvalidInputError("float images must hold values in [0, 1]")
            array = (np.nan_to_num(array) * 255).round().astype(np.uint8)
        else:
            array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        color = 0
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        color = 2 if array.shape[2] == 3 else 6
    else:
        raise InvalidInputError(f"an image array must be H×W, H×W×3 or H×W×4, not {array.shape}")
    if not artifact_file.lower().endswith(".png"):
        raise InvalidInputError("numpy images are written as PNG: name the artifact file *.png")
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def figure_bytes(figure, artifact_file: str) -> bytes:
    """A matplotlib figure (savefig in the file's format) or a plotly figure (HTML)."""
    buffer = io.BytesIO()
    if hasattr(figure, "savefig"):
        extension = artifact_file.rsplit(".", 1)[-1].lower() if "." in artifact_file else "png"
        figure.savefig(buffer, format=extension)
        return buffer.getvalue()
    if hasattr(figure, "to_html"):
        return figure.to_html().encode()
    raise InvalidInputError(f"cannot save a {type(figure).__name__} as a figure (matplotlib or plotly expected)")

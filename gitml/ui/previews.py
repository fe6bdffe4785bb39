"""What the artifact page shows of a file: never more than ``PREVIEW_BYTES`` of it,
never anything a browser would run.

Text, JSON, YAML and code as escaped text; CSV/TSV as a table; PNG, JPEG, GIF and
WebP as images (served with their own type, ``nosniff`` and a sandboxing CSP);
an ``MLmodel`` file as its flavors and signature. HTML and SVG are text here and
downloads on the raw route: they could carry scripts.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from dataclasses import dataclass, field
from typing import BinaryIO

PREVIEW_BYTES = 256 * 1024  # what a preview reads of a file, at most
TABLE_ROWS = 200
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t"}


@dataclass
class Preview:
    kind: str  # text | json | table | image | mlmodel | binary
    size: int
    truncated: bool = False
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    model: dict = field(default_factory=dict)


def preview(path: str, size: int, stream: BinaryIO) -> Preview:
    """The preview of the artifact ``path`` (``size`` bytes) read from ``stream``."""
    ext = posixpath.splitext(path)[1].lower()
    if ext in IMAGE_TYPES:
        return Preview("image", size)
    head = stream.read(PREVIEW_BYTES)
    truncated = size > len(head)
    if b"\0" in head[:8192]:
        return Preview("binary", size, truncated)
    text = _decode(head, truncated)
    if text is None:
        return Preview("binary", size, truncated)
    if posixpath.basename(path) == "MLmodel" and not truncated:
        model = mlmodel(head, path)
        if model:
            return Preview("mlmodel", size, truncated, text=text, model=model)
    if ext in TABLE_SEPARATORS:
        return Preview("table", size, truncated, rows=table_rows(text, TABLE_SEPARATORS[ext], truncated))
    if ext == ".json" and not truncated:
        try:
            return Preview("json", size, truncated, text=json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except (ValueError, RecursionError):  # nested past the parser's stack: a few kilobytes of '['
            pass  # shown as the text it is
    return Preview("text", size, truncated, text=text)


def _decode(data: bytes, truncated: bool) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if truncated and e.start >= len(data) - 3:  # a character cut by the preview's end
            return data[: e.start].decode("utf-8", "replace")
        return None


def table_rows(text: str, separator: str, truncated: bool) -> list[list[str]]:
    """The first ``TABLE_ROWS`` rows (the header first) of a delimited text; a last line
    the preview cut in the middle is left out."""
    if truncated and "\n" in text:
        text = text[: text.rindex("\n")]
    rows = []
    for row in csv.reader(io.StringIO(text), delimiter=separator):
        rows.append(row)
        if len(rows) > TABLE_ROWS:
            break
    return rows


def mlmodel(data: bytes, path: str) -> dict:
    """``{"flavors": {name: {field: value}}, "inputs": [...], "outputs": [...], ...}`` of
    an MLmodel file (MLflow's model folder), or {} when it is not one."""
    from gitml.errors import CorruptRecordError
    from gitml.runlog.record import load_yaml  # the limits that guard records guard this too

    try:
        spec = load_yaml(data, path)
    except CorruptRecordError:
        return {}
    if not isinstance(spec, dict) or not isinstance(spec.get("flavors"), dict):
        return {}
    out: dict = {
        "flavors": {
            str(name): {str(k): _short(v) for k, v in (fields or {}).items()} if isinstance(fields, dict) else {}
            for name, fields in spec["flavors"].items()
        },
        "signature": {},
        "info": {
            k: _short(spec[k]) for k in ("run_id", "utc_time_created", "model_uuid", "mlflow_version") if k in spec
        },
    }
    signature = spec.get("signature")
    if isinstance(signature, dict):
        for part in ("inputs", "outputs", "params"):
            raw = signature.get(part)
            if raw is None:
                continue
            try:
                columns = json.loads(raw) if isinstance(raw, str) else raw
            except (ValueError, RecursionError):
                columns = raw
            if isinstance(columns, list):
                out["signature"][part] = [
                    [
                        str(c.get("name", "")),
                        str(c.get("type", "")) + (f" {c.get('tensor-spec')}" if c.get("tensor-spec") else ""),
                    ]
                    if isinstance(c, dict)
                    else ["", str(c)]
                    for c in columns
                ]
            else:
                out["signature"][part] = [["", str(columns)]]
    return out


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:299] + "…"


def raw_headers(path: str, *, download: bool) -> tuple[str, dict[str, str]]:
    """The media type and headers of an artifact served whole. Only the image types
    above are shown inline; everything else (HTML, SVG, scripts) is a download."""
    ext = posixpath.splitext(path)[1].lower()
    name = posixpath.basename(path)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=0",
    }
    if ext in IMAGE_TYPES and not download:
        return IMAGE_TYPES[ext], headers
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    from urllib.parse import quote

    headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    return "application/octet-stream", headers


def tree(manifest: dict[str, dict]) -> dict:
    """The manifest as nested folders: ``{"dirs": {name: subtree}, "files": [(name, path, size)],
    "model": bool}`` (``model``: the folder holds an MLmodel file)."""
    root: dict = {"dirs": {}, "files": [], "model": False}
    for path in sorted(manifest):
        node = root
        parts = path.split("/")
        for part in parts[:-1]:
            node = node["dirs"].setdefault(part, {"dirs": {}, "files": [], "model": False})
        node["files"].append((parts[-1], path, manifest[path]["size"]))
        if parts[-1] == "MLmodel":
            node["model"] = True
    return root

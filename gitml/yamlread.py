"""The one guarded YAML reader: every YAML file gitml reads from a run or experiment
record, a registry tag, ``.gitml/registry.yaml`` and ``stages.yaml``, a model folder's
``MLmodel`` or a project's ``MLproject`` and environment files. Any of them may come
from a push, a clone or a download, so each is refused, with a one-line
CorruptRecordError naming the file, when it could exhaust memory, time or the stack:
over MAX_YAML_BYTES, anchors and aliases ("billion laughs"), nested deeper than
MAX_YAML_DEPTH, more than MAX_YAML_NODES nodes.

    data = load_yaml(blob, "run 1f2e... (meta.yaml)")
    spec = read_yaml_file("model/MLmodel", "model/MLmodel")   # reads at most the limit

JSON from the same places (a signature, an input example, a dict or table artifact) goes
through :func:`load_json`: nesting past the parser's stack is one line too.

It imports only PyYAML (on first use): loading a model folder never pulls in the git store.
"""

from __future__ import annotations

import re

from gitml.errors import CorruptRecordError

MAX_YAML_BYTES = 4 << 20  # one YAML file of a run or experiment record
MAX_YAML_NODES = 200_000  # PyYAML builds ~100,000 nodes a second: a bound on the time one file costs
MAX_YAML_DEPTH = 16  # gitml's own records nest 3 deep; libyaml's composer crashes (SIGSEGV) at ~50,000
# What gitml's emitter never writes: anchors and aliases, flow collections (other than {} and []),
# block sequences or complex keys, deep indentation, line breaks other than \n. A file with none of
# these nests at most 10 deep and holds at most 3 nodes a line; any other file is scanned first.
_UNUSUAL = re.compile(rb"[&*\r]|[\[{](?![\]}])|^[ \t]*[-?]|^ {9}|\xc2\x85|\xe2\x80[\xa8\xa9]", re.MULTILINE)


def load_yaml(data: bytes, what: str):
    """Parse one YAML document, refusing what could exhaust memory, time or the stack:
    files over MAX_YAML_BYTES, anchors and aliases ("billion laughs"), deep nesting and too
    many nodes. Raises CorruptRecordError naming ``what``."""
    import yaml  # imported on first read: commands served by the index never need it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if len(data) > MAX_YAML_BYTES:
        raise CorruptRecordError(what, f"{len(data)} bytes of YAML, over the limit of {MAX_YAML_BYTES}")
    try:
        if _UNUSUAL.search(data) or data.count(b"\n") * 3 > MAX_YAML_NODES:
            _scan_yaml(data, what, loader)
        return yaml.load(data, Loader=loader)
    except yaml.YAMLError as e:
        raise CorruptRecordError(what, f"invalid YAML ({str(e).splitlines()[0]})") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # e.g. a timestamp with month 13
        raise CorruptRecordError(what, f"invalid YAML ({type(e).__name__}: {e})") from None


def load_json(data: bytes | str, what: str):
    """JSON that came from a push, a clone or a download (a signature, an input example,
    a dict or table artifact): invalid JSON, or JSON nested past the parser's stack (a few
    kilobytes of ``[``, which Python's json raises as RecursionError), is a one-line
    CorruptRecordError naming ``what``."""
    import json

    try:
        return json.loads(data)
    except RecursionError:
        raise CorruptRecordError(what, "JSON nested deeper than the parser's stack") from None
    except ValueError as e:
        raise CorruptRecordError(what, f"invalid JSON ({e})") from None


def read_yaml_file(path: str, what: str):
    """:func:`load_yaml` of the file at ``path``, reading no more than the limit allows (a
    file of many gigabytes is refused after MAX_YAML_BYTES + 1 bytes, not read whole).
    Raises CorruptRecordError naming ``what``, OSError (FileNotFoundError...) as ``open``."""
    with open(path, "rb") as f:
        data = f.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise CorruptRecordError(what, f"more than {MAX_YAML_BYTES} bytes of YAML, over the limit of {MAX_YAML_BYTES}")
    return load_yaml(data, what)


def _scan_yaml(data: bytes, what: str, loader) -> None:
    """Walk the parser's events (libyaml, no recursion) before anything is built from them."""
    import yaml

    depth = nodes = 0
    for event in yaml.parse(data, Loader=loader):
        if isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                raise CorruptRecordError(what, "YAML anchors and aliases are not allowed in a record")
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise CorruptRecordError(what, f"more than {MAX_YAML_NODES} YAML nodes")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise CorruptRecordError(what, f"YAML nested more than {MAX_YAML_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1

"""A small, fast YAML emitter for gitml's own records.

PyYAML's emitter is pure Python even with libyaml's dumper, and a run
commit writes several small documents. This writes the subset gitml needs
(mappings, lists of scalars, strings, numbers, booleans, null) as block YAML
that any YAML 1.1/1.2 parser reads back to the same values: strings that
could be misread are written as JSON strings, which are valid YAML
double-quoted scalars.
"""

from __future__ import annotations

import json
import math
import re

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_SPECIAL = frozenset(
    "y n yes no on off true false null".split()
)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _SPECIAL:
        return text
    return json.dumps(text, ensure_ascii=False)


def _key(key) -> str:
    return _scalar(str(key))


def _emit(data, indent: str, out: list[str]) -> None:
    for key in sorted(data, key=str):
        value = data[key]
        if isinstance(value, dict) and value:
            out.append(f"{indent}{_key(key)}:\n")
            _emit(value, indent + "  ", out)
        elif isinstance(value, dict):
            out.append(f"{indent}{_key(key)}: {{}}\n")
        elif isinstance(value, (list, tuple)):
            items = ", ".join(_scalar(v) for v in value)
            out.append(f"{indent}{_key(key)}: [{items}]\n")
        else:
            out.append(f"{indent}{_key(key)}: {_scalar(value)}\n")


def dump(data: dict) -> bytes:
    """``data`` as a YAML document (keys sorted)."""
    if not data:
        return b"{}\n"
    out: list[str] = []
    _emit(data, "", out)
    return "".join(out).encode()

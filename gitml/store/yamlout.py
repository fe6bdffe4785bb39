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
_SPECIAL = frozenset("y n yes no on off true false null".split())


_TEXTS: dict[str, str] = {}  # short strings -> how they are written: the same keys and values come with every run
_TEXTS_KEPT = 8192


def _text(text: str) -> str:
    out = _TEXTS.get(text)
    if out is None:
        if _PLAIN.fullmatch(text) and text.lower() not in _SPECIAL:
            out = text
        else:
            out = json.dumps(text, ensure_ascii=False)
        if len(text) <= 64:
            if len(_TEXTS) >= _TEXTS_KEPT:
                _TEXTS.clear()
            _TEXTS[text] = out
    return out


def _scalar(value) -> str:
    if type(value) is str:
        return _text(value)  # (a third of a run's commit went to writing its YAML files, W2)
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
    return _text(str(value))


def _key(key) -> str:
    return _text(key if type(key) is str else str(key))


def _emit(data, indent: str, out: list[str]) -> None:
    texts = _TEXTS
    for key in sorted(data, key=str):
        value = data[key]
        kind = type(value)
        name = texts.get(key) if type(key) is str else None
        if name is None:
            name = _key(key)
        # the usual leaves first, written as _scalar writes them (a third of a run's commit
        # went to writing its YAML files, most of it to metrics.yaml's points: W2)
        if kind is str:
            text = texts.get(value)
            out.append(f"{indent}{name}: {_text(value) if text is None else text}\n")
        elif kind is float:
            out.append(f"{indent}{name}: {value!r}\n" if value - value == 0 else f"{indent}{name}: {_scalar(value)}\n")
        elif kind is int:  # (not a bool: its type is bool)
            out.append(f"{indent}{name}: {value}\n")
        elif isinstance(value, dict) and value:
            out.append(f"{indent}{name}:\n")
            _emit(value, indent + "  ", out)
        elif isinstance(value, dict):
            out.append(f"{indent}{name}: {{}}\n")
        elif isinstance(value, (list, tuple)):
            items = ", ".join(_scalar(v) for v in value)
            out.append(f"{indent}{name}: [{items}]\n")
        else:
            out.append(f"{indent}{name}: {_scalar(value)}\n")


def dump(data: dict) -> bytes:
    """``data`` as a YAML document (keys sorted)."""
    if not data:
        return b"{}\n"
    out: list[str] = []
    _emit(data, "", out)
    return "".join(out).encode()


def dump_points(latest: dict) -> bytes:
    """``dump({key: {"step": step, "timestamp": timestamp, "value": value}})`` of ``{key: (step,
    timestamp, value)}`` (a run's latest metric values), written from the tuples: the same bytes
    without a mapping made and sorted per metric (W2's metrics.yaml took 30 us of a run's commit)."""
    out: list[str] = []
    texts = _TEXTS
    for key in sorted(latest, key=str):
        step, timestamp, value = latest[key]
        if type(key) is not str or type(step) is not int or type(timestamp) is not int or type(value) is not float:
            return dump({k: {"step": s, "timestamp": t, "value": v} for k, (s, t, v) in latest.items()})
        name = texts.get(key)
        if name is None:
            name = _text(key)
        number = repr(value) if value - value == 0 else _scalar(value)
        out.append(f"{name}:\n  step: {step}\n  timestamp: {timestamp}\n  value: {number}\n")
    return "".join(out).encode() if out else b"{}\n"

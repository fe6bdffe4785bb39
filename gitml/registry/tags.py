"""Registry tag names: the one table and the one parser (GTO's conventions).

=============  ==============================  ===================================
event          tag                             meaning
=============  ==============================  ===================================
register       ``<model>@v<semver>``           a version of the model (a run commit)
deregister     ``<model>@v<semver>!#<N>``      that version withdrawn
assign         ``<model>#<stage>#<N>``         the version at the tagged commit enters
                                               the stage
unassign       ``<model>#<stage>!#<N>``        ... leaves it
deprecate      ``<model>@deprecated#<N>``      the whole model withdrawn
=============  ==============================  ===================================

``N`` is the model's event counter: one more than the largest counter among the
model's tags, so it grows with every event (gitml's registrations carry none). GTO
1.10.1 also writes each form without ``#N`` (``--simple``: by default for
deregistrations ``m@v1.0.0!`` and deprecations ``m@deprecated``) and registrations with
one (``m@v1.0.0#3``: ``--simple false``, re-registration); this parser reads them all as
GTO does, and gitml writes only the forms in the table. Which event is newer is decided
as GTO decides it: by tag time, ``N`` breaking same-second ties (see
:mod:`gitml.registry.state`). GTO's own tag regex parses every name this module makes
(a test checks it); ``@created`` tags (which GTO's reader cannot index) are not registry
tags here.

Names: a model is ``[A-Za-z0-9]`` at both ends and letters, digits, ``-``, ``_``, ``/``
inside (GTO's rule, no empty ``/`` component); a stage the same without ``/``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

from gitml.errors import InvalidInputError

TAGS_PREFIX = "refs/tags/"

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_/-]*[A-Za-z0-9])?"
_STAGE = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = rf"{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE}(?:\.{_PRE})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
_COUNTER = r"[1-9][0-9]{0,17}"

_TAG_RE = re.compile(
    rf"(?P<name>{_NAME})(?:@(?P<version>v{SEMVER})|#(?P<stage>{_STAGE})|@(?P<deprecated>deprecated))"
    rf"(?P<cancel>!)?(?:#(?P<n>{_COUNTER}))?"
)
_NAME_RE = re.compile(_NAME)
_STAGE_RE = re.compile(_STAGE)
_VERSION_RE = re.compile(rf"v({_NUM})\.({_NUM})\.({_NUM})(?:-([^+]+))?(?:\+(.*))?")


class Action(str, Enum):
    REGISTER = "register"
    DEREGISTER = "deregister"
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    DEPRECATE = "deprecate"


@dataclass(frozen=True)
class RegistryTag:
    """One registry event named by a tag. ``counter`` is None for a counter-less name
    (gitml's registrations; GTO's ``--simple`` forms)."""

    action: Action
    model: str
    version: str | None = None
    stage: str | None = None
    counter: int | None = None

    @property
    def name(self) -> str:
        """The tag's name (without ``refs/tags/``)."""
        a = self.action
        if a is Action.REGISTER or a is Action.DEREGISTER:
            base = f"{self.model}@{self.version}"
        elif a is Action.DEPRECATE:
            base = f"{self.model}@deprecated"
        else:
            base = f"{self.model}#{self.stage}"
        cancel = "!" if a in (Action.DEREGISTER, Action.UNASSIGN) else ""
        return base + cancel + (f"#{self.counter}" if self.counter is not None else "")

    @property
    def ref(self) -> bytes:
        return (TAGS_PREFIX + self.name).encode()


def _check_model_name(name: str) -> bool:
    return "//" not in name


def parse_tag(name: bytes | str) -> RegistryTag | None:
    """The event a tag name (``refs/tags/`` optional) records, or None for any other tag.

    >>> parse_tag("churn#production#3")
    RegistryTag(action=<Action.ASSIGN: 'assign'>, model='churn', version=None, stage='production', counter=3)
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return None
    if name.startswith(TAGS_PREFIX):
        name = name[len(TAGS_PREFIX) :]
    m = _TAG_RE.fullmatch(name)
    if m is None or not _check_model_name(m["name"]):
        return None
    model, counter = m["name"], int(m["n"]) if m["n"] else None
    if m["version"] is not None:
        action = Action.DEREGISTER if m["cancel"] else Action.REGISTER
        return RegistryTag(action, model, version=m["version"], counter=counter)
    if m["stage"] is not None:
        action = Action.UNASSIGN if m["cancel"] else Action.ASSIGN
        return RegistryTag(action, model, stage=m["stage"], counter=counter)
    if m["cancel"]:  # ``@deprecated!``: GTO's regex takes it, but it names no event
        return None
    return RegistryTag(Action.DEPRECATE, model, counter=counter)


def check_model_name(name: object) -> str:
    """A registered model's name, or InvalidInputError saying what the rule is."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or "//" in name or len(name) > 200:
        raise InvalidInputError(
            f"registered model name {name!r} is not valid: use letters, digits, '-', '_' and '/', "
            "starting and ending with a letter or digit (GTO's rule), at most 200 characters"
        )
    return name


_MLFLOW_FORBIDDEN = re.compile(r"[/:\x00-\x1f\x7f]")
_SLUG_RE = re.compile(r".+-[0-9a-f]{10}")


def model_slug(name: object) -> str:
    """The name a registered model's tags carry. A name that meets GTO's rule
    (:func:`check_model_name`) is its own; any other name MLflow allows (``Model 1``,
    ``churn.v2``, ``Modèle``: no ``/`` or ``:``) is written as its letters and digits with
    ``-`` between them, then ``-`` and 10 hex digits of its SHA-256, so its tags stay names
    GTO reads (``Model-1-1c3b6f9d2a``) while the name itself, case and all, lives in the
    registration tags' messages and the model's metadata. Raises InvalidInputError naming
    both rules.

    >>> model_slug("churn"), model_slug("Model 1")[:8]
    ('churn', 'Model-1-')
    """
    if isinstance(name, str) and _NAME_RE.fullmatch(name) and "//" not in name and len(name) <= 200:
        return name
    if (
        not isinstance(name, str)
        or not name.strip()
        or _MLFLOW_FORBIDDEN.search(name)
        or len(name) > 500
        or name.strip() in (".", "..")
    ):
        raise InvalidInputError(
            f"registered model name {name!r} is not valid: MLflow's rule (not blank, no '/', ':' or control "
            "characters, at most 500 characters) or GTO's (letters, digits, '-', '_' and '/', starting and "
            "ending with a letter or digit)"
        )
    base = re.sub(r"[^A-Za-z0-9]+", "-", name)[:60].strip("-") or "model"
    return f"{base}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def may_be_slug(model: str) -> bool:
    """Whether a tag's model name may stand for another name (:func:`model_slug`'s form)."""
    return _SLUG_RE.fullmatch(model) is not None


def check_stage(stage: object) -> str:
    if not isinstance(stage, str) or not _STAGE_RE.fullmatch(stage) or len(stage) > 100:
        raise InvalidInputError(
            f"stage {stage!r} is not valid: "
            "use letters, digits, '-' and '_', starting and ending with a letter or digit"
        )
    return stage


# -- versions ---------------------------------------------------------------
def parse_version(version: object) -> tuple[int, int, int, str]:
    """``(major, minor, patch, prerelease)`` of ``vX.Y.Z[-pre][+build]``; InvalidInputError otherwise."""
    if isinstance(version, str) and re.fullmatch(f"v{SEMVER}", version):
        m = _VERSION_RE.fullmatch(version)
        assert m is not None
        return int(m[1]), int(m[2]), int(m[3]), m[4] or ""
    raise InvalidInputError(f"version {version!r} is not vMAJOR.MINOR.PATCH (semantic versioning with a 'v')")


def check_version(version: object) -> str:
    """A version as written in tags: ``v1.2.3``; ``1.2.3`` and MLflow's ``3`` (= v3.0.0) are accepted."""
    if isinstance(version, int) and not isinstance(version, bool) and version > 0:
        version = str(version)
    if isinstance(version, str):
        if version.isdigit() and not version.startswith("0"):
            version = f"v{version}.0.0"
        elif version[:1].isdigit():
            version = "v" + version
    parse_version(version)
    return str(version)


def version_key(version: str) -> tuple:
    """Sort key in semantic-version order (a prerelease sorts before its release)."""
    major, minor, patch, pre = parse_version(version)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (major, minor, patch, 0 if pre else 1, parts)


def bump(versions: list[str], part: str = "major") -> str:
    """The next version after the greatest of ``versions``: ``major`` (the default, so
    versions read as MLflow's 1, 2, 3 ...), ``minor`` or ``patch``."""
    if part not in ("major", "minor", "patch"):
        raise InvalidInputError(f"bump {part!r} is not major, minor or patch")
    if not versions:
        return {"major": "v1.0.0", "minor": "v0.1.0", "patch": "v0.0.1"}[part]
    major, minor, patch, _ = parse_version(max(versions, key=version_key))
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"

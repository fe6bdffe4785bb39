"""The registry's state as read from its tags: each tag (:class:`TagEvent`), each
registered version (:class:`ModelVersion`) and each model (:class:`ModelState`). The
rules that build them from the tags are :class:`gitml.registry.state.Registry`'s."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitml.errors import CorruptRecordError
from gitml.registry.signing import split_signed
from gitml.registry.tags import RegistryTag, version_key
from gitml.yamlread import load_yaml


@dataclass
class TagEvent:
    """One registry tag as read: its parsed name, object id, target commit and message."""

    tag: RegistryTag  # as the ref's name says
    sha: bytes
    name: str = ""  # the tag object's own name (its ``tag`` header): the event counts only when both agree
    kind: str = ""  # the type of object it tags (``commit``)
    target: str = ""
    tagger: str = ""
    time: int = 0  # seconds
    raw: bytes = b""
    _info: dict | None = None

    @property
    def info(self) -> dict:
        """The YAML of the message (gitml's tags; ``{}`` for others), parsed on first use:
        listing the registry needs only tag names and targets."""
        if self._info is None:
            self._info = {}
            _, _, message = self.raw.partition(b"\n\n")
            body, _ = split_signed(message)
            if body.startswith(b"gitml-registry:"):
                try:
                    info = load_yaml(body, f"tag {self.tag.name}")
                except CorruptRecordError:
                    info = None
                found = info.get("gitml-registry") if isinstance(info, dict) else None
                self._info = found if isinstance(found, dict) else {}
        return self._info


@dataclass
class ModelVersion:
    """A registered version: a model folder (``path``) in a run commit."""

    model: str
    version: str
    commit: str
    event: TagEvent
    registered_by: str = ""
    registered_at: int = 0  # seconds
    deregistered: bool = False
    stages: list[str] = field(default_factory=list)
    tag: str = ""
    number: int = 0  # MLflow's version number: this version's place in the model's registration order (1, 2, ...)

    @property
    def run_id(self) -> str:
        return str(self.event.info.get("run_id") or "")

    @property
    def path(self) -> str:
        return str(self.event.info.get("path") or "")

    @property
    def description(self) -> str:
        return str(self.event.info.get("description") or "")


@dataclass
class ModelState:
    name: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> version
    deprecated: bool = False
    counter: int = 0  # the greatest N among its tags
    events: list[TagEvent] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # tag -> why it was ignored
    deciding: dict[str, TagEvent] = field(default_factory=dict)  # stage -> the assign tag that decides it
    commits: dict[str, list[str]] = field(default_factory=dict)  # commit -> the versions registered there
    numbers: dict[int, str] = field(default_factory=dict)  # MLflow's version number -> version (v1.1.0)

    def version_of(self, event: TagEvent) -> str | None:
        """The version an event is about: its name's, its message's, else (a stage tag GTO
        wrote, with no message) the version registered at its commit, as ``gto check-ref``
        reports it; None when no single one is."""
        if event.tag.version is not None:
            return event.tag.version
        named = event.info.get("version")
        if named is not None or event.tag.stage is None:
            return None if named is None else str(named)
        found = self.commits.get(event.target, [])
        return found[0] if len(found) == 1 else None

    @property
    def latest(self) -> ModelVersion | None:
        live = [v for v in self.versions.values() if not v.deregistered]
        return max(live, key=lambda v: version_key(v.version)) if live else None

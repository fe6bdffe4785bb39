"""Renaming a registered model and copying a version to another: both are registry tags
(they change what ``models:/`` URIs resolve to), written through :class:`Registry` and so
signed as the policy asks; GTO reads the result as a new model beside a deprecated one.

A rename writes, under the new name, one registration per version in the old model's
number order (same semantic version, same commit, same run and path: so MLflow's numbers
stay), a deregistration after each withdrawn one, an assignment per stage held, then
deprecates the old name. Metadata (descriptions, tags) is moved by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitml.errors import ConflictError
from gitml.registry.tags import model_slug

if TYPE_CHECKING:
    from gitml.registry.state import ModelVersion, Registry


def rename(reg: Registry, name: str, new_name: str, *, sign_tag: bool | None = None) -> None:
    """Move ``name``'s versions and stages to ``new_name`` (tags), then deprecate ``name``.
    Raises ConflictError when ``new_name`` has tags already or ``name`` is deprecated."""
    state = reg.model(name)
    if state.deprecated:
        raise ConflictError(f"registered model {name!r} is deprecated")
    if reg.tag_refs(model_slug(new_name)):
        raise ConflictError(f"registered model {new_name!r} already exists (it has registry tags)")
    for _, version in sorted(state.numbers.items()):
        mv = state.versions[version]
        reg.register_commit(
            new_name,
            mv.commit.encode(),
            mv.run_id,
            mv.path,
            version=mv.version,
            description=mv.description,
            sign_tag=sign_tag,
            number=mv.number,
        )
        if mv.deregistered:
            reg.deregister(new_name, mv.version, sign_tag=sign_tag)
    for stage, version in sorted(state.stages.items()):
        reg.assign(new_name, version, stage, sign_tag=sign_tag)
    reg.deprecate(name, sign_tag=sign_tag)


def copy_version(reg: Registry, mv: ModelVersion, dst: str, *, sign_tag: bool | None = None) -> ModelVersion:
    """Register ``mv``'s commit (its run and model path) as the next version of ``dst``."""
    return reg.register_commit(
        dst, mv.commit.encode(), mv.run_id, mv.path, description=mv.description, sign_tag=sign_tag
    )

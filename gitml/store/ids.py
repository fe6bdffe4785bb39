"""gitml's object ids and ref names as dulwich types them.

gitml passes ids and ref names as plain ``bytes`` throughout; dulwich's ``ObjectID``,
``RawObjectID`` and ``Ref`` are ``NewType``s of ``bytes`` (the same object at run time), so
the store hands them over through these casts, at dulwich's door, and the type check reads
dulwich's own annotations (its ``py.typed``) instead of skipping them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref


def oid(sha: bytes) -> ObjectID:
    """A 40-hex id (or 20-byte binary one) as dulwich's ``ObjectID``."""
    return cast("ObjectID", sha)


def oids(shas: Iterable[bytes]) -> list[ObjectID]:
    return cast("list[ObjectID]", list(shas))


def refname(name: bytes) -> Ref:
    """A ref's name (``refs/...``, ``HEAD``) as dulwich's ``Ref``."""
    return cast("Ref", name)

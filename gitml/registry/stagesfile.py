"""The committed desired state of the stages, ``.gitml/stages.yaml``, as git holds it: read
at a commit, and a change of it committed on a new branch (nothing in the work tree
changes). The store-level half of promotion by pull request; :mod:`gitml.gitops` (propose,
check, apply: it loads models) sits above and calls these with a :class:`Registry`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dulwich.objects import Blob, Commit

from gitml.errors import ConflictError, InvalidInputError
from gitml.registry.policy import STAGES_PATH, dump_stages, parse_stages, read_committed
from gitml.store.git import FILE_MODE, TREE_MODE, make_tree
from gitml.store.ids import oid

if TYPE_CHECKING:
    from gitml.registry.state import Registry


def head_of(reg: Registry) -> tuple[bytes, str | None]:
    """``(commit, branch)`` of the repository's HEAD. Raises InvalidInputError before the first commit."""
    head = reg.store.head()
    if head.commit is None:
        raise InvalidInputError("the repository has no commit yet: commit .gitml/stages.yaml first")
    return head.commit, head.branch


def desired_at(reg: Registry, commit: bytes | None) -> dict[str, dict[str, str]]:
    """``{model: {stage: version}}`` of ``.gitml/stages.yaml`` at ``commit`` (empty without one)."""
    data = read_committed(reg.store, commit, STAGES_PATH) if commit is not None else None
    return parse_stages(data, f"{STAGES_PATH} at {commit.decode()[:12] if commit else '?'}")


def commit_stages(reg: Registry, desired: dict[str, dict[str, str]], parent: bytes, branch: str, message: str) -> str:
    """Commit ``desired`` as ``.gitml/stages.yaml`` on ``parent``'s tree, on a new ``branch``;
    returns the commit's id. Raises ConflictError when the branch exists."""
    store = reg.store
    out: list = []
    blob = Blob.from_string(dump_stages(desired))
    out.append(blob)
    tree = _with_file(store, store.commit(parent).tree, STAGES_PATH.split("/"), blob.id, out)
    who = store.identity().as_bytes()
    now = int(time.time())
    commit = Commit()
    commit.tree, commit.parents = tree, [oid(parent)]
    commit.author = commit.committer = who
    commit.author_time = commit.commit_time = now
    commit.author_timezone = commit.commit_timezone = time.localtime(now).tm_gmtoff
    commit.message = message.encode()
    out.append(commit)
    store.write(out)
    if not store.cas(f"refs/heads/{branch}".encode(), None, commit.id):
        raise ConflictError(f"branch {branch} already exists")
    store.release_kept()
    return commit.id.decode()


def _with_file(store, tree_sha: bytes, parts: list[str], blob: bytes, out: list) -> bytes:
    entries = dict(store.tree(tree_sha)) if tree_sha else {}
    name = parts[0].encode()
    if len(parts) == 1:
        entries[name] = (FILE_MODE, blob)
    else:
        sub = entries.get(name)
        entries[name] = (
            TREE_MODE,
            _with_file(store, sub[1] if sub and sub[0] == TREE_MODE else b"", parts[1:], blob, out),
        )
    tree = make_tree(entries)
    out.append(tree)
    return tree.id

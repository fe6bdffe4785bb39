"""What a run's commits tell: its lineage, its code, and the difference of two runs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from gitml.names import RECORD_DIR
from gitml.store.git import GitStore
from gitml.store.worktree import GITLINK_MODE, tree_changes
from gitml.tracking.writer import TRAILER_RUN


@dataclass
class LogEntry:
    commit: str
    author: str
    time: int
    summary: str
    is_run_commit: bool


MAX_DIFF_FILE_BYTES = 1 << 20  # a file larger than this is named, not diffed (difflib on megabytes takes minutes)


def lineage(store: GitStore, run_commit: bytes, *, limit: int = 20) -> list[LogEntry]:
    """The run's own commits, newest first, then its source commit and history."""
    out: list[LogEntry] = []
    sha: bytes | None = run_commit
    source_seen = 0
    while sha is not None and source_seen < limit:
        commit = store.commit(sha)
        is_run = f"\n{TRAILER_RUN}: ".encode() in commit.message
        out.append(
            LogEntry(
                sha.decode(),
                commit.author.decode("utf-8", "replace"),
                commit.commit_time,
                commit.message.decode("utf-8", "replace").split("\n", 1)[0],
                is_run,
            )
        )
        if not is_run:
            source_seen += 1
        sha = store.first_parent(commit)  # None past a shallow clone's cut
    return out


def source_files(store: GitStore, run_commit: bytes) -> dict[str, tuple[int, bytes]]:
    """The files of the code that ran: the run tree without the run record."""
    files = store.files(store.commit(run_commit).tree)
    prefix = RECORD_DIR + "/"
    return {p: e for p, e in files.items() if not p.startswith(prefix)}


def code_diff(store: GitStore, old_commit: bytes | None, new_commit: bytes, *, labels: tuple[str, str]) -> str:
    """A unified diff of the code of two runs (binary files named, not shown);
    ``old_commit`` None: against an empty tree.

    Only the subtrees whose ids differ are read: the cost follows the difference.
    """
    old_tree = store.commit(old_commit).tree if old_commit else None
    new_tree = store.commit(new_commit).tree
    changes = tree_changes(store, old_tree, new_tree, skip=RECORD_DIR)
    out: list[str] = []
    for path, (old, new) in sorted(changes.items()):
        if old is not None and new is not None and old[1] == new[1]:
            continue  # only the mode changed
        sizes = [store.size(e[1]) or 0 for e in (old, new) if e and e[0] != GITLINK_MODE]
        if max(sizes, default=0) > MAX_DIFF_FILE_BYTES:  # a data file, or a teammate's zlib bomb: never read
            out.append(f"File {path} differs: {max(sizes)} bytes, over the {MAX_DIFF_FILE_BYTES} a diff shows\n")
            continue
        a = store.blob(old[1]) if old and old[0] != GITLINK_MODE else b""
        b = store.blob(new[1]) if new and new[0] != GITLINK_MODE else b""
        if b"\0" in a[:8000] or b"\0" in b[:8000]:
            out.append(f"Binary file {path} differs\n")
            continue
        out.extend(
            difflib.unified_diff(
                a.decode("utf-8", "replace").splitlines(keepends=True),
                b.decode("utf-8", "replace").splitlines(keepends=True),
                f"{labels[0]}/{path}" if old else "/dev/null",
                f"{labels[1]}/{path}" if new else "/dev/null",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def compare(a: dict, b: dict) -> list[tuple[str, object, object, bool]]:
    """``(key, a value, b value, changed)`` for the union of two mappings' keys."""
    return [(k, a.get(k), b.get(k), a.get(k) != b.get(k)) for k in sorted(set(a) | set(b))]

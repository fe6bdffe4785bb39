"""What the commands that work at git's level ask of a repository: the code runs ran
(diff, checkout), the refs that push and fetch share, and upkeep (recover, gc).

A mixin of :class:`gitml.Client`, kept beside it so ``client.py`` stays small. The CLI,
:mod:`gitml.sync` and the fluent API use these (and Client's tracking calls) instead of
reaching into the Tracker or the git store behind a Client:

>>> client = gitml.Client("path/to/repo")
>>> print(client.runs_code_diff("baseline", "tuned"))
>>> client.checkout_run("tuned", branch="try-tuned")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitml.errors import InvalidInputError
from gitml.names import EXPERIMENTS_PREFIX, RECORD_DIR

if TYPE_CHECKING:
    from gitml.artifacts.service import RunArtifacts
    from gitml.store.git import GitStore
    from gitml.tracking.entities import Run
    from gitml.tracking.tracker import Tracker


class RepoOperations:
    """Git-level operations; ``Client`` provides ``tracker``, ``artifacts`` and the store."""

    tracker: Tracker
    _store: GitStore

    @property
    def artifacts(self) -> RunArtifacts:  # pragma: no cover - Client's property replaces it
        raise NotImplementedError

    @property
    def store(self) -> GitStore:
        """The repository's git store (refs and objects), for code that moves them as git
        does: :mod:`gitml.sync`'s push and fetch."""
        return self._store

    def remote_names(self) -> list[str]:
        """The names of the git remotes configured in this repository (``git remote``)."""
        from gitml.store.remote import configured_remotes

        return sorted(configured_remotes(self._store))

    # -- the refs push and fetch share ----------------------------------------
    def run_refs(self, experiment_ids: list[str] | None = None) -> dict[bytes, bytes]:
        """``{run ref: commit}`` of the runs (of some experiments), this process's newest included."""
        return self.tracker.run_refs(experiment_ids)

    def settle_runs(self) -> None:
        """Commit now what this process buffered: the run refs read next hold every run it wrote."""
        self.tracker.settle()

    def run_ref(self, run_id: str) -> bytes:
        """The ref of a run (``refs/gitml/runs/<experiment>/<run>``). Raises RunNotFoundError."""
        return self.tracker.ref_of(run_id)

    def experiment_refs(self) -> dict[bytes, bytes]:
        """``{experiment ref: commit}`` of every experiment's record."""
        return self._store.refs_under(EXPERIMENTS_PREFIX)

    def merge_experiment(self, experiment_id: str, theirs: bytes) -> bool:
        """Join the record of an experiment made in another clone (commit ``theirs``) with
        ours; False when our ref moved meanwhile (see ``ExperimentRegistry.merge``)."""
        return self.tracker.experiments.merge(experiment_id, theirs)

    # -- the code of runs -------------------------------------------------------
    def runs_code_diff(self, run_a: str, run_b: str) -> str:
        """A unified diff from the code run ``run_a`` ran to the code ``run_b`` ran (their
        run commits' trees, uncommitted changes included), files labelled by short run ids."""
        from gitml.tracking.lineage import code_diff

        ids = [self.tracker.resolve(r) for r in (run_a, run_b)]
        a, b = (self.tracker.record(run_id)[1] for run_id in ids)
        return code_diff(self._store, a, b, labels=(ids[0][:8], ids[1][:8]))

    def checkout_run(self, run: str, *, branch: str | None = None) -> Run:
        """Put the code ``run`` ran in the work tree: its source commit (a detached HEAD, or
        a new ``branch`` there), then its uncommitted changes. Returns the run. Raises
        InvalidInputError when a branch is asked of a run that had no source commit, and
        when the work tree has uncommitted changes."""
        from gitml.store.worktree import restore

        r = self.tracker.get_run(self.tracker.resolve(run))
        ran = r.source
        source = ran.commit.encode() if ran is not None and ran.commit else None
        if source is None and branch:
            raise InvalidInputError(
                f"run {r.info.run_id[:8]} ran before the repository's first commit: there is no commit "
                f"to start branch {branch!r} at (check it out without -b)"
            )
        run_tree = self._store.commit(((ran and ran.run_commit) or "").encode()).tree
        restore(self._store, source, run_tree, branch=branch, skip=RECORD_DIR)
        return r

    # -- upkeep -------------------------------------------------------------------
    def recover_runs(self) -> list[str]:
        """Commit what killed processes left in their journals and mark their runs KILLED;
        the ids of the runs recovered (when this Client opened, and now)."""
        return self.tracker.recovered + self.tracker.recover()

    def drop_stale_temporaries(self, older_than: float) -> int:
        """Delete the half-written files killed processes left (in git's object folder and
        the artifact cache) from before ``older_than`` (a time); returns how many."""
        return self.artifacts.content.drop_stale_temporaries(older_than) + self._store.drop_stale_temporaries(older_than)

    def pack_run_refs(self) -> int:
        """Pack the loose refs of ended runs into packed-refs; returns how many."""
        return self.tracker.pack_refs(minimum=1)

"""Crash recovery: what a dead process's journal holds past each run's last commit is
committed, and its runs left RUNNING are marked KILLED (:func:`recover`, run as a
Tracker opens and by ``gitml recover``).

A journal whose process is alive is locked (:func:`gitml.runlog.journal.try_lock`):
its runs are left alone. A journal is deleted once every run it holds is committed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Set as AbstractSet
from typing import Callable

from gitml.errors import CorruptRecordError, GitmlError
from gitml.names import run_ref
from gitml.runlog import journal as jr
from gitml.runlog.entities import RunStatus
from gitml.runlog.group import is_group_journal
from gitml.runlog.writer import RunWriter, journal_trailers
from gitml.store.git import GitStore

log = logging.getLogger("gitml")

# (ref, run id, experiment id) -> an unjournaled writer of that run (the Tracker's)
WriterOf = Callable[[bytes, str, str], RunWriter]


def _now_ms() -> int:
    return int(time.time() * 1000)


def recover(store: GitStore, journal_dir: str, writer_of: WriterOf) -> list[str]:
    """Commit what dead processes' journals hold; mark their running runs KILLED.

    Returns the ids of the runs that changed.
    """
    try:
        names = sorted(n for n in os.listdir(journal_dir) if n.endswith(".log"))
    except FileNotFoundError:
        return []
    _drop_unfinished(journal_dir)
    recovered, dead = [], []
    live_runs: set[str] = set()
    for name in names:
        path = os.path.join(journal_dir, name)
        fd = jr.try_lock(path)
        if fd is None:  # its process is alive: note the runs it writes
            live_runs |= jr.registered_runs(path)
        else:
            dead.append((name, path, fd))
    for name, path, fd in dead:
        try:
            with open(path, "rb") as f:
                data = f.read()
            changed, failed = replay_journal(store, writer_of, name, data, live_runs)
            recovered += changed
            if failed:  # deleted only once every run it holds is committed: the next command tries again
                log.warning(
                    "gitml: journal %s is kept: %d run(s) could not be committed (%s)",
                    name,
                    len(failed),
                    "; ".join(f"{r}: {e}" for r, e in failed[:3]),
                )
            else:
                os.unlink(path)
        except CorruptRecordError as e:
            log.warning("gitml: cannot recover %s: %s", name, e)
        finally:
            os.close(fd)
    return recovered


STRAY_AFTER_SECONDS = 60  # a journal being made is renamed microseconds after it is created


def _drop_unfinished(journal_dir: str) -> None:
    """Delete the journals a killed process left half made (``.NAME.log.new``: created, not yet
    renamed; they hold no run's line). Only unlocked ones a minute old: one being made now is
    locked (in the moment before its lock, it is new)."""
    try:
        names = [n for n in os.listdir(journal_dir) if n.startswith(".") and n.endswith(".log.new")]
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(journal_dir, name)
        try:
            if time.time() - os.stat(path).st_mtime < STRAY_AFTER_SECONDS:
                continue
        except FileNotFoundError:
            continue
        fd = jr.try_lock(path)
        if fd is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)


def replay_journal(
    store: GitStore, writer_of: WriterOf, name: str, data: bytes, live_runs: AbstractSet[str] = frozenset()
) -> tuple[list[str], list[tuple[str, Exception]]]:
    """Commit what the journal ``name`` holds past each run's committed offset:
    ``(runs changed, [(run, error)] of those that could not be committed)``."""
    if not data:
        return [], []
    runs, entries = jr.replay(data, name)
    by_slot: dict[int, list[tuple[int, tuple]]] = {}
    for entry_slot, end, entry in entries:
        by_slot.setdefault(entry_slot, []).append((end, entry))
    changed: list[str] = []
    failed: list[tuple[str, Exception]] = []
    for slot, (experiment_id, run_id) in runs.items():
        try:
            if _replay_run(store, writer_of, name, len(data), experiment_id, run_id, by_slot.get(slot, []), live_runs):
                changed.append(run_id)
        except (GitmlError, OSError) as e:
            failed.append((run_id, e))
    return changed, failed


def _replay_run(
    store: GitStore,
    writer_of: WriterOf,
    name: str,
    size: int,
    experiment_id: str,
    run_id: str,
    entries: list[tuple[int, tuple]],
    live_runs: AbstractSet[str],
) -> bool:
    """Commit one run's journaled lines that its ref's commit lacks; True if it changed."""
    ref = run_ref(experiment_id, run_id)
    commit = store.ref(ref)
    offset = journal_trailers(store.commit(commit).message).get(name, 0) if commit else 0
    writer = writer_of(ref, run_id, experiment_id)
    for end, entry in entries:
        if end > offset:
            writer.apply(entry)
    if commit is None and writer._create is None:
        # its creation is in no journal and no ref holds it: the run was deleted for good
        log.warning("gitml: journal %s names run %s, which does not exist", name, run_id)
        return False
    status = writer._meta.get("status", writer.record().meta.get("status"))
    if status == RunStatus.RUNNING and run_id not in live_runs and not is_group_journal(name):
        # not while another live process may own it; nor for a process that wrote to it, not owning it
        writer._meta.update(status=RunStatus.KILLED, end_time=writer._meta.get("end_time") or _now_ms())
    if not writer.pending():
        return False
    writer.flush(journal_name=name, journal_offset=size)
    return True

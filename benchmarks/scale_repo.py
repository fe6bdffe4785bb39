"""Build (once) a repository of N real gitml runs, W2-shaped, across 50 experiments.

    python benchmarks/scale_repo.py N DIR

Each run is what ``with gitml.start_run(): log_params(10); log_metrics(10); set_tags(5)``
makes (FINISHED, its record and history files grafted on the source commit's tree),
built with gitml's own record, tree and pack writers in batches instead of one process
call per run: building 100,000 runs through the API takes ~25 minutes here, this ~2.
Refs go into ``packed-refs`` (as gitml's committer leaves ended runs), each run's
search row into the index (as the writer of each commit does), and the packs are
merged as gitml's geometric merging merges them while runs accumulate.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tracking_workloads import init_git_repo, run_data  # noqa: E402

EXPERIMENTS = 50
BATCH = 2000


def experiment_names(count: int = EXPERIMENTS) -> list[str]:
    return [f"scale-{i:02d}" for i in range(count)]


def build(n: int, path: str, experiments: int = EXPERIMENTS) -> None:
    from gitml.names import run_ref
    from gitml.runlog.entities import LifecycleStage, RunStatus
    from gitml.runlog.record import RunRecord
    from gitml.runlog.rows import row_of
    from gitml.runlog.tracker import Tracker
    from gitml.runlog.writer import graft_record, make_commit
    from gitml.store.git import open_store
    from gitml.store.refs import lock_packed_refs, read_packed_refs, write_packed_refs

    os.makedirs(path, exist_ok=True)
    init_git_repo(path)
    store = open_store(path)
    tracker = Tracker(store)
    ids = [tracker.experiments.create(name) for name in experiment_names(experiments)]
    head = store.head()
    source = head.commit
    source_tree = store.commit(source).tree
    start = 1_700_000_000_000
    refs: dict[bytes, bytes] = {}
    rows = []
    objects: list = []
    t0 = time.perf_counter()
    for i, (params, metrics, tags) in enumerate(run_data(n)):
        run_id = hashlib.sha256(b"%d-%d" % (n, i)).hexdigest()[:32]
        experiment_id = ids[i % len(ids)]
        t = start + i * 1000
        meta = {
            "run_id": run_id,
            "run_name": f"run-{i}",
            "experiment_id": experiment_id,
            "status": RunStatus.FINISHED,
            "user_id": "bench",
            "start_time": t,
            "end_time": t + 500,
            "lifecycle_stage": LifecycleStage.ACTIVE,
            "artifact_uri": f"runs:/{run_id}",
            "source": {"commit": source.decode(), "branch": "main", "dirty": False, "name": "train.py"},
        }
        record = RunRecord(meta=meta, params=dict(params), tags=dict(tags))
        for key, value in metrics.items():
            record.append_points(store, key, [(0, t + 100, value)])
        tree = graft_record(store, source_tree, record, objects)
        message = f"gitml: run run-{i} FINISHED\n\nGitml-Run: {run_id}\n"
        commit = make_commit(store, tree, [source], message)
        objects.append(commit)
        ref = run_ref(experiment_id, run_id)
        refs[ref] = commit.id
        rows.append((ref, commit.id, row_of(record)))
        if len(rows) >= BATCH:
            store.write(objects)
            tracker.index.put_many(rows)
            objects, rows = [], []
            print(f"  {i + 1} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    store.write(objects)
    tracker.index.put_many(rows)
    with lock_packed_refs(store.commondir) as f:
        packed = read_packed_refs(store.commondir)
        packed.update(refs)
        write_packed_refs(f, packed)
    store.release_kept(every=True)
    consolidate_packs(path)
    store.refresh_refs()
    with tracker.index.reading():  # the first search writes the index's columnar snapshot
        tracker.table()
    tracker.close()
    store.close()


def consolidate_packs(path: str) -> int:
    """Merge the batches' packs as gitml's geometric merging would have merged them had the
    runs been written one by one (the batches' packs carry .keep files while they are
    written, so no merge happens during the build): 100 packs of 4 MB become ~10.
    The packs merged away are deleted at once (nothing else reads this repository yet).
    Returns how many packs remain."""
    from gitml.store.packs import maybe_merge_small_packs

    pack_dir = os.path.join(path, ".git", "objects", "pack")
    retired_dir = os.path.join(path, ".git", "gitml", "retired")
    while maybe_merge_small_packs(pack_dir, os.path.join(path, ".git", "gitml", "repack.lock")):
        for name in os.listdir(retired_dir):
            for ext in (".idx", ".pack"):
                os.unlink(os.path.join(pack_dir, name + ext))
            os.unlink(os.path.join(retired_dir, name))
    return sum(n.endswith(".pack") for n in os.listdir(pack_dir))


if __name__ == "__main__":
    build(int(sys.argv[1]), os.path.abspath(sys.argv[2]))

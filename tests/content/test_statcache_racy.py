"""A file rewritten to the same size right after it was logged is logged with its new bytes: the
stat cache never takes a "racily clean" file (changed within a clock tick of its hashing) for the
bytes it hashed before, as git's index does not."""

from __future__ import annotations

import hashlib

import gitml
import gitml.ops


def test_same_size_rewrites_in_quick_succession_log_their_own_bytes(repo):
    path = repo / "weights.bin"
    logged = {}
    for i in range(30):  # several writes within one tick of the file system's clock
        data = bytes([i]) * 100_000  # over the inline limit: the hash alone decides
        path.write_bytes(data)
        with gitml.start_run(run_name=f"r{i}") as run:
            gitml.log_artifact(str(path))
        logged[run.info.run_id] = hashlib.sha256(data).hexdigest()
    with gitml.ops.Operations(repo) as c:
        for run_id, sha in logged.items():
            assert c.artifact_manifest(run_id)["weights.bin"]["sha256"] == sha


def test_an_unchanged_old_file_is_not_hashed_again(repo, monkeypatch):
    import os
    import time

    path = repo / "data.bin"
    path.write_bytes(b"d" * 100_000)
    old = time.time() - 60
    os.utime(path, (old, old))
    with gitml.start_run():
        gitml.log_artifact(str(path))
    from gitml.content import cache

    hashed = []
    real = cache._copy_hashing
    monkeypatch.setattr(cache, "_copy_hashing", lambda *a: hashed.append(a) or real(*a))
    with gitml.start_run():
        gitml.log_artifact(str(path))
    assert hashed == []  # the stat cache answered: the file is settled (its ctime aside, as git)

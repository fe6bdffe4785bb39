"""Packs and journals under many writers, a full disk, git's own gc, shared
repositories and a dulwich without its C extension."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import gitml
from gitml.store import packs
from tests.conftest import ROOT, git, run_python

WRITER = """
import sys, gitml
run_id, worker, points = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = gitml.Client(flush_interval=0.0)  # every point is its own commit and pack
for step in range(points):
    client.log_metric(run_id, f"w{worker}", step, step=step)
client.close()
"""


def _blob(text: bytes) -> tuple[bytes, int, bytes]:
    return packs.object_id(3, text).hex().encode(), 3, text


def _spawn(repo, code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=repo, env=env, stderr=subprocess.PIPE)


@pytest.mark.parametrize("processes, points", [(16, 10), (32, 6)])
def test_many_processes_logging_to_one_run_lose_nothing(repo, processes, points):
    """Packs merged while other processes read them are retired, not deleted: no writer
    finds an object missing (4-5 of 16 did), and every point is recorded."""
    with gitml.Client(repo) as client:
        run_id = client.create_run("0").info.run_id
    # small packs already crowd the first tier: merges start with the first writes
    for i in range(packs.PACKS_PER_TIER - 1):
        packs.write_pack(str(repo / ".git/objects/pack"), [_blob(b"filler %d" % i)])
    procs = [_spawn(repo, WRITER, run_id, w, points) for w in range(processes)]
    errors = [p.stderr.read().decode() for p in procs if p.wait(timeout=300) != 0]
    assert not errors, errors[0][-2000:]
    with gitml.Client(repo) as client:
        for w in range(processes):
            assert [m.step for m in client.get_metric_history(run_id, f"w{w}")] == list(range(points))
    assert os.listdir(repo / ".git/gitml/retired"), "no pack was merged: the test proves nothing"
    assert not [n for n in os.listdir(repo / ".git/objects/pack") if n.endswith(".keep")]
    git(repo, "fsck", "--strict")


def test_a_retired_pack_is_deleted_after_its_grace_period(repo):
    pack_dir = str(repo / ".git/objects/pack")
    lock = str(repo / ".git/gitml/repack.lock")
    for i in range(packs.PACKS_PER_TIER):
        packs.write_pack(pack_dir, [_blob(b"blob %d" % i)])
    assert packs.maybe_merge_small_packs(pack_dir, lock)
    retired = os.listdir(repo / ".git/gitml/retired")
    assert len(retired) == packs.PACKS_PER_TIER
    assert all(os.path.exists(os.path.join(pack_dir, name + ".pack")) for name in retired)  # still readable
    assert not packs.maybe_merge_small_packs(pack_dir, lock)  # retired packs are not merged again
    old = os.stat(repo / ".git/gitml/retired" / retired[0]).st_mtime - packs.RETIRED_GRACE_SECONDS - 1
    for name in retired:
        os.utime(repo / ".git/gitml/retired" / name, (old, old))
    packs.maybe_merge_small_packs(pack_dir, lock)
    assert os.listdir(repo / ".git/gitml/retired") == []
    assert sorted(n for n in os.listdir(pack_dir) if n.endswith(".pack")) == [
        n for n in sorted(os.listdir(pack_dir)) if n.endswith(".pack") and n[:-5] not in retired
    ]
    assert len([n for n in os.listdir(pack_dir) if n.endswith(".pack")]) == 1
    merged = [n for n in os.listdir(pack_dir) if n.endswith(".idx")][0]
    assert _blob(b"blob 3")[0].decode() in git(repo, "verify-pack", "-v", os.path.join(pack_dir, merged))


def test_settling_deletes_the_packs_this_process_retired_and_keeps_anothers_within_its_grace(repo):
    """A long process's end (``packs.settle``): its small packs rolled up into a geometric
    progression, the packs it merged away deleted at once (as ``git repack -d``), a pack
    another process retired a moment ago kept for that process's readers."""
    pack_dir = str(repo / ".git/objects/pack")
    lock = str(repo / ".git/gitml/repack.lock")
    for i in range(packs.PACKS_PER_TIER):
        packs.write_pack(pack_dir, [_blob(b"blob %d" % i)])
    assert packs.maybe_merge_small_packs(pack_dir, lock)  # this process retires 16 packs
    mine = set(os.listdir(repo / ".git/gitml/retired"))
    others = packs.write_pack(pack_dir, [_blob(b"blob 0"), _blob(b"blob 1")])  # as another process merged them
    other = os.path.basename(others)
    (repo / ".git/gitml/retired" / other).touch()
    for i in range(40):  # small packs of growing sizes, some alike: not a progression
        packs.write_pack(pack_dir, [_blob(b"x%d " % i + os.urandom(200 * (1 + i // 4)))])
    merged, deleted = packs.settle(pack_dir, lock)
    assert merged >= 2 and deleted == len(mine) + merged
    assert os.listdir(repo / ".git/gitml/retired") == [other]  # within its grace: another process's readers
    assert os.path.exists(others + ".pack")
    live = [n for n in os.listdir(pack_dir) if n.endswith(".pack") and n[:-5] != other]
    sizes = sorted(os.path.getsize(os.path.join(pack_dir, n)) for n in live)
    assert all(big >= packs.SETTLE_FACTOR * sum(sizes[:i]) for i, big in enumerate(sizes) if i), sizes
    assert len(sizes) <= 4, sizes
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    assert int(counts["packs"]) == len(sizes) + 1 and int(counts["in-pack"]) >= 16 + 40
    git(repo, "fsck", "--strict")
    for i in range(packs.PACKS_PER_TIER):  # every object still there, in one pack each
        assert git(repo, "cat-file", "-p", _blob(b"blob %d" % i)[0].decode()) == "blob %d" % i


def test_a_push_whose_listing_of_packs_predates_a_merge_reads_from_the_merged_pack(repo, monkeypatch):
    """The entries a push copies are read pack by pack from a listing of the packs; a pack
    merged away and deleted between that listing and its reading (a long process settling
    as the push starts) is left, and the packs listed again, as git's reprepare_packed_git."""
    import glob

    from dulwich.repo import Repo

    from gitml.store.entries import PackEntries

    pack_dir = str(repo / ".git/objects/pack")
    lock = str(repo / ".git/gitml/repack.lock")
    blobs = [_blob(b"blob %d" % i) for i in range(packs.PACKS_PER_TIER)]
    for blob in blobs:
        packs.write_pack(pack_dir, [blob])
    before = sorted(glob.glob(os.path.join(pack_dir, "*.idx")))
    assert packs.maybe_merge_small_packs(pack_dir, lock)
    assert packs.settle(pack_dir, lock)[1] == packs.PACKS_PER_TIER  # the 16 deleted: only the merged one is left
    listings = iter([before])  # the first listing is the one taken before the merge
    real_glob = glob.glob
    monkeypatch.setattr(glob, "glob", lambda pattern: next(listings, None) or real_glob(pattern))
    with Repo(str(repo)) as r, PackEntries(r) as entries:
        for sha, type_num, raw in blobs:
            assert entries.has(sha) and entries.raw(sha) == (type_num, raw)


ONE_RUN = """
import gitml
with gitml.start_run():
    gitml.log_param("a", 1)
"""


def test_processes_that_each_make_one_run_keep_the_packs_few(repo):
    """Most processes write once (a training script, one run): each checks the packs at its
    first write, so they are merged (a CLI-only user had one pack per run, hundreds of them)."""
    for _ in range(packs.PACKS_PER_TIER + 4):
        run_python(ONE_RUN, repo)
    pack_dir = repo / ".git/objects/pack"
    retired = set(os.listdir(repo / ".git/gitml/retired"))
    live = [n for n in os.listdir(pack_dir) if n.endswith(".pack") and n[:-5] not in retired]
    assert len(live) < packs.PACKS_PER_TIER, live
    git(repo, "fsck", "--strict")


FULL_DISK = """
import glob, os, resource, gitml
from gitml.errors import GitmlError
run_id = gitml.start_run().info.run_id  # GITML_FLUSH_INTERVAL=3600: the journal alone holds the points
gitml.log_metric("loss", 0.0, step=0)
[journal] = glob.glob(".git/gitml/journal/*.log")
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(journal) + 3000, resource.RLIM_INFINITY))
acked = 1
try:
    for step in range(1, 100000):
        gitml.log_metric("loss", 0.123456789 * step, step=step)
        acked += 1
except GitmlError as e:
    print(run_id, acked, str(e), flush=True)
    os._exit(0)  # dies with the run open: the next command recovers it
os._exit(1)
"""


def test_a_full_disk_fails_the_call_and_keeps_every_acknowledged_point(repo):
    """A short write (the file size limit, as a full disk) raises a clear error naming
    the journal, and the journal keeps exactly the points of the calls that returned."""
    out = run_python(FULL_DISK, repo, env={"GITML_FLUSH_INTERVAL": "3600"}).stdout.split(" ", 2)
    run_id, acked, message = out[0], int(out[1]), out[2]
    assert "could not write the journal" in message and ".git/gitml/journal/" in message
    assert acked > 10
    with gitml.Client(repo) as client:  # recovery replays the journal
        history = client.get_metric_history(run_id, "loss")
        assert [m.step for m in history] == list(range(acked))
        assert client.get_run(run_id).info.status == "KILLED"
    git(repo, "fsck", "--strict")


def test_a_pack_is_fsynced_before_it_is_renamed_and_its_folder_after(tmp_path, monkeypatch):
    """git's order: pack data synced, index synced, renamed (pack first), folder synced."""
    pack_dir = tmp_path / "repo.git" / "objects" / "pack"
    pack_dir.mkdir(parents=True)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    base = packs.write_pack(str(pack_dir), [_blob(b"data")])
    assert base is not None
    kinds = [(kind, path.rsplit("_", 1)[-1] if "tmp_gitml_" in path else path) for kind, path in events]
    assert kinds == [
        ("fsync", "pack"),
        ("fsync", "idx"),
        ("rename", base + ".pack"),
        ("rename", base + ".idx"),
        ("fsync", str(pack_dir)),
    ]


@pytest.mark.parametrize(
    "setting, pack_mode, ref_mode",
    [
        (None, 0o444, 0o644),
        ("group", 0o444, 0o664),
        ("all", 0o444, 0o664),
        ("0640", 0o440, 0o640),
        ("0600", 0o400, 0o600),
    ],
)
def test_files_follow_core_shared_repository(repo, setting, pack_mode, ref_mode):
    """Packs and indexes are read-only as git writes them; core.sharedRepository widens
    or sets the modes as git's adjust_shared_perm does (umask 022)."""
    if setting:
        git(repo, "config", "core.sharedRepository", setting)
    old = os.umask(0o022)
    try:
        with gitml.Client(repo) as client:
            run = client.create_run("0")
            client.log_metric(run.info.run_id, "m", 1.0)
            client.set_terminated(run.info.run_id)
    finally:
        os.umask(old)
    pack_dir = repo / ".git/objects/pack"
    made = [n for n in os.listdir(pack_dir) if n.endswith((".pack", ".idx"))]
    assert made
    for name in made:
        assert stat.S_IMODE(os.stat(pack_dir / name).st_mode) == pack_mode, name
    # git, writing a ref in the same repository, agrees on the mode of a ref gitml wrote
    git(repo, "update-ref", "refs/heads/probe", "HEAD")
    assert stat.S_IMODE(os.stat(repo / ".git/refs/heads/probe").st_mode) == ref_mode
    run_ref = repo / ".git/refs/gitml/runs/0" / run.info.run_id
    assert stat.S_IMODE(os.stat(run_ref).st_mode) == ref_mode
    git(repo, "fsck", "--strict")


def test_an_unknown_shared_repository_value_is_a_clear_error(tmp_path):
    from gitml.errors import RepositoryError
    from gitml.store.perms import parse_shared

    assert parse_shared("group") == 0o660 and parse_shared("0664") == -0o664 and parse_shared("umask") == 0
    with pytest.raises(RepositoryError, match="sharedRepository"):
        parse_shared("sometimes")
    with pytest.raises(RepositoryError, match="owner"):
        parse_shared("0440")


PURE_PYTHON_UNPACK = """
import sys, builtins
real_import = builtins.__import__
def no_native(name, *args, **kwargs):
    if name.startswith("dulwich._"):
        raise ImportError("no native dulwich here: " + name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = no_native  # as a dulwich installed without its Rust extensions
import os
from dulwich.repo import Repo
from gitml.store.unpack import store_received_pack
import dulwich.pack
assert not type(dulwich.pack.apply_delta).__name__.startswith("builtin"), dulwich.pack.apply_delta
target, received = sys.argv[1], sys.argv[2]
with Repo(target) as repo:
    def local_raw(sha):
        try:
            return repo.object_store.get_raw(sha)
        except KeyError:
            return None
    print(store_received_pack(os.path.join(target, "objects", "pack"), received, local_raw))
"""


def test_a_thin_pack_with_deltas_unpacks_without_dulwichs_native_code(tmp_path):
    from tests.store.test_unpack import make_history, pack_of

    shas = make_history(tmp_path / "source", versions=4)
    target = tmp_path / "target"
    git(tmp_path, "clone", "-q", "--bare", "--no-local", str(tmp_path / "source"), str(target))
    git(target, "update-ref", "refs/heads/main", shas[1])
    git(target, "gc", "-q", "--prune=now")
    data = pack_of(tmp_path / "source", [shas[-1], f"^{shas[1]}"], thin=True)
    assert data[:4] == b"PACK"
    received = tmp_path / "received.pack"
    received.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-c", PURE_PYTHON_UNPACK, str(target), str(received)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == int.from_bytes(data[8:12], "big")
    git(target, "update-ref", "refs/heads/main", shas[-1])
    git(target, "fsck", "--strict")
    assert git(target, "rev-list", "--count", "main").strip() == "4"


LOGGER = """
import sys, gitml
run_id, points = sys.argv[1], int(sys.argv[2])
client = gitml.Client(flush_interval=0.0)
for step in range(points):
    client.log_metric(run_id, "m", step, step=step)
    client.set_tag(run_id, "step", str(step))
client.set_terminated(run_id)
client.close()
"""


@pytest.mark.parametrize("command", [["gc", "-q", "--prune=now"], ["repack", "-a", "-d", "-q"]])
def test_git_gc_while_a_run_is_logged(repo, command):
    """Packs not yet reachable from a ref carry a .keep until the ref moves, so git's
    gc and repack running meanwhile drop nothing; readers find the repacked objects."""
    with gitml.Client(repo) as client:
        run_id = client.create_run("0").info.run_id
    logger = _spawn(repo, LOGGER, run_id, 60)
    rounds = 0
    while logger.poll() is None:
        git(repo, *command)
        rounds += 1
    assert logger.returncode == 0, logger.stderr.read().decode()[-2000:]
    assert rounds >= 2
    git(repo, *command)
    with gitml.Client(repo) as client:
        assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(60))
        assert client.get_run(run_id).data.tags["step"] == "59"
    git(repo, "fsck", "--strict")
    assert not [n for n in os.listdir(repo / ".git/objects/pack") if n.endswith(".keep")]


SWEEP = """
import sys, gitml
gitml.set_experiment("sweep")
for i in range(int(sys.argv[1])):
    with gitml.start_run():
        gitml.log_params({"i": str(i), "p": "x"})
        gitml.log_metrics({"m": i * 0.5, "n": 1.0})
        gitml.set_tags({"t": "y"})
"""


def test_git_gc_while_many_short_runs_commit_in_overlapping_batches(repo):
    """The committer writes the next batch's pack while the last batch's refs still move: each
    pack keeps its .keep until its own refs have moved (not another batch's), so `git gc
    --prune=now` looping beside a sweep of short runs drops nothing."""
    sweeper = _spawn(repo, SWEEP, 600)
    rounds = 0
    while sweeper.poll() is None:
        git(repo, "gc", "-q", "--prune=now")
        rounds += 1
    assert sweeper.returncode == 0, sweeper.stderr.read().decode()[-2000:]
    assert rounds >= 1
    git(repo, "gc", "-q", "--prune=now")
    git(repo, "fsck", "--strict")
    with gitml.Client(repo) as client:
        runs = client.search_runs(experiment_names=["sweep"], max_results=1000)
        assert sorted(int(r.data.params["i"]) for r in runs) == list(range(600))
        assert {(r.data.metrics["m"], r.info.status) for r in runs} == {(i * 0.5, "FINISHED") for i in range(600)}
    assert not [n for n in os.listdir(repo / ".git/objects/pack") if n.endswith(".keep")]


def test_a_named_pack_keeps_the_others_kept(repo):
    """``release_kept`` of the packs a caller names drops their .keep files alone: the committer's
    next batch, written by the same thread, stays kept until its refs move."""
    from gitml.store.git import open_store
    from gitml.store.packs import RawObject

    with open_store(repo) as store:
        first = store.write([RawObject(3, b"first batch\n")])
        second = store.write([RawObject(3, b"second batch\n")])
        assert first and second and os.path.exists(first + ".keep") and os.path.exists(second + ".keep")
        store.release_kept([first])
        assert not os.path.exists(first + ".keep") and os.path.exists(second + ".keep")
        store.release_kept([second, None])
        assert not os.path.exists(second + ".keep")

"""Refs at scale and ref locks: packing 10,000 run refs under a low open-file limit,
and locks that are never broken while their owner may live."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest

import gitml
import gitml.ops
import gitml.store.refs as refs_module
from gitml.errors import RepositoryError
from gitml.store.git import open_store
from gitml.store.locks import LockFile
from tests.conftest import ROOT, git, run_python

META = """artifact_uri: "runs:/{run_id}"
end_time: 1700000001000
experiment_id: "0"
lifecycle_stage: active
run_id: "{run_id}"
run_name: run-{i}
start_time: 1700000000000
status: FINISHED
user_id: tester
"""


def import_runs(path, count: int) -> dict[bytes, bytes]:
    """``count`` finished runs, each its own commit and loose ref, made by ``git fast-import``."""
    head = git(path, "rev-parse", "HEAD").strip()
    stream = ["blob", "mark :1", "data 3", "{}", ""]
    for i in range(count):
        run_id = f"{i:032x}"
        meta = META.format(run_id=run_id, i=i).encode()
        message = f"gitml: run run-{i} FINISHED\n\nGitml-Run: {run_id}\n"
        stream += [
            f"commit refs/gitml/runs/0/{run_id}",
            "committer Test User <test@example.com> 1700000000 +0000",
            f"data {len(message.encode())}",
            message,
            f"from {head}",
            f"M 100644 inline .gitml/run/meta.yaml\ndata {len(meta)}\n{meta.decode()}",
            *(f"M 100644 :1 .gitml/run/{name}.yaml" for name in ("params", "metrics", "tags")),
            "",
        ]
    git(path, "fast-import", "--quiet", input_text="\n".join(stream) + "\n")
    return listed_by_git(path)


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def listed_by_git(path) -> dict[bytes, bytes]:
    listed = git(path, "for-each-ref", "--format=%(objectname) %(refname)", "refs/gitml/runs/")
    return {name.encode(): sha.encode() for sha, name in (line.split(" ") for line in listed.splitlines())}


PACK_ALL = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from gitml.store.git import open_store
with open_store(sys.argv[1]) as store:
    print(store.pack_refs(sorted(store.refs_under("refs/gitml/runs/"))))
"""


def test_ten_thousand_refs_are_packed_under_a_low_open_file_limit(repo):
    """git pack-refs holds packed-refs.lock alone and prunes loose refs one lock at a
    time; gitml held a lock per ref and failed with "Too many open files"."""
    head = git(repo, "rev-parse", "HEAD").strip()
    names = [f"refs/gitml/runs/{i % 7}/{i:032x}" for i in range(10_000)]
    git(repo, "update-ref", "--stdin", input_text="".join(f"create {n} {head}\n" for n in names))
    result = subprocess.run(
        [sys.executable, "-c", PACK_ALL, str(repo)],
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == "10000", result.stderr
    assert not [p for p in (repo / ".git" / "refs" / "gitml").rglob("*") if p.is_file()], "loose refs left"
    expected = {n.encode(): head.encode() for n in names}
    assert listed_by_git(repo) == expected
    assert len(git(repo, "show-ref", "--verify", *names).splitlines()) == 10_000
    git(repo, "fsck", "--strict")
    with open_store(repo) as store:
        assert store.refs_under("refs/gitml/runs/") == expected


def test_gc_packs_finished_runs_under_a_low_open_file_limit(repo):
    runs = import_runs(repo, 400)  # more than the 256 files the process may open
    result = subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", "gc"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        preexec_fn=_low_file_limit,
    )
    assert result.returncode == 0 and "packed 400 run ref" in result.stdout, result.stdout + result.stderr
    assert not [p for p in (repo / ".git" / "refs" / "gitml" / "runs").rglob("*") if p.is_file()], "loose refs left"
    assert listed_by_git(repo) == runs
    git(repo, "fsck", "--strict")
    with open_store(repo) as store:
        assert store.refs_under("refs/gitml/runs/") == runs


def test_a_ref_being_written_while_refs_are_packed_keeps_its_new_value(repo):
    runs = import_runs(repo, 20)
    busy = sorted(runs)[3]
    other = runs[sorted(runs)[4]]
    with open_store(repo) as store:
        path = os.path.join(store.commondir, *busy.decode().split("/"))
        held = LockFile(path, store.commondir)  # a writer between taking the ref's lock and renaming it
        try:
            assert store.pack_refs(sorted(runs)) == 20
        finally:
            held.write(other + b"\n")
            held.close()
        assert os.path.exists(path)  # left loose: it was locked when its turn came
    assert git(repo, "rev-parse", busy.decode()).strip() == other.decode()
    assert git(repo, "rev-parse", sorted(runs)[5].decode()).strip() == runs[sorted(runs)[5]].decode()
    git(repo, "fsck", "--strict")


def test_a_lock_gitml_does_not_know_is_never_broken(repo, monkeypatch):
    """A slow git holding packed-refs.lock or a ref's lock, however old: gitml waits,
    then names the lock file, and leaves it (and packed-refs) as they are."""
    runs = import_runs(repo, 3)
    name = sorted(runs)[0]
    git(repo, "pack-refs", "--all")
    packed = (repo / ".git" / "packed-refs").read_bytes()
    lock = repo / ".git" / "packed-refs.lock"
    lock.write_bytes(packed[: len(packed) // 2])  # half written by git, which is still at it
    old = time.time() - 3600
    os.utime(lock, (old, old))
    monkeypatch.setattr(refs_module, "PACKED_REFS_TIMEOUT", 0.3)
    git(repo, "update-ref", "refs/gitml/runs/0/loose", runs[name].decode())
    with open_store(repo) as store:
        with pytest.raises(RepositoryError, match=r"packed-refs\.lock has existed .*no git process .*remove that file"):
            store.pack_refs([b"refs/gitml/runs/0/loose"])
        assert lock.read_bytes() == packed[: len(packed) // 2]
        assert (repo / ".git" / "packed-refs").read_bytes() == packed
        lock.unlink()
        ref_lock = repo / ".git" / name.decode()
        ref_lock = ref_lock.with_name(ref_lock.name + ".lock")
        ref_lock.write_bytes(b"")
        os.utime(ref_lock, (old, old))
        with pytest.raises(RepositoryError, match=f"{name.decode()} stayed locked .*{ref_lock.name} exists; no gitml"):
            store.cas(name, runs[name], runs[sorted(runs)[1]], timeout=0.3)
        assert ref_lock.exists()
    assert git(repo, "rev-parse", name.decode()).strip() == runs[name].decode()


HOLDER = """
import sys
from gitml.store.git import open_store
from gitml.store.locks import LockFile
store = open_store(sys.argv[1])
lock = LockFile(sys.argv[2], store.commondir)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_of_a_running_gitml_is_kept_and_one_of_a_dead_gitml_is_removed(repo, caplog):
    runs = import_runs(repo, 2)
    name, new = sorted(runs)[0], runs[sorted(runs)[1]]
    path = os.path.join(repo, ".git", *name.decode().split("/"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(repo), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT},
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with open_store(repo) as store:
            with pytest.raises(RepositoryError, match=f"gitml process {holder.pid} .* still running"):
                store.cas(name, runs[name], new, timeout=0.3)
            assert os.path.exists(path + ".lock")
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            assert store.cas(name, runs[name], new, timeout=5)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert "which died holding it" in caplog.text and not os.path.exists(path + ".lock")
    assert git(repo, "rev-parse", name.decode()).strip() == new.decode()
    owners = os.listdir(os.path.join(repo, ".git", "gitml", "locks"))
    assert all(not o.split(".")[1] == str(holder.pid) for o in owners)  # the dead process's owner file is gone


def test_one_ref_is_read_as_git_reads_it(repo):
    """``GitStore.ref``: the loose file, else packed-refs; symbolic refs, odd names and
    HEAD through dulwich; every answer as ``git rev-parse`` gives it."""
    runs = import_runs(repo, 6)
    names = sorted(runs)
    for tag in ("v1", "v10", "xv1"):  # one name the start or the end of another
        git(repo, "tag", tag, "HEAD~0" if tag != "v10" else names[0].decode())
    git(repo, "pack-refs", "--all")
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", names[1].decode(), head)  # loose, over its packed line
    git(repo, "update-ref", "-d", names[2].decode())  # gone from packed-refs
    git(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/" + git(repo, "branch", "--show-current").strip())
    os.makedirs(repo / ".git" / "refs" / "gitml" / "runs" / "0" / ("f" * 32))  # a folder where a ref could be
    asked = [
        *names,
        b"refs/tags/v1",
        b"refs/tags/v10",
        b"refs/tags/v",
        b"refs/tags/xv1",
        b"refs/heads/alias",
        b"HEAD",
        b"refs/gitml/runs/0/" + b"f" * 32,
        b"refs/gitml/../../HEAD",
        b"refs/gitml/x.lock",
        b"refs/nothing",
    ]
    with open_store(repo) as store:
        for name in asked:
            expected = git(repo, "rev-parse", "--verify", "-q", name.decode(), check=False).strip() or None
            if name.startswith(b"refs/gitml/.."):
                expected = None  # not a ref name: git resolves it as a path, gitml never
            got = store.ref(name)
            assert (got.decode() if got else None) == expected, name


def test_reading_one_ref_among_100000_packed_ones_does_not_check_every_line(repo, monkeypatch):
    """dulwich parsed packed-refs once per process with a name check per line: 1.3-5 s
    before ``gitml show`` or the first run of a process in a repository of 100,000 runs."""
    from dulwich.refs import DiskRefsContainer

    def parse(self):
        raise AssertionError("dulwich parsed packed-refs")

    monkeypatch.setattr(DiskRefsContainer, "get_packed_refs", parse)
    head = git(repo, "rev-parse", "HEAD").strip()
    names = sorted(f"refs/gitml/runs/{i % 50}/{i:032x}" for i in range(100_000))
    with open(repo / ".git" / "packed-refs", "w") as f:
        f.write("# pack-refs with: peeled fully-peeled sorted \n")
        f.writelines(f"{head} {name}\n" for name in names)
    assert git(repo, "rev-parse", names[777]).strip() == head
    with open_store(repo) as store:
        assert store.ref(names[777].encode()) == head.encode()  # found without dulwich's parse (above)
        assert store.ref(b"refs/gitml/runs/0/" + b"e" * 32) is None


def test_the_loose_run_refs_of_many_short_processes_are_packed(repo):
    """Each process counts the loose run refs (every process's) when its first run ends:
    runs made one process at a time do not pile up loose refs for every search to look at."""
    ids = []
    for i in range(7):
        out = run_python(
            f"""
import gitml, gitml.runlog.tracker
gitml.runlog.tracker.PACK_REFS_AFTER = 4
with gitml.start_run(run_name="r{i}") as run:
    gitml.log_param("p", {i})
print(run.info.run_id)
""",
            repo,
        )
        ids.append(out.stdout.split()[-1])
    loose = [p for p in (repo / ".git" / "refs" / "gitml" / "runs").rglob("*") if p.is_file()]
    assert len(loose) < 4
    listed = git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs/").split()
    assert sorted(r[-32:] for r in listed) == sorted(ids)
    git(repo, "fsck", "--strict")
    with gitml.ops.Operations(str(repo)) as c:
        assert sorted(r["run_name"] for r in c.search_rows()) == [f"r{i}" for i in range(7)]


def test_packing_merges_into_git_s_packed_refs_as_git_reads_it(tmp_path):
    """Loose refs packed into a packed-refs git wrote (peeled tag lines, refs before, among
    and after the new ones, one replaced): git then lists what it listed before."""
    path = tmp_path / "r"
    git(tmp_path, "init", "-q", str(path))
    git(path, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "c")
    head = git(path, "rev-parse", "HEAD").strip()
    git(
        path,
        "update-ref",
        "--stdin",
        input_text="".join(f"create refs/gitml/runs/{i % 3}/{i:032x} {head}\n" for i in range(0, 60, 2)),
    )
    for tag in ("a", "m", "z"):
        git(path, "-c", "user.name=a", "-c", "user.email=a@b", "tag", "-a", "-m", tag, tag)  # peeled lines
    git(path, "pack-refs", "--all")
    assert b"\n^" in (path / ".git" / "packed-refs").read_bytes()
    other = git(path, "-c", "user.name=a", "-c", "user.email=a@b", "commit-tree", "-m", "o", "HEAD^{tree}").strip()
    loose = {
        f"refs/gitml/runs/{i % 3}/{i:032x}": other for i in range(1, 61, 3)
    }  # new ones, and some packed (replaced)
    loose["refs/tags/m"] = other  # a peeled tag's line replaced: its peeled line goes
    loose["refs/gitml/experiments/0"] = head  # before every run ref
    git(path, "update-ref", "--stdin", input_text="".join(f"update {r} {s}\n" for r, s in loose.items()))
    before = git(path, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")
    names = [r.encode() for r in loose]
    assert refs_module.pack_refs(str(path / ".git"), names) == len(names)
    assert not any((path / ".git" / r).exists() for r in loose)  # packed, and the loose files gone
    data = (path / ".git" / "packed-refs").read_bytes()
    assert data.startswith(b"# pack-refs with: sorted \n")
    assert git(path, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)") == before
    lines = [line.split(b" ")[1] for line in data.splitlines()[1:] if not line.startswith(b"^")]
    assert lines == sorted(lines) and len(lines) == len(set(lines))
    git(path, "fsck", "--strict")
    git(path, "pack-refs", "--all")  # git takes the file as its own
    assert git(path, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)") == before

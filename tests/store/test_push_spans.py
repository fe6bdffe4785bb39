"""A push to a remote on this machine looks at the refs that differ, not at every ref.

Once a push of every run has confirmed the artifacts of every run commit of this
clone's packed-refs, the next push compares the two packed-refs folder by folder:
folders alike on both sides are counted, and only loose refs and the refs of folders
that differ are looked at. Each case here is also pushed the long way (every ref
listed and looked at) from a copy of the same two repositories, and both must leave
the remote, the artifact store and the report the same.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import gitml
import gitml.ops
from gitml import sync
from gitml.names import RUN_REF_NAMES, RUNS_PREFIX
from gitml.store import transfer as transfer_module
from gitml.store.git import open_store
from gitml.store.refspans import compare
from tests.conftest import git
from tests.store.test_remote import for_each_ref

pytestmark = pytest.mark.timeout(120)


def make_runs(n: int, experiment: str, *, artifacts: bool = True) -> list[str]:
    gitml.set_experiment(experiment)
    ids = []
    for i in range(n):
        with gitml.start_run() as run:
            gitml.log_metric("loss", 1.0 / (i + 1))
            if artifacts:
                gitml.log_text("w" * 70_000 + run.info.run_id, "model/weights.bin")  # past the inline size
        ids.append(run.info.run_id)
    gitml.flush()
    return ids


@pytest.fixture
def shared(repo, tmp_path, monkeypatch):
    """20 runs in two experiments, pushed to a bare remote; both sides' refs then packed
    by git, as a busy repository keeps them."""
    store = tmp_path / "artifacts"
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(store))
    make_runs(12, "a")
    make_runs(8, "b")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "pack-refs", "--all")
    push(repo)  # the long way: every ref looked at, and this packed-refs confirmed
    git(remote, "pack-refs", "--all")
    return {"remote": remote, "store": store, "tmp": tmp_path}


def push(path, remote=None, **kwargs) -> sync.PushResult:
    c = gitml.ops.Operations(path)
    try:
        return sync.push(c, str(remote or path.parent / "remote.git"), **kwargs)
    finally:
        c.close()


def test_ten_new_runs_are_the_only_refs_looked_at(repo, shared):
    new = make_runs(10, "b")
    result = push(repo)
    assert sorted(r.rsplit("/", 1)[1] for r in result.pushed) == sorted(new)
    assert set(result.refs) == set(result.pushed)  # the 20 runs and 2 experiments alike on both sides: counted
    assert result.held == 22 and result.unchanged == 22 and result.rejected == {}
    assert result.uploaded == 10  # the new runs' weights; the others were confirmed
    assert for_each_ref(shared["remote"]) == for_each_ref(repo)
    git(shared["remote"], "fsck", "--strict")
    again = push(repo)
    assert again.pushed == [] and again.unchanged == 32 and again.uploaded == 0


def test_the_confirmation_is_of_one_packed_refs_and_one_artifact_remote(repo, shared, tmp_path, monkeypatch):
    make_runs(2, "a")
    git(repo, "pack-refs", "--all")  # another packed-refs: not known to be confirmed
    result = push(repo)
    assert len(result.refs) == 22 + 2  # looked at one by one
    assert push(repo).refs == {}  # confirmed now: every folder is alike
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "elsewhere"))  # the team moves its artifacts
    moved = push(repo)
    assert moved.uploaded == 22 and len(moved.refs) == 24
    assert push(repo).uploaded == 0


def test_runs_packed_here_and_pushed_by_plain_git_get_their_artifacts(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifacts"))
    make_runs(5, "a")
    git(repo, "pack-refs", "--all")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "push", "-q", str(remote), "refs/gitml/*:refs/gitml/*")  # refs there, artifacts not
    git(remote, "pack-refs", "--all")
    result = push(repo)
    assert result.pushed == [] and result.uploaded == 5
    assert push(repo).uploaded == 0


def remote_moves(repo, remote, ids: dict[str, list[str]]) -> None:
    """What other clones and people did to the remote since the last push."""
    refs = for_each_ref(remote, RUNS_PREFIX)
    names = sorted(refs)
    git(remote, "update-ref", "-d", names[0].decode())  # a run deleted there (its packed line goes)
    git(remote, "update-ref", names[1].decode(), refs[names[2]].decode())  # a run replaced by another's history
    other = git(repo, "commit-tree", "-m", "unrelated", git(repo, "rev-parse", "HEAD^{tree}").strip()).strip()
    git(repo, "push", "-q", str(remote), f"{other}:refs/gitml/runs/unrelated")  # a ref no run has


def outcome(result: sync.PushResult) -> dict:
    return {
        "pushed": sorted(result.pushed),
        "rejected": result.rejected,
        "unchanged": result.unchanged,
        "uploaded": result.uploaded,
        "notes": result.notes,
    }


@pytest.mark.parametrize(
    "case",
    ["new runs", "remote moved", "runs continued", "remote refs loose", "packed at other times", "remote damaged"],
)
def test_the_short_way_ends_where_the_long_way_ends(repo, shared, monkeypatch, case):
    ids = {"a": [], "b": []}
    if case == "new runs":
        make_runs(3, "a")
        make_runs(2, "c")  # a new experiment too
    elif case == "remote moved":
        make_runs(1, "a")
        remote_moves(repo, shared["remote"], ids)
    elif case == "runs continued":
        with open_store(repo) as store:
            run_ids = sorted(r.rsplit(b"/", 1)[1].decode() for r in store.refs_under(RUNS_PREFIX))
        for run_id in run_ids[:3]:  # a run goes on: its ref moves, loose over its packed line
            with gitml.start_run(run_id=run_id):
                gitml.log_metric("loss", 0.01)
        gitml.flush()
    elif case == "remote damaged":  # a packed line whose id is no id, a loose ref holding junk
        make_runs(1, "a")
        packed = shared["remote"] / "packed-refs"
        lines = packed.read_bytes().split(b"\n")
        at = next(i for i, line in enumerate(lines) if b"refs/gitml/runs/" in line)
        lines[at] = b"z" * 40 + lines[at][40:]
        packed.write_bytes(b"\n".join(lines))
        name = sorted(for_each_ref(repo, RUNS_PREFIX))[-1].decode()
        junk = shared["remote"].joinpath(*name.split("/"))
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"not an id\n")
    elif case == "packed at other times":  # here packed, there loose: folders differ by those lines
        monkeypatch.setattr(transfer_module, "LOOSE_WHEN_PACKED", 0)  # new refs loose there, as at 10,000 refs
        make_runs(5, "a")
        push(repo)
        git(repo, "pack-refs", "--all")
        push(repo)  # this packed-refs confirmed
        make_runs(2, "a")
    else:
        make_runs(2, "b")
        push(repo)
        git(
            shared["remote"],
            "update-ref",
            "refs/gitml/experiments/zz",
            for_each_ref(repo)[sorted(for_each_ref(repo))[0]].decode(),
        )
    tmp, store = shared["tmp"], shared["store"]
    shutil.copytree(store, tmp / "artifacts-before")
    results, remotes = {}, {}
    for way in ("short", "long"):  # the same artifact remote (what is confirmed is of one), as it was
        project, remote = tmp / f"{way}-project", tmp / f"{way}-remote.git"
        shutil.copytree(repo, project, symlinks=True)
        shutil.copytree(shared["remote"], remote, symlinks=True)
        shutil.rmtree(store)
        shutil.copytree(tmp / "artifacts-before", store)
        if way == "long":
            monkeypatch.setattr(sync, "_compared", lambda client, url: None)
        result = push(project, remote)
        if way == "short":
            looked_at = len(result.refs)
        results[way] = outcome(result)
        remotes[way] = for_each_ref(remote) if case != "remote damaged" else (remote / "packed-refs").read_bytes()
        if case != "remote damaged":
            git(remote, "fsck", "--strict")
        results[way]["objects"] = sorted(
            os.path.relpath(os.path.join(d, f), store) for d, _, fs in os.walk(store) for f in fs
        )
    assert results["short"] == results["long"]
    assert remotes["short"] == remotes["long"]
    assert looked_at < 22 if case != "packed at other times" else looked_at == 5 + 2  # the short way was taken


def test_the_comparison_counts_every_ref_once_and_lists_no_malformed_line(repo, shared):
    make_runs(2, "a")
    remote = shared["remote"]
    with open_store(repo) as store:
        every = store.refs_under(RUNS_PREFIX, names=RUN_REF_NAMES)
        compared = compare(store, str(remote), [(RUNS_PREFIX, RUN_REF_NAMES)])
    assert compared is not None
    assert len(compared.changed) == 2 and compared.held == 20
    assert {**compared.held_refs(), **compared.changed} == every
    assert compared.there == set()
    # a damaged line in a folder of this clone's packed-refs: that folder is looked at, the line never
    packed = repo / ".git" / "packed-refs"
    lines = packed.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if b"refs/gitml/runs/" in line)
    lines.insert(at + 1, b"zz" + lines[at][2:40] + b" " + lines[at][41:-4] + b"/../x")
    packed.write_bytes(b"\n".join(lines))
    with open_store(repo) as store:
        compared = compare(store, str(remote), [(RUNS_PREFIX, RUN_REF_NAMES)])
        assert compared is not None
        assert b".." not in b"".join(compared.changed) and all(len(s) == 40 for s in compared.changed.values())
        assert {**compared.held_refs(), **compared.changed} == store.refs_under(RUNS_PREFIX, names=RUN_REF_NAMES)


def test_an_unsorted_packed_refs_is_compared_the_long_way(repo, shared):
    packed = shared["remote"] / "packed-refs"
    packed.write_bytes(packed.read_bytes().replace(b" sorted", b""))
    with open_store(repo) as store:
        assert compare(store, str(shared["remote"]), [(RUNS_PREFIX, RUN_REF_NAMES)]) is None
    make_runs(1, "a")
    result = push(repo)
    assert len(result.pushed) == 1 and len(result.refs) == 23


def test_confirmed_commits_answer_as_a_set_would_before_and_after_the_set_is_made():
    from gitml.content.pushstate import _Lines

    lines = [hashlib.sha1(str(i).encode()).hexdigest().encode() for i in range(1000)]
    torn = lines[0][:20] + b"f" * 20  # the last line, cut short by a killed writer: not a line
    data = b"".join(line + b"\n" for line in lines) + b"packed-refs:" + b"a" * 64 + b"\n" + torn[:30]
    confirmed = _Lines(data, 40)
    asked = lines[::-1][:50] + [b"0" * 40] * 40 + [torn, b"a" * 40, lines[0][:39]] + lines[:50]
    assert [sha in confirmed for sha in asked] == [sha in set(lines) for sha in asked]
    assert confirmed._set is not None  # the misses read the file past the budget: the set is made
    assert set(confirmed) == set(lines) and len(confirmed) == 1000


def test_the_loose_refs_small_pushes_leave_on_a_remote_are_packed_there(repo, shared, monkeypatch):
    monkeypatch.setattr(transfer_module, "LOOSE_WHEN_PACKED", 0)  # new refs loose there, as at 10,000 refs
    monkeypatch.setattr(transfer_module, "PACK_LOOSE_AFTER", 5)
    remote = shared["remote"]
    loose_there = []
    for _ in range(4):
        make_runs(2, "a")
        result = push(repo)
        assert len(result.pushed) == 2 and result.rejected == {}
        loose_there.append(sum(len(files) for _, _, files in os.walk(remote / "refs" / "gitml")))
        assert for_each_ref(remote) == for_each_ref(repo)  # as git reads them, packed or not
        git(remote, "fsck", "--strict")
    assert loose_there == [2, 4, 0, 2]  # the third push left 6: packed
    git(remote, "pack-refs", "--all")  # git takes gitml's packed-refs as its own
    assert for_each_ref(remote) == for_each_ref(repo)


@pytest.mark.parametrize("seed", range(6))
def test_the_comparison_agrees_with_both_listings_whatever_is_packed_or_loose_where(tmp_path, seed):
    """Random refs on two sides, each packed or loose at random, values shared or not:
    what is counted as held is held there as it is here, and counted and looked-at refs
    together are this side's listing."""
    import random

    from gitml.store.refs import RefLister, write_packed_refs

    rng = random.Random(seed)
    sides = {}
    for side in ("here", "there"):
        path = tmp_path / side
        git(tmp_path, "init", "-q", "--bare", str(path))
        sides[side] = path
    values = [hashlib.sha1(bytes([i])).hexdigest().encode() for i in range(4)]
    names = [f"refs/gitml/runs/{e}/{r:032x}".encode() for e in range(1, 5) for r in range(rng.randrange(5, 40))]
    names += [f"refs/gitml/experiments/{e}".encode() for e in range(1, 5)]
    packed_here: dict[bytes, bytes] = {}
    for side, path in sides.items():
        packed, loose = {}, {}
        for name in names:
            if rng.random() < 0.15:
                continue  # not on this side
            value = values[0] if rng.random() < 0.8 else rng.choice(values)
            (loose if rng.random() < 0.2 else packed)[name] = value
            if name in loose and rng.random() < 0.5:
                packed[name] = rng.choice(values)  # a packed line the loose ref shadows
        if side == "here":
            packed_here = packed
        elif seed % 2:  # the same packed-refs there but for one folder: the others alike
            packed = {n: v for n, v in packed_here.items() if not n.startswith(b"refs/gitml/runs/1/")}
            packed.update({n: v for n, v in loose.items() if n.startswith(b"refs/gitml/runs/1/")})
            loose = {n: v for n, v in loose.items() if not n.startswith(b"refs/gitml/runs/1/")}
        with open(path / "packed-refs", "wb") as f:
            write_packed_refs(f, packed)
        for name, value in loose.items():
            file = path.joinpath(*name.decode().split("/"))
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(value + b"\n")
    wanted = [(RUNS_PREFIX, RUN_REF_NAMES), ("refs/gitml/experiments/", None)]
    here_listing = {
        **RefLister(str(sides["here"])).under(RUNS_PREFIX),
        **RefLister(str(sides["here"])).under("refs/gitml/experiments/"),
    }
    there_listing = {**RefLister(str(sides["there"])).under("refs/gitml/")}
    with open_store(sides["here"]) as store:
        compared = compare(store, str(sides["there"]), wanted)
    assert compared is not None
    assert bool(compared.alike) == bool(seed % 2)  # folders alike, counted by their lines
    held = compared.held_refs()
    assert {**held, **compared.changed} == here_listing
    assert not held.keys() & compared.changed.keys() and compared.held == len(held)
    assert all(there_listing.get(name) == sha for name, sha in held.items())
    assert compared.there == {name for name, sha in compared.changed.items() if there_listing.get(name) == sha}

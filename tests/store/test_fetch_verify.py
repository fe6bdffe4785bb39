"""What fetch and pull take from a remote, and what a local push gives one.

Hostile data is made with git's plumbing in a real bare remote (a commit whose
parent exists nowhere, a run ref at a blob, names in no gitml format, an
experiment ref at a commit without experiment.yaml) and served on every
transport; the victim's ``git fsck --strict`` and ``gitml gc`` must stay happy,
and the good refs must still arrive.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import gitml
from gitml.cli.main import cli
from gitml.store.git import open_store
from gitml.store.remote import fetch_refs, push_refs
from tests.conftest import git
from tests.store.test_remote import clone, for_each_ref, make_runs, serve

pytestmark = pytest.mark.timeout(60)

NOWHERE = "1234567890123456789012345678901234567890"
ORPHAN = b"refs/gitml/runs/123/0123456789abcdef0123456789abcdef"  # its commit's parent exists nowhere
AT_BLOB = b"refs/gitml/runs/123/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
ODD = [b"refs/gitml/evil", b"refs/gitml/runs/123/not-a-run-id", b"refs/gitml/experiments/12/x"]
NO_RECORD = b"refs/gitml/experiments/555"  # a commit without experiment.yaml


def commit_object(bare: Path, tree: str, *parents: str, author: str = "a <a@b> 1 +0000") -> str:
    """A commit written as given (no check of its parents), as an attacker would."""
    text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
    text += f"author {author}\ncommitter a <a@b> 1 +0000\n\nhostile\n"
    return git(bare, "hash-object", "-t", "commit", "-w", "--literally", "--stdin", input_text=text).strip()


def hostile_remote(repo: Path, base: Path) -> tuple[Path, dict[bytes, bytes]]:
    """A bare remote with a good run and its experiment, and the hostile refs;
    returns it and the good refs. The remote is made shallow at the orphan
    commit, so that servers (git's upload-pack) send it without its parent."""
    bare = base / "remote.git"
    git(base, "init", "-q", "--bare", "remote.git")
    make_runs(1)
    git(repo, "push", "-q", str(bare), "main", "refs/gitml/*:refs/gitml/*")
    good = for_each_ref(bare)
    tree = git(bare, "rev-parse", "main^{tree}").strip()
    orphan = commit_object(bare, tree, NOWHERE)
    git(bare, "update-ref", ORPHAN.decode(), orphan)
    blob = git(bare, "hash-object", "-w", "--stdin", input_text="not a commit\n").strip()
    git(bare, "update-ref", AT_BLOB.decode(), blob)
    for name in ODD:
        git(bare, "update-ref", name.decode(), "main")
    git(bare, "update-ref", NO_RECORD.decode(), "main")
    (bare / "shallow").write_text(orphan + "\n")
    return bare, good


def check_refusals(refused: dict[bytes, str]) -> None:
    assert set(refused) == {ORPHAN, AT_BLOB, NO_RECORD, *ODD}
    assert NOWHERE in refused[ORPHAN] and "missing" in refused[ORPHAN]
    assert refused[AT_BLOB] == "points at a blob, not a commit"
    assert "experiment.yaml" in refused[NO_RECORD]
    assert all("not a gitml ref name" in refused[name] for name in ODD)
    assert all("\n" not in why for why in refused.values())


@pytest.mark.parametrize("kind", ["path", "file", "git"])  # http: git-http-backend, in test_http_backend.py
def test_fetch_refuses_hostile_refs_and_takes_the_rest(repo, tmp_path, kind):
    base = tmp_path / "served"
    base.mkdir()
    bare, good = hostile_remote(repo, base)
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))  # no objects shared with the remote
    with serve(kind, base, "remote.git") as url, open_store(victim) as store:
        result = fetch_refs(store, url)
    check_refusals(result.refused)
    assert sorted(result.created) == sorted(good)
    assert for_each_ref(victim) == good
    git(victim, "fsck", "--strict")
    assert CliRunner().invoke(cli, ["-C", str(victim), "gc"]).exit_code == 0


def test_a_clone_holding_the_hostile_objects_still_refuses_their_refs(repo, tmp_path):
    """``git clone`` of a path shares every object of the remote, the orphan commit
    too: being here is not being complete; only what the clone's refs reach is."""
    base = tmp_path / "served"
    base.mkdir()
    bare, good = hostile_remote(repo, base)
    (bare / "shallow").unlink()
    victim = clone(str(bare), tmp_path / "victim")
    orphan = git(bare, "rev-parse", ORPHAN.decode()).strip()
    assert git(victim, "cat-file", "-t", orphan).strip() == "commit"  # here before the fetch
    for url in (str(bare), bare.as_uri()):
        with open_store(victim) as store:
            check_refusals(fetch_refs(store, url).refused)
    assert for_each_ref(victim) == good
    git(victim, "fsck", "--strict")


def test_pull_names_each_refused_ref_and_brings_the_good_run(repo, tmp_path):
    base = tmp_path / "served"
    base.mkdir()
    bare, good = hostile_remote(repo, base)
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))
    result = CliRunner().invoke(cli, ["-C", str(victim), "pull"])
    assert result.exit_code == 1, result.output
    lines = [line.strip() for line in result.output.splitlines() if "refused:" in line]
    assert sorted(line.split(": refused:")[0] for line in lines) == sorted(
        r.decode() for r in (ORPHAN, AT_BLOB, NO_RECORD, *ODD)
    )
    assert "2 new" in result.output
    assert for_each_ref(victim) == good
    (run_ref,) = [r for r in good if r.startswith(b"refs/gitml/runs/")]
    with gitml.Client(victim) as client:
        assert client.get_run(run_ref.rsplit(b"/", 1)[1].decode()).data.params == {"i": "0"}


@pytest.mark.parametrize("kind", ["path", "file"])
def test_a_run_moved_to_a_commit_with_a_missing_blob_stays_where_it_was(repo, tmp_path, kind):
    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "remote.git")
    bare = base / "remote.git"
    make_runs(2)
    git(repo, "push", "-q", str(bare), "main", "refs/gitml/*:refs/gitml/*")
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))
    with open_store(victim) as store:
        assert len(fetch_refs(store, str(bare)).created) == 3
    before = for_each_ref(victim)
    moved, kept = sorted(r for r in before if r.startswith(b"refs/gitml/runs/"))
    # the remote's run goes on to a commit whose tree names a blob nobody has
    listing = git(bare, "ls-tree", moved.decode()) + f"100644 blob {NOWHERE}\tlost.bin\n"
    tree = git(bare, "mktree", "--missing", input_text=listing).strip()
    git(bare, "update-ref", moved.decode(), commit_object(bare, tree, before[moved].decode()))
    # and the other run goes on properly
    with gitml.Client(repo) as client:
        client.log_metric(kept.rsplit(b"/", 1)[1].decode(), "loss", 0.5, step=3)
    git(repo, "push", "-q", str(bare), f"{kept.decode()}:{kept.decode()}")
    with serve(kind, base, "remote.git") as url, open_store(victim) as store:
        result = fetch_refs(store, url)
    assert set(result.refused) == {moved} and f"object {NOWHERE}, which it reaches, is missing" in result.refused[moved]
    assert result.updated == [kept]
    assert for_each_ref(victim)[moved] == before[moved]
    git(victim, "fsck", "--strict")


def test_the_check_does_not_walk_a_long_shared_history(repo, tmp_path, monkeypatch):
    import gitml.store.verify as verify

    stream = "".join(
        f"commit refs/heads/main\ncommitter a <a@b> {1_700_000_000 + i} +0000\ndata 2\nc\n"
        + ("from refs/heads/main^0\n" if i else "")
        + f"M 100644 inline f{i % 20}.txt\ndata {len(str(i)) + 1}\n{i}\n\n"
        for i in range(3000)
    )
    subprocess.run(["git", "fast-import", "--quiet", "--force"], cwd=repo, input=stream.encode(), check=True)
    git(repo, "checkout", "-q", "-f", "main")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "main")
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--no-local", str(bare), str(victim))
    make_runs(3)
    git(repo, "push", "-q", str(bare), "refs/gitml/*:refs/gitml/*")
    looked_at: list[bytes] = []
    read = verify._Walk._commit
    monkeypatch.setattr(verify._Walk, "_commit", lambda self, sha, **kw: looked_at.append(sha) or read(self, sha, **kw))
    with open_store(victim) as store:
        assert len(fetch_refs(store, str(bare)).created) == 4
    assert 0 < len(looked_at) < 200  # not the 3,000 commits of main
    git(victim, "fsck", "--strict")


# -- a local push honours the receiving repository's receive.fsckObjects -------------


def malformed_run(repo: Path) -> bytes:
    """A run ref whose commit has an author without an e-mail (fsck: missingEmail)."""
    (run_id,) = make_runs(1, experiment="malformed")
    with open_store(repo) as store:
        (ref,) = [r for r in store.refs_under("refs/gitml/runs/") if run_id.encode() in r]
    tree = git(repo, "rev-parse", f"{ref.decode()}^{{tree}}").strip()
    parent = git(repo, "rev-parse", ref.decode()).strip()
    git(repo, "update-ref", ref.decode(), commit_object(repo, tree, parent, author="no email 1 +0000"))
    return ref


@pytest.mark.parametrize("setting", ["receive.fsckObjects", "transfer.fsckObjects"])
def test_local_push_is_refused_where_git_push_is_by_fsck_objects(repo, tmp_path, setting):
    make_runs(1, experiment="fine")
    bad = malformed_run(repo)
    with open_store(repo) as store:
        refs = store.refs_under("refs/gitml/")
    for name in ("by-git.git", "by-gitml.git", "unchecked.git"):
        git(tmp_path, "init", "-q", "--bare", name)
        if name != "unchecked.git":
            git(tmp_path / name, "config", setting, "true")
    # the real git refuses it
    pushed = subprocess.run(
        ["git", "push", str(tmp_path / "by-git.git"), f"{bad.decode()}:{bad.decode()}"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert pushed.returncode != 0 and "missingEmail" in pushed.stderr
    assert for_each_ref(tmp_path / "by-git.git") == {}
    # and so does gitml's local push, for that run only
    with open_store(repo) as store:
        status = push_refs(store, str(tmp_path / "by-gitml.git"), refs)
        assert status[bad].startswith("rejected: ") and "fsckObjects" in status[bad] and "author" in status[bad]
        assert "\n" not in status[bad]
        assert {r: s for r, s in status.items() if r != bad} == {r: "ok" for r in refs if r != bad}
        assert set(for_each_ref(tmp_path / "by-gitml.git")) == set(refs) - {bad}
        git(tmp_path / "by-gitml.git", "fsck", "--strict")
        # where nothing is checked, git and gitml both take it
        assert push_refs(store, str(tmp_path / "unchecked.git"), refs) == {r: "ok" for r in refs}
    git(repo, "push", "-q", str(tmp_path / "unchecked.git"), f"{bad.decode()}:refs/heads/by-git")

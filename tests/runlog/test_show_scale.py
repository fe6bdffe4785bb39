"""``gitml show RUN`` at 100,000 runs (issue 15): a run id or id prefix is found by
bisecting packed-refs in each experiment's lines and listing the loose folders, not by
listing every run ref; ``gitml show``'s imports leave out what it does not use."""

import pytest

import gitml
from gitml.errors import AmbiguousRunError, RunNotFoundError
from gitml.store.refs import RefLister
from tests.conftest import git, run_python


def test_refs_found_by_id_prefix_are_those_a_full_listing_finds(tmp_path):
    path = tmp_path / "r"
    git(tmp_path, "init", "-q", str(path))
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    head = git(path, "rev-parse", "HEAD").strip()
    # folders that sort around each other ('-' and '.' come before '/', '0' after it)
    folders = ["1", "1-x", "1.y", "10", "2", "a"]
    lines = [f"create refs/gitml/runs/{folders[i % 6]}/{i * 7919:032x} {head}" for i in range(60)]
    lines += [f"create refs/heads/b {head}", f"create refs/tags/v1 {head}", f"create refs/gitml/runz/1/{0:032x} {head}"]
    git(path, "update-ref", "--stdin", input_text="\n".join(lines) + "\n")
    git(path, "tag", "-a", "-m", "t", "v2")  # a peeled line in packed-refs
    git(path, "pack-refs", "--all")
    git(path, "update-ref", f"refs/gitml/runs/1/{0:032x}", "HEAD~0^{commit}")  # loose, same value
    git(path, "update-ref", f"refs/gitml/runs/3/{5:032x}", head)  # loose only
    lister = RefLister(str(path / ".git"))
    every = lister.under("refs/gitml/runs/")
    assert len(every) == 61
    for start in ["", "0", "00", "0000", f"{7919 * 3:032x}", "1", "f", f"{5:032x}", "zz"]:
        expected = {ref: sha for ref, sha in every.items() if ref.split(b"/")[4].startswith(start.encode())}
        assert lister.with_tail("refs/gitml/runs/", start.encode()) == expected, start


def test_show_by_id_does_not_list_every_run_ref(repo, client, monkeypatch):
    gitml.set_experiment("scale")
    ids = []
    for i in range(3):
        with gitml.start_run(run_name=f"r{i}") as run:
            gitml.log_param("p", i)
        ids.append(run.info.run_id)
    gitml.flush()
    git(repo, "pack-refs", "--all")
    listings = []
    real = RefLister.listing
    monkeypatch.setattr(RefLister, "listing", lambda self, *a: listings.append(a) or real(self, *a))
    tracker = client.tracker
    assert tracker.resolve(ids[1].upper()) == ids[1]
    assert tracker.get_run(ids[1]).data.params == {"p": "1"}
    assert listings == []
    # a run another process writes (loose) is seen at once, and found by its id alone
    other = (
        run_python(
            'import gitml\ngitml.set_experiment("other")\nwith gitml.start_run(run_name="x") as r:\n'
            '    gitml.log_param("p", "o")\nprint(r.info.run_id)',
            repo,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert tracker.get_run(tracker.resolve(other)).data.params == {"p": "o"} and listings == []
    with pytest.raises(RunNotFoundError):
        tracker.get_run("0" * 32)
    assert listings == []
    with pytest.raises(RunNotFoundError):
        tracker.resolve("0" * 32)  # not an id: perhaps a run's name, looked for among every run's


def test_an_id_prefix_of_two_runs_is_ambiguous(repo, client):
    gitml.set_experiment("scale")
    with gitml.start_run(run_name="a") as run:
        pass
    gitml.flush()
    run_id = run.info.run_id
    commit = git(repo, "rev-parse", f"refs/gitml/runs/{run.info.experiment_id}/{run_id}").strip()
    twin = run_id[:8] + ("0" if run_id[8] != "0" else "1") + run_id[9:]
    git(repo, "pack-refs", "--all")
    git(repo, "update-ref", f"refs/gitml/runs/0/{twin}", commit)
    with pytest.raises(AmbiguousRunError):
        client.tracker.resolve(run_id[:8])
    assert client.tracker.resolve(run_id[:9]) == run_id and client.tracker.resolve(twin) == twin


def test_show_imports_no_artifact_store(repo):
    """``gitml show`` reads a run record: the artifact store's modules (settings, content
    store, remotes) are not imported for it, nor fsspec, nor the model registry's."""
    gitml.set_experiment("scale")
    with gitml.start_run(run_name="a") as run:
        gitml.log_param("p", 1)
    gitml.flush()
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom gitml.cli.main import cli\n"
        f"result = CliRunner().invoke(cli, ['show', '{run.info.run_id}'])\n"
        "assert result.exit_code == 0 and 'Params' in result.output, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('gitml.artifacts', 'fsspec', 'gitml.registry.state', 'gitml.registry.policy'))))"
    )
    assert run_python(code, repo).stdout.strip().splitlines()[-1] == "[]"

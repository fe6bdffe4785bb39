"""Reads at 100,000 runs (issue 15): a repeated search reuses its matches and frame while
no run ref changes; ``gitml show`` and ``gitml runs`` do no more than they need."""

import os

import gitml
import gitml.frame
import gitml.runlog.filter
from gitml.names import RUN_REF_NAMES
from gitml.store import refs as refs_module
from gitml.store.refs import RefLister
from tests.conftest import git, run_python
from tests.runlog.test_scale import make_runs


def trust_ref_folders(repo):
    """Folders changed long ago: their listing can be trusted without reading them again."""
    past = os.stat(repo).st_mtime - 10
    for folder, _, _ in os.walk(repo / ".git" / "refs" / "gitml" / "runs"):
        os.utime(folder, (past, past))


def test_a_repeated_search_reuses_its_matches_and_frame_until_a_run_ref_changes(repo, monkeypatch):
    gitml.set_experiment("scale")
    make_runs(6)
    trust_ref_folders(repo)
    calls = {"filter": 0, "frame": 0}
    real_mask, real_frame = gitml.runlog.filter.filter_mask, gitml.frame.table_frame

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(gitml.runlog.filter, "filter_mask", counted("filter", real_mask))
    monkeypatch.setattr(gitml.frame, "table_frame", counted("frame", real_frame))

    def search():
        return gitml.search_runs(filter_string="params.p = 'x'", order_by=["metrics.m DESC"])

    first = search()
    first.loc[0, "run_id"] = "changed by the caller"  # a caller's frame is its own
    again = search()
    assert calls == {"filter": 1, "frame": 1}
    assert list(again["tags.mlflow.runName"]) == ["r3", "r0"] and again["run_id"].iloc[0] != "changed by the caller"
    other = gitml.search_runs(filter_string="params.p = 'y'")
    assert calls == {"filter": 2, "frame": 2} and sorted(other["tags.mlflow.runName"]) == [
        "r1",
        "r4",
    ]  # (a tie of start times: in any order)
    assert list(search()["tags.mlflow.runName"]) == ["r3", "r0"] and calls == {"filter": 2, "frame": 3}
    # another process adds a matching run: the next search sees it at once
    run_python(
        'import gitml\ngitml.set_experiment("scale")\nwith gitml.start_run(run_name="new"):\n'
        '    gitml.log_param("p", "x")\n    gitml.log_metric("m", 9.0)',
        repo,
    )
    assert list(search()["tags.mlflow.runName"]) == ["new", "r3", "r0"] and calls["filter"] == 3


def packed_run_refs(tmp_path, n):
    """A repository whose packed-refs holds ``n`` run refs between a branch and a tag (git's own)."""
    path = tmp_path / "r"
    git(tmp_path, "init", "-q", str(path))
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    head = git(path, "rev-parse", "HEAD").strip()
    lines = [f"create refs/gitml/runs/{i % 3 + 1}/{i:032x} {head}" for i in range(n)]
    git(path, "update-ref", "--stdin", input_text="\n".join([*lines, f"create refs/tags/v1 {head}"]) + "\n")
    git(path, "pack-refs", "--all")
    return path, head


def listed(path):
    return RefLister(str(path / ".git")).listing("refs/gitml/runs/", RUN_REF_NAMES)


def test_a_checked_packed_refs_is_not_checked_again_by_the_next_process(tmp_path, monkeypatch):
    path, head = packed_run_refs(tmp_path, 50)
    (path / ".git" / "gitml").mkdir()
    expected = {f"refs/gitml/runs/{i % 3 + 1}/{i:032x}".encode(): head.encode() for i in range(50)}
    assert listed(path) == expected  # checked line by line; its digest and span kept
    compiled = []
    real = refs_module.re.compile
    monkeypatch.setattr(refs_module.re, "compile", lambda p, *a: compiled.append(p) or real(p, *a))
    assert listed(path) == expected and compiled == []  # the same file: its span split, no pattern run
    # another writer changes the file: checked again, and the change is seen
    git(path, "update-ref", "-d", f"refs/gitml/runs/1/{0:032x}")
    git(path, "update-ref", f"refs/gitml/runs/2/{99:032x}", head)
    git(path, "pack-refs", "--all")
    del expected[f"refs/gitml/runs/1/{0:032x}".encode()]
    expected[f"refs/gitml/runs/2/{99:032x}".encode()] = head.encode()
    assert listed(path) == expected and len(compiled) == 1


def test_a_malformed_line_among_packed_run_refs_is_left_out_in_every_process(tmp_path, monkeypatch):
    path, head = packed_run_refs(tmp_path, 6)
    (path / ".git" / "gitml").mkdir()
    packed = path / ".git" / "packed-refs"
    lines = packed.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if b"refs/gitml/runs/2/" in line)
    lines.insert(at, head.encode() + b" refs/gitml/runs/1/../../heads/x")  # not a run ref's name
    packed.write_bytes(b"\n".join(lines))
    first = listed(path)
    assert len(first) == 6 and all(b".." not in name for name in first)
    assert listed(path) == first  # not one span: the next process checks every line again
    assert not (path / ".git" / "gitml" / "packed-refs.checked").exists()


def test_show_by_name_finds_the_ref_once(repo, client, monkeypatch):
    """At 100,000 runs each pass over every run ref to find one run's costs 10-20 ms."""
    gitml.set_experiment("scale")
    ids = make_runs(3)
    tracker = client.tracker
    run_id = tracker.resolve("r1")
    passes = []
    real = tracker.run_refs
    monkeypatch.setattr(tracker, "run_refs", lambda *a: passes.append(a) or real(*a))
    assert run_id == ids[1] and tracker.get_run(run_id).info.run_name == "r1" and passes == []


def test_a_few_packed_refs_among_many_are_listed_by_bisecting_packed_refs(tmp_path, monkeypatch):
    path, head = packed_run_refs(tmp_path, 300)
    git(path, "update-ref", "refs/gitml/experiments/7", head)
    git(path, "update-ref", "refs/gitml/experimentsX", head)  # sorts right after the folder
    git(path, "pack-refs", "--all")
    packed = path / ".git" / "packed-refs"
    header, *lines = packed.read_bytes().splitlines(keepends=True)
    lines.append(b"%s refs/gitml/experiments/../x\n" % head.encode())  # a line git would refuse: never listed
    packed.write_bytes(header + b"".join(sorted(lines, key=lambda line: line[41:])))
    monkeypatch.setattr(RefLister, "packed", lambda self: (_ for _ in ()).throw(AssertionError("every line parsed")))
    lister = RefLister(str(path / ".git"))
    assert lister.under("refs/gitml/experiments/") == {b"refs/gitml/experiments/7": head.encode()}
    assert lister.under("refs/tags/") == {b"refs/tags/v1": head.encode()}
    assert lister.under("refs/gitml/runs/2/") == {
        f"refs/gitml/runs/2/{i:032x}".encode(): head.encode() for i in range(300) if i % 3 == 1
    }


def test_a_column_taken_at_some_positions_equals_the_whole_column_taken_there():
    import numpy as np

    from gitml.runlog.columns import decode_array, decode_array_at, encode_column

    index = np.array([5, 0, 3, 3], dtype=np.intp)
    for values, floats in (
        ([0.5, None, 2.0, float("nan"), 1e300, None], True),
        ([1, 2, None, 4, -(1 << 62), 6], True),
        (["a", "b", None, "b", "c\x00d", "é"], False),
        (["x", "y", "x", "z", "w", "v"], False),
    ):
        data = encode_column(values)
        whole, _ = decode_array(data, len(values), floats=floats)
        taken, present = decode_array_at(data, len(values), index, floats=floats)
        expected_present = [values[i] is not None for i in index]
        assert list(present) == expected_present if present is not None else all(expected_present)
        assert [repr(v) for v in taken] == [repr(v) for v in whole[index]]
    assert decode_array_at(encode_column([[1], None, []]), 3, index[:1], floats=False) is None  # read whole

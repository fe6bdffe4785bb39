"""Hostile run records (crafted with git plumbing, pushed and pulled through a real bare
remote) and bad values passed to the API: a clear gitml error, nothing outside the cache
touched, and the other runs still listed, searched and shown."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.errors import CorruptRecordError, InvalidInputError
from gitml.runlog.record import load_yaml
from gitml.store import yamlout
from gitml.yamlread import _UNUSUAL
from tests.conftest import ROOT, git

BOMB = b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
    b"%c: &%c [%s]\n" % (98 + i, 98 + i, b",".join([b"*%c" % (97 + i)] * 9)) for i in range(8)
)  # ~300 bytes that expand to 9**9 strings


def run_ids(found) -> list[str]:
    """Run ids of a search result (a list of runs, or a DataFrame)."""
    return sorted(r.info.run_id for r in found) if isinstance(found, list) else sorted(found["run_id"])


def gitml_cli(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def _git(cwd, *args, data: bytes | None = None, env: dict | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


def forge(repo, source_ref: str, run_id: str, files: dict[str, bytes]) -> str:
    """A new run ``run_id`` made with git plumbing from ``source_ref``'s commit: its meta
    renamed to the new id, then ``files`` of ``.gitml/run/`` replaced. Returns its ref."""
    env = {"GIT_INDEX_FILE": str(repo / ".git" / "forged-index")}
    base = _git(repo, "rev-parse", source_ref)
    old_id = source_ref.rsplit("/", 1)[1]
    meta = _git(repo, "cat-file", "blob", f"{base}:.gitml/run/meta.yaml").replace(old_id, run_id)
    _git(repo, "read-tree", base, env=env)
    for name, data in {"meta.yaml": meta.encode(), **files}.items():
        blob = _git(repo, "hash-object", "-w", "--stdin", data=data)
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitml/run/{name}", env=env)
    tree = _git(repo, "write-tree", env=env)
    message = f"gitml: run forged FINISHED\n\nGitml-Run: {run_id}\nGitml-Artifacts: 1\n"
    commit = _git(repo, "commit-tree", tree, "-p", base, data=message.encode())
    ref = source_ref.rsplit("/", 1)[0] + "/" + run_id
    _git(repo, "update-ref", ref, commit)
    return ref


@pytest.fixture
def runs(repo, tmp_path, monkeypatch):
    """Two ordinary runs, each with a small (inline) and a large (cached) artifact."""
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "artifact-store"))
    ids = []
    for i in range(2):
        with gitml.start_run(run_name=f"good{i}") as run:
            gitml.log_param("lr", 0.1 * (i + 1))
            gitml.log_metric("auc", 0.8 + i / 10, step=3)
            gitml.log_text(f"notes {i}", "notes.txt")
            gitml.log_text("x" * 100_000 + str(i), "model/weights.bin")
        ids.append(run.info.run_id)
    gitml.flush()
    gitml.set_tracking_uri(None)
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/runs").split()
    return {"ids": ids, "refs": sorted(refs, key=lambda r: ids.index(r.rsplit("/", 1)[1]))}


BAD_ID = "b" * 32


def manifest(sha256, size=5, path="model/weights.bin") -> bytes:
    return yamlout.dump({path: {"sha256": sha256, "size": size}})


def escaping(target) -> dict:
    """Hashes that, as ``<cache>/<hash[:2]>/<hash[2:]>``, name ``target``: by an absolute
    tail, and by climbing out of the cache (``<cache>/..`` is ``.git/gitml``)."""
    gitml_dir = target.parent / "project" / ".git" / "gitml"
    return {"absolute": f"ab{target}", "relative": ".../" + os.path.relpath(target, gitml_dir)}


@pytest.mark.parametrize("sha256", ["absolute", "relative", "", "A" * 64, "ab" * 33, 12345], ids=str)
def test_a_hostile_artifact_hash_never_reaches_a_path(repo, runs, tmp_path, sha256):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    sha256 = escaping(victim).get(sha256, sha256)
    if str(sha256).startswith(("ab/", "...")):  # the premise: as a cache path, it is the victim
        assert os.path.samefile(os.path.join(repo / ".git" / "gitml" / "cache", sha256[:2], sha256[2:]), victim)
    forge(repo, runs["refs"][0], BAD_ID, {"artifacts.yaml": manifest(sha256)})
    with gitml.ops.Operations(repo) as c:
        with pytest.raises(CorruptRecordError, match=f"run {BAD_ID}.*artifacts.yaml.*hash"):
            c.artifacts.read_bytes(BAD_ID, "model/weights.bin")
        with pytest.raises(CorruptRecordError, match=BAD_ID):
            gitml.artifacts.download_artifacts(run_id=BAD_ID, artifact_path="model", dst_path=str(tmp_path / "dl"))
        assert c.artifacts.read_bytes(runs["ids"][1], "model/weights.bin").endswith(b"1")  # the others work
    out = gitml_cli(repo, "artifacts", "get", BAD_ID, "model/weights.bin", "-o", str(tmp_path / "out"), code=1)
    assert BAD_ID in out and "artifacts.yaml" in out and "Traceback" not in out
    out = gitml_cli(repo, "fsck", "--no-remote", code=1)
    assert f"unreadable run refs/gitml/runs/0/{BAD_ID}" in out and "IsADirectoryError" not in out
    assert "refs/gitml/runs" in gitml_cli(repo, "gc", code=1)  # gc stops: the run's objects are unknown
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    "entry, why",
    [
        ({"../../etc/x": {"sha256": "a" * 64, "size": 1}}, "'..' component"),
        ({"/etc/passwd": {"sha256": "a" * 64, "size": 1}}, "absolute"),
        ({"a\\b": {"sha256": "a" * 64, "size": 1}}, "backslash"),
        ({"a\nb": {"sha256": "a" * 64, "size": 1}}, "control character"),
        ({"a": {"sha256": "a" * 64, "size": -1}}, "size -1 is outside"),
        ({"a": {"sha256": "a" * 64, "size": "big"}}, "size must be an integer"),
        ({"a": {"sha256": "a" * 64, "size": 2**70}}, "outside the range"),
        ({"a": {"sha256": "a" * 64}}, "size must be an integer"),
        ({"a": "a" * 64}, "no {sha256, size}"),
        ({"a": {"sha256": "a" * 64, "size": 1}, "a/b": {"sha256": "b" * 64, "size": 1}}, "below the file"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_manifest_field_is_checked_when_the_record_is_loaded(repo, runs, entry, why):
    forge(repo, runs["refs"][0], BAD_ID, {"artifacts.yaml": yamlout.dump(entry)})
    with gitml.ops.Operations(repo) as c:
        with pytest.raises(CorruptRecordError) as e:
            c.get_run(BAD_ID)
        assert BAD_ID in str(e.value) and "artifacts.yaml" in str(e.value) and why in str(e.value)
        assert c.artifacts.list(runs["ids"][0])  # the others are fine


OTHER_ID = "c" * 32


@pytest.mark.parametrize(
    "name, text, why",
    [
        ("meta.yaml", f'run_id: {OTHER_ID}\nexperiment_id: "0"\n', f"names run {OTHER_ID}"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "7"\n', "of experiment 7"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nstart_time: soon\n', "start_time must be an integer"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nend_time: {2**64}\n', "outside the range"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nstatus: PWNED\n', "status 'PWNED'"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nartifact_uri: "runs:/{OTHER_ID}"\n', "artifact_uri"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nrun_name: [1, 2]\n', "run_name is a list"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nsource: {{commit: "../x"}}\n', "source commit"),
        ("meta.yaml", f'run_id: {BAD_ID}\nexperiment_id: "0"\nparent_run_id: x\n', "run id 'x'"),
        ("params.yaml", '"../x": 1\n', "param key '../x'"),
        ("params.yaml", "p: {a: 1}\n", "is a dict, not text"),
        ("tags.yaml", 't: "a\\u0000b"\n', "NUL"),
        ("metrics.yaml", "m: {step: 1.5, timestamp: 1, value: 1.0}\n", "step must be an integer"),
        ("metrics.yaml", "m: {step: 1, timestamp: 1, value: [1]}\n", "is not a number"),
        ("metrics.yaml", "m: {step: 1, timestamp: .inf, value: 1.0}\n", "timestamp must be an integer"),
        ("metrics.yaml", "m: 3\n", "is not a mapping"),
        ("metrics/m@x.tsv", "step\ttimestamp\tvalue\n", "metric history chunk"),
        ("metrics/m@99999999999999999999.tsv", "step\ttimestamp\tvalue\n", "metric history chunk"),
        ("meta.yaml", "a: 2020-13-45\n", "month must be in 1..12"),
        ("meta.yaml", "- 1\n", "not a mapping"),
    ],
)
def test_every_record_field_is_checked_and_search_skips_the_run(repo, runs, caplog, name, text, why):
    files = {name: text.encode()}
    if name != "meta.yaml":
        files["meta.yaml"] = f'run_id: {BAD_ID}\nexperiment_id: "0"\n'.encode()
    ref = forge(repo, runs["refs"][0], BAD_ID, {})
    forge(repo, ref, BAD_ID, files)  # over the forged run (its meta already names it)
    with gitml.ops.Operations(repo) as c:
        with pytest.raises(CorruptRecordError) as e:
            c.get_run(BAD_ID)
        assert BAD_ID in str(e.value) and name.split("@")[0].split("/")[0] in str(e.value) and why in str(e.value)
        with caplog.at_level(logging.WARNING, logger="gitml"):
            found = c.search_runs(["0"])
        assert run_ids(found) == sorted(runs["ids"])
        assert BAD_ID in caplog.text


@pytest.mark.parametrize(
    "line",
    ["1\t2\tabc", "1.5\t2\t0.5", f"{2**64}\t1\t0.5", "1\t2", "1\t2\t3\t4", "9" * 5000 + "\t1\t1"],
    ids=["value", "step", "int64", "short", "long", "digits"],
)
def test_a_hostile_history_line_is_a_corrupt_record(repo, runs, line):
    forge(repo, runs["refs"][0], BAD_ID, {"metrics/auc@0.tsv": f"step\ttimestamp\tvalue\n{line}\n".encode()})
    with gitml.ops.Operations(repo) as c:
        with pytest.raises(CorruptRecordError, match=f"run {BAD_ID}: bad history line"):
            c.get_metric_history(BAD_ID, "auc")
        assert [m.step for m in c.get_metric_history(runs["ids"][0], "auc")] == [3]


def test_non_utf8_history_is_a_corrupt_record(repo, runs):
    forge(repo, runs["refs"][0], BAD_ID, {"metrics/auc@0.tsv": b"step\ttimestamp\tvalue\n1\t1\t\xff\n"})
    with gitml.ops.Operations(repo) as c, pytest.raises(CorruptRecordError, match="not UTF-8"):
        c.get_metric_history(BAD_ID, "auc")


def push_all(repo, origin):
    git(repo, "push", "-q", str(origin), "refs/gitml/*:refs/gitml/*")


@pytest.fixture
def victim(repo, runs, tmp_path):
    """A bare origin the attacker pushes to with plain git, and a fresh clone of it."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "push", "-q", str(origin), "HEAD:refs/heads/main")
    gitml_cli(repo, "push", str(origin))  # the good runs and their artifacts
    clone = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    return {"origin": origin, "clone": clone}


def test_pull_names_a_run_with_a_hostile_manifest_and_writes_nothing_outside_the_cache(repo, runs, victim, tmp_path):
    outside = tmp_path / "outside"
    forge(repo, runs["refs"][0], BAD_ID, {"artifacts.yaml": manifest(f"ab{outside}/x")})
    escape = ".../" + os.path.relpath(tmp_path / "outside2" / "x", victim["clone"] / ".git" / "gitml")
    forge(repo, runs["refs"][0], OTHER_ID, {"artifacts.yaml": manifest(escape)})
    push_all(repo, victim["origin"])
    out = gitml_cli(victim["clone"], "pull", code=1)
    assert BAD_ID in out and OTHER_ID in out and "artifacts.yaml" in out
    assert not outside.exists() and not (tmp_path / "outside2").exists()
    with gitml.ops.Operations(victim["clone"]) as c:
        assert c.artifacts.read_bytes(runs["ids"][1], "model/weights.bin").endswith(b"1")
    out = gitml_cli(victim["clone"], "fsck", code=1)
    assert f"unreadable run refs/gitml/runs/0/{BAD_ID}" in out


@pytest.mark.timeout(120)
def test_a_yaml_bomb_in_a_pulled_run_is_refused_and_the_others_stay_usable(repo, runs, victim, caplog):
    forge(repo, runs["refs"][0], BAD_ID, {"params.yaml": BOMB})
    forge(repo, runs["refs"][0], OTHER_ID, {"tags.yaml": b"t: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"})
    push_all(repo, victim["origin"])
    out = gitml_cli(victim["clone"], "pull", code=1)  # named; the good runs' objects came
    assert f"{BAD_ID} (params.yaml): YAML anchors" in out and f"{OTHER_ID} (tags.yaml)" in out
    # in a child process: libyaml's composer crashed the interpreter on deep nesting
    child = subprocess.run(
        [sys.executable, "-c", "from gitml.cli.main import cli; cli()", "runs"],
        cwd=victim["clone"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert "good0" in child.stdout and "good1" in child.stdout
    assert BAD_ID in child.stderr and "anchors and aliases" in child.stderr
    # refused by gitml's depth check, or by libyaml's own (PyYAML 6.0.4 stops at 1,000 levels)
    assert OTHER_ID in child.stderr and re.search("nested more than|exceeded maximum nesting|flow level", child.stderr)
    with gitml.ops.Operations(victim["clone"]) as c, caplog.at_level(logging.WARNING, logger="gitml"):
        assert run_ids(c.search_runs(["0"])) == sorted(runs["ids"])
        with pytest.raises(CorruptRecordError, match=f"run {BAD_ID} .params.yaml.: YAML anchors"):
            c.get_run(BAD_ID)
    assert "good1" in gitml_cli(victim["clone"], "show", runs["ids"][1])
    # in bounded time (the timeout mark): the bomb alone took minutes, then MemoryError


def test_a_hostile_experiment_record_is_skipped_by_listing(repo, runs, caplog):
    base = _git(repo, "rev-parse", "HEAD")
    for experiment_id, text in {"111111111111111": BOMB, "222222222222222": b"name: x\ncreation_time: soon\n"}.items():
        blob = _git(repo, "hash-object", "-w", "--stdin", data=text)
        tree = _git(repo, "mktree", data=f"100644 blob {blob}\texperiment.yaml\n".encode())
        commit = _git(repo, "commit-tree", tree, "-p", base, data=b"gitml: experiment x\n")
        _git(repo, "update-ref", f"refs/gitml/experiments/{experiment_id}", commit)
    with gitml.ops.Operations(repo) as c, caplog.at_level(logging.WARNING, logger="gitml"):
        assert [e.name for e in c.search_experiments()] == ["Default"]
        with pytest.raises(CorruptRecordError, match="creation_time must be an integer"):
            c.get_experiment("222222222222222")
    assert "anchors and aliases" in caplog.text


@pytest.mark.parametrize(
    "data, why",
    [
        (BOMB, "anchors and aliases"),
        (b"a: &x 1\n", "anchors and aliases"),
        (b"- " * 100_000 + b"x", "nested more than"),
        (b"".join(b" " * i + b"k:\r" for i in range(40)), "nested more than"),  # \r breaks lines too
        (b"a: [" + b"1," * 300_000 + b"]", "more than 200000 YAML nodes"),
        (b"a: " + b"x" * (5 << 20), "over the limit"),
        (b"a: \xff", "invalid YAML"),
    ],
    ids=["bomb", "anchor", "deep", "cr-lines", "nodes", "size", "utf8"],
)
@pytest.mark.timeout(30)
def test_load_yaml_refuses_quickly(data, why):
    with pytest.raises(CorruptRecordError, match=why):  # in bounded time: the timeout mark
        load_yaml(data, "run x (params.yaml)")


def test_gitml_own_records_take_the_fast_path_and_others_read_the_same():
    records = [
        {"run_id": "a" * 32, "experiment_id": "0", "start_time": 1, "end_time": None, "source": {"dirty": False}},
        {f"m{i}": {"step": i, "timestamp": 1700000000000, "value": 0.5} for i in range(100)},
        {"tags": {}, "empty": {}, "plain": "train/loss"},
    ]
    for record in records:
        data = yamlout.dump(record)
        assert not _UNUSUAL.search(data)  # no event scan for what gitml writes
        assert load_yaml(data, "x") == record
    tricky = {"a": "[1, 2]", "b": "*star", "c": "- dash", "d": "x\ry", "e": "&amp;", "f": "        deep"}
    assert _UNUSUAL.search(yamlout.dump(tricky)) and load_yaml(yamlout.dump(tricky), "x") == tricky


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text")


BAD_CALLS = {
    "value str": (lambda: gitml.log_metric("m", "abc"), "metric value must be a number"),
    "value None": (lambda: gitml.log_metric("m", None), "metric value must be a number"),
    "value list": (lambda: gitml.log_metric("m", [1.0]), "metric value must be a number"),
    "value dict": (lambda: gitml.log_metric("m", {}), "metric value must be a number"),
    "value bool": (lambda: gitml.log_metric("m", True), "metric value must be a number"),
    "value huge int": (lambda: gitml.log_metric("m", 10**400), "metric value"),
    "step float": (lambda: gitml.log_metric("m", 1.0, step=1.5), "metric step must be an integer"),
    "step str": (lambda: gitml.log_metric("m", 1.0, step="3"), "metric step must be an integer"),
    "step nan": (lambda: gitml.log_metric("m", 1.0, step=float("nan")), "metric step must be an integer"),
    "step int64 overflow": (lambda: gitml.log_metric("m", 1.0, step=10**30), "metric step 10000"),
    "step list": (lambda: gitml.log_metric("m", 1.0, step=[1]), "metric step must be an integer"),
    "steps of log_metrics": (lambda: gitml.log_metrics({"m": 1.0}, step=2.5), "metric step"),
    "timestamp str": (lambda: gitml.log_metric("m", 1.0, timestamp="now"), "metric timestamp must be an integer"),
    "timestamp inf": (lambda: gitml.log_metric("m", 1.0, timestamp=1e400), "metric timestamp must be an integer"),
    "timestamp overflow": (lambda: gitml.log_metric("m", 1.0, timestamp=10**30), "metric timestamp"),
    "timestamp negative": (lambda: gitml.log_metric("m", 1.0, timestamp=-5), "metric timestamp -5"),
    "param unprintable": (lambda: gitml.log_param("p", Unprintable()), "param 'p' value cannot be turned"),
    "params not a dict": (lambda: gitml.log_params([("p", 1)]), "params must be a mapping"),
    "tag bytes": (lambda: gitml.set_tag("t", b"x"), "tag 't' value is bytes"),
    "tags none": (lambda: gitml.set_tags(None), "tags must be a mapping"),
    "tag key bytes": (lambda: gitml.set_tag(b"t", "x"), "tag key must be a string"),
    "batch metric not an entity": (lambda: gitml.log_batch(metrics=[1]), "log_batch metrics entry"),
    "batch metric short tuple": (lambda: gitml.log_batch(metrics=[("m", 1.0)]), "log_batch metrics entry"),
    "batch metric step": (lambda: gitml.log_batch(metrics=[("m", 1.0, 1, "x")]), "metric step"),
    "batch param": (lambda: gitml.log_batch(params=[3]), "log_batch params entry"),
    "batch tag": (lambda: gitml.log_batch(tags=[None]), "log_batch tags entry"),
    "experiment name int": (lambda: gitml.set_experiment(3), "experiment name must be a non-empty string"),
    "experiment name list": (lambda: gitml.create_experiment(["x"]), "experiment name must be a non-empty string"),
    "experiment tag bytes": (lambda: gitml.set_experiment_tag("k", b"v"), "tag 'k' value is bytes"),
    "run id int": (lambda: gitml.get_run(3), "run id 3"),
    "history key int": (
        lambda: gitml.get_metric_history(gitml.active_run().info.run_id, 3),
        "metric key must be a string",
    ),
}


@pytest.mark.parametrize("call, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_values_are_refused_with_one_line_naming_the_argument(repo, call, message):
    with gitml.start_run() as run:
        gitml.log_metric("m", 0.5, step=1)
        with pytest.raises(InvalidInputError) as e:
            call()
        assert message in str(e.value) and "\n" not in str(e.value)
    with gitml.ops.Operations(repo) as c:  # nothing unreadable was written
        assert [(m.step, m.value) for m in c.get_metric_history(run.info.run_id, "m")] == [(1, 0.5)]
        assert len(c.search_runs(["0"])) == 1


def test_start_run_with_a_bad_run_id_says_so(repo):
    for bad in (5, ["x"]):
        with pytest.raises(InvalidInputError, match="run id"):
            gitml.start_run(run_id=bad)
    assert gitml.active_run() is None


def test_good_values_of_every_accepted_type_are_logged(repo):
    with gitml.start_run() as run:
        gitml.log_metric("np", np.float32(0.25), step=np.int64(2), timestamp=np.int64(1_700_000_000_000))
        gitml.log_metric("int", 3, step=0, timestamp=1_700_000_000_000.7)  # a float time is truncated, as MLflow
        gitml.log_metric("nan", float("nan"), step=2**63 - 1)
        gitml.log_param("p", 1.5)
        gitml.set_tag("t", 7)
    with gitml.ops.Operations(repo) as c:
        got = c.get_run(run.info.run_id)
        assert got.data.metrics["np"] == 0.25 and got.data.metrics["int"] == 3.0 and math.isnan(got.data.metrics["nan"])
        assert got.data.params == {"p": "1.5"} and got.data.tags["t"] == "7"
        history = c.get_metric_history(run.info.run_id, "int")
        assert [(m.step, m.timestamp) for m in history] == [(0, 1_700_000_000_000)]
        assert c.get_metric_history(run.info.run_id, "nan")[0].step == 2**63 - 1

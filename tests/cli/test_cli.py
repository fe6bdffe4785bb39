"""The ``gitml`` command line: every command through click's CliRunner, and the
entry point as a real process (exit status, one-line errors, lazy imports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, git, run_python

from gitml.cli.main import cli

T0 = 1_700_000_000_000  # pinned start times: order never depends on the clock


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports gitml from this checkout."""
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def gitml(*args, code: int = 0, cwd_only: bool = False, repo=None):
    """Invoke the CLI in-process (with ``-C repo`` unless ``cwd_only``); check the exit code."""
    argv = [str(a) for a in args]
    if repo is not None and not cwd_only:
        argv = ["-C", str(repo), *argv]
    result = CliRunner().invoke(cli, argv, prog_name="gitml")
    assert result.exit_code == code, (
        f"gitml {' '.join(argv)} exited {result.exit_code}, expected {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
    )
    return result


def gitml_json(*args, repo=None):
    return json.loads(gitml(*args, "--json", repo=repo).stdout)


def assert_one_line_error(result, *needles: str) -> str:
    """Exit 1, nothing on stdout, exactly one ``gitml: ...`` line on stderr."""
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gitml: "), lines[0]
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def make_run(client, experiment_id, name, *, start, params=None, metrics=None, deleted=False) -> str:
    run_id = client.create_run(experiment_id, run_name=name, start_time=start).info.run_id
    client.log_batch(
        run_id,
        params=list((params or {}).items()),
        metrics=[(k, v, T0, 0) for k, v in (metrics or {}).items()],
    )
    client.set_terminated(run_id, end_time=start + 500)
    if deleted:
        client.delete_run(run_id)
    return run_id


@pytest.fixture
def tracked(repo, client):
    """Two experiments, four active runs and a deleted one; returns name -> run id."""
    vision = client.create_experiment("vision")
    nlp = client.create_experiment("nlp")
    ids = {
        "cnn": make_run(
            client,
            vision,
            "cnn",
            start=T0 + 1000,
            params={"model": "cnn", "lr": "0.01", "optimizer": "adam"},
            metrics={"acc": 0.9, "loss": 0.2},
        ),
        "mlp": make_run(
            client,
            vision,
            "mlp",
            start=T0 + 2000,
            params={"model": "mlp", "lr": "0.1", "optimizer": "adam"},
            metrics={"acc": 0.7, "loss": 0.5},
        ),
        "rnn": make_run(
            client,
            vision,
            "rnn",
            start=T0 + 3000,
            params={"model": "rnn", "lr": "0.001", "optimizer": "sgd"},
            metrics={"acc": 0.8, "loss": 0.3},
        ),
        "bert": make_run(client, nlp, "bert", start=T0 + 4000, params={"model": "bert"}, metrics={"acc": 0.95}),
        "gone": make_run(client, vision, "gone", start=T0 + 5000, params={"model": "old"}, deleted=True),
    }
    ids["vision"], ids["nlp"] = vision, nlp
    return ids


def names(rows) -> list[str]:
    return [r["run_name"] for r in rows]


# -- runs -------------------------------------------------------------------------
def test_runs_table_lists_active_runs_newest_first(repo, tracked):
    out = gitml("runs", repo=repo).stdout
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["RUN", "NAME", "STATUS", "STARTED", "TIME"]
    assert {"acc", "loss", "lr", "model"} <= set(header)
    body = lines[1:]
    assert [line.split()[1] for line in body] == ["bert", "rnn", "mlp", "cnn"]
    for line in body:
        run_name = line.split()[1]
        assert line.startswith(tracked[run_name][:8] + " ")
        assert "FINISHED" in line
    cnn = next(line for line in body if line.split()[1] == "cnn")
    assert "0.9" in cnn.split() and "0.01" in cnn.split()
    assert "gone" not in out
    assert all(line == line.rstrip() for line in lines), "table lines end in whitespace"


def test_runs_table_has_no_trailing_whitespace(repo, client):
    make_run(client, "0", "r", start=T0, params={"z": "a long value"})
    lines = gitml("runs", repo=repo).stdout.splitlines()
    assert lines[0].split()[-1] == "z"
    assert all(line == line.rstrip() for line in lines), lines


def test_runs_table_keeps_one_line_per_run_with_newlines_in_values(repo, client):
    make_run(client, "0", "r", start=T0, params={"cmd": "line one\nline two\tend"})
    lines = gitml("runs", repo=repo).stdout.splitlines()
    assert len(lines) == 2 and "line one\\nline two\\tend" in lines[1]


def test_runs_table_cuts_long_values(repo, client):
    make_run(client, "0", "r", start=T0, params={"cmd": "x" * 500})
    lines = gitml("runs", repo=repo).stdout.splitlines()
    assert max(len(line) for line in lines) < 150 and "x" * 59 + "…" in lines[1]
    assert json.loads(gitml("runs", "--json", repo=repo).stdout)[0]["params"]["cmd"] == "x" * 500


def test_runs_table_aligns_wide_characters(repo, client):
    make_run(client, "0", "実験一", start=T0, params={"p": "QQ"})
    make_run(client, "0", "plain", start=T0 + 1000, params={"p": "XX"})
    lines = gitml("runs", repo=repo).stdout.splitlines()
    import unicodedata

    def columns(text):
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    starts = {columns(line[: line.index(value)]) for line, value in zip(lines[1:], ("XX", "QQ"), strict=False)}
    assert len(starts) == 1  # the param column starts at one screen column in every row


def test_runs_relies_on_cwd_without_dash_c(repo, tracked):
    assert names(json.loads(gitml("runs", "--json", cwd_only=True).stdout)) == ["bert", "rnn", "mlp", "cnn"]


def test_runs_json_has_the_run_fields(repo, tracked):
    rows = gitml_json("runs", repo=repo)
    assert names(rows) == ["bert", "rnn", "mlp", "cnn"]
    cnn = rows[-1]
    assert {"run_id", "run_name", "status", "metrics", "params", "tags"} <= set(cnn)
    assert cnn["run_id"] == tracked["cnn"]
    assert cnn["status"] == "FINISHED"
    assert cnn["experiment_id"] == tracked["vision"]
    assert cnn["metrics"] == {"acc": 0.9, "loss": 0.2}
    assert cnn["params"] == {"model": "cnn", "lr": "0.01", "optimizer": "adam"}
    assert cnn["tags"]["mlflow.runName"] == "cnn"
    assert cnn["tags"]["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("params.model = 'cnn'", {"cnn"}),
        ("metrics.acc > 0.85", {"cnn", "bert"}),
        ("params.model = 'mlp' OR params.model = 'bert'", {"mlp", "bert"}),
        # AND binds tighter than OR; parentheses change the grouping
        ("params.model = 'mlp' OR params.model = 'cnn' AND metrics.acc > 0.8", {"mlp", "cnn"}),
        ("(params.model = 'mlp' OR params.model = 'cnn') AND metrics.acc > 0.8", {"cnn"}),
        ("params.optimizer = 'sgd' OR (metrics.acc > 0.85 AND metrics.loss < 0.25)", {"rnn", "cnn"}),
        ("attributes.run_name LIKE '%nn'", {"cnn", "rnn"}),
        ("tags.mlflow.runName = 'bert'", {"bert"}),
    ],
)
def test_runs_filter(repo, tracked, filter_string, expected):
    assert set(names(gitml_json("runs", "--filter", filter_string, repo=repo))) == expected


def test_runs_order_by_and_max(repo, tracked):
    assert names(gitml_json("runs", "--order-by", "metrics.acc ASC", repo=repo)) == ["mlp", "rnn", "cnn", "bert"]
    assert names(gitml_json("runs", "-o", "metrics.acc DESC", repo=repo)) == ["bert", "cnn", "rnn", "mlp"]
    # repeatable: ties on the first key are broken by the second
    rows = gitml_json("runs", "-o", "params.optimizer ASC", "-o", "metrics.loss DESC", "-e", "vision", repo=repo)
    assert names(rows) == ["mlp", "cnn", "rnn"]
    assert names(gitml_json("runs", "-o", "metrics.acc ASC", "--max", "2", repo=repo)) == ["mlp", "rnn"]
    assert names(gitml_json("runs", "-n", "1", repo=repo)) == ["bert"]
    table = gitml("runs", "--max", "2", repo=repo).stdout.splitlines()
    assert len(table) == 3  # header + 2


def test_runs_max_must_not_be_negative(repo, tracked):
    # -n -1 once sliced rows[:-1]: every run but the oldest
    result = gitml("runs", "-n", "-1", code=2, repo=repo)
    assert "Invalid value for '-n' / '--max'" in result.stderr
    assert gitml_json("runs", "-n", "0", repo=repo) == []


def test_runs_by_experiment_name_or_id(repo, tracked):
    assert names(gitml_json("runs", "-e", "vision", repo=repo)) == ["rnn", "mlp", "cnn"]
    assert names(gitml_json("runs", "--experiment", tracked["nlp"], repo=repo)) == ["bert"]
    assert names(gitml_json("runs", "-e", "nlp", "-e", "vision", repo=repo)) == ["bert", "rnn", "mlp", "cnn"]
    assert gitml_json("runs", "-e", "Default", repo=repo) == []
    assert_one_line_error(gitml("runs", "-e", "no-such", code=1, repo=repo), "no experiment", "no-such")


def test_runs_deleted(repo, tracked):
    rows = gitml_json("runs", "--deleted", repo=repo)
    assert names(rows) == ["gone"]
    assert rows[0]["lifecycle_stage"] == "deleted"
    assert "gone" in gitml("runs", "--deleted", repo=repo).stdout


def test_runs_in_an_empty_repository(repo):
    assert gitml_json("runs", repo=repo) == []
    assert gitml("runs", repo=repo).stdout.split() == ["RUN", "NAME", "STATUS", "STARTED", "TIME"]


@pytest.mark.parametrize("filter_string", ["metrics.acc >", "metrics.acc > 0.5 AND (params.x = 'y'", "bogus.key = 1"])
def test_malformed_filter_is_one_line_with_position(repo, tracked, filter_string):
    assert_one_line_error(gitml("runs", "--filter", filter_string, code=1, repo=repo), "position")


def test_malformed_order_by_is_one_line(repo, tracked):
    assert_one_line_error(gitml("runs", "-o", "metrics.acc SIDEWAYS", code=1, repo=repo))


# -- show -------------------------------------------------------------------------
def test_show_by_full_id_prefix_and_name(repo, tracked):
    run_id = tracked["cnn"]
    outputs = [gitml("show", spec, repo=repo).stdout for spec in (run_id, run_id[:8], "cnn")]
    assert outputs[0] == outputs[1] == outputs[2]
    out = outputs[0]
    assert out.splitlines()[0] == f"run {run_id}  (cnn)"
    assert "Status:     FINISHED" in out
    assert f"Experiment: vision ({tracked['vision']})" in out
    assert git(repo, "rev-parse", "HEAD").strip() in out
    assert "Params:" in out and "Metrics:" in out and "Tags:" in out
    assert any(line.split() == ["lr", "0.01"] for line in out.splitlines())
    assert any(line.split() == ["acc", "0.9"] for line in out.splitlines())


def test_show_json(repo, tracked):
    data = gitml_json("show", tracked["rnn"][:6], repo=repo)
    assert data["info"]["run_id"] == tracked["rnn"]
    assert data["info"]["run_name"] == "rnn"
    assert data["info"]["status"] == "FINISHED"
    assert data["info"]["start_time"] == T0 + 3000
    assert data["params"]["optimizer"] == "sgd"
    assert data["metrics"] == {"acc": 0.8, "loss": 0.3}
    assert data["tags"]["mlflow.runName"] == "rnn"
    assert data["source"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert data["source"]["dirty"] is False
    assert len(data["source"]["run_commit"]) == 40


def test_show_deleted_run_is_marked(repo, tracked):
    assert "[deleted]" in gitml("show", "gone", repo=repo).stdout


def test_show_ambiguous_name(repo, client):
    first = make_run(client, "0", "twin", start=T0)
    second = make_run(client, "0", "twin", start=T0 + 1)
    line = assert_one_line_error(gitml("show", "twin", code=1, repo=repo), "ambiguous")
    assert first in line and second in line
    # each one is still reachable by its id
    assert gitml_json("show", first[:8], repo=repo)["info"]["run_id"] == first


def test_show_unknown_run(repo, tracked):
    assert_one_line_error(gitml("show", "nope", code=1, repo=repo), "no run matches", "nope")
    assert_one_line_error(gitml("show", "0000000000", code=1, repo=repo), "no run matches")
    # under 4 characters a hex string is not an id prefix: the error says so
    assert_one_line_error(gitml("show", tracked["cnn"][:3], code=1, repo=repo), "too short")


# -- diff -------------------------------------------------------------------------
def test_diff_marks_changed_params_and_metrics(repo, tracked):
    out = gitml("diff", "cnn", "rnn", repo=repo).stdout
    lines = out.splitlines()

    def row(key):
        return next(line for line in lines if line.lstrip("* ").split(" ")[0] == key)

    assert row("lr").startswith("* ") and row("lr").split()[-2:] == ["0.01", "0.001"]
    assert row("acc").startswith("* ") and row("acc").split()[-2:] == ["0.9", "0.8"]
    assert row("optimizer").startswith("* ")
    assert row("model").startswith("* ")
    headers = [line for line in lines if line.split()[:1] == ["KEY"]]
    assert len(headers) == 2 and all(tracked["cnn"][:8] in h and tracked["rnn"][:8] in h for h in headers)

    same = gitml("diff", "cnn", "mlp", repo=repo).stdout.splitlines()
    optimizer = next(line for line in same if line.split()[:1] == ["optimizer"])
    assert optimizer.startswith("  optimizer")  # unchanged: no mark


def test_diff_json_has_changed_flags(repo, tracked):
    data = gitml_json("diff", tracked["cnn"], "mlp", repo=repo)
    assert data["a"] == tracked["cnn"] and data["b"] == tracked["mlp"]
    params = {p["key"]: p for p in data["params"]}
    assert params["optimizer"] == {"key": "optimizer", "a": "adam", "b": "adam", "changed": False}
    assert params["lr"] == {"key": "lr", "a": "0.01", "b": "0.1", "changed": True}
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["acc"]["changed"] and metrics["loss"]["changed"]
    assert "code" not in data
    # a key only one run has is changed, with null on the other side
    bert = {p["key"]: p for p in gitml_json("diff", "cnn", "bert", repo=repo)["metrics"]}
    assert bert["loss"] == {"key": "loss", "a": 0.2, "b": None, "changed": True}


def test_diff_code_shows_an_uncommitted_edit(repo, client):
    a = make_run(client, "0", "before", start=T0)
    (repo / "train.py").write_text("print('training')\nprint('with dropout')\n")
    b = make_run(client, "0", "after", start=T0 + 1)
    assert gitml_json("show", b, repo=repo)["source"]["dirty"] is True

    out = gitml("diff", a, b, "--code", repo=repo).stdout
    assert f"--- {a[:8]}/train.py" in out
    assert f"+++ {b[:8]}/train.py" in out
    assert "+print('with dropout')" in out.splitlines()
    assert "README.md" not in out  # unchanged files are not shown

    data = gitml_json("diff", a, b, "--code", repo=repo)
    assert "+print('with dropout')\n" in data["code"]
    assert gitml_json("diff", a, a, "--code", repo=repo)["code"] == ""


# -- log --------------------------------------------------------------------------
def test_log_lists_run_commits_then_the_source(repo, client):
    head = git(repo, "rev-parse", "HEAD").strip()
    run_id = make_run(client, "0", "logged", start=T0, params={"p": "1"}, metrics={"m": 1.0})
    out = gitml("log", "logged", repo=repo).stdout.splitlines()
    kinds = [line.split()[1] for line in out]
    assert kinds[0] == "run" and kinds[-1] == "source"
    assert kinds == sorted(kinds, key=lambda k: k != "run")  # run commits first
    assert out[-1].startswith(head[:10]) and out[-1].endswith("initial")

    entries = gitml_json("log", run_id[:8], repo=repo)
    assert entries[-1] == {**entries[-1], "commit": head, "summary": "initial", "is_run_commit": False}
    assert all(e["is_run_commit"] for e in entries[:-1]) and entries[:-1]
    run_commit = gitml_json("show", run_id, repo=repo)["source"]["run_commit"]
    assert entries[0]["commit"] == run_commit


def test_log_max_count_limits_the_source_history(repo, client):
    (repo / "README.md").write_text("# project\n\nmore\n")
    git(repo, "commit", "-qam", "second")
    make_run(client, "0", "r", start=T0)
    source = [e for e in gitml_json("log", "r", repo=repo) if not e["is_run_commit"]]
    assert [e["summary"] for e in source] == ["second", "initial"]
    source = [e for e in gitml_json("log", "r", "-n", "1", repo=repo) if not e["is_run_commit"]]
    assert [e["summary"] for e in source] == ["second"]


def test_log_max_count_must_be_positive(repo, client):
    make_run(client, "0", "r", start=T0)
    assert "Invalid value" in gitml("log", "r", "-n", "0", code=2, repo=repo).stderr


# -- checkout ---------------------------------------------------------------------
def test_checkout_restores_the_code_of_a_dirty_run(repo, client):
    initial = git(repo, "rev-parse", "HEAD").strip()
    ran = "print('training')\nlr = 0.5  # uncommitted when the run started\n"
    (repo / "train.py").write_text(ran)
    run_id = make_run(client, "0", "dirty", start=T0)
    # the project moves on: another edit and a new file, committed
    (repo / "train.py").write_text("print('training, much later')\n")
    (repo / "data.txt").write_text("new data\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "later")

    out = gitml("checkout", run_id[:8], "-b", "replay", repo=repo).stdout
    assert "replay" in out and run_id[:8] in out

    assert (repo / "train.py").read_text() == ran
    assert (repo / "README.md").read_text() == "# project\n"
    assert not (repo / "data.txt").exists()
    assert "replay" in git(repo, "branch", "--list", "replay")
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "replay"
    assert git(repo, "rev-parse", "replay").strip() == initial
    assert git(repo, "rev-parse", "main").strip() != initial  # main untouched
    # the run's uncommitted edit is back as an uncommitted edit
    assert git(repo, "status", "--porcelain").splitlines() == [" M train.py"]


def test_checkout_clean_run_detached(repo, client):
    initial = git(repo, "rev-parse", "HEAD").strip()
    run_id = make_run(client, "0", "clean", start=T0)
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "v2")
    gitml("checkout", run_id, repo=repo)
    assert git(repo, "rev-parse", "HEAD").strip() == initial
    assert (repo / "train.py").read_text() == "print('training')\n"
    assert git(repo, "status", "--porcelain") == ""


def test_checkout_refuses_a_dirty_work_tree(repo, client):
    run_id = make_run(client, "0", "r", start=T0)
    (repo / "train.py").write_text("print('work in progress')\n")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert_one_line_error(gitml("checkout", run_id, "-b", "other", code=1, repo=repo), "uncommitted")
    assert (repo / "train.py").read_text() == "print('work in progress')\n"
    assert git(repo, "branch", "--list", "other") == ""
    assert git(repo, "rev-parse", "HEAD").strip() == head


def test_checkout_refuses_an_existing_branch(repo, client):
    run_id = make_run(client, "0", "r", start=T0)
    assert_one_line_error(gitml("checkout", run_id, "-b", "main", code=1, repo=repo), "already exists")


def moved_on(repo, client) -> str:
    """A clean run, then a later commit that edits train.py and deletes README.md."""
    run_id = make_run(client, "0", "r", start=T0)
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "rm", "-q", "README.md")
    git(repo, "commit", "-qam", "v2")
    return run_id


@pytest.mark.parametrize("branch", ["bad..name", "-x", "a b", "ends.lock", "x/"])
def test_checkout_refuses_an_invalid_branch_name_before_touching_anything(repo, client, branch):
    run_id = moved_on(repo, client)
    head = git(repo, "rev-parse", "HEAD").strip()
    result = gitml("checkout", run_id, "-b", branch, code=2, repo=repo)
    assert "not a valid branch name" in result.stderr
    # a rejected name once left HEAD on main with the run's files staged over it
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert (repo / "train.py").read_text() == "print('v2')\n"


def test_checkout_of_a_run_before_the_first_commit(tmp_path, monkeypatch):
    import gitml as api

    path = tmp_path / "unborn"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('first')\n")
    git(path, "add", "train.py")
    monkeypatch.chdir(path)
    with api.Client(path) as c:
        run_id = make_run(c, "0", "early", start=T0)
    assert gitml_json("show", run_id, repo=path)["source"]["commit"] is None
    git(path, "commit", "-qm", "first")
    (path / "train.py").write_text("print('second')\n")
    git(path, "commit", "-qam", "second")

    # -b once printed "on branch nb" without creating it
    assert_one_line_error(gitml("checkout", run_id, "-b", "nb", code=1, repo=path), "first commit", "nb")
    assert git(path, "branch", "--list", "nb") == ""
    assert git(path, "status", "--porcelain") == ""

    out = gitml("checkout", run_id, repo=path).stdout
    assert "no source commit" in out and "detached" not in out
    assert (path / "train.py").read_text() == "print('first')\n"
    assert git(path, "symbolic-ref", "--short", "HEAD").strip() == "main"


def test_checkout_does_not_overwrite_untracked_files(repo, client):
    run_id = make_run(client, "0", "r", start=T0)  # README.md is tracked at the run's source
    git(repo, "rm", "-q", "README.md")
    git(repo, "commit", "-qm", "drop readme")
    (repo / "README.md").write_text("my notes, never committed\n")  # untracked now
    result = gitml("checkout", run_id, "-b", "replay", code=1, repo=repo)
    assert_one_line_error(result, "untracked")
    assert (repo / "README.md").read_text() == "my notes, never committed\n"


# -- experiments ------------------------------------------------------------------
def test_experiments_lifecycle(repo):
    listed = gitml_json("experiments", "list", repo=repo)
    assert [(e["experiment_id"], e["name"]) for e in listed] == [("0", "Default")]

    experiment_id = gitml("experiments", "create", "churn", repo=repo).stdout.strip()
    assert experiment_id and experiment_id != "0"
    table = gitml("experiments", repo=repo).stdout  # list by default
    assert table.split()[:4] == ["ID", "NAME", "STAGE", "CREATED"]
    assert any(line.split()[:3] == [experiment_id, "churn", "active"] for line in table.splitlines())

    gitml("experiments", "rename", "churn", "churn-v2", repo=repo)
    by_id = {e["experiment_id"]: e for e in gitml_json("experiments", "list", repo=repo)}
    assert by_id[experiment_id]["name"] == "churn-v2"

    gitml("experiments", "delete", "churn-v2", repo=repo)
    assert experiment_id not in {e["experiment_id"] for e in gitml_json("experiments", "list", repo=repo)}
    assert experiment_id not in gitml("experiments", "list", repo=repo).stdout
    everything = {e["experiment_id"]: e for e in gitml_json("experiments", "list", "--all", repo=repo)}
    assert everything[experiment_id]["lifecycle_stage"] == "deleted"
    assert any(
        line.split()[:3] == [experiment_id, "churn-v2", "deleted"]
        for line in gitml("experiments", "list", "--all", repo=repo).stdout.splitlines()
    )

    gitml("experiments", "restore", experiment_id, repo=repo)  # by id
    by_id = {e["experiment_id"]: e for e in gitml_json("experiments", "list", repo=repo)}
    assert by_id[experiment_id]["lifecycle_stage"] == "active"


def test_experiments_group_accepts_the_list_options(repo):
    experiment_id = gitml("experiments", "create", "old", repo=repo).stdout.strip()
    gitml("experiments", "delete", "old", repo=repo)
    assert [e["name"] for e in gitml_json("experiments", repo=repo)] == ["Default"]
    assert experiment_id in {e["experiment_id"] for e in gitml_json("experiments", "--all", repo=repo)}
    # the list options belong to listing: with another subcommand they are a usage error
    assert "after the subcommand" in gitml("experiments", "--json", "create", "x", code=2, repo=repo).stderr


def test_experiments_errors(repo):
    gitml("experiments", "create", "dup", repo=repo)
    assert_one_line_error(gitml("experiments", "create", "dup", code=1, repo=repo), "already exists")
    assert_one_line_error(gitml("experiments", "rename", "missing", "x", code=1, repo=repo), "no experiment")
    assert_one_line_error(gitml("experiments", "delete", "Default", code=1, repo=repo), "default")
    assert_one_line_error(gitml("experiments", "restore", "missing", code=1, repo=repo), "no experiment")


def test_experiments_create_then_run_into_it(repo, client):
    gitml("experiments", "create", "from-cli", repo=repo)
    experiment = client.get_experiment_by_name("from-cli")
    make_run(client, experiment.experiment_id, "r", start=T0)
    assert names(gitml_json("runs", "-e", "from-cli", repo=repo)) == ["r"]


# -- recover ----------------------------------------------------------------------
KILLED_RUN = """
import os, signal
import gitml

gitml.set_experiment("crashy")
with gitml.start_run(run_name="doomed") as run:
    gitml.log_param("lr", 0.1)
    for step in range(3):
        gitml.log_metric("loss", 1.0 / (step + 1), step=step)
    print(run.info.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_recover_marks_a_killed_run(repo):
    proc = run_python(KILLED_RUN, repo, check=False)
    assert proc.returncode == -9, proc.stderr
    run_id = proc.stdout.strip()
    assert len(run_id) == 32

    out = gitml("recover", repo=repo).stdout
    assert out.splitlines() == [f"recovered run {run_id} (marked KILLED)"]
    data = gitml_json("show", run_id, repo=repo)
    assert data["info"]["status"] == "KILLED"
    assert data["info"]["end_time"] is not None
    assert data["info"]["run_name"] == "doomed"
    assert data["params"] == {"lr": "0.1"}
    assert data["metrics"] == {"loss": pytest.approx(1 / 3)}
    assert gitml("recover", repo=repo).stdout.strip() == "Nothing to recover."
    assert [r["status"] for r in gitml_json("runs", "-e", "crashy", repo=repo)] == ["KILLED"]


LIVE_RUN = """
import sys
import gitml

with gitml.start_run(run_name="alive") as run:
    gitml.log_metric("loss", 0.5)
    gitml.flush()
    print(run.info.run_id, flush=True)
    sys.stdin.readline()  # live until the test closes stdin
"""


def test_recover_leaves_a_live_run_alone(repo):
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE_RUN],
        cwd=repo,
        env=child_env(),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run_id = proc.stdout.readline().strip()
        assert len(run_id) == 32, proc.stderr.read() if proc.poll() is not None else run_id
        assert gitml("recover", repo=repo).stdout.strip() == "Nothing to recover."
        assert gitml_json("show", run_id, repo=repo)["info"]["status"] == "RUNNING"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    data = gitml_json("show", run_id, repo=repo)
    assert data["info"]["status"] == "FINISHED" and data["metrics"] == {"loss": 0.5}


# -- init, -C, --version ----------------------------------------------------------
def test_init_creates_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = gitml("init", "fresh").stdout
    assert "Initialized a git repository" in out
    assert (tmp_path / "fresh" / ".git").is_dir()
    git(tmp_path / "fresh", "status")  # the real git accepts it
    assert "Using the git repository" in gitml("init", "fresh").stdout


def test_init_honours_dash_c(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    gitml("-C", "elsewhere", "init", "proj")
    assert (tmp_path / "elsewhere" / "proj" / ".git").is_dir()
    assert not (tmp_path / "proj").exists()


def test_dash_c_works_from_a_subdirectory_like_git(repo, tracked, tmp_path, monkeypatch):
    (repo / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    assert names(gitml_json("runs", repo=repo / "src")) == ["bert", "rnn", "mlp", "cnn"]


def test_dash_c_must_exist(repo, tmp_path):
    missing = tmp_path / "missing"
    result = gitml("experiments", "create", "x", code=2, repo=missing)
    assert "missing" in result.stderr
    assert not missing.exists()


def test_reading_outside_a_repository_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(gitml("runs", code=1), "not in a git repository")
    assert os.listdir(tmp_path) == []


def test_version():
    from gitml import __version__

    assert __version__ in gitml("--version").stdout


# -- help ---------------------------------------------------------------------------
def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))


COMMANDS = list(all_commands())


def test_every_command_is_listed():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {
        "init",
        "experiments",
        "experiments list",
        "experiments create",
        "experiments rename",
        "experiments delete",
        "experiments restore",
        "runs",
        "show",
        "diff",
        "log",
        "checkout",
        "recover",
    } <= paths
    top = gitml("--help").stdout
    for name in cli.commands:
        assert name in top


def test_the_readme_cli_list_names_every_command_and_only_commands():
    """The README's CLI list: each `gitml NAME[|NAME] [SUB|SUB]` it names is a command, and
    every top-level command is in it."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    listed = text[text.index("- **CLI**") :].split("\n\n", 1)[0]
    paths = {" ".join(p) for p, _ in COMMANDS}
    named = set()
    for tops, subs in re.findall(r"`gitml ([a-z|]+)(?: \[?([a-z|]+)\]?)?", listed):
        for top in tops.split("|"):
            named.add(top)
            assert top in paths, top
            for sub in filter(None, subs.split("|")):
                assert f"{top} {sub}" in paths, f"{top} {sub}"
    assert named == set(cli.commands)


LISTINGS = [
    "runs",
    "runs list",
    "experiments",
    "experiments list",
    "show",
    "log",
    "diff",
    "artifacts ls",
    "config",
    "registry list",
    "registry show",
    "registry history",
    "registry policy",
]


def test_every_listing_has_json():
    """README: "Every listing has --json"."""
    commands = dict((" ".join(p), c) for p, c in COMMANDS)
    for path in LISTINGS:
        assert "--json" in [o for p in commands[path].params for o in p.opts], path


def test_config_json_shows_the_defaults_the_readme_states(repo):
    settings = json.loads(gitml("config", "--json", repo=repo).stdout)
    assert settings == {
        "artifacts.inline_max_bytes": 64 * 1024,
        "artifacts.remote": os.path.join(os.environ["HOME"], ".local", "share", "gitml", "artifacts"),
        "artifacts.storage_options": {},
        "artifacts.timeout": 30.0,
        "push.batch_refs": 1000,
    }
    gitml("config", "artifacts.timeout", "5", repo=repo)
    assert json.loads(gitml("config", "artifacts.timeout", "--json", repo=repo).stdout) == {"artifacts.timeout": 5.0}
    assert gitml("config", "artifacts.timeout", "6", "--json", code=2, repo=repo).exit_code == 2


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help(path, command):
    assert command.help and command.help.strip(), f"gitml {' '.join(path)} has no help text"
    for flag in ("--help", "-h"):
        out = gitml(*path, flag).stdout
        assert out.startswith(f"Usage: gitml {' '.join(path)}")
        assert command.help.strip().splitlines()[0] in out
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"option {param.opts} of gitml {' '.join(path)} has no help"


def test_help_does_not_import_pandas(tmp_path):
    code = (
        "import sys\n"
        "from gitml.cli.main import cli\n"
        "for argv in (['--help'], ['runs', '--help'], ['show', '--help']):\n"
        "    cli(argv, standalone_mode=False)\n"
        "print([m for m in ('pandas', 'torch', 'numpy', 'dulwich') if m in sys.modules])\n"
    )
    out = run_python(code, tmp_path).stdout
    assert out.splitlines()[-1] == "[]"


# -- the entry point as a real process --------------------------------------------------
def run_gitml(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gitml.cli.main", *map(str, args)],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_entry_point_errors_are_one_line_and_exit_1(repo, tracked):
    ok = run_gitml("runs", "--json", cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert names(json.loads(ok.stdout)) == ["bert", "rnn", "mlp", "cnn"]

    missing = run_gitml("show", "nope", cwd=repo)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.splitlines() == ["gitml: no run matches 'nope'"]

    bad = run_gitml("runs", "--filter", "metrics.acc >", cwd=repo)
    assert bad.returncode == 1
    assert len(bad.stderr.splitlines()) == 1 and "position" in bad.stderr

    # --traceback shows the stack instead
    traced = run_gitml("--traceback", "show", "nope", cwd=repo)
    assert traced.returncode == 1
    assert "Traceback" in traced.stderr and "RunNotFoundError" in traced.stderr

    usage = run_gitml("show", cwd=repo)
    assert usage.returncode == 2 and "Usage: gitml show" in usage.stderr


def test_entry_point_stops_quietly_when_the_reader_goes_away(repo, client):
    """``gitml show RUN | head -1``: no "unexpected error", no traceback, exit 141 as git."""
    run_id = client.create_run("0", run_name="big").info.run_id
    client.log_batch(run_id, params=[(f"p{i:02d}", "x" * 5000) for i in range(40)])  # far over a pipe buffer
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitml.cli.main", "show", run_id],
        cwd=repo,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before gitml writes
    _, stderr = proc.communicate(timeout=60)
    assert stderr.decode() == ""
    assert proc.returncode == 141

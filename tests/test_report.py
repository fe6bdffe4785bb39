"""gitml compare: runs side by side with deltas, the best marked, charts, branches."""

import json

import pytest
from click.testing import CliRunner

from gitml.cli.main import cli
from gitml.errors import InvalidInputError, NotFoundError
from gitml.report import compare_runs, md_text, to_html, to_json, to_markdown
from tests.conftest import git


def _run(client, name, *, lr, loss, acc, steps=3):
    run = client.create_run("0", run_name=name)
    run_id = run.info.run_id
    client.log_param(run_id, "lr", lr)
    for step in range(steps):
        client.log_metric(run_id, "loss", loss * (steps - step), step=step)
    client.log_metric(run_id, "accuracy", acc)
    client.set_terminated(run_id)
    return run_id


def test_markdown_marks_deltas_best_and_changed_params(client):
    a = _run(client, "base", lr=0.1, loss=0.5, acc=0.80)
    b = _run(client, "better", lr=0.2, loss=0.2, acc=0.90)
    report = compare_runs(client, ["base", b[:8]])
    text = to_markdown(report)
    assert f"base `{a[:8]}` (baseline)" in text
    assert "| accuracy | 0.8 | **0.9 (+0.1)** ★ |" in text  # higher is better
    assert "| loss ↓ | 0.5 | **0.2 (-0.3)** ★ |" in text  # lower is better for a loss
    assert "| lr | 0.1 | **0.2** |" in text  # changed from the baseline
    # another baseline: deltas turn around
    text = to_markdown(compare_runs(client, ["base"], baseline="better"))
    assert "| accuracy | **0.9** ★ | 0.8 (-0.1) |" in text
    data = json.loads(to_json(report))
    assert data["baseline"] == a and {m["key"]: m["best"] for m in data["metrics"]} == {"accuracy": b, "loss": b}


def test_hostile_run_names_stay_text(client):
    _run(client, "![x](https://evil.example/p.png) <script>|", lr="<b>", loss=1, acc=1)
    report = compare_runs(client, filter_string="attributes.run_name LIKE '!%'")
    text = to_markdown(report)
    assert "](https" not in text and "<script>" not in text and "\\|" in text
    page = to_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert md_text("a\nb" + "x" * 200).startswith("a b") and len(md_text("y" * 500)) == 80


def test_branch_selects_the_latest_runs_of_its_history(client, repo):
    old = _run(client, "on-main-old", lr=0.1, loss=0.5, acc=0.7)
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "v2")
    new = [_run(client, f"on-main-{i}", lr=0.1 * i, loss=0.4, acc=0.8) for i in (1, 2)]
    git(repo, "checkout", "-qb", "feature")
    (repo / "train.py").write_text("print('v3')\n")
    git(repo, "commit", "-qam", "v3")
    feature = _run(client, "on-feature", lr=0.3, loss=0.1, acc=0.95)
    report = compare_runs(client, branches=["main", "feature"])
    assert [c.run_id for c in report.runs] == [*new, feature] and report.baseline == 0
    assert old not in {c.run_id for c in report.runs}
    narrowed = compare_runs(client, branches=["main"], filter_string="params.lr = '0.2'")
    assert [c.run_id for c in narrowed.runs] == [new[1]]
    with pytest.raises(NotFoundError, match="no-such-branch"):
        compare_runs(client, branches=["no-such-branch"])
    with pytest.raises(InvalidInputError, match="no runs to compare"):
        compare_runs(client, filter_string="params.lr = '9'")


def test_cli_writes_report_and_charts(client, repo, tmp_path):
    _run(client, "one", lr=0.1, loss=0.5, acc=0.8)
    _run(client, "two", lr=0.2, loss=0.3, acc=0.7)
    out = tmp_path / "report" / "compare.md"
    result = CliRunner().invoke(cli, ["-C", str(repo), "compare", "one", "two", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "![loss](compare-loss.png)" in text  # loss has a history; accuracy one point: no chart
    assert (tmp_path / "report" / "compare-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "report" / "compare-accuracy.png").exists()
    result = CliRunner().invoke(cli, ["-C", str(repo), "compare", "one", "two", "--format", "json"])
    assert json.loads(result.output)["runs"][1]["run_name"] == "two"
    result = CliRunner().invoke(cli, ["-C", str(repo), "compare", "nope"])
    assert result.exit_code == 1 and "nope" in result.output

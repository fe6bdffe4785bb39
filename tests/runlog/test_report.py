"""gitml compare: runs side by side with deltas, the best marked, charts, branches."""

import html
import json
import re

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
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


HOSTILE = [
    "![x](https://evil.example/p.png) <script>|",
    "[click](https://evil.example) @octocat www.evil.example https://evil.example/a",
    "<img src=x onerror=alert(1)> ``tick`` \\| `",
    "mallory@evil.example #1 \u202eevil\u202c <https://evil.example>",
    "fixes GH-1",
]


def shown(value: str) -> str:
    """What a report shows of ``value``: one line, bidirectional overrides replaced."""
    return " ".join(value.split()).replace("\u202e", "\ufffd").replace("\u202c", "\ufffd")


def gfm(markdown: str) -> str:
    """The HTML GitHub makes of ``markdown``: cmark-gfm (GitHub's own renderer) with its
    table and autolink extensions, raw HTML passed through (GitHub's sanitizer keeps
    ``<img>`` and ``<a>``)."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def assert_inert(markdown: str, *, images: tuple[str, ...] = ()) -> list[str]:
    """``markdown`` renders with no link, image (but ``images``), HTML, and no ``@``, URL or
    ``www.`` outside code (where GitHub makes no mention or autolink); returns the code texts."""
    page = gfm(markdown)
    assert "<a " not in page and "<script" not in page and "<iframe" not in page, page
    assert tuple(re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)) == images, page
    outside = re.sub(
        r"<[^>]*>", "", re.sub(r"<code>.*?</code>", "", page, flags=re.S)
    )  # the text GitHub reads mentions in
    for marker in ("@", "://", "www.", "\u202e"):
        assert marker not in outside, (marker, outside)
    return [html.unescape(code) for code in re.findall(r"<code>(.*?)</code>", page, flags=re.S)]


@pytest.mark.parametrize("value", HOSTILE)
def test_md_text_is_inert_and_shows_the_value(value):
    for table in (True, False):
        cell = md_text(value, limit=None, table=table)
        markdown = f"| h |\n| --- |\n| {cell} |\n" if table else f"### {cell}\n\n- ❌ {cell}\n"
        codes = assert_inert(markdown)
        assert set(codes) == {shown(value)}
    assert md_text("lr-0.05 run 2") == "lr-0.05 run 2" and md_text(0.5) == "0.5" and md_text("") == ""


def test_hostile_run_names_stay_text(client, tmp_path):
    for i, name in enumerate(HOSTILE):
        run = client.create_run("0", run_name=name)
        client.log_param(run.info.run_id, "note", HOSTILE[-1 - i])
        client.log_param(run.info.run_id, "www.evil.example", "x")
        for step in range(2):
            client.log_metric(run.info.run_id, "www.evil.example/loss", 0.5 - step / 10, step=step)
        client.set_terminated(run.info.run_id)
    report = compare_runs(client)
    codes = assert_inert(to_markdown(report))
    assert HOSTILE[0] in codes and "www.evil.example/loss" in codes
    assert md_text("a\nb" + "x" * 200).startswith("a b") and len(md_text("y" * 500)) == 80
    page = to_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;img" in page
    out = tmp_path / "compare.md"
    assert CliRunner().invoke(cli, ["compare", "-f", "", "-o", str(out)]).exit_code == 0
    assert_inert(out.read_text(), images=("compare-www.evil.example_loss.png",))


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


def test_registry_check_and_compare_of_a_hostile_pull_request_are_inert(repo, tmp_path, monkeypatch):
    """A teammate's runs, tags (tagger, message) and desired-state file carry links, images,
    autolinks and @mentions; pushed to a bare remote, checked by CI in a clone: the reports
    show every value, as code, and render none of it."""
    from tests.registry.test_registry import _run

    gitml.set_tracking_uri(str(repo))
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "store"))
    git(repo, "config", "user.name", "Mallory [click](https://evil.example) @octocat")
    git(repo, "config", "user.email", "mallory@evil.example")

    def gitml_cli(where, *args, code=0):
        result = CliRunner().invoke(cli, ["-C", str(where), *args])
        assert result.exit_code == code, result.output
        return result.output

    with gitml.ops.Operations(repo) as c:
        runs = [_run(c, i, auc=0.5 + i / 10, name=HOSTILE[i]) for i in (1, 2)]
        for run_id in runs:
            c.log_param(run_id, "note", HOSTILE[3])
    gitml_cli(repo, "registry", "register", "churn", f"{runs[0]}:model", "-m", HOSTILE[0])
    gitml_cli(repo, "registry", "promote", "churn", "v1.0.0", "production")
    gitml_cli(repo, "push", "origin")
    git(repo, "push", "-q", "origin", "main")
    git(repo, "checkout", "-qb", "promote")
    gitml_cli(repo, "registry", "register", "churn", f"{runs[1]}:model", "-m", HOSTILE[1])
    (repo / ".gitml").mkdir(exist_ok=True)
    (repo / ".gitml" / "stages.yaml").write_text("churn:\n  production: v2.0.0\n  staging: v9.0.0-www.evil.example\n")
    git(repo, "add", ".gitml")
    git(repo, "commit", "-qm", "promote [x](https://evil.example)")
    gitml_cli(repo, "push", "origin")
    git(repo, "push", "-q", "origin", "promote")

    ci = tmp_path / "ci"
    git(tmp_path, "clone", "-q", "-b", "promote", str(origin), str(ci))
    gitml_cli(ci, "fetch", "origin")
    gitml_cli(ci, "registry", "check", "--base", "origin/main", "--report", str(tmp_path / "registry.md"), code=1)
    report = (tmp_path / "registry.md").read_text()
    codes = assert_inert(report)
    assert "### churn: production → v2.0.0" in report and "Now: v1.0.0" in report
    assert (
        "Mallory [click](https://evil.example) @octocat <mallory@evil.example>" in codes
    )  # the tagger, shown as it is
    assert shown(HOSTILE[3]) in codes and "v9.0.0-www.evil.example" in codes
    assert any("has no version v9.0.0-www.evil.example" in code for code in codes)  # the problem, inert too
    gitml_cli(ci, "compare", "--branch", "origin/main", "--branch", "HEAD", "-o", str(tmp_path / "compare.md"))
    assert HOSTILE[2] in assert_inert((tmp_path / "compare.md").read_text())

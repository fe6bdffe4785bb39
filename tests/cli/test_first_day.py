"""What a newcomer meets on the first day, each trap with its hint: runs deleted and restored from the
command line, an empty listing in a fresh clone, a filter naming a key no run has, an order-by
clause that does not parse, identical code in a diff, charts without matplotlib, and the help of
serve/predict naming the registry's URIs."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import gitml
from gitml.cli.main import cli
from tests.conftest import git


def invoke(repo, *args, code=0):
    result = CliRunner().invoke(cli, ["-C", str(repo), *map(str, args)], prog_name="gitml")
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def log_two(repo):
    with gitml.Client(repo) as c:
        experiment = c.create_experiment("first-day")
        ids = []
        for name, auc in (("base", 0.8), ("tuned", 0.9)):
            run = c.create_run(experiment, run_name=name)
            c.log_metric(run.info.run_id, "val_auc", auc)
            c.log_param(run.info.run_id, "learning_rate", "0.1")
            c.set_terminated(run.info.run_id)
            ids.append(run.info.run_id)
    return ids


def test_runs_delete_and_restore_by_id_prefix_or_name(repo):
    base, tuned = log_two(repo)
    assert f"deleted run {base}" in invoke(repo, "runs", "delete", "base").stdout
    assert "base" not in invoke(repo, "runs").stdout and "tuned" in invoke(repo, "runs").stdout
    assert "base" in invoke(repo, "runs", "--deleted").stdout
    with gitml.Client(repo) as c:
        assert c.get_run(base).info.lifecycle_stage == "deleted"
    assert f"restored run {base}" in invoke(repo, "runs", "restore", base[:8]).stdout
    assert "base" in invoke(repo, "runs", "list").stdout
    with gitml.Client(repo) as c:
        assert c.get_run(base).info.lifecycle_stage == "active"
    missing = invoke(repo, "runs", "delete", "nope", code=1)
    assert missing.stderr.strip() == "gitml: no run matches 'nope'"
    wrong_place = invoke(repo, "runs", "-n", "1", "delete", "base", code=2)
    assert "go after the subcommand" in wrong_place.stderr


def test_an_empty_listing_in_a_fresh_clone_says_how_runs_arrive(repo, tmp_path):
    log_two(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))  # git clone brings no refs/gitml/*
    result = invoke(clone, "runs")
    assert result.stderr.strip() == (
        "gitml: no runs here yet; a clone brings no runs: if your team's runs are "
        "on origin, `gitml pull origin` brings them"
    )
    assert invoke(repo, "runs").stderr == ""  # runs here: no hint
    lonely = tmp_path / "lonely"
    git(tmp_path, "init", "-q", str(lonely))
    assert invoke(lonely, "runs").stderr == ""  # no remote: nothing to suggest


def test_a_filter_on_a_key_no_run_has_names_the_near_keys(repo):
    log_two(repo)
    result = invoke(repo, "runs", "-f", "metrics.auc > 0.5 and params.learning_rat = '0.1' and tags.zzz = 'x'")
    assert result.stderr.strip() == (
        "gitml: no run has metrics.auc (did you mean metrics.val_auc?), "
        "params.learning_rat (did you mean params.learning_rate?), tags.zzz"
    )
    assert invoke(repo, "runs", "-f", "metrics.val_auc > 0.95").stderr == ""  # the key exists: no hint


def test_an_order_by_error_says_order_by(repo):
    log_two(repo)
    result = invoke(repo, "runs", "-o", "metrics.val_auc DESCC", code=1)
    assert result.stderr.strip() == (
        "gitml: expected ASC or DESC, got 'DESCC' at position 16 in order-by clause 'metrics.val_auc DESCC'"
    )
    assert "in filter" in invoke(repo, "runs", "-f", "metrics.val_auc >", code=1).stderr


def test_diff_of_runs_with_the_same_code_says_so(repo):
    base, tuned = log_two(repo)
    out = invoke(repo, "diff", base, tuned, "--code").stdout
    assert "The code is identical: both runs ran the same source tree." in out
    (repo / "train.py").write_text("print('changed')\n")
    with gitml.Client(repo) as c:
        changed = c.create_run(c.get_experiment_by_name("first-day").experiment_id, run_name="changed").info.run_id
        c.set_terminated(changed)
    out = invoke(repo, "diff", base, changed, "--code").stdout
    assert "identical" not in out and "+print('changed')" in out


def test_compare_to_a_file_without_matplotlib_says_how_to_get_charts(repo):
    log_two(repo)
    hidden = (
        "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from gitml.cli.main import main; sys.argv = ['gitml', 'compare', '-e', 'first-day', '-o', 'out/r.md']; main()"
    )
    result = subprocess.run([sys.executable, "-c", hidden], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (
        "no charts: they are drawn with matplotlib, which is not installed (pip install 'gitml[report]')"
        in result.stderr
    )
    assert (repo / "out" / "r.md").exists()
    assert "no charts" not in invoke(repo, "compare", "-e", "first-day", "-o", repo / "out" / "r2.md").stderr


def test_serve_and_predict_help_name_the_registry_uris():
    for command in ("serve", "predict"):
        assert "models:/<name>@<stage>" in CliRunner().invoke(cli, [command, "--help"]).stdout

"""The README's tour, as written: its Python snippet and its five command lines, taken from
README.md itself and run as a user would, in a new git repository with a bare remote."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys

import click
from click.testing import CliRunner
from conftest import ROOT, git

from gitml.cli.main import cli as main

README = os.path.join(ROOT, "README.md")


def block(heading: str, lang: str) -> str:
    """The first ```lang code block after the README's ``## heading``."""
    text = open(README, encoding="utf-8").read()
    section = text[text.index(f"\n## {heading}") :]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def python(script: str, cwd) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, script], cwd=cwd, env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def cli(argv: list[str]) -> str:
    """One ``gitml ...`` line of the README, in the current directory (the repository): exit 0."""
    assert argv[0] == "gitml"
    result = CliRunner().invoke(main, argv[1:], prog_name="gitml")
    assert result.exit_code == 0, f"{shlex.join(argv)}: {result.stderr} {result.exception!r}"
    return result.stdout


SWEEP = """import sys

import gitml

lr = float(sys.argv[1]) if len(sys.argv) > 1 else {lr}
gitml.set_experiment("churn")
with gitml.start_run(run_name=f"lr-{{lr}}"):
    gitml.log_params({{"lr": lr, "model": "{model}"}})
    gitml.log_metric("auc", {auc})
"""


def test_the_readme_tour_runs_as_written(repo, tmp_path):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))

    # The Python snippet, verbatim: it logs a run and searches for it.
    snippet = block("The same in Python", "python")
    (repo / "train.py").write_text(
        snippet + "print(frame['tags.mlflow.runName'].tolist(), frame['metrics.loss'].tolist())\n"
    )
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "the README's snippet")
    assert python("train.py", repo).stdout.strip() == "['baseline'] [0.15]"

    # Two runs for the tour to name, the second with an edit it never committed.
    (repo / "sweep.py").write_text(SWEEP.format(lr=0.05, model="xgb", auc=0.8))
    git(repo, "add", "sweep.py")
    git(repo, "commit", "-qm", "sweep")
    python("sweep.py", repo)
    (repo / "sweep.py").write_text(SWEEP.format(lr=1.0, model="lgbm", auc=0.95))
    python("sweep.py", repo)
    git(repo, "checkout", "-q", "--", "sweep.py")
    git(repo, "push", "-q", "origin", "main")
    cli(["gitml", "push"])
    git(repo, "fetch", "-q", "origin")  # origin/main, as any clone has it

    lines = [shlex.split(line, comments=True) for line in block("In five lines", "bash").splitlines()]
    runs, search, diff, checkout, compare = (line for line in lines if line)

    out = cli(runs).splitlines()
    assert [row.split()[1] for row in out[1:]] == ["lr-1.0", "lr-0.05", "baseline"]  # newest first

    out = cli(search).splitlines()  # auc > 0.9 OR model = 'xgb', best auc first
    assert [row.split()[1] for row in out[1:]] == ["lr-1.0", "lr-0.05"]

    out = cli(diff)
    assert re.search(r"\* lr +0\.05 +1\.0", out) and re.search(r"\* auc +0\.8 +0\.95", out)
    assert '-    gitml.log_params({"lr": lr, "model": "xgb"})' in out  # the code diff, uncommitted edit included
    assert '+    gitml.log_params({"lr": lr, "model": "lgbm"})' in out

    cli(checkout)
    assert git(repo, "branch", "--show-current").strip() == "retry"
    assert '"model": "lgbm"' in (repo / "sweep.py").read_text()  # the code that ran, edit included

    # On the new branch: commit, train again; the report sets it against main's latest runs.
    git(repo, "commit", "-qam", "retry with lgbm")
    python("sweep.py", repo)
    retry = json.loads(cli(["gitml", "runs", "--json", "-n", "1"]))[0]
    cli(compare)
    report = (repo / "report.md").read_text()
    assert retry["run_id"][:8] in report
    for name in ("lr-0.05", "lr-1.0", "baseline"):  # main's tip's runs: the retry's baseline
        assert name in report
    assert "★" in report


NOT_API = ("gitml.ci.", "gitml.runId", "gitml.py")  # tag names and a file name the README mentions

FLUENT = (  # the README's tracking list and MLflow table: "`gitml.` the same names"
    "set_experiment create_experiment get_experiment get_experiment_by_name search_experiments "
    "delete_experiment restore_experiment rename_experiment set_experiment_tag set_experiment_tags "
    "start_run end_run active_run get_run delete_run restore_run log_param log_params log_metric "
    "log_metrics set_tag set_tags delete_tag log_batch get_metric_history search_runs log_artifact "
    "log_artifacts log_text log_dict log_table log_image log_figure autolog evaluate "
    "register_model flush Client"
).split()


def test_every_python_name_the_readme_gives_exists():
    text = open(README, encoding="utf-8").read()
    dotted = {n for n in re.findall(r"`(gitml(?:\.\w+)+)", text) if not n.startswith(NOT_API)}
    assert len(dotted) >= 30
    artifacts = "list_artifacts download_artifacts load_text load_dict load_table".split()
    for name in sorted(dotted) + [f"gitml.{n}" for n in FLUENT] + [f"gitml.artifacts.{n}" for n in artifacts]:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            break
        for attribute in parts[cut:]:
            assert hasattr(obj, attribute), f"the README names {name}, which does not exist"
            obj = getattr(obj, attribute)


def test_every_command_line_the_readme_gives_has_those_options():
    """Each `gitml CMD ... --opt` in the README (spans and bash blocks): CMD is a command and
    every option it shows is one of CMD's."""
    text = open(README, encoding="utf-8").read()
    spans = re.findall(r"`(gitml [^`]*)`", text)
    for code in re.findall(r"```bash\n(.*?)```", text, re.S):
        spans += [line.split("  #")[0].strip() for line in code.splitlines() if line.startswith("gitml ")]
    checked = 0
    for span in spans:
        words, command = span.split()[1:], main
        while words and isinstance(command, click.Group) and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        if command is main:
            continue  # `gitml.` prose, not a command line
        known = {"-C", "--traceback", "-h", "--help"}
        for param in command.params:
            known.update(param.opts + param.secondary_opts)
        for word in words:
            for piece in re.split(r"[\[\]|]", word):
                piece = piece.strip(".,;:()")
                if re.match(r"--?[A-Za-z]", piece):
                    assert piece.split("=")[0] in known, f"README: `{span}`: {command.name} has no {piece}"
                    checked += 1
    assert checked >= 40


def test_every_extra_the_readme_installs_is_declared():
    import tomllib

    text = open(README, encoding="utf-8").read()
    named = set(re.findall(r"gitml\[([a-z0-9_-]+)\]", text))
    named |= {e for group in re.findall(r"\"\.\[([a-z0-9_,-]+)\]\"", text) for e in group.split(",")}
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = set(tomllib.load(f)["project"]["optional-dependencies"])
    assert {"sklearn", "serve", "report", "ui", "test", "mlflow"} <= named
    assert named <= declared, named - declared

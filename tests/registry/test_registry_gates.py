"""Promotion gates in the committed policy, through a real remote (a bare origin) with real
gpg keys: ``registry check`` judges each gate and fails the pull request when one fails;
``apply`` and ``promote`` refuse a failing promotion; ``--force`` by a trusted signer
overrides it and the tag's message says so; an untrusted signer cannot force; a branch
that weakens the gates changes nothing; the metrics judged are the run's as registered."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

import gitml
import gitml.ops
import gitml.pyfunc
import gitml.sklearn
from gitml.errors import GateError, PolicyError
from gitml.registry.gates import parse_gates
from tests.conftest import git
from tests.registry.test_registry import _run
from tests.registry.test_registry_signing import _commit_policy, _gpg_key, gnupg  # noqa: F401  (the fixture)
from tests.runlog.test_hostile_records import gitml_cli

pytestmark = pytest.mark.skipif(not shutil.which("gpg"), reason="gpg missing")

GATES = """\
gates:
  production:
    require: {metrics.auc: ">= 0.8"}
    no_worse_than_current: [metrics.auc, {metrics.loss: lower}]
"""


def _client(path) -> gitml.Client:
    gitml.set_tracking_uri(str(path))
    return gitml.ops.Operations(path)


def _gated_run(c, n: int, auc: float, loss: float) -> str:
    run_id = _run(c, n, auc=auc)
    c.log_metric(run_id, "loss", loss)
    return run_id


@pytest.fixture
def team(repo, gnupg, tmp_path, monkeypatch):  # noqa: F811
    """A maintainer's repository whose policy on main gates production (auc >= 0.8, no
    regression of auc or loss) and requires it signed by the release bot; v1 (auc 0.85) holds
    production; v2 (0.9, better), v3 (0.7: under the threshold) and v4 (0.82: a regression
    against v2) are registered, signed. A bare origin, a CI clone and an attacker's clone."""
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    bot = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    mallory = _gpg_key(gnupg, "Mallory <m@example.com>")
    git(repo, "config", "user.signingkey", bot)
    _commit_policy(repo, f"require_signature: [production]\ntrusted_gpg_keys: [{bot}]\n{GATES}")
    with _client(repo) as c:
        for n, auc, loss in ((1, 0.85, 0.5), (2, 0.9, 0.4), (3, 0.7, 0.3), (4, 0.82, 0.45)):
            c.registry.register("churn", _gated_run(c, n, auc, loss), sign_tag=True)
        c.registry.assign("churn", "1", "production", sign_tag=True)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    gitml_cli(repo, "push")
    clones = {}
    for name in ("ci", "attacker"):
        clones[name] = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clones[name]))
        gitml_cli(clones[name], "fetch")
    git(clones["ci"], "config", "user.signingkey", bot)
    git(clones["attacker"], "config", "user.signingkey", mallory)
    return {"bot": bot, "mallory": mallory, "origin": origin, "maintainer": repo, **clones}


def _production(path) -> str:
    with gitml.ops.Operations(path) as c:
        return c.registry.resolve("churn", stage="production").version


def _pull_request(team, clone, version: str, branch: str):
    """Commit ``production: version`` in .gitml/stages.yaml on ``branch`` and push it."""
    gitml_cli(clone, "registry", "propose", "churn", version, "production", "-b", branch)
    git(clone, "push", "-q", "origin", branch)


def _ci_check(team, tmp_path, branch: str, code: int) -> str:
    ci = tmp_path / f"check-{branch.replace('/', '-')}"
    git(tmp_path, "clone", "-q", "-b", branch, str(team["origin"]), str(ci))
    gitml_cli(ci, "fetch")
    report = tmp_path / f"{branch.replace('/', '-')}.md"
    gitml_cli(ci, "registry", "check", "--base", "origin/main", "--report", str(report), code=code)
    return report.read_text()


def _merge(team, branch: str) -> None:
    """The pull request merged on the origin's main, and the CI clone at it."""
    ci = team["ci"]
    git(ci, "fetch", "-q", "origin")
    git(ci, "merge", "-q", "--ff-only", f"origin/{branch}")
    git(ci, "push", "-q", "origin", "HEAD:main")


def test_check_passes_and_apply_promotes_when_every_gate_passes(team, tmp_path):
    _pull_request(team, team["maintainer"], "v2.0.0", "promote-v2")
    text = _ci_check(team, tmp_path, "promote-v2", code=0)
    assert "all checks pass" in text
    assert "Gates of stage production (the policy of origin/main at" in text
    assert "| ✅ passes | `metrics.auc >= 0.8` | candidate 0.9 |" in text
    assert (
        "| ✅ passes | `metrics.loss no worse than the current holder's (lower is better)` | "
        "`candidate 0.4, current v1.0.0 0.5` |"
    ) in text
    _merge(team, "promote-v2")
    out = gitml_cli(team["ci"], "registry", "apply", "--sign")
    assert "churn: production -> v2.0.0" in out
    gitml_cli(team["ci"], "push")
    assert _production(team["ci"]) == "v2.0.0"


@pytest.mark.parametrize(
    "version, failing",
    [
        ("v3.0.0", "metrics.auc >= 0.8: FAILS (candidate 0.7)"),
        (
            "v4.0.0",
            "metrics.auc no worse than the current holder's (higher is better): "
            "FAILS (candidate 0.82, current v2.0.0 0.9)",
        ),
    ],
)
def test_a_failing_gate_fails_the_check_and_apply_and_promote_refuse_it(team, tmp_path, version, failing):
    ci = team["ci"]
    with _client(ci) as c:
        c.registry.assign("churn", "v2.0.0", "production", sign_tag=True)  # v2 holds production now
    gitml_cli(ci, "push")
    _pull_request(team, ci, version, f"promote-{version}")
    text = _ci_check(team, tmp_path, f"promote-{version}", code=1)
    assert "**problems found**" in text and "❌ fails" in text
    assert f"churn {version} fails the gate(s) of stage" in text
    _merge(team, f"promote-{version}")
    tags = git(ci, "tag", "-l", "churn#production#*")
    out = gitml_cli(ci, "registry", "apply", "--sign", code=1)
    assert failing in out and "--force" in out and "under the policy of origin/main" in out
    out = gitml_cli(ci, "registry", "promote", "churn", version, "production", "--sign", code=1)
    assert failing in out
    assert git(ci, "tag", "-l", "churn#production#*") == tags  # nothing written
    with _client(ci) as c, pytest.raises(GateError):  # the API refuses it too (MLflow's calls go through it)
        c.registry.assign("churn", version, "production", sign_tag=True)
    assert _production(ci) == "v2.0.0"


def test_a_trusted_signer_overrides_with_force_and_the_tag_says_so(team, tmp_path):
    ci = team["ci"]
    _pull_request(team, ci, "v3.0.0", "promote-v3")
    _merge(team, "promote-v3")
    out = gitml_cli(ci, "registry", "apply", "--sign", "--force")
    assert "churn: production -> v3.0.0 (churn#production#" in out
    tag = out.strip().rsplit("(", 1)[1].rstrip(")")
    git(ci, "verify-tag", tag)  # git accepts the signature
    message = yaml.safe_load(git(ci, "cat-file", "tag", tag).split("\n\n", 1)[1].split("-----BEGIN PGP")[0])
    assert message["gitml-registry"]["gates_overridden"] == [
        "metrics.auc >= 0.8: FAILS (candidate 0.7)",
        "metrics.auc no worse than the current holder's (higher is better): FAILS (candidate 0.7, current v1.0.0 0.85)",
    ]
    gitml_cli(ci, "push")
    git(team["maintainer"], "fetch", "-q", "origin")
    gitml_cli(team["maintainer"], "fetch")
    assert _production(team["maintainer"]) == "v3.0.0"


def test_force_by_an_untrusted_or_no_signature_is_refused(team):
    attacker = team["attacker"]
    for args in (["--sign", "--force"], ["--no-sign", "--force"]):
        out = gitml_cli(attacker, "registry", "promote", "churn", "v3.0.0", "production", *args, code=1)
        assert "signed by a key the policy does not trust" in out or "requires signed tags" in out, out
    assert git(attacker, "tag", "-l", "churn#production#*").split() == ["churn#production#1"]
    assert _production(attacker) == "v1.0.0"


def test_a_branch_that_weakens_the_gates_changes_nothing(team, tmp_path):
    attacker, ci = team["attacker"], team["ci"]
    # the pull request also drops the gates from its own policy
    git(attacker, "checkout", "-q", "-b", "weaken")
    _commit_policy(
        attacker,
        f"require_signature: [production]\ntrusted_gpg_keys: [{team['bot']}]\n"
        "gates: {production: {require: {metrics.auc: '>= 0.1'}}}\n",
    )
    (attacker / ".gitml" / "stages.yaml").write_text("churn:\n  production: v3.0.0\n")
    git(attacker, "add", ".gitml")
    git(attacker, "commit", "-qm", "promote v3, relax the gates")
    git(attacker, "push", "-q", "origin", "weaken")
    text = _ci_check(team, tmp_path, "weaken", code=1)
    assert "Checked under the policy of origin/main at" in text
    assert "| ❌ fails | `metrics.auc >= 0.8` | candidate 0.7 |" in text
    # the release bot's clone checks the branch out: main's gates still decide a promotion
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "-b", "weaken", "origin/weaken")
    out = gitml_cli(ci, "registry", "promote", "churn", "v3.0.0", "production", "--sign", code=1)
    assert "metrics.auc >= 0.8: FAILS (candidate 0.7)" in out and "the policy of origin/main" in out
    assert _production(ci) == "v1.0.0"


def test_the_metrics_judged_are_the_runs_as_registered(team):
    """A run that logs a better value after its registration does not pass the gate with it."""
    maintainer = team["maintainer"]
    with _client(maintainer) as c:
        mv = c.registry.resolve("churn", "v3.0.0")
        c.log_metric(mv.run_id, "auc", 0.99)  # the run moves on; the tag vouches for its commit
        with pytest.raises(GateError, match=r"metrics.auc >= 0.8: FAILS \(candidate 0.7\)"):
            c.registry.assign("churn", "v3.0.0", "production", sign_tag=True)


@pytest.mark.parametrize(
    "gates, message",
    [
        (
            {"production": {"require": {"metrics.auc": "at least 0.8"}}},
            "gates.production.require.metrics.auc: "
            "expected a comparison and a number such as \">= 0.9\", not 'at least 0.8'",
        ),
        (
            {"production": {"require": {"auc": ">= 0.8"}}},
            "gates.production.require: 'auc' is not a metric key (metrics.<name>)",
        ),
        (
            {"production": {"no_worse_than_current": [{"metrics.loss": "smaller"}]}},
            "gates.production.no_worse_than_current.metrics.loss: say higher or lower (which is better), not 'smaller'",
        ),
        (
            {"production": {"requires": {}}},
            "gates.production: unknown key(s) requires; known: require, no_worse_than_current, dataset",
        ),
        ({"qa": {}}, "gates.qa: 'qa' is not one of the stages the policy allows: staging, production"),
        ({"production": {"dataset": "holdout"}}, "gates.production.dataset: 'holdout' is not one of the datasets"),
    ],
)
def test_bad_gate_syntax_is_one_line_naming_the_key(repo, gates, message):
    _commit_policy(repo, yaml.safe_dump({"stages": ["staging", "production"], "gates": gates}))
    out = gitml_cli(repo, "registry", "policy", code=1)
    assert message in out and len(out.strip().splitlines()) == 1, out
    with pytest.raises(PolicyError):
        with gitml.ops.Operations(repo) as c:
            c.registry.policy  # noqa: B018


def test_the_policy_shows_its_gates(repo):
    _commit_policy(repo, GATES)
    out = gitml_cli(repo, "registry", "policy")
    assert "'production': ['metrics.auc >= 0.8', \"metrics.auc no worse" in out
    assert parse_gates(None, None, str, {}) == {}


# -- gates on a dataset the policy names ------------------------------------------------
def _holdout(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return pd.DataFrame(X, columns=["a", "b"]).assign(label=(X[:, 0] + 0.2 * X[:, 1] > 0).astype(int))


def _sk_run(c, *, good: bool, claimed: float) -> str:
    """A run logging a scikit-learn classifier (a good one, or one trained on shuffled labels)
    and an accuracy it claims."""
    from sklearn.linear_model import LogisticRegression

    train = _holdout(400, 1)
    y = train["label"] if good else train["label"].sample(frac=1, random_state=0).to_numpy()
    with gitml.start_run() as run:
        gitml.sklearn.log_model(LogisticRegression().fit(train[["a", "b"]], y), name="model")
        gitml.log_metric("accuracy_score", claimed)
    return run.info.run_id


DATASET_POLICY = """\
require_signature: [production]
trusted_gpg_keys: [{bot}]
datasets:
  holdout: {{path: data/holdout.csv, targets: label, model_type: classifier}}
gates:
  production:
    dataset: holdout
    require: {{metrics.accuracy_score: ">= 0.9"}}
    no_worse_than_current: [metrics.f1_score]
"""


@pytest.fixture
def holdout_team(repo, gnupg, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    bot = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    git(repo, "config", "user.signingkey", bot)
    (repo / "data").mkdir()
    _holdout(300, 2).to_csv(repo / "data" / "holdout.csv", index=False)
    git(repo, "add", "data")
    _commit_policy(repo, DATASET_POLICY.format(bot=bot))
    with _client(repo) as c:
        c.registry.register("churn", _sk_run(c, good=True, claimed=0.95), sign_tag=True)  # v1: good
        c.registry.register("churn", _sk_run(c, good=False, claimed=0.99), sign_tag=True)  # v2: claims 0.99, is not
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    gitml_cli(repo, "push")
    attacker = tmp_path / "attacker"
    git(tmp_path, "clone", "-q", str(origin), str(attacker))
    gitml_cli(attacker, "fetch")
    return {"bot": bot, "origin": origin, "maintainer": repo, "attacker": attacker}


def test_a_dataset_gate_judges_the_model_on_the_policys_data_not_the_runs_claims(holdout_team, tmp_path):
    maintainer = holdout_team["maintainer"]
    out = gitml_cli(maintainer, "registry", "promote", "churn", "v2.0.0", "production", "--sign", code=1)
    assert "metrics.accuracy_score >= 0.9: FAILS (candidate 0.4533" in out  # its run claims 0.99
    out = gitml_cli(maintainer, "registry", "promote", "churn", "v1.0.0", "production", "--sign")
    assert "production now holds v1.0.0" in out
    gitml_cli(maintainer, "push")
    # a pull request that swaps the holdout set for one the bad model passes changes nothing
    attacker = holdout_team["attacker"]
    gitml_cli(attacker, "fetch")
    git(attacker, "checkout", "-q", "-b", "swap")
    (attacker / "data" / "holdout.csv").write_text("a,b,label\n" + "".join(f"{i},0,1\n" for i in range(50)))
    (attacker / ".gitml" / "stages.yaml").write_text("churn:\n  production: v2.0.0\n")
    git(attacker, "add", ".")
    git(attacker, "commit", "-qm", "promote v2 on an easier holdout")
    git(attacker, "push", "-q", "origin", "swap")
    text = _ci_check(holdout_team, tmp_path, "swap", code=1)
    assert "evaluated on dataset holdout (`data/holdout.csv`, sha256" in text
    assert "| ❌ fails | `metrics.accuracy_score >= 0.9` |" in text
    assert "| ❌ fails | `metrics.f1_score no worse than the current holder's (higher is better)` |" in text


def test_a_dataset_gate_never_unpickles_an_unsigned_candidate(holdout_team, tmp_path):
    from tests.registry.test_registry_trust import Boobytrap

    attacker = holdout_team["attacker"]
    marker = tmp_path / "pwned"
    with _client(attacker) as c:
        with gitml.start_run() as run:
            gitml.pyfunc.log_model(name="model", python_model=Boobytrap(str(marker)))
        c.registry.register("churn", run.info.run_id)  # v3, unsigned
    gitml_cli(attacker, "push")
    git(attacker, "checkout", "-q", "-b", "promote-v3")
    (attacker / ".gitml" / "stages.yaml").write_text("churn:\n  production: v3.0.0\n")
    git(attacker, "add", ".gitml")
    git(attacker, "commit", "-qm", "promote v3")
    git(attacker, "push", "-q", "origin", "promote-v3")
    text = _ci_check(holdout_team, tmp_path, "promote-v3", code=1)
    assert "| ❌ fails | `metrics.accuracy_score >= 0.9` |" in text and "not evaluated on dataset" in text
    assert "not loaded: its registration tag churn@v3.0.0 is not signed" in text
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "link", "submodule"])
def test_a_policy_dataset_that_is_not_committed_is_one_line(repo, kind):
    """Nor is a symbolic link (its target is never followed) or a submodule a dataset."""
    if kind == "link":
        (repo / "data").mkdir()
        os.symlink("/etc/passwd", repo / "data" / "link.csv")
        git(repo, "add", "data")
    elif kind == "submodule":
        head = git(repo, "rev-parse", "HEAD").strip()
        git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},data/submodule.csv")
    path = {"missing": "data/missing.csv", "link": "data/link.csv", "submodule": "data/submodule.csv"}[kind]
    _commit_policy(repo, f"datasets: {{holdout: {{path: {path}, targets: y, model_type: classifier}}}}\n")
    out = gitml_cli(repo, "registry", "policy", code=1)
    assert f"datasets.holdout.path names '{path}', which is not committed there" in out
    assert out.count("\n") == 1 and "root:" not in out


INJECTED = "</details>\n\n## gitml registry check\n\n1 stage change(s): all checks pass <img src=x> [ok](https://x.io)"


def test_a_candidates_values_cannot_change_the_reports_verdict_or_hide_text(team, tmp_path):
    """A teammate's candidate whose run, description and tagger carry Markdown, HTML and
    terminal escapes: the report CI posts still says problems were found, once, and renders
    with none of it live (no heading, image, link or hidden text) and no control character."""
    from tests.runlog.test_report import gfm

    attacker = team["attacker"]
    git(attacker, "config", "user.name", "Mallory\x1b[8m\u202e")
    with _client(attacker) as c:
        run_id = _gated_run(c, 5, 0.95, 0.1)
        c.log_param(run_id, "note", INJECTED + "\x1b]0;pwned\x07\u202e")
        c.registry.register("churn", run_id, description=INJECTED)  # unsigned: production needs the bot
    gitml_cli(attacker, "push")
    _pull_request(team, attacker, "v5.0.0", "promote-v5")
    text = _ci_check(team, tmp_path, "promote-v5", code=1)
    assert "1 stage change(s) in `.gitml/stages.yaml`: **problems found**." in text
    assert "all checks pass" not in text.split("\n### ", 1)[0]  # the verdict, above the first section
    assert not any(ch in text for ch in ("\x1b", "\x07", "\u202e"))
    html = gfm(text)
    assert html.count("<h2>") == 1 and "<img" not in html and "<a " not in html and "</details>" not in html
    assert "Mallory" in text  # the tagger is named, inert

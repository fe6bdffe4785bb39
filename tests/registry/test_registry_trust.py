"""The registry's trust chain against a hostile teammate with push access, through real
remotes (a bare origin, ``git daemon``) and real signatures (gpg keys made in the test):
the policy comes from the trusted ref as the clone accepted it, never from the checked-out
branch; every event that changes what a URI resolves to needs the signature an
assignment needs; a signed tag counts only under its own name; ``registry check`` never
unpickles a candidate whose chain does not verify under the base branch's policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import gitml
import gitml.ops
import gitml.pyfunc
from gitml.registry import UntrustedTagError
from gitml.registry.state import Registry
from tests.conftest import git
from tests.registry.test_registry import _run
from tests.registry.test_registry_signing import _commit_policy, _gpg_key, gnupg  # noqa: F401  (the fixture)
from tests.runlog.test_hostile_records import gitml_cli
from tests.store.test_remote import git_daemon

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("ssh-keygen")), reason="gpg / ssh-keygen missing"
)


class Boobytrap(gitml.pyfunc.PythonModel):
    """An attacker's model: unpickling it writes its marker file (code ran)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        self.__dict__.update(state)
        Path(state["marker"]).write_text("unpickled")

    def predict(self, context, model_input, params=None):
        return ["attacker"] * len(model_input)


def _client(path) -> gitml.Client:
    gitml.set_tracking_uri(str(path))
    return gitml.ops.Operations(path)


def _production(path) -> str:
    with gitml.ops.Operations(path) as c:
        return c.registry.resolve("churn", stage="production").version


def _push_tags(clone, *names, url="origin"):
    git(clone, "push", "-q", str(url), *[f"refs/tags/{n}" for n in names])


@pytest.fixture
def team(repo, gnupg, tmp_path, monkeypatch):  # noqa: F811
    """A maintainer's repository (production v1 and staging v2, signed by the release bot
    under ``require_signature: [production]`` on main), its bare origin, a victim's clone
    and an attacker's clone (push access, a key of their own, no trusted key). Tags are
    ordered by time (GTO's rule): the maintainer's are pinned before every later one."""
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    bot = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    mallory = _gpg_key(gnupg, "Mallory <m@example.com>")
    git(repo, "config", "user.signingkey", bot)
    policy = f"require_signature: [production]\ntrusted_gpg_keys: [{bot}]\n"
    _commit_policy(repo, policy)
    with _client(repo) as c:
        r1, r2 = _run(c, 1), _run(c, 2)
        c.registry.register("churn", r1, sign_tag=True)
        c.registry.register("churn", r2, sign_tag=True)
        c.registry.assign("churn", "1", "production", sign_tag=True)  # churn#production#1
        c.registry.assign("churn", "2", "staging", sign_tag=True)  # churn#staging#2
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    gitml_cli(repo, "push")
    clones = {}
    for name in ("victim", "attacker"):
        clones[name] = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clones[name]))
        gitml_cli(clones[name], "fetch")
    git(clones["attacker"], "config", "user.signingkey", mallory)
    assert _production(clones["victim"]) == "v1.0.0"
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700001000 +0000")
    return {"bot": bot, "mallory": mallory, "origin": origin, "maintainer": repo, "policy": policy, **clones}


def _commit(clone, ref: str) -> str:
    return git(clone, "rev-parse", f"{ref}^{{commit}}").strip()


def _attacker_tag(team, name: str, target: str, message: str = "attack", *, signed: bool = False) -> None:
    attacker = team["attacker"]
    git(attacker, "tag", "-s" if signed else "-a", "-m", message, name, _commit(attacker, target))


# -- the policy comes from the trusted ref, accepted by the clone --------------------
def test_a_branch_that_drops_the_policy_changes_nothing_for_the_victim(team):
    attacker, victim = team["attacker"], team["victim"]
    git(attacker, "checkout", "-q", "-b", "evil")
    _commit_policy(attacker, "require_signature: []\n")  # the branch's own policy: nothing required
    _attacker_tag(team, "churn#production#3", "churn@v2.0.0")  # an unsigned promotion
    git(attacker, "push", "-q", "origin", "evil")
    _push_tags(attacker, "churn#production#3")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "fetch")
    git(victim, "checkout", "-q", "-b", "evil", "origin/evil")  # the victim checks the branch out
    with gitml.ops.Operations(victim) as c:
        assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
        assert c.registry.policy.source.startswith("the policy of origin/main at ")
        assert "not signed" in c.registry.model("churn").ignored["churn#production#3"]
    shown = json.loads(gitml_cli(victim, "registry", "policy", "--json"))
    assert shown["require_signature"] == ["production"] and "origin/main" in shown["source"]
    out = gitml_cli(victim, "registry", "verify", code=1)
    assert "churn#production#3: not signed; stage 'production' requires a tag signed by a trusted key" in out
    assert "under the policy of origin/main at" in out
    assert "note: the checked-out branch evil has another .gitml/registry.yaml: it decides nothing" in out
    with gitml.ops.Operations(victim) as c:
        from gitml.ui import registry as ui_registry

        assert any("branch evil" in note for note in ui_registry.models(c)["policy_notes"])


def test_a_policy_change_on_the_trusted_ref_waits_for_the_clone_to_accept_it(team):
    maintainer, victim, attacker = team["maintainer"], team["victim"], team["attacker"]
    # a change that reached main (say a merged pull request) trusts the attacker's key too
    _commit_policy(
        maintainer, f"require_signature: [production]\ntrusted_gpg_keys: [{team['bot']}, {team['mallory']}]\n"
    )
    git(maintainer, "push", "-q", "origin", "main")
    _attacker_tag(team, "churn#production#3", "churn@v2.0.0", signed=True)  # signed by Mallory
    _push_tags(attacker, "churn#production#3")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "fetch")
    with gitml.ops.Operations(victim) as c:
        policy = c.registry.policy
        assert policy.source.startswith("the policy this clone accepted (origin/main at ")
        assert "has another policy, not accepted by this clone" in policy.pending
        assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
    out = gitml_cli(victim, "registry", "policy")
    assert "note: origin/main at" in out and "--accept" in out
    assert "accepted: the policy of origin/main at" in gitml_cli(victim, "registry", "policy", "--accept")
    with gitml.ops.Operations(victim) as c:
        assert c.registry.policy.pending == ""
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"  # Mallory is trusted now
    # a comment is no change of the policy: nothing to accept
    (maintainer / ".gitml" / "registry.yaml").write_text(
        "# reviewed\n" + (maintainer / ".gitml" / "registry.yaml").read_text()
    )
    git(maintainer, "commit", "-qam", "comment")
    git(maintainer, "push", "-q", "origin", "main")
    git(victim, "fetch", "-q", "origin")
    with gitml.ops.Operations(victim) as c:
        assert c.registry.policy.pending == "" and "(accepted)" in c.registry.policy.source
    # a policy that does not parse on main: the accepted one keeps deciding, and says why
    (maintainer / ".gitml" / "registry.yaml").write_text("require_signature: [production\n")
    git(maintainer, "commit", "-qam", "broken")
    git(maintainer, "push", "-q", "origin", "main")
    git(victim, "fetch", "-q", "origin")
    with gitml.ops.Operations(victim) as c:
        assert "policy does not parse" in c.registry.policy.pending
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"
    with pytest.raises(gitml.errors.CorruptRecordError, match="registry.yaml"):
        with gitml.ops.Operations(victim) as c:
            c.registry.accept_policy()  # nothing broken is accepted


def test_the_trusted_ref_can_be_configured_and_a_missing_one_fails_closed(team):
    victim = team["victim"]
    git(victim, "checkout", "-q", "-b", "release")
    _commit_policy(victim, "require_signature: []\n")
    assert "accepted: the policy of release at" in gitml_cli(victim, "registry", "policy", "--ref", "release")
    with gitml.ops.Operations(victim) as c:
        assert c.registry.policy.require_signature == frozenset()
    git(victim, "checkout", "-q", "main")
    git(victim, "branch", "-D", "release")
    out = gitml_cli(victim, "registry", "show", "churn", code=1)
    assert "trusted ref 'refs/heads/release' configured there does not exist" in out


def test_a_key_removed_from_the_policy_decides_nothing_once_the_clone_accepts_the_change(team, gnupg):  # noqa: F811
    """The bot's key leaked: main's policy now trusts a new key only. A promotion the
    attacker signs with the old key, and the old key's own promotions, stop counting
    when the clone accepts the change (not before: the clone decides when), and verify
    names them; the new key's promotion decides."""
    maintainer, victim, attacker = team["maintainer"], team["victim"], team["attacker"]
    bot2 = _gpg_key(gnupg, "Release Bot 2 <bot2@example.com>")
    _commit_policy(maintainer, f"require_signature: [production]\ntrusted_gpg_keys: [{bot2}]\n")
    git(maintainer, "push", "-q", "origin", "main")
    git(attacker, "config", "user.signingkey", team["bot"])  # the leaked key
    _attacker_tag(team, "churn#production#3", "churn@v2.0.0", signed=True)
    _push_tags(attacker, "churn#production#3")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "fetch")
    assert _production(victim) == "v2.0.0"  # the policy the clone accepted still trusts the old key...
    with gitml.ops.Operations(victim) as c:
        assert "not accepted by this clone" in c.registry.policy.pending  # ...and says a change waits
    gitml_cli(victim, "registry", "policy", "--accept")
    with gitml.ops.Operations(victim) as c:
        state = c.registry.model("churn", report=True)
        assert "production" not in state.stages and state.stages["staging"] == "v2.0.0"
        for name in ("churn#production#1", "churn#production#3"):
            assert "fingerprint not in trusted_gpg_keys" in state.ignored[name], state.ignored
        with pytest.raises(gitml.errors.GitmlError, match="production"):
            c.registry.resolve("churn", stage="production")
    out = gitml_cli(victim, "registry", "verify", code=1)
    assert "churn#production#3: signed by a key the policy does not trust (Release Bot <bot@example.com>" in out
    git(maintainer, "config", "user.signingkey", bot2)
    gitml_cli(maintainer, "fetch")
    with gitml.ops.Operations(maintainer) as c:
        c.registry.assign("churn", "1", "production", sign_tag=True)
    gitml_cli(maintainer, "push")
    gitml_cli(victim, "fetch")
    assert _production(victim) == "v1.0.0"


def _replay_from_sandbox(team, tmp_path, sandbox_policy: str) -> Path:
    """The bot's key signs in a sandbox repository too: there churn v3.0.0 (the sandbox's own
    model, adding 12) is promoted to production as churn#production#4. The attacker copies
    that registration, that promotion and the run into origin (push access is all it takes)."""
    attacker = team["attacker"]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    git(sandbox, "init", "-q", "-b", "main")
    _commit_policy(sandbox, sandbox_policy)
    git(sandbox, "config", "user.signingkey", team["bot"])
    with _client(sandbox) as c:
        runs = [_run(c, 10 + i) for i in range(3)]
        for run in runs:
            c.registry.register("churn", run, sign_tag=True)
        for version in ("1", "2", "1"):
            c.registry.assign("churn", version, "dev", sign_tag=True)  # counters 1-3
        c.registry.assign("churn", "3", "production", sign_tag=True)  # churn#production#4
    run_ref = git(sandbox, "for-each-ref", "--format=%(refname)", "refs/gitml").split()
    run_ref = next(r for r in run_ref if runs[2] in r)
    wanted = [f"{r}:{r}" for r in ("refs/tags/churn@v3.0.0", "refs/tags/churn#production#4", run_ref)]
    git(attacker, "fetch", "-q", str(sandbox), *wanted)
    git(attacker, "push", "-q", "origin", *wanted)
    return sandbox


def test_a_promotion_signed_in_another_repository_is_refused_when_the_policy_names_its_repository(team, tmp_path):
    """A key trusted here may sign elsewhere (a maintainer's key, a CI bot's): the tags it
    signed there are valid signatures of their own names. With ``repository:`` in the
    trusted policy every tag gitml writes names it inside what is signed, and a guarded tag
    naming another repository, or none, does not count: the replayed promotion changes
    nothing, and verify names it."""
    maintainer, victim = team["maintainer"], team["victim"]
    policy = team["policy"] + "repository: acme/churn-service\n"
    _commit_policy(maintainer, policy)
    git(maintainer, "push", "-q", "origin", "main")
    with gitml.ops.Operations(maintainer) as c:  # the current holder signed again, now for this repository
        c.registry.accept_policy()
        assert c.registry.assign("churn", "1", "production", sign_tag=True) == ("churn#production#3", True)
    gitml_cli(maintainer, "push")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "fetch")
    gitml_cli(victim, "registry", "policy", "--accept")
    with gitml.ops.Operations(victim) as c:
        state = c.registry.model("churn", report=True)
        assert state.stages["production"] == "v1.0.0" and state.deciding["production"].tag.name == "churn#production#3"
        old = next(e for e in state.events if e.tag.name == "churn#production#1")  # signed before the binding
        assert "its message names no repository" in c.registry.rejection(old)
    _replay_from_sandbox(team, tmp_path, "require_signature: [production]\nrepository: acme/sandbox\n")
    gitml_cli(victim, "fetch")
    with gitml.ops.Operations(victim) as c:
        state = c.registry.model("churn", report=True)
        assert "v3.0.0" in state.versions  # registrations are not guarded under a stage list
        assert state.stages["production"] == "v1.0.0"
        why = state.ignored["churn#production#4"]
        assert "names repository 'acme/sandbox'" in why and "'acme/churn-service'" in why, why
        assert c.registry.verification(next(e for e in state.events if e.tag.name == "churn#production#4")).trusted
    with _client(victim):
        assert gitml.pyfunc.load_model("models:/churn@production").predict([1]) == [2]
    out = gitml_cli(victim, "registry", "verify", code=1)
    assert "churn#production#4: its message names repository 'acme/sandbox'" in out
    assert json.loads(gitml_cli(victim, "registry", "policy", "--json"))["repository"] == "acme/churn-service"


# -- every event that changes a resolution needs the signature ------------------------
@pytest.mark.parametrize("mode", ["ignore", "refuse"])
def test_unsigned_register_deregister_deprecate_and_unassign_change_nothing(team, mode, tmp_path):
    maintainer, victim, attacker = team["maintainer"], team["victim"], team["attacker"]
    _commit_policy(maintainer, f"require_signature: true\ntrusted_gpg_keys: [{team['bot']}]\non_untrusted: {mode}\n")
    git(maintainer, "push", "-q", "origin", "main")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "registry", "policy", "--accept")
    marker = tmp_path / "pwned"
    with _client(attacker) as c:  # the attacker's own run, registered unsigned as the next version
        with gitml.start_run() as run:
            gitml.pyfunc.log_model(name="model", python_model=Boobytrap(str(marker)))
        c.registry.register("churn", run.info.run_id)  # churn@v3.0.0: the policy on its main requires it signed...
    gitml_cli(attacker, "push")
    _attacker_tag(team, "churn@v1.0.0!#3", "churn@v1.0.0")  # deregister the production version
    _attacker_tag(team, "churn#production!#4", "churn@v1.0.0")  # unassign it
    _attacker_tag(team, "churn@deprecated#5", "churn@v1.0.0")  # withdraw the model
    _push_tags(attacker, "churn@v1.0.0!#3", "churn#production!#4", "churn@deprecated#5")
    gitml_cli(victim, "pull")
    with _client(victim) as c:
        if mode == "refuse":
            with pytest.raises(UntrustedTagError, match=r"tag churn@\S+: not signed.*on_untrusted: refuse"):
                gitml.pyfunc.load_model("models:/churn/latest")
            with pytest.raises(UntrustedTagError):
                c.registry.resolve("churn", stage="production")
        else:
            state = c.registry.model("churn")
            assert not state.deprecated and state.stages == {"production": "v1.0.0", "staging": "v2.0.0"}
            assert state.latest.version == "v2.0.0" and "v3.0.0" not in state.versions
            assert set(state.ignored) == {
                "churn@v3.0.0",
                "churn@v1.0.0!#3",
                "churn#production!#4",
                "churn@deprecated#5",
            }
            assert all("not signed" in why for why in state.ignored.values())
            assert gitml.pyfunc.load_model("models:/churn/latest").predict([1]) == [3]
            assert gitml.pyfunc.load_model("models:/churn@production").predict([1]) == [2]
            assert gitml.pyfunc.load_model("models:/churn/1").predict([1]) == [2]
    assert not marker.exists()
    out = gitml_cli(victim, "registry", "verify", code=1)
    for name in ("churn@v3.0.0", "churn@v1.0.0!#3", "churn#production!#4", "churn@deprecated#5"):
        assert f"{name}: not signed" in out
    history = json.loads(gitml_cli(victim, "registry", "history", "churn", "--json"))
    decisions = {h["tag"]: h["decision"] for h in history}
    assert (
        decisions["churn@deprecated#5"].startswith("ignored: not signed")
        and decisions["churn#production#1"] == "counts"
    )


def test_a_stage_list_guards_deregister_and_deprecate_and_the_writer_refuses_them_unsigned(team):
    victim, attacker = team["victim"], team["attacker"]
    _attacker_tag(team, "churn@v1.0.0!#3", "churn@v1.0.0")  # would roll production back (to nothing)
    _attacker_tag(team, "churn@deprecated#4", "churn@v2.0.0")  # would take every stage offline
    _push_tags(attacker, "churn@v1.0.0!#3", "churn@deprecated#4")
    gitml_cli(victim, "fetch")
    assert _production(victim) == "v1.0.0"
    with _client(victim) as c:
        assert c.registry.resolve("churn", "1").version == "v1.0.0"
        with pytest.raises(gitml.errors.InvalidInputError, match="a deregister tag requires signed tags"):
            c.registry.deregister("churn", "2")
        with pytest.raises(gitml.errors.InvalidInputError, match="a deprecate tag requires signed tags"):
            c.registry.deprecate("churn")
        c.registry.register("churn", _run(c, 3))  # registrations need no signature under a stage list
        assert c.registry.resolve("churn").version == "v3.0.0"


def test_an_ignored_tag_with_an_outsized_counter_does_not_block_promotion(team):
    victim, attacker = team["victim"], team["attacker"]
    top = "9" * 18  # the greatest counter a tag name holds
    _attacker_tag(team, f"churn#production#{top}", "churn@v2.0.0")  # unsigned: ignored
    _push_tags(attacker, f"churn#production#{top}")
    gitml_cli(victim, "fetch")
    git(victim, "config", "user.signingkey", team["bot"])
    with gitml.ops.Operations(victim) as c:
        assert c.registry.assign("churn", "2", "production", sign_tag=True) == ("churn#production#3", True)
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"
    _attacker_tag(team, f"churn#dev#{top}", "churn@v1.0.0")  # a stage the policy leaves open: it counts
    _push_tags(attacker, f"churn#dev#{top}")
    gitml_cli(victim, "fetch")
    with gitml.ops.Operations(victim) as c:
        with pytest.raises(gitml.errors.ConflictError, match="makes no registry tag name"):
            c.registry.assign("churn", "1", "production", sign_tag=True)  # refused, not written unreadable
    assert git(victim, "tag", "-l", "churn#production#1000000000000000000") == ""


def test_a_second_registration_of_the_production_commit_does_not_take_over_the_stage(team):
    victim, attacker = team["victim"], team["attacker"]
    v1 = _commit(attacker, "churn@v1.0.0")
    message = "gitml-registry:\n  model: churn\n  version: v0.0.1\n"
    message += "  run_id: 0123456789abcdef0123456789abcdef\n  path: other\n"
    git(attacker, "tag", "-a", "-m", message, "churn@v0.0.1", v1)  # the same commit, another run and path
    _push_tags(attacker, "churn@v0.0.1")
    gitml_cli(victim, "fetch")
    with gitml.ops.Operations(victim) as c:  # the bot's gitml tag names v1.0.0 in its message
        assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
    git(victim, "config", "user.signingkey", team["bot"])
    git(victim, "tag", "-s", "-m", "by hand", "churn#production#3", v1)  # signed, trusted, no message to say which
    with _client(victim) as c:  # the registration signed by a trusted key is the one
        assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
        assert gitml.pyfunc.load_model("models:/churn@production").predict([1]) == [2]
    out = gitml_cli(victim, "registry", "verify", code=1)
    assert f"churn@v1.0.0: commit {v1[:12]} already is churn v0.0.1" in out


# -- a signed tag counts only under its own name --------------------------------------
def test_a_trusted_tag_object_re_pointed_under_another_name_is_refused(team, tmp_path):
    victim, attacker = team["victim"], team["attacker"]
    staging = git(attacker, "rev-parse", "refs/tags/churn#staging#2").strip()  # trusted, signed by the bot
    register = git(attacker, "rev-parse", "refs/tags/churn@v2.0.0").strip()
    git(attacker, "update-ref", "refs/tags/churn#production#3", staging)  # "promotes" v2
    git(
        attacker,
        "update-ref",
        "refs/tags/churn@v1.0.0!#4",
        git(attacker, "rev-parse", "refs/tags/churn@v1.0.0").strip(),
    )
    git(attacker, "update-ref", "refs/tags/churn#production#5", register)
    # through git daemon (git://), as a teammate pushes to a shared host
    base = tmp_path / "served"
    base.mkdir()
    shutil.move(str(team["origin"]), base / "origin.git")
    with git_daemon(base) as port:
        url = f"git://127.0.0.1:{port}/origin.git"
        _push_tags(attacker, "churn#production#3", "churn@v1.0.0!#4", "churn#production#5", url=url)
        gitml_cli(victim, "fetch", url)
    with gitml.ops.Operations(victim) as c:
        state = c.registry.model("churn")
        assert state.stages["production"] == "v1.0.0" and not state.versions["v1.0.0"].deregistered
        why = state.ignored["churn#production#3"]
        assert "holds the tag object named 'churn#staging#2'" in why and "counts only under its own name" in why
        assert c.registry.verification(next(e for e in state.events if e.tag.name == "churn#production#3")).trusted
    out = gitml_cli(victim, "registry", "verify", code=1)
    assert "churn#production#3: ref refs/tags/churn#production#3 holds the tag object named 'churn#staging#2'" in out
    assert "churn@v1.0.0!#4: ref refs/tags/churn@v1.0.0!#4 holds the tag object named 'churn@v1.0.0'" in out
    assert "churn#production#5: ref refs/tags/churn#production#5 holds the tag object named 'churn@v2.0.0'" in out
    history = {h["tag"]: h for h in json.loads(gitml_cli(victim, "registry", "history", "churn", "--json"))}
    assert history["churn#production#3"]["decision"].startswith("ignored: ref refs/tags/churn#production#3 holds")
    with gitml.ops.Operations(victim) as c:
        from gitml.ui import registry as ui_registry

        page = ui_registry.model(c, "churn")
        shown = {h["tag"]: h for h in page["history"]}
        assert "counts only under its own name" in shown["churn#production#3"]["ignored"]
        assert [s["version"] for s in page["stages"] if s["stage"] == "production"] == ["v1.0.0"]
        assert page["policy_source"].startswith("the policy of origin/main at")


# -- registry check in CI: the base branch's policy, nothing unpickled -----------------
def test_check_never_unpickles_a_candidate_that_does_not_verify_under_the_base_policy(team, tmp_path):
    attacker, maintainer = team["attacker"], team["maintainer"]
    marker = tmp_path / "pwned"
    with _client(attacker) as c:
        with gitml.start_run() as run:
            gitml.pyfunc.log_model(name="model", python_model=Boobytrap(str(marker)))
        c.registry.register("churn", run.info.run_id)  # churn@v3.0.0, unsigned
    gitml_cli(attacker, "push")
    # the pull request: production -> v3, and a policy of its own that requires nothing
    git(attacker, "checkout", "-q", "-b", "promote")
    (attacker / ".gitml" / "stages.yaml").write_text("churn:\n  production: v3.0.0\n")
    (attacker / ".gitml" / "registry.yaml").write_text("require_signature: []\n")
    git(attacker, "add", ".gitml")
    git(attacker, "commit", "-qm", "promote v3")
    git(attacker, "push", "-q", "origin", "promote")
    ci = tmp_path / "ci"  # CI: a fresh clone of the pull request's branch, with a write token
    git(tmp_path, "clone", "-q", "-b", "promote", str(team["origin"]), str(ci))
    gitml_cli(ci, "fetch")
    report = tmp_path / "report.md"
    gitml_cli(ci, "registry", "check", "--base", "origin/main", "--report", str(report), code=1)
    text = report.read_text()
    assert "not loaded: its registration tag churn@v3.0.0 is not signed" in text
    assert "Checked under the policy of origin/main at" in text
    assert not marker.exists()
    # a candidate the release bot registered (signed) is loaded and checked
    trusted_marker = tmp_path / "loaded"
    with _client(maintainer) as c:
        with gitml.start_run() as run:
            gitml.pyfunc.log_model(name="model", python_model=Boobytrap(str(trusted_marker)))
        gitml_cli(maintainer, "fetch")
        mv = c.registry.register("churn", run.info.run_id, version="v4.0.0", sign_tag=True)
    gitml_cli(maintainer, "push")
    git(ci, "checkout", "-q", "-b", "promote4")
    (ci / ".gitml" / "stages.yaml").write_text("churn:\n  production: v4.0.0\n")
    git(ci, "commit", "-qam", "promote v4")
    gitml_cli(ci, "fetch")
    out = gitml_cli(ci, "registry", "check", "--base", "origin/main")
    assert mv.version == "v4.0.0" and "all checks pass" in out
    assert trusted_marker.exists() and not marker.exists()  # loaded (its unpickling ran): a trusted signer vouched


def test_a_clone_without_a_remote_reads_its_default_branch_and_says_so(repo, gnupg):  # noqa: F811
    bot = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    _commit_policy(repo, f"require_signature: [production]\ntrusted_gpg_keys: [{bot}]\n")
    git(repo, "checkout", "-q", "-b", "feature")
    _commit_policy(repo, "require_signature: []\n")
    with _client(repo) as c:
        assert (
            c.registry.policy.source.startswith("the policy of main at ")
            and "this clone's branch" in c.registry.policy.source
        )
        assert c.registry.policy.requires_signature("production")
        r1 = _run(c, 1)
        c.registry.register("churn", r1)
        with pytest.raises(
            gitml.errors.InvalidInputError, match=r"stage 'production' requires signed tags \(the policy of main"
        ):
            c.registry.assign("churn", "1", "production")
    assert isinstance(c.registry, Registry)
    assert not os.path.exists(repo / ".git" / "gitml" / "registry-policy.yaml")  # a local branch needs no acceptance


# -- the same with SSH signatures, and what the UI shows ------------------------------
def _ssh_key(tmp_path, name: str) -> tuple[Path, str]:
    key = tmp_path / f"id_{name}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, f'{name}@example.com namespaces="git" {(tmp_path / f"id_{name}.pub").read_text().strip()}\n'


def test_ssh_a_branch_that_adds_its_own_signer_and_a_re_pointed_tag_are_ignored_in_the_ui(repo, tmp_path, monkeypatch):
    pytest.importorskip("starlette")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    from starlette.testclient import TestClient

    from gitml.ui import allowed_hosts
    from gitml.ui.app import make_app

    bot, bot_line = _ssh_key(tmp_path, "bot")
    mallory, mallory_line = _ssh_key(tmp_path, "mallory")
    _commit_policy(
        repo,
        "require_signature: [production]\nallowed_signers: .gitml/allowed_signers\n",
        {".gitml/allowed_signers": bot_line},
    )
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "user.signingkey", str(bot))
    with _client(repo) as c:
        r1, r2 = _run(c, 1), _run(c, 2)
        c.registry.register("churn", r1)
        c.registry.register("churn", r2)
        c.registry.assign("churn", "1", "production", sign_tag=True)
        c.registry.assign("churn", "2", "staging", sign_tag=True)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    gitml_cli(repo, "push")
    attacker, victim = tmp_path / "attacker", tmp_path / "victim"
    for clone in (attacker, victim):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        gitml_cli(clone, "fetch")
    # the attacker's branch trusts the attacker's key; their promotion is signed by it
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700001000 +0000")  # the newest tags
    git(attacker, "checkout", "-q", "-b", "evil")
    _commit_policy(
        attacker,
        "require_signature: [production]\nallowed_signers: .gitml/allowed_signers\n",
        {".gitml/allowed_signers": bot_line + mallory_line},
    )
    git(attacker, "config", "gpg.format", "ssh")
    git(attacker, "config", "user.signingkey", str(mallory))
    git(attacker, "tag", "-s", "-m", "promote", "churn#production#3", _commit(attacker, "churn@v2.0.0"))
    git(attacker, "update-ref", "refs/tags/churn#production#4", git(attacker, "rev-parse", "churn#staging#2").strip())
    git(attacker, "push", "-q", "origin", "evil")
    _push_tags(attacker, "churn#production#3", "churn#production#4")
    git(victim, "fetch", "-q", "origin")
    gitml_cli(victim, "fetch")
    git(victim, "checkout", "-q", "-b", "evil", "origin/evil")
    with gitml.ops.Operations(victim) as c:
        state = c.registry.model("churn")
        assert state.stages["production"] == "v1.0.0"
        assert "does not trust" in state.ignored["churn#production#3"]
        assert "holds the tag object named 'churn#staging#2'" in state.ignored["churn#production#4"]
        web = TestClient(make_app(c, allowed_hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")
        page = web.get("/models/churn").text
        assert "Decided under the policy of origin/main at" in page
        assert "v1.0.0" in page[page.index('data-stage="production"') :]
        row = page[page.index('<td class="mono">churn#production#4</td>') :]
        row = row[: row.index("</tr>")]
        assert "(ignored: ref refs/tags/churn#production#4 holds the tag object named" in row.replace("&#39;", "'")
        assert "Decided under the policy of origin/main" in web.get("/models").text
    # main's allowed signers gain Mallory's key: it decides once the victim accepts it
    _commit_policy(
        repo,
        "require_signature: [production]\nallowed_signers: .gitml/allowed_signers\n",
        {".gitml/allowed_signers": bot_line + mallory_line},
    )
    git(repo, "push", "-q", "origin", "main")
    git(victim, "fetch", "-q", "origin")
    with gitml.ops.Operations(victim) as c:
        assert "has another policy" in c.registry.policy.pending
        assert c.registry.resolve("churn", stage="production").version == "v1.0.0"
        c.registry.accept_policy()
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"  # #3, by Mallory, now trusted


def test_the_trusted_ref_is_the_remote_default_branch_as_fetched(repo, tmp_path):
    from gitml.registry import trust
    from gitml.store.git import open_store

    def ref(path):
        with open_store(str(path)) as store:
            return trust.trusted_ref(store)

    assert ref(repo) == "refs/heads/main"  # no remote: the local default branch
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=trunk", str(origin))
    git(repo, "push", "-q", str(origin), "main:trunk", "main:main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert ref(clone) == "refs/remotes/origin/trunk"  # origin/HEAD, as the clone fetched it
    git(repo, "remote", "add", "origin", str(origin))
    assert ref(repo) == "refs/heads/main"  # a remote whose branches were never fetched
    git(repo, "fetch", "-q", "origin")
    assert ref(repo) == "refs/remotes/origin/main"  # no origin/HEAD (git remote add): origin/main
    git(repo, "remote", "rename", "origin", "upstream")
    assert ref(repo) == "refs/remotes/upstream/main"  # the one remote, whatever its name
    git(repo, "remote", "add", "fork", str(origin))
    git(repo, "fetch", "-q", "fork")
    assert ref(repo) == "refs/heads/main"  # two remotes, neither named origin: none of them decides
    git(repo, "checkout", "-q", "--detach")
    git(repo, "branch", "-q", "-m", "main", "work")
    assert ref(repo) is None  # no default branch at all: HEAD

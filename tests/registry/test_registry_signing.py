"""Signed registry tags with real keys: gpg (a key made in a temporary GNUPGHOME) and
ssh-keygen; the real ``git verify-tag`` accepts gitml's tags, gitml verifies ``git tag -s``;
faults: a tampered message, an untrusted key, an unsigned tag where the policy requires one."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

import gitml
import gitml.ops
from gitml.cli.main import cli
from gitml.errors import InvalidInputError
from gitml.registry import RegisteredModelNotFound, UntrustedTagError
from tests.conftest import git
from tests.registry.test_registry import _run

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("ssh-keygen")), reason="gpg / ssh-keygen missing"
)


def _gpg_key(home, uid: str) -> str:
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
        env={**os.environ, "GNUPGHOME": str(home)},
    )
    out = subprocess.run(
        ["gpg", "--with-colons", "--list-secret-keys", uid],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GNUPGHOME": str(home)},
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture
def gnupg(tmp_path, monkeypatch):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield home
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True)


def _commit_policy(repo, text: str, extra: dict[str, str] | None = None) -> None:
    os.makedirs(repo / ".gitml", exist_ok=True)
    (repo / ".gitml" / "registry.yaml").write_text(text)
    for name, content in (extra or {}).items():
        (repo / name).write_text(content)
    git(repo, "add", ".gitml")
    git(repo, "commit", "-qm", "registry policy")


@pytest.fixture
def two_versions(repo):
    gitml.set_tracking_uri(str(repo))
    with gitml.ops.Operations(repo) as c:
        r1, r2 = _run(c, 1), _run(c, 2)
    return r1, r2


def test_gpg_signed_tags_verify_in_git_and_under_the_policy(repo, gnupg, two_versions, monkeypatch):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")  # gitml's tags: this second and the next two
    fpr = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    git(repo, "config", "user.signingkey", fpr)
    git(repo, "config", "tag.gpgSign", "true")
    _commit_policy(repo, f"stages: [staging, production]\nrequire_signature: [production]\ntrusted_gpg_keys: [{fpr}]\n")
    with gitml.ops.Operations(repo) as c:
        c.registry.register("churn", two_versions[0])
        c.registry.register("churn", two_versions[1])
        c.registry.assign("churn", "1", "production")
    git(repo, "verify-tag", "churn@v1.0.0")
    git(repo, "verify-tag", "churn#production#1")
    git(repo, "fsck", "--strict")
    # a tag made by the real `git tag -s` (GTO's convention) decides the stage too
    commit = git(repo, "rev-parse", "churn@v2.0.0^{commit}").strip()
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000100 +0000")  # later (GTO orders by tag time; so does gitml)
    git(repo, "tag", "-s", "-m", "promote by hand", "churn#production#2", commit)
    with gitml.ops.Operations(repo) as c:
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"
        event = next(e for e in c.registry.model("churn").events if e.tag.name == "churn#production#2")
        status = c.registry.verification(event)
        assert status.trusted and "Release Bot" in status.signer
    out = CliRunner().invoke(cli, ["-C", str(repo), "registry", "verify"])
    assert out.exit_code == 0, out.output


def test_untrusted_forged_and_unsigned_stage_tags_are_ignored_or_refused(repo, gnupg, two_versions, monkeypatch):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    trusted = _gpg_key(gnupg, "Release Bot <bot@example.com>")
    stranger = _gpg_key(gnupg, "Mallory <m@example.com>")
    _commit_policy(repo, f"require_signature: [production]\ntrusted_gpg_keys: [{trusted}]\n")
    git(repo, "config", "user.signingkey", trusted)
    with gitml.ops.Operations(repo) as c:
        reg = c.registry
        reg.register("churn", two_versions[0])
        reg.register("churn", two_versions[1])
        with pytest.raises(InvalidInputError, match="stage 'production' requires signed tags"):
            reg.assign("churn", "1", "production")  # nothing would honour an unsigned tag: refused before writing
        reg.assign("churn", "1", "production", sign_tag=True)  # #1, trusted
    v2 = git(repo, "rev-parse", "churn@v2.0.0^{commit}").strip()
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000100 +0000")  # the hostile tags are the newest
    # an unsigned tag, then one signed by a key the policy does not trust
    git(repo, "tag", "-a", "-m", "unsigned", "churn#production#2", v2)
    git(repo, "-c", f"user.signingkey={stranger}", "tag", "-s", "-m", "untrusted", "churn#production#3", v2)
    # a tampered tag: a trusted signature over another message
    git(repo, "tag", "-s", "-m", "promote v2", "-u", trusted, "churn#production#4", v2)
    raw = git(repo, "cat-file", "tag", "churn#production#4").replace("promote v2", "promote v2 (approved)")
    forged = git(repo, "mktag", input_text=raw).strip()
    git(repo, "update-ref", "refs/tags/churn#production#4", forged)
    with gitml.ops.Operations(repo) as c:
        state = c.registry.model("churn")
        assert state.stages == {"production": "v1.0.0"}  # every later tag ignored
        assert "not signed" in state.ignored["churn#production#2"]
        assert "does not trust" in state.ignored["churn#production#3"]
        assert "bad signature" in state.ignored["churn#production#4"]
    out = CliRunner().invoke(cli, ["-C", str(repo), "registry", "verify"])
    assert out.exit_code == 1
    assert "churn#production#2: not signed" in out.output and "churn#production#4: bad signature" in out.output
    _commit_policy(repo, f"require_signature: [production]\ntrusted_gpg_keys: [{trusted}]\non_untrusted: refuse\n")
    with gitml.ops.Operations(repo) as c:
        with pytest.raises(UntrustedTagError, match=r"tag churn#production#4: bad signature"):
            gitml.pyfunc.load_model("models:/churn@production")
        with pytest.raises(UntrustedTagError):
            c.registry.resolve("churn", stage="production")


def test_ssh_signed_tags_verify_in_git_and_under_the_policy(repo, tmp_path, two_versions, monkeypatch):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot", "-f", str(key)], check=True)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    signers = f'bot@example.com namespaces="git" {(tmp_path / "id_ed25519.pub").read_text().strip()}\n'
    _commit_policy(
        repo, "require_signature: true\nallowed_signers: .gitml/allowed_signers\n", {".gitml/allowed_signers": signers}
    )
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "user.signingkey", str(key))
    git(repo, "config", "tag.gpgSign", "true")
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(repo / ".gitml" / "allowed_signers"))
    with gitml.ops.Operations(repo) as c:
        c.registry.register("churn", two_versions[0])
        c.registry.register("churn", two_versions[1])
        c.registry.assign("churn", "1", "production")
    assert (
        'Good "git" signature for bot@example.com'
        in subprocess.run(
            ["git", "verify-tag", "churn#production#1"], cwd=repo, capture_output=True, text=True, check=True
        ).stderr
    )
    v2 = git(repo, "rev-parse", "churn@v2.0.0^{commit}").strip()
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000100 +0000")  # the newest tags
    git(repo, "-c", f"user.signingkey={other}", "tag", "-s", "-m", "someone else", "churn#production#2", v2)
    with gitml.ops.Operations(repo) as c:
        state = c.registry.model("churn")
        assert state.stages == {"production": "v1.0.0"}
        assert "does not trust" in state.ignored["churn#production#2"]
        event = next(e for e in state.events if e.tag.name == "churn#production#1")
        assert c.registry.verification(event).signer == "bot@example.com"
        git(repo, "tag", "-s", "-m", "by the bot with git", "churn#production#3", v2)  # real `git tag -s`, ssh
        c.registry._events.clear()
        assert c.registry.resolve("churn", stage="production").version == "v2.0.0"
        c.registry.unassign("churn", "production")
        with pytest.raises(RegisteredModelNotFound):
            c.registry.resolve("churn", stage="production")
    git(repo, "verify-tag", "churn#production!#4")

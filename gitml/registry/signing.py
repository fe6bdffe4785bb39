"""Signing and verifying tags as git does: ``gpg`` (openpgp) or ``ssh-keygen -Y`` (ssh).

Settings come from git's configuration (``user.signingkey``, ``gpg.format``,
``gpg.program`` / ``gpg.openpgp.program``, ``gpg.ssh.program``, ``tag.gpgSign``), so a
key set up for ``git tag -s`` signs gitml's tags and ``git verify-tag`` accepts them.
The signature is appended to the tag's payload (the tag object up to it), as git does;
a signed tag's signature starts at its last line beginning with a signature marker.

Verification never trusts a signature by itself: it says whether the signature is
present, whether it is good, and whether its key is one the policy trusts
(``trusted_gpg_keys`` fingerprints, or an SSH ``allowed_signers`` file). The programs
are run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from gitml.errors import InvalidInputError, SigningError

_MARKERS = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN PGP MESSAGE-----", b"-----BEGIN SSH SIGNATURE-----")


@dataclass(frozen=True)
class SigningConfig:
    """What git's configuration says about signing tags."""

    format: str = "openpgp"  # openpgp | ssh
    key: str | None = None  # user.signingkey
    gpg_program: str = "gpg"
    ssh_program: str = "ssh-keygen"
    sign_tags: bool = False  # tag.gpgSign
    committer: str = ""  # "Name <email>": gpg's key when user.signingkey is unset (as git)

    @classmethod
    def from_git_config(cls, config, committer: str = "") -> SigningConfig:
        """Read a dulwich config (stack) the way git does."""

        def get(section: tuple, key: bytes) -> str | None:
            try:
                return config.get(section, key).decode()
            except KeyError:
                return None

        fmt = (get((b"gpg",), b"format") or "openpgp").lower()
        if fmt not in ("openpgp", "ssh", "x509"):
            raise SigningError(f"gpg.format {fmt!r} is not openpgp, ssh or x509")
        gpg = get((b"gpg", b"openpgp"), b"program") or get((b"gpg",), b"program") or "gpg"
        sign = (get((b"tag",), b"gpgSign") or get((b"tag",), b"gpgsign") or "false").lower()
        return cls(
            format=fmt,
            key=get((b"user",), b"signingkey") or get((b"user",), b"signingKey"),
            gpg_program=gpg,
            ssh_program=get((b"gpg", b"ssh"), b"program") or "ssh-keygen",
            sign_tags=sign in ("true", "yes", "on", "1"),
            committer=committer,
        )


def split_signed(raw: bytes) -> tuple[bytes, bytes | None]:
    """``(payload, signature)`` of a tag object's raw content; signature None if unsigned."""
    start, at = None, 0
    while at < len(raw):
        if raw.startswith(_MARKERS, at):
            start = at
        nl = raw.find(b"\n", at)
        at = len(raw) if nl < 0 else nl + 1
    if start is None:
        return raw, None
    return raw[:start], raw[start:]


def _run(argv: list[str], data: bytes, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=data, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise SigningError(f"{what}: program {argv[0]!r} not found (set gpg.program / gpg.ssh.program)") from None
    except subprocess.TimeoutExpired:
        raise SigningError(f"{what}: {argv[0]} did not finish within 60 s") from None


def sign(payload: bytes, config: SigningConfig) -> bytes:
    """A detached armored signature of ``payload`` (to append to it), as git makes it."""
    if config.format == "x509":
        raise SigningError("gpg.format x509 (gpgsm) is not supported by gitml; use openpgp or ssh")
    if config.format == "ssh":
        return _sign_ssh(payload, config)
    key = config.key or config.committer
    if not key:
        raise SigningError("no signing key: set user.signingkey (git config user.signingkey KEYID)")
    done = _run([config.gpg_program, "--status-fd=2", "-bsau", key], payload, "signing with gpg")
    if done.returncode != 0 or b"[GNUPG:] SIG_CREATED " not in done.stderr:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise SigningError(f"gpg failed to sign with key {key!r}: {detail[-1] if detail else done.returncode}")
    return done.stdout


def _sign_ssh(payload: bytes, config: SigningConfig) -> bytes:
    if not config.key:
        raise SigningError("no signing key: set user.signingkey to an SSH key file (gpg.format is ssh)")
    with tempfile.TemporaryDirectory(prefix="gitml-sign-") as tmp:
        key = os.path.expanduser(config.key)
        literal = key.startswith("key::") or key.startswith("ssh-")
        argv = [config.ssh_program, "-Y", "sign", "-n", "git", "-f"]
        if literal:  # a public key given literally: the private half is in ssh-agent (as git)
            path = os.path.join(tmp, "key.pub")
            with open(path, "w") as f:
                f.write(key.removeprefix("key::") + "\n")
            argv += [path, "-U"]
        else:
            argv.append(key)
        buffer = os.path.join(tmp, "payload")
        with open(buffer, "wb") as f:
            f.write(payload)
        done = _run([*argv, buffer], b"", "signing with ssh-keygen")
        if done.returncode != 0 or not os.path.exists(buffer + ".sig"):
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise SigningError(f"ssh-keygen failed to sign with {key!r}: {detail[-1] if detail else done.returncode}")
        with open(buffer + ".sig", "rb") as f:
            return f.read()


@dataclass(frozen=True)
class Verification:
    """A tag's signature status: ``unsigned``, ``bad`` (does not match the tag: forged or
    tampered), ``unknown`` (no key to check it), ``untrusted`` (good, by a key the policy
    does not trust) or ``trusted``."""

    status: str
    signer: str = ""
    detail: str = ""

    @property
    def trusted(self) -> bool:
        return self.status == "trusted"

    def __str__(self) -> str:
        text = {
            "unsigned": "not signed",
            "bad": "bad signature (the tag was changed after signing, or the signature is forged)",
            "unknown": "signed by a key that cannot be checked here",
            "untrusted": "signed by a key the policy does not trust",
            "trusted": "good signature",
        }[self.status]
        return text + (f" ({self.signer})" if self.signer else "") + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class TrustRoots:
    """The keys a policy trusts: GPG fingerprints and an SSH allowed-signers file's text."""

    gpg_fingerprints: frozenset[str] = frozenset()
    allowed_signers: bytes | None = None
    gpg_program: str = "gpg"
    ssh_program: str = "ssh-keygen"


def normalize_fingerprint(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"GPG fingerprint {value!r} is not a string")
    fpr = value.replace(" ", "").upper()
    if len(fpr) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in fpr):
        raise InvalidInputError(f"GPG fingerprint {value!r} is not 40 (or 64) hex digits")
    return fpr


def verify(payload: bytes, signature: bytes | None, roots: TrustRoots) -> Verification:
    """Check ``signature`` over ``payload`` against the trusted keys."""
    if signature is None:
        return Verification("unsigned")
    if signature.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        return _verify_ssh(payload, signature, roots)
    return _verify_gpg(payload, signature, roots)


def _verify_gpg(payload: bytes, signature: bytes, roots: TrustRoots) -> Verification:
    with tempfile.TemporaryDirectory(prefix="gitml-verify-") as tmp:
        sig = os.path.join(tmp, "sig")
        with open(sig, "wb") as f:
            f.write(signature)
        done = _run(
            [roots.gpg_program, "--status-fd=1", "--keyid-format=long", "--verify", sig, "-"],
            payload,
            "verifying with gpg",
        )
    status: dict[str, list[str]] = {}
    for line in done.stdout.decode(errors="replace").splitlines():
        if line.startswith("[GNUPG:] "):
            word, *rest = line[9:].split(" ")
            status.setdefault(word, rest)
    if "BADSIG" in status:
        return Verification("bad", " ".join(status["BADSIG"][1:]))
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        keyid = (status.get("NO_PUBKEY") or status.get("ERRSIG") or ["?"])[0]
        return Verification("unknown", f"gpg key {keyid}", "not in the gpg keyring")
    if "GOODSIG" not in status or "VALIDSIG" not in status or done.returncode != 0:
        for word in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            if word in status:
                return Verification("untrusted", " ".join(status[word][1:]), word.lower())
        return Verification("bad", detail=done.stderr.decode(errors="replace").strip()[-200:])
    valid = status["VALIDSIG"]
    fingerprints = {valid[0].upper(), valid[-1].upper()}
    signer = " ".join(status["GOODSIG"][1:]) + f" [{valid[-1]}]"
    if fingerprints & roots.gpg_fingerprints:
        return Verification("trusted", signer)
    return Verification("untrusted", signer, "fingerprint not in trusted_gpg_keys")


def _verify_ssh(payload: bytes, signature: bytes, roots: TrustRoots) -> Verification:
    with tempfile.TemporaryDirectory(prefix="gitml-verify-") as tmp:
        sig = os.path.join(tmp, "sig")
        with open(sig, "wb") as f:
            f.write(signature)
        program = roots.ssh_program
        if roots.allowed_signers:
            allowed = os.path.join(tmp, "allowed_signers")
            with open(allowed, "wb") as f:
                f.write(roots.allowed_signers)
            found = _run([program, "-Y", "find-principals", "-f", allowed, "-s", sig], b"", "verifying with ssh-keygen")
            for principal in found.stdout.decode(errors="replace").split():
                done = _run(
                    [program, "-Y", "verify", "-f", allowed, "-I", principal, "-n", "git", "-s", sig],
                    payload,
                    "verifying with ssh-keygen",
                )
                if done.returncode == 0:
                    return Verification("trusted", principal)
                if found.returncode == 0:
                    return Verification("bad", principal)
        done = _run([program, "-Y", "check-novalidate", "-n", "git", "-s", sig], payload, "verifying with ssh-keygen")
    if done.returncode != 0:
        return Verification("bad")
    text = done.stdout.decode(errors="replace").strip() or done.stderr.decode(errors="replace").strip()
    key = text.rsplit(" ", 1)[-1] if "key" in text else ""
    return Verification("untrusted", key, "key not in the policy's allowed_signers")

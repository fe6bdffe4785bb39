"""Which policy decides: the one on the trusted ref, as this clone accepted it.

The policy (``.gitml/registry.yaml`` and its allowed-signers file) is never read from the
checked-out branch: a branch anyone can push would otherwise decide which signatures
count. It is read from the **trusted ref**:

1. the ref this clone configured (``gitml registry policy --ref REF``), or
2. the remote's default branch as fetched: ``refs/remotes/origin/HEAD``'s target, else
   ``origin/main``, else ``origin/master`` (``origin``, or the one remote when there is one
   and it is not named so), or, when no such branch was fetched or there is no remote,
3. the local default branch (``init.defaultBranch``, else ``main``, else ``master``), else
   HEAD's commit.

A policy that comes from a remote-tracking ref takes effect once this clone accepted it:
the first one seen is accepted as it is (trust on first use, as ssh's known hosts); when
the ref later carries another (other keys, stages, rules: not a comment), the accepted one
keeps deciding, each answer says so, and ``gitml registry policy --accept`` takes the new
one. A local branch holds what the clone's user committed or merged: its policy decides as
committed. The accepted policy is kept in ``.git/gitml/registry-policy.yaml`` (its bytes, so
it decides even when the ref's history was rewritten).
"""

from __future__ import annotations

import base64
import logging
import os

from dulwich.objects import Tag

from gitml.errors import CorruptRecordError, InvalidInputError, PolicyError
from gitml.registry.policy import POLICY_PATH, Policy, described, load_policy, parse_policy, read_committed
from gitml.store import yamlout
from gitml.store.git import GitStore
from gitml.yamlread import load_yaml

log = logging.getLogger("gitml")

RECORD = "registry-policy.yaml"  # under .git/gitml/
REMOTE_PREFIX = "refs/remotes/"


def _record_path(store: GitStore) -> str:
    return os.path.join(store.gitml_dir, RECORD)


def read_record(store: GitStore) -> dict:
    """This clone's trust record: ``ref`` (configured) and ``accepted`` (a policy's bytes)."""
    path = _record_path(store)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    try:
        found = load_yaml(data, path)
    except CorruptRecordError as e:
        raise PolicyError(path, f"{e.detail}; fix or remove it, then `gitml registry policy --accept`") from None
    return found if isinstance(found, dict) else {}


def _write_record(store: GitStore, record: dict) -> None:
    path = store.private_path(RECORD)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(yamlout.dump(record))
    os.replace(tmp, path)


def short(ref: str | None) -> str:
    """``refs/remotes/origin/main`` -> ``origin/main``; None -> ``HEAD``."""
    if ref is None:
        return "HEAD"
    for prefix in (REMOTE_PREFIX, "refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def trusted_ref(store: GitStore, record: dict | None = None) -> str | None:
    """The full name of the ref whose policy decides (None: HEAD). Raises PolicyError when
    the configured ref does not exist (fail closed: no other branch stands in for it)."""
    record = read_record(store) if record is None else record
    configured = record.get("ref")
    if configured:
        if not isinstance(configured, str) or store.ref(configured.encode()) is None:
            raise PolicyError(
                _record_path(store),
                f"the trusted ref {configured!r} configured there does not exist "
                "(fetch it, or `gitml registry policy --ref REF`)",
            )
        return configured
    remotes = store.remote_names()
    remote = "origin" if "origin" in remotes else remotes[0] if len(remotes) == 1 else None
    if remote is not None:
        target = store.symbolic_target(f"{REMOTE_PREFIX}{remote}/HEAD".encode())
        if target is not None and store.ref(target) is not None:
            return target.decode()
        for branch in ("main", "master"):
            ref = f"{REMOTE_PREFIX}{remote}/{branch}"
            if store.ref(ref.encode()) is not None:
                return ref
    default: str | None = None
    try:
        default = store.config().get((b"init",), b"defaultBranch").decode()
    except KeyError:
        pass
    for name in (default, "main", "master"):
        if name and store.ref(f"refs/heads/{name}".encode()) is not None:
            return f"refs/heads/{name}"
    return None


def full_ref(store: GitStore, name: str) -> str:
    """A ref given as ``origin/main``, ``main`` or in full, as its full name."""
    for ref in (name, f"{REMOTE_PREFIX}{name}", f"refs/heads/{name}"):
        if ref.startswith("refs/") and store.ref(ref.encode()) is not None:
            return ref
    raise InvalidInputError(f"no ref {name!r} (a branch, a remote branch such as origin/main, or a full ref)")


def _commit_of(store: GitStore, ref: str | None) -> bytes | None:
    if ref is None:
        return store.head().commit
    sha = store.ref(ref.encode())
    for _ in range(10):  # a tag names its commit
        if sha is None:
            return None
        type_num, raw = store.raw(sha)
        if type_num != Tag.type_num:
            return sha
        sha = raw.split(b"\n", 1)[0].split(b" ", 1)[1]
    return sha


def deciding_policy(store: GitStore, *, gpg_program: str = "gpg", ssh_program: str = "ssh-keygen") -> Policy:
    """The policy that decides this clone's answers, with ``source`` saying which it is
    and ``pending`` why a newer one on the trusted ref does not decide yet."""
    record = read_record(store)
    ref = trusted_ref(store, record)
    commit = _commit_of(store, ref)
    at = f"{short(ref)} at {commit.decode()[:12]}" if commit else short(ref)
    programs = {"gpg_program": gpg_program, "ssh_program": ssh_program}
    if ref is None or not ref.startswith(REMOTE_PREFIX):
        why = "this clone's branch" if ref else "HEAD: no default branch"
        policy = load_policy(store, commit, source=at, **programs)
        return described(
            policy, f"the policy of {at} ({why})" if policy.text is not None else f"no policy on {at} ({why})"
        )
    accepted = record.get("accepted")
    try:
        current = load_policy(store, commit, source=at, **programs)
    except CorruptRecordError as e:  # PolicyError, or YAML that does not parse
        if not isinstance(accepted, dict):
            raise
        return _accepted(
            store, accepted, f"{at}'s policy does not parse ({e.detail}); the accepted one decides", programs
        )
    if not isinstance(accepted, dict):
        if current.text is None:
            return described(current, f"no policy on {at}")
        try:
            _write_record(store, {**record, "accepted": _as_record(current, ref, commit)})
            log.info("gitml: accepted the registry policy of %s (first seen)", at)
        except OSError as e:  # a read-only clone decides by it all the same
            log.warning("gitml: could not record the accepted registry policy of %s: %s", at, e)
        return described(current, f"the policy of {at} (accepted on first use)")
    if accepted.get("digest") == (current.digest if current.text is not None else ""):
        return described(
            current, f"the policy of {at} (accepted)" if current.text is not None else f"no policy on {at} (accepted)"
        )
    what = "has no policy" if current.text is None else "has another policy"
    return _accepted(
        store,
        accepted,
        f"{at} {what}, not accepted by this clone: review it "
        "(gitml registry policy), then `gitml registry policy --accept`",
        programs,
    )


def _accepted(store: GitStore, accepted: dict, pending: str, programs: dict) -> Policy:
    try:
        text = base64.b64decode(accepted["policy"]) if accepted.get("policy") else None
        signers = base64.b64decode(accepted["allowed_signers"]) if accepted.get("allowed_signers") else None
        source = f"{short(str(accepted.get('ref')))} at {str(accepted.get('commit'))[:12]}"
    except (KeyError, ValueError, TypeError) as e:
        raise PolicyError(
            _record_path(store), f"the accepted policy is unreadable ({e}); `gitml registry policy --accept`"
        ) from None
    commit = str(accepted.get("commit") or "")

    def read_data(path: str) -> bytes | None:  # a gate's dataset: from the commit the policy was accepted at
        try:
            return read_committed(store, commit.encode(), path) if commit else None
        except (CorruptRecordError, KeyError):
            return None

    policy = parse_policy(
        text,
        lambda path: signers,
        what=f"the accepted policy ({source}, {_record_path(store)})",
        read_data=read_data,
        **programs,
    )
    log.warning("gitml: registry: %s", pending)
    return described(policy, f"the policy this clone accepted ({source})", pending)


def _as_record(policy: Policy, ref: str, commit: bytes | None) -> dict:
    return {
        "ref": ref,
        "commit": commit.decode() if commit else "",
        "digest": policy.digest if policy.text is not None else "",
        "policy": base64.b64encode(policy.text).decode() if policy.text is not None else "",
        "allowed_signers": base64.b64encode(policy.roots.allowed_signers).decode()
        if policy.roots.allowed_signers
        else "",
    }


def accept(
    store: GitStore, ref: str | None = None, *, gpg_program: str = "gpg", ssh_program: str = "ssh-keygen"
) -> Policy:
    """Accept, for this clone, the policy now on the trusted ref (``ref``, given, becomes the
    trusted ref). Raises PolicyError when that policy does not parse."""
    record = read_record(store)
    if ref is not None:
        record["ref"] = full_ref(store, ref)
    found = trusted_ref(store, record)
    commit = _commit_of(store, found)
    at = f"{short(found)} at {commit.decode()[:12]}" if commit else short(found)
    policy = load_policy(store, commit, source=at, gpg_program=gpg_program, ssh_program=ssh_program)
    record["accepted"] = _as_record(policy, found or "HEAD", commit)
    _write_record(store, record)
    return described(
        policy, f"the policy of {at} (accepted)" if policy.text is not None else f"no policy on {at} (accepted)"
    )


def head_note(store: GitStore, policy: Policy) -> str:
    """A note when the checked-out commit carries another policy than the deciding one
    (it decides nothing there), else ""."""
    head = store.head()
    if head.commit is None:
        return ""
    try:
        here = load_policy(
            store, head.commit, gpg_program=policy.roots.gpg_program, ssh_program=policy.roots.ssh_program
        )
    except CorruptRecordError:
        here = None
    if here is not None and (here.digest if here.text is not None else "") == (
        policy.digest if policy.text is not None else ""
    ):
        return ""
    where = f"branch {head.branch}" if head.branch else f"commit {head.commit.decode()[:12]}"
    return (
        f"the checked-out {where} has another {POLICY_PATH}: it decides nothing until it is on the trusted ref "
        "and accepted"
    )


def marker(store: GitStore) -> tuple:
    """What the deciding policy depends on, to tell when to read it again (a server)."""
    try:
        stat = os.stat(_record_path(store))
        mark: tuple = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        mark = ()
    try:
        ref = trusted_ref(store)
    except PolicyError:
        return (mark, None, None)
    return (mark, ref, _commit_of(store, ref))


__all__ = ["POLICY_PATH", "accept", "deciding_policy", "head_note", "marker", "read_record", "short", "trusted_ref"]

"""The registry's committed files: the trust policy and the desired stages.

``.gitml/registry.yaml`` (the policy)::

    stages: [staging, production]        # the stage names allowed (absent: any)
    require_signature: [production]      # stages whose tags must be signed by a trusted key
                                         # (true: every stage)
    allowed_signers: .gitml/allowed_signers   # SSH keys, git's allowed-signers format
    trusted_gpg_keys: [0123...CDEF]      # GPG fingerprints
    on_untrusted: ignore                 # or refuse
    repository: acme/churn-service       # optional: the name every signed tag must carry (replays)
    gates:                               # what a version must show before a stage takes it
      production:                        # (gitml.registry.gates)
        require: {metrics.accuracy: ">= 0.9"}
        no_worse_than_current: [metrics.f1]
        dataset: holdout                 # optional: judge gitml.evaluate's metrics on it
    datasets:                            # tables committed beside the policy, for gates
      holdout: {path: data/holdout.csv, targets: label, model_type: classifier}

Both files are read from a commit, never from the work tree: what decides trust is what
was reviewed and committed. Which commit decides the policy is
:mod:`gitml.registry.trust`'s (the trusted ref, accepted by the clone); the
allowed-signers file is read from the same commit. ``.gitml/stages.yaml`` (the desired state a pull request changes)::

    churn:
      production: v2.0.0
      staging: v3.0.0
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gitml.errors import InvalidInputError, PolicyError
from gitml.registry.gates import GateDataset, StageGates, parse_datasets, parse_gates
from gitml.registry.signing import TrustRoots, normalize_fingerprint
from gitml.registry.tags import Action, RegistryTag, check_model_name, check_stage, check_version
from gitml.store import yamlout
from gitml.store.git import GitStore
from gitml.yamlread import load_yaml

POLICY_PATH = ".gitml/registry.yaml"
STAGES_PATH = ".gitml/stages.yaml"
_KEYS = {
    "stages",
    "require_signature",
    "allowed_signers",
    "trusted_gpg_keys",
    "on_untrusted",
    "repository",
    "gates",
    "datasets",
}


@dataclass(frozen=True)
class Policy:
    stages: tuple[str, ...] | None = None
    require_signature: frozenset[str] | bool = frozenset()
    allowed_signers: str | None = None
    trusted_gpg_keys: frozenset[str] = frozenset()
    on_untrusted: str = "ignore"
    # the name a guarded tag's message must carry: a key trusted here that signs in another
    # repository too cannot have its tags there replayed here (None: tags name no repository)
    repository: str | None = None
    gates: dict[str, StageGates] = field(default_factory=dict)  # stage -> what a version must show to enter it
    datasets: dict[str, GateDataset] = field(default_factory=dict)  # the tables gates may evaluate on
    roots: TrustRoots = field(default_factory=TrustRoots)
    digest: str = ""  # of what the policy means (not its comments): what a clone accepts
    text: bytes | None = None  # the committed registry.yaml (None: no policy committed)
    source: str = "no policy"  # which policy this is, said in every answer it decides
    pending: str = ""  # why another policy on the trusted ref does not decide yet ("" when none)

    def requires_signature(self, stage: str) -> bool:
        if self.require_signature is True:
            return True
        return isinstance(self.require_signature, frozenset) and stage in self.require_signature

    def guards(self, tag: RegistryTag) -> bool:
        """Whether ``tag``'s event counts only when signed by a trusted key: a stage's
        assign and unassign when the stage requires it; a deregistration or deprecation
        when any stage does (they take a stage's holder away); a registration under
        ``require_signature: true`` (it decides ``latest`` and version numbers)."""
        if self.require_signature is True:
            return True
        if tag.stage is not None:
            return self.requires_signature(tag.stage)
        if tag.action is Action.REGISTER:
            return False
        return bool(self.require_signature)

    def requirement(self, tag: RegistryTag) -> str:
        """Why ``tag`` must be signed by a trusted key (for messages)."""
        if tag.stage is not None and self.require_signature is not True:
            return f"stage {tag.stage!r} requires a tag signed by a trusted key"
        if self.require_signature is True:
            return "every registry tag must be signed by a trusted key (require_signature: true)"
        return f"a {tag.action.value} tag must be signed by a trusted key while a stage requires signatures"

    def check_stage(self, stage: str) -> str:
        check_stage(stage)
        if self.stages is not None and stage not in self.stages:
            near = [s for s in self.stages if s.lower() == stage.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidInputError(
                f"stage {stage!r} is not one of the stages {POLICY_PATH} allows: {', '.join(self.stages)}{hint}"
            )
        return stage


def read_committed(store: GitStore, commit: bytes | None, path: str) -> bytes | None:
    """The bytes of ``path`` in ``commit``'s tree, or None."""
    if commit is None:
        return None
    entry = store.lookup(store.commit(commit).tree, path)
    if entry is None or entry[0] not in (0o100644, 0o100755):  # a folder, a symbolic link, a submodule: no file
        return None
    return store.blob(entry[1])


def load_policy(
    store: GitStore,
    commit: bytes | None,
    *,
    gpg_program: str = "gpg",
    ssh_program: str = "ssh-keygen",
    source: str = "",
) -> Policy:
    """The policy committed at ``commit`` (none: an open policy, nothing required)."""
    data = read_committed(store, commit, POLICY_PATH)
    where = source or (commit.decode()[:12] if commit else "?")
    return parse_policy(
        data,
        lambda path: read_committed(store, commit, path),
        what=f"{POLICY_PATH} at {where}",
        gpg_program=gpg_program,
        ssh_program=ssh_program,
    )


def parse_policy(
    data: bytes | None,
    read: Callable[[str], bytes | None],
    *,
    what: str,
    gpg_program: str = "gpg",
    ssh_program: str = "ssh-keygen",
    read_data: Callable[[str], bytes | None] | None = None,
) -> Policy:
    """A policy from ``registry.yaml``'s bytes (None: no policy, nothing required);
    ``read(path)`` gives the allowed-signers file it names, ``read_data(path)`` (default:
    ``read``) a dataset file its gates evaluate on. Raises PolicyError."""
    if data is None:
        return Policy(roots=TrustRoots(gpg_program=gpg_program, ssh_program=ssh_program))
    raw = load_yaml(data, what) or {}
    if not isinstance(raw, dict):
        raise PolicyError(what, "is not a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(
            what, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_KEYS))}"
        )
    try:
        stages = raw.get("stages")
        if stages is not None:
            if not isinstance(stages, list):
                raise InvalidInputError("stages must be a list of names")
            stages = tuple(check_stage(s) for s in stages)
        required = raw.get("require_signature", [])
        if required is True:
            require: frozenset[str] | bool = True
        elif required in (None, False):
            require = frozenset()
        elif isinstance(required, list):
            require = frozenset(check_stage(s) for s in required)
        else:
            raise InvalidInputError("require_signature must be a list of stages, or true")
        keys = raw.get("trusted_gpg_keys") or []
        if not isinstance(keys, list):
            raise InvalidInputError("trusted_gpg_keys must be a list of fingerprints")
        fingerprints = frozenset(normalize_fingerprint(k) for k in keys)
        mode = raw.get("on_untrusted", "ignore")
        if mode not in ("ignore", "refuse"):
            raise InvalidInputError(f"on_untrusted must be ignore or refuse, not {mode!r}")
        repository = raw.get("repository")
        if repository is not None and (
            not isinstance(repository, str) or not repository.strip() or not repository.isprintable()
        ):
            raise InvalidInputError("repository must be a name (one line of text) that tags signed here carry")
        signers_path = raw.get("allowed_signers")
        signers = None
        if signers_path is not None:
            if not isinstance(signers_path, str):
                raise InvalidInputError("allowed_signers must be a path in the repository")
            signers = read(signers_path.strip("/"))
            if signers is None:
                raise InvalidInputError(f"allowed_signers names {signers_path!r}, which is not committed there")
        datasets = parse_datasets(raw.get("datasets"), read_data or read)
        gates = parse_gates(raw.get("gates"), stages, check_stage, datasets)
    except InvalidInputError as e:
        raise PolicyError(what, str(e)) from None
    meaning = {
        "stages": list(stages) if stages is not None else None,
        "require_signature": True if require is True else sorted(require or ()),
        "trusted_gpg_keys": sorted(fingerprints),
        "on_untrusted": mode,
        "allowed_signers": hashlib.sha256(signers).hexdigest() if signers is not None else None,
    }
    if repository is not None:  # absent when unset: a policy accepted before it existed keeps its digest
        meaning["repository"] = repository
    if gates:  # absent when there are none: a policy accepted before gates existed keeps its digest
        meaning["gates"] = {s: g.meaning() for s, g in sorted(gates.items())}
    if datasets:
        meaning["datasets"] = {n: d.meaning() for n, d in sorted(datasets.items())}
    digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()
    return Policy(
        stages=stages,
        require_signature=require,
        allowed_signers=signers_path,
        trusted_gpg_keys=fingerprints,
        on_untrusted=mode,
        repository=repository,
        gates=gates,
        datasets=datasets,
        roots=TrustRoots(fingerprints, signers, gpg_program, ssh_program),
        digest=digest,
        text=data,
    )


def described(policy: Policy, source: str, pending: str = "") -> Policy:
    """The policy with the words that say where it comes from."""
    return replace(policy, source=source, pending=pending)


def parse_stages(data: bytes | None, what: str) -> dict[str, dict[str, str]]:
    """The desired-state file: ``{model: {stage: version}}`` (empty when absent)."""
    if data is None:
        return {}
    raw = load_yaml(data, what) or {}
    if not isinstance(raw, dict):
        raise PolicyError(what, "is not a mapping of models to {stage: version}")
    out: dict[str, dict[str, str]] = {}
    try:
        for model, stages in raw.items():
            check_model_name(model)
            if not isinstance(stages, dict):
                raise InvalidInputError(f"{model}: expected a mapping of stage to version")
            out[model] = {check_stage(s): check_version(str(v)) if v is not None else "" for s, v in stages.items()}
    except InvalidInputError as e:
        raise PolicyError(what, str(e)) from None
    return out


def dump_stages(desired: dict[str, dict[str, str]]) -> bytes:
    """The desired-state file's text, models and stages sorted (stable diffs in pull requests)."""
    return yamlout.dump({m: {s: v for s, v in sorted(st.items())} for m, st in sorted(desired.items()) if st})

"""Promotion gates: what a version must show before a stage takes it.

Written in the committed policy (``.gitml/registry.yaml``), per stage::

    gates:
      production:
        require:                          # thresholds on the candidate's metrics
          metrics.accuracy: ">= 0.9"
          metrics.rmse: "< 3"
        no_worse_than_current:            # no regression against the stage's holder
          - metrics.f1                    # higher is better
          - {metrics.rmse: lower}         # or say which way is better
        dataset: holdout                  # optional: the metrics of an evaluation on a
                                          # dataset the policy names (see ``datasets:``)

The gates come from the policy that decides (the trusted ref's, as the clone accepted it),
like the signature rules: a branch cannot weaken them. This module parses them and judges
them against metrics it is given; which metrics (the candidate run's, as recorded at the
registered commit, or an evaluation on a named dataset) is the caller's
(:meth:`gitml.registry.state.Registry.gate_results`, :mod:`gitml.gitops`).
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gitml.errors import GateError, InvalidInputError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_THRESHOLD = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_STAGE_KEYS = ("require", "no_worse_than_current", "dataset")
_DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class GateDataset:
    """A dataset the policy names for gates: a table committed beside the policy (read from
    the same commit: a branch cannot swap it), its target column and the model type
    (:func:`gitml.evaluate`'s metrics for that type are what its gates judge)."""

    name: str
    path: str
    targets: str
    model_type: str
    data: bytes = field(repr=False, default=b"")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def frame(self):
        """The table as a DataFrame (CSV, or Parquet by the ``.parquet`` suffix)."""
        import io

        import pandas as pd

        if self.path.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(self.data))
        return pd.read_csv(io.BytesIO(self.data))

    def meaning(self) -> list:
        return [self.path, self.targets, self.model_type, self.sha256]


def parse_datasets(raw: object, read: Callable[[str], bytes | None]) -> dict[str, GateDataset]:
    """``datasets:`` of the policy: ``{name: {path, targets, model_type}}``, each file read
    with ``read`` (from the policy's commit). Raises InvalidInputError naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInputError("datasets must be a mapping of name to {path, targets, model_type}")
    out = {}
    for name, spec in raw.items():
        where = f"datasets.{name}"
        if not isinstance(spec, dict):
            raise InvalidInputError(f"{where} must be a mapping with path, targets, model_type")
        unknown = sorted(str(k) for k in spec if k not in ("path", "targets", "model_type"))
        if unknown:
            raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: path, targets, model_type")
        for key in ("path", "targets"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise InvalidInputError(
                    f"{where}.{key} must be given (a {'file in the repository' if key == 'path' else 'column'})"
                )
        model_type = spec.get("model_type")
        if model_type not in ("classifier", "regressor"):
            raise InvalidInputError(f"{where}.model_type must be classifier or regressor, not {model_type!r}")
        path = spec["path"].strip("/")
        data = read(path)
        if data is None:
            raise InvalidInputError(f"{where}.path names {path!r}, which is not committed there")
        out[str(name)] = GateDataset(str(name), path, spec["targets"], model_type, data)
    return out


@dataclass(frozen=True)
class Threshold:
    key: str  # "metrics.accuracy"
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


@dataclass(frozen=True)
class NoWorse:
    key: str
    higher_is_better: bool = True

    def __str__(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.key} no worse than the current holder's ({better} is better)"


@dataclass(frozen=True)
class StageGates:
    stage: str
    require: tuple[Threshold, ...] = ()
    no_worse: tuple[NoWorse, ...] = ()
    dataset: str | None = None

    def meaning(self) -> dict:
        """What the gates say (for the policy's digest)."""
        return {
            "require": [[t.key, t.op, t.value] for t in self.require],
            "no_worse": [[n.key, n.higher_is_better] for n in self.no_worse],
            "dataset": self.dataset,
        }


@dataclass(frozen=True)
class GateResult:
    gate: str  # the gate as written, e.g. "metrics.accuracy >= 0.9"
    ok: bool
    detail: str  # the values it was judged on

    def __str__(self) -> str:
        return f"{self.gate}: {'passes' if self.ok else 'FAILS'} ({self.detail})"


@dataclass
class GateReport:
    """The gates of one promotion and their results."""

    model: str
    stage: str
    version: str
    current: str | None
    source: str  # the policy they come from
    results: list[GateResult] = field(default_factory=list)
    dataset: str | None = None  # the metrics are an evaluation on this dataset of the policy (None: the runs')

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.ok]

    def failure(self) -> str:
        """What failed, in one line."""
        return (
            f"{self.model} {self.version} fails the gate(s) of stage {self.stage!r} "
            f"({'; '.join(map(str, self.failed))}) under {self.source}"
        )

    def refusal(self) -> str:
        """The one-line message of a refused promotion."""
        return (
            f"{self.failure()}; an authorised signer may override with --force (the tag must be signed by a "
            "trusted key; the override is recorded in its message)"
        )


def _metric_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not key.startswith("metrics.") or len(key) == len("metrics."):
        raise InvalidInputError(f"{where}: {key!r} is not a metric key (metrics.<name>)")
    return key


def parse_gates(
    raw: object, stages: tuple[str, ...] | None, check_stage: Callable[[str], str], datasets: Mapping[str, object]
) -> dict[str, StageGates]:
    """``gates:`` of the policy: ``{stage: StageGates}``. Raises InvalidInputError naming
    the key that is wrong (``gates.production.require.metrics.acc``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInputError("gates must be a mapping of stage to its gates")
    out = {}
    for stage, spec in raw.items():
        where = f"gates.{stage}"
        if not isinstance(stage, str):
            raise InvalidInputError(f"{where}: a stage name must be a string")
        try:
            check_stage(stage)
        except InvalidInputError as e:
            raise InvalidInputError(f"{where}: {e}") from None
        if stages is not None and stage not in stages:
            raise InvalidInputError(
                f"{where}: {stage!r} is not one of the stages the policy allows: {', '.join(stages)}"
            )
        if not isinstance(spec, dict):
            raise InvalidInputError(f"{where} must be a mapping with {', '.join(_STAGE_KEYS)}")
        unknown = sorted(str(k) for k in spec if k not in _STAGE_KEYS)
        if unknown:
            raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_STAGE_KEYS)}")
        require = spec.get("require") or {}
        if not isinstance(require, dict):
            raise InvalidInputError(f'{where}.require must be a mapping of metric key to a threshold such as ">= 0.9"')
        thresholds = []
        for key, text in require.items():
            _metric_key(key, f"{where}.require")
            m = _THRESHOLD.fullmatch(text) if isinstance(text, str) else None
            if m is None:
                raise InvalidInputError(
                    f'{where}.require.{key}: expected a comparison and a number such as ">= 0.9", not {text!r}'
                )
            value = float(m[2])
            if not math.isfinite(value):
                raise InvalidInputError(f"{where}.require.{key}: {text!r} is not a finite number")
            thresholds.append(Threshold(key, m[1], value))
        items = spec.get("no_worse_than_current") or []
        if isinstance(items, dict):
            items = [{k: v} for k, v in items.items()]
        if not isinstance(items, list):
            raise InvalidInputError(f"{where}.no_worse_than_current must be a list of metric keys")
        no_worse = []
        for item in items:
            if isinstance(item, dict) and len(item) == 1:
                ((key, direction),) = item.items()
            else:
                key, direction = item, "higher"
            _metric_key(key, f"{where}.no_worse_than_current")
            if direction not in _DIRECTIONS:
                raise InvalidInputError(
                    f"{where}.no_worse_than_current.{key}: say higher or lower (which is better), not {direction!r}"
                )
            no_worse.append(NoWorse(key, direction == "higher"))
        dataset = spec.get("dataset")
        if dataset is not None and (not isinstance(dataset, str) or dataset not in datasets):
            raise InvalidInputError(
                f"{where}.dataset: {dataset!r} is not one of the datasets the policy names "
                f"({', '.join(map(str, datasets)) or 'none: add a datasets: section'})"
            )
        out[stage] = StageGates(stage, tuple(thresholds), tuple(no_worse), dataset)
    return out


def unjudged(gates: StageGates, why: str) -> list[GateResult]:
    """Every gate failed for ``why`` (the metrics could not be had)."""
    return [GateResult(str(g), False, why) for g in (*gates.require, *gates.no_worse)]


def judge(
    gates: StageGates, candidate: Mapping[str, float], current: Mapping[str, float] | None, current_version: str | None
) -> list[GateResult]:
    """Each gate's result. ``candidate``/``current``: metric name → value (``current`` None:
    the stage holds nothing, so there is nothing to regress against)."""
    results = []
    for t in gates.require:
        name = t.key[len("metrics.") :]
        value = candidate.get(name)
        if value is None:
            results.append(GateResult(str(t), False, "the candidate has no such metric"))
        else:
            ok = not math.isnan(value) and _OPS[t.op](value, t.value)
            results.append(GateResult(str(t), ok, f"candidate {value:g}"))
    for n in gates.no_worse:
        name = n.key[len("metrics.") :]
        value = candidate.get(name)
        if current is None:
            results.append(GateResult(str(n), True, "the stage holds no version yet"))
            continue
        held = current.get(name)
        if held is None:
            results.append(GateResult(str(n), True, f"the current holder {current_version} has no such metric"))
        elif value is None:
            results.append(
                GateResult(str(n), False, f"the candidate has no such metric; {current_version} has {held:g}")
            )
        else:
            ok = not math.isnan(value) and (value >= held if n.higher_is_better else value <= held)
            results.append(GateResult(str(n), ok, f"candidate {value:g}, current {current_version} {held:g}"))
    return results


__all__ = [
    "GateDataset",
    "parse_datasets",
    "GateError",
    "GateReport",
    "GateResult",
    "NoWorse",
    "StageGates",
    "Threshold",
    "judge",
    "parse_gates",
    "unjudged",
]

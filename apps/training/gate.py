"""The champion/challenger comparison: pure, no database, no files.

A candidate passes when its primary ``metric`` beats the champion's by at least ``min_delta``
(absolute, or a fraction of the champion's value when ``relative``) in ``direction``, and it
is not worse than the champion on any guard metric. With no champion the candidate passes as
the first model. A metric missing (or not a number) on either side fails closed, naming it:
the gate never passes on a score it could not read.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

DIRECTIONS = ("max", "min")
# Float noise: 0.80 - 0.79 is 0.010000000000000009, 0.3 - 0.29 is 0.009999999999999953.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GateRule:
    """What ``job.options["gate"]`` says (the GateSpec's fields)."""

    metric: str
    direction: str = "max"
    min_delta: float = 0.0
    relative: bool = False
    guards: Mapping[str, str] = field(default_factory=dict)
    environment: str = "production"
    dataset: str | None = None
    evaluate: str | None = None

    @classmethod
    def from_options(cls, gate: Mapping[str, Any]) -> "GateRule":
        direction = gate.get("direction") or "max"
        if direction not in DIRECTIONS:
            raise ValueError(f"gate direction must be max or min, not {direction!r}")
        guards = dict(gate.get("guards") or {})
        for name, better in guards.items():
            if better not in DIRECTIONS:
                raise ValueError(f"gate guard {name} must be min or max, not {better!r}")
        return cls(
            metric=str(gate["metric"]),
            direction=direction,
            min_delta=float(gate.get("min_delta") or 0.0),
            relative=bool(gate.get("relative", False)),
            guards=guards,
            environment=gate.get("environment") or "production",
            dataset=gate.get("dataset") or None,
            evaluate=gate.get("evaluate") or None,
        )


@dataclass(frozen=True)
class Comparison:
    passed: bool
    reason: str


def num(value: float) -> str:
    """A score as people read it: 0.812, 0.022, 120.5 (six significant digits at most)."""
    return f"{value:.6g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _missing(metrics: Mapping[str, Any], names: list[str], side: str) -> list[str]:
    problems = []
    for name in names:
        if name not in metrics:
            problems.append(f"{name} is missing on the {side}")
        elif not _is_number(metrics[name]):
            problems.append(f"{name} is not a number on the {side}: {metrics[name]!r}")
    return problems


def _better_or_equal(candidate: float, champion: float, better: str) -> bool:
    if better == "max":
        return candidate >= champion - _EPSILON
    return candidate <= champion + _EPSILON


def compare(
    rule: GateRule, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None
) -> Comparison:
    """The gate's decision and a reason a person can check: both scores, the change and the
    threshold (``f1 0.812 vs champion 0.79: +0.022 ≥ min_delta 0.01``)."""
    names = [rule.metric, *[g for g in rule.guards if g != rule.metric]]
    problems = _missing(candidate, names, "candidate")
    if champion is not None:
        problems += _missing(champion, names, "champion")
    if problems:
        return Comparison(False, "fail closed: " + "; ".join(problems))
    value = float(candidate[rule.metric])
    if champion is None:
        return Comparison(True, f"first model: {rule.metric} {num(value)}, no champion")

    base = float(champion[rule.metric])
    diff = value - base
    gain = diff if rule.direction == "max" else -diff
    threshold = rule.min_delta * abs(base) if rule.relative else rule.min_delta
    enough = gain >= threshold - _EPSILON
    sign = "≥" if enough else "<"
    if rule.relative:
        bar = f"min_delta {num(rule.min_delta)} × {num(abs(base))} = {num(threshold)}"
    else:
        bar = f"min_delta {num(rule.min_delta)}"
    better = "" if rule.direction == "max" else f" (lower is better: gain {gain:+.6g})"
    scores = f"{rule.metric} {num(value)} vs champion {num(base)}"
    parts = [f"{scores}: {diff:+.6g}{better} {sign} {bar}"]
    worse = []
    for name, direction in rule.guards.items():
        if name == rule.metric:
            continue
        mine, theirs = float(candidate[name]), float(champion[name])
        if not _better_or_equal(mine, theirs, direction):
            worse.append(
                f"guard {name} {num(mine)} vs champion {num(theirs)}: worse "
                f"({'higher' if direction == 'max' else 'lower'} is better)"
            )
    parts.extend(worse)
    if enough and not worse and rule.guards:
        parts.append("guards held: " + ", ".join(sorted(g for g in rule.guards)))
    return Comparison(enough and not worse, "; ".join(parts))

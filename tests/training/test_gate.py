"""The champion/challenger comparison on its own: direction, absolute and relative deltas,
guards, a missing metric failing closed, and the first model."""

import pytest

from apps.training.gate import GateRule, compare


def rule(**kw):
    return GateRule.from_options({"metric": "f1", **kw})


def test_max_passes_by_an_absolute_delta_and_says_both_scores():
    verdict = compare(rule(min_delta=0.01), {"f1": 0.812}, {"f1": 0.790})
    assert verdict.passed
    assert verdict.reason == "f1 0.812 vs champion 0.79: +0.022 ≥ min_delta 0.01"


def test_max_fails_below_the_delta_and_on_a_worse_score():
    assert not compare(rule(min_delta=0.05), {"f1": 0.812}, {"f1": 0.790}).passed
    worse = compare(rule(), {"f1": 0.70}, {"f1": 0.79})
    assert not worse.passed
    assert worse.reason == "f1 0.7 vs champion 0.79: -0.09 < min_delta 0"


def test_exactly_the_delta_passes_despite_float_noise():
    # 0.80 - 0.79 is 0.010000000000000009 and 0.30 - 0.29 is 0.009999999999999953.
    assert compare(rule(min_delta=0.01), {"f1": 0.80}, {"f1": 0.79}).passed
    assert compare(rule(min_delta=0.01), {"f1": 0.30}, {"f1": 0.29}).passed


def test_min_direction_lower_is_better():
    loss = GateRule.from_options({"metric": "rmse", "direction": "min", "min_delta": 0.5})
    better = compare(loss, {"rmse": 9.0}, {"rmse": 10.0})
    assert better.passed
    assert "rmse 9 vs champion 10: -1 (lower is better: gain +1) ≥ min_delta 0.5" in better.reason
    assert not compare(loss, {"rmse": 9.8}, {"rmse": 10.0}).passed  # better, not enough
    assert not compare(loss, {"rmse": 11.0}, {"rmse": 10.0}).passed


def test_relative_delta_is_a_fraction_of_the_champion():
    relative = rule(min_delta=0.05, relative=True)  # 5 % of 0.80 = 0.04
    assert compare(relative, {"f1": 0.85}, {"f1": 0.80}).passed
    short = compare(relative, {"f1": 0.83}, {"f1": 0.80})
    assert not short.passed
    assert "< min_delta 0.05 × 0.8 = 0.04" in short.reason
    loss = GateRule.from_options(
        {"metric": "loss", "direction": "min", "min_delta": 0.1, "relative": True}
    )
    assert compare(loss, {"loss": 1.7}, {"loss": 2.0}).passed  # 0.3 ≥ 10 % of 2.0
    assert not compare(loss, {"loss": 1.9}, {"loss": 2.0}).passed


def test_a_guard_that_gets_worse_fails_the_gate_naming_it():
    guarded = rule(min_delta=0.01, guards={"latency_ms": "min", "recall": "max"})
    ok = compare(
        guarded,
        {"f1": 0.85, "latency_ms": 10, "recall": 0.7},
        {"f1": 0.80, "latency_ms": 10, "recall": 0.7},
    )
    assert ok.passed and "guards held: latency_ms, recall" in ok.reason
    slow = compare(
        guarded,
        {"f1": 0.85, "latency_ms": 14, "recall": 0.7},
        {"f1": 0.80, "latency_ms": 10, "recall": 0.7},
    )
    assert not slow.passed
    assert "guard latency_ms 14 vs champion 10: worse (lower is better)" in slow.reason
    forgetful = compare(
        guarded,
        {"f1": 0.85, "latency_ms": 9, "recall": 0.6},
        {"f1": 0.80, "latency_ms": 10, "recall": 0.7},
    )
    assert not forgetful.passed and "guard recall 0.6" in forgetful.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "named"),
    [
        ({}, {"f1": 0.8}, "f1 is missing on the candidate"),
        ({"f1": 0.9}, {}, "f1 is missing on the champion"),
        ({"f1": 0.9}, {"f1": 0.8, "size_bytes": 3}, "size_bytes is missing on the candidate"),
        ({"f1": 0.9, "size_bytes": 1}, {"f1": 0.8}, "size_bytes is missing on the champion"),
        ({"f1": "0.9", "size_bytes": 1}, {"f1": 0.8, "size_bytes": 1}, "f1 is not a number"),
        ({"f1": True, "size_bytes": 1}, {"f1": 0.8, "size_bytes": 1}, "f1 is not a number"),
    ],
)
def test_a_missing_metric_fails_closed_naming_it(candidate, champion, named):
    verdict = compare(rule(guards={"size_bytes": "min"}), candidate, champion)
    assert not verdict.passed
    assert verdict.reason.startswith("fail closed: ") and named in verdict.reason


def test_no_champion_is_the_first_model_but_still_needs_its_scores():
    first = compare(
        rule(min_delta=0.5, guards={"latency_ms": "min"}), {"f1": 0.1, "latency_ms": 3}, None
    )
    assert first.passed
    assert first.reason.startswith("first model")
    assert not compare(rule(guards={"latency_ms": "min"}), {"f1": 0.1}, None).passed


def test_a_rule_with_a_bad_direction_is_refused():
    with pytest.raises(ValueError, match="direction"):
        rule(direction="up")
    with pytest.raises(ValueError, match="guard size"):
        rule(guards={"size": "smaller"})

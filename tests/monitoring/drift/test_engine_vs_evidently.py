"""The engine's verdicts and scores against Evidently 0.7.23 run on the same data.

No database: the engine is pure NumPy/SciPy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from apps.monitoring.drift import ColumnConfig, column_drift, dataset_drift

from .evidently_oracle import legacy_table, preset

NUMERIC = [f"f{i}" for i in range(6)]


def frame(rng, rows, *, shift=None, scale=None, categorical=None, missing=0.0):
    """Six normal features (``shift``/``scale``: {column: amount} in standard deviations),
    a three-level ``plan`` and a binary ``active``; ``missing`` blanks that share of cells."""
    shift, scale = shift or {}, scale or {}
    data = {}
    for i, name in enumerate(NUMERIC):
        mean, std = 10.0 * i, 1.0 + i
        data[name] = rng.normal(mean + shift.get(name, 0.0) * std, std * scale.get(name, 1.0), rows)
    plan_p, active_p = (
        (categorical or {}).get("plan", [0.5, 0.3, 0.2]),
        (categorical or {}).get("active", 0.3),
    )
    data["plan"] = rng.choice(np.array(["basic", "pro", "team"], dtype=object), rows, p=plan_p)
    data["active"] = np.where(rng.random(rows) < active_p, "yes", "no").astype(object)
    df = pd.DataFrame(data)
    if missing:
        for name in df.columns:
            holes = rng.random(rows) < missing
            df.loc[holes, name] = np.nan if name in NUMERIC else None
    return df


CATEGORICAL = ["plan", "active"]


def ours(reference, current, *, tests=None, thresholds=None, share=0.5, numeric=None, cat=None):
    numeric = NUMERIC if numeric is None else numeric
    cat = CATEGORICAL if cat is None else cat
    tests, thresholds = tests or {}, thresholds or {}
    configs = [
        ColumnConfig(name, kind, tests.get(name), thresholds.get(name))
        for kind, names in (("numeric", numeric), ("categorical", cat))
        for name in names
    ]
    ref = {c.name: reference[c.name].to_numpy() for c in configs}
    cur = {c.name: current[c.name].to_numpy() for c in configs}
    return dataset_drift(ref, cur, configs, share)


def evidently(
    reference, current, *, tests=None, thresholds=None, share=0.5, numeric=None, cat=None
):
    return legacy_table(
        reference,
        current,
        numeric=NUMERIC if numeric is None else numeric,
        categorical=CATEGORICAL if cat is None else cat,
        per_column_test=tests,
        per_column_threshold=thresholds,
        drift_share=share,
    )


def assert_agree(result, expected, *, rel=1e-6):
    assert sorted(c.column for c in result.columns) == sorted(expected.columns)
    for name, ev in expected.columns.items():
        col = result.column(name)
        assert col.test == ev.test, name
        assert col.threshold == pytest.approx(ev.threshold), name
        assert col.score == pytest.approx(ev.score, rel=rel, abs=1e-12), (name, ev)
        assert col.drifted == ev.drifted, (name, col.score, ev)
    assert result.drift_share == pytest.approx(expected.drift_share)
    assert result.dataset_drift == expected.dataset_drift


def test_no_drift_small_reference_uses_ks_and_chisquare():
    rng = np.random.default_rng(1)
    ref, cur = frame(rng, 800), frame(rng, 600)
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert {c.test for c in result.columns} == {"ks", "chisquare", "z"}
    assert result.column("active").test == "z"  # two values: the Z-test
    assert not result.dataset_drift
    assert result.drifted_columns == []


def test_mean_shift_large_reference_uses_wasserstein():
    rng = np.random.default_rng(2)
    ref = frame(rng, 20_000)
    cur = frame(rng, 8_000, shift={"f0": 0.2, "f2": 0.2, "f4": -0.2})
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert {result.column(n).test for n in NUMERIC} == {"wasserstein"}
    assert result.column("plan").test == "jensenshannon"
    assert result.drifted_columns == ["f0", "f2", "f4"]
    assert result.drift_share == pytest.approx(3 / 8)
    assert not result.dataset_drift


def test_mean_shift_small_reference_with_ks():
    rng = np.random.default_rng(3)
    ref = frame(rng, 1000)  # exactly 1000 rows is still "small"
    cur = frame(rng, 1000, shift={"f1": 0.2, "f3": 0.2, "f5": 0.2})
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert {result.column(n).test for n in NUMERIC} == {"ks"}
    assert {"f1", "f3", "f5"} & set(result.drifted_columns)


def test_variance_change_drifts_the_dataset():
    rng = np.random.default_rng(4)
    ref = frame(rng, 5000)
    cur = frame(rng, 5000, scale={n: 1.5 for n in NUMERIC[:5]})
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert result.drifted_columns == NUMERIC[:5]
    assert result.dataset_drift


@pytest.mark.parametrize("rows", [600, 5000])
def test_categorical_shift(rows):
    rng = np.random.default_rng(5)
    ref = frame(rng, rows)
    cur = frame(rng, rows, categorical={"plan": [0.2, 0.3, 0.5], "active": 0.6})
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert {"plan", "active"} <= set(result.drifted_columns)


@pytest.mark.parametrize("rows", [700, 4000])
def test_missing_values_are_dropped_like_evidently(rows):
    rng = np.random.default_rng(6)
    ref = frame(rng, rows, missing=0.1)
    cur = frame(rng, rows, shift={"f0": 0.3}, missing=0.25)
    cur.loc[:5, "f1"] = np.inf  # infinities count as missing too
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    f0 = result.column("f0")
    assert f0.missing_share == pytest.approx(cur["f0"].isna().mean())
    assert f0.drifted
    assert result.column("f1").missing_share == pytest.approx(
        (~np.isfinite(cur["f1"].to_numpy())).mean()
    )
    assert result.column("plan").missing_share == pytest.approx(cur["plan"].isna().mean())


def test_a_reference_of_1001_rows_after_dropping_missing_switches_tests():
    rng = np.random.default_rng(7)
    ref = frame(rng, 1101)
    ref.loc[:99, "f0"] = np.nan  # 1001 usable rows in f0 only
    ref.loc[:100, "f1"] = np.nan  # 1000 in f1
    cur = frame(rng, 900)
    result, expected = ours(ref, cur), evidently(ref, cur)
    assert_agree(result, expected)
    assert result.column("f0").test == "wasserstein"
    assert result.column("f1").test == "ks"


@pytest.mark.parametrize("rows", [500, 3000])
def test_numeric_columns_with_few_values(rows):
    rng = np.random.default_rng(8)
    numeric = ["stars", "flag", "level"]
    ref = pd.DataFrame(
        {
            "stars": rng.integers(1, 6, rows).astype(float),  # 5 values: chi-square / JS
            "flag": rng.integers(0, 2, rows).astype(float),  # 2 values: Z / JS
            "level": rng.integers(0, 12, rows).astype(float),  # 12 values: K-S / Wasserstein
        }
    )
    cur = pd.DataFrame(
        {
            "stars": rng.choice([1.0, 2, 3, 4, 5], rows, p=[0.1, 0.1, 0.2, 0.3, 0.3]),
            "flag": (rng.random(rows) < 0.45).astype(float),
            "level": rng.integers(0, 12, rows).astype(float),
        }
    )
    result = ours(ref, cur, numeric=numeric, cat=[])
    expected = evidently(ref, cur, numeric=numeric, cat=[])
    assert_agree(result, expected)
    small = rows <= 1000
    assert result.column("stars").test == ("chisquare" if small else "jensenshannon")
    assert result.column("flag").test == ("z" if small else "jensenshannon")
    assert result.column("level").test == ("ks" if small else "wasserstein")


TESTS_BY_KIND = {
    "numeric": ["ks", "wasserstein", "psi", "kl_div", "jensenshannon", "hellinger"],
    "categorical": ["chisquare", "z", "psi", "kl_div", "jensenshannon", "hellinger"],
}


@pytest.mark.parametrize("rows", [800, 30_000])
@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_every_named_test_scores_like_evidently(kind, rows):
    rng = np.random.default_rng(9)
    ref = frame(rng, rows, missing=0.05)
    cur = frame(
        rng,
        rows // 2,
        shift={"f0": 0.1, "f1": 0.05},
        scale={"f2": 1.1},
        categorical={"plan": [0.45, 0.33, 0.22]},
        missing=0.05,
    )
    columns = ["f0", "f1", "f2"] if kind == "numeric" else ["plan", "active"]
    for test in TESTS_BY_KIND[kind]:
        tests = dict.fromkeys(columns, test)
        # a threshold of our own next to the default one
        thresholds = {columns[0]: 0.02 if test not in ("ks", "chisquare", "z") else 0.2}
        numeric, cat = (columns, []) if kind == "numeric" else ([], columns)
        args = {"tests": tests, "thresholds": thresholds, "numeric": numeric, "cat": cat}
        assert_agree(ours(ref, cur, **args), evidently(ref, cur, **args))


def test_drift_share_threshold():
    rng = np.random.default_rng(10)
    ref = frame(rng, 3000)
    cur = frame(rng, 3000, shift={"f0": 0.5, "f1": 0.5})
    for share in (0.2, 0.25, 0.3):
        result, expected = ours(ref, cur, share=share), evidently(ref, cur, share=share)
        assert_agree(result, expected)
    assert ours(ref, cur, share=0.25).dataset_drift  # 2 of 8 columns is exactly 0.25
    assert not ours(ref, cur, share=0.3).dataset_drift


def test_data_drift_preset_counts_and_scores_match():
    rng = np.random.default_rng(11)
    ref = frame(rng, 4000, missing=0.02)
    cur = frame(rng, 3000, shift={"f0": 0.2, "f3": 0.3}, categorical={"active": 0.5})
    result = ours(ref, cur)
    count, share, scores = preset(ref, cur, numeric=NUMERIC, categorical=CATEGORICAL)
    assert count == len(result.drifted_columns) == 3
    assert share == pytest.approx(result.drift_share)
    for name, (test, score) in scores.items():
        assert result.column(name).test == test
        assert result.column(name).score == pytest.approx(score, rel=1e-6, abs=1e-12)


def test_pyarrow_inputs_give_the_same_verdicts():
    rng = np.random.default_rng(12)
    ref = frame(rng, 2000, missing=0.05)
    cur = frame(rng, 1500, categorical={"plan": [0.3, 0.3, 0.4]}, missing=0.05)
    expected = ours(ref, cur)
    arrow_ref = {n: pa.array(ref[n], from_pandas=True) for n in ref.columns}
    arrow_cur = {n: pa.array(cur[n], from_pandas=True) for n in cur.columns}
    arrow_ref["plan"] = arrow_ref["plan"].dictionary_encode()
    arrow_cur["plan"] = pa.chunked_array([arrow_cur["plan"][:700], arrow_cur["plan"][700:]])
    configs = [ColumnConfig(n, "numeric") for n in NUMERIC] + [
        ColumnConfig(n, "categorical") for n in CATEGORICAL
    ]
    result = dataset_drift(arrow_ref, arrow_cur, configs)
    for a, b in zip(result.columns, expected.columns, strict=True):
        assert (a.test, a.drifted, a.missing_share) == (b.test, b.drifted, b.missing_share)
        assert a.score == pytest.approx(b.score)


def test_out_of_range_new_categories_and_histograms():
    rng = np.random.default_rng(13)
    ref_x = rng.uniform(0, 10, 5000)
    cur_x = np.concatenate([rng.uniform(0, 10, 990), [-1.0, -2.0, 11.0], [np.nan] * 7])
    numeric = column_drift(ref_x, cur_x, ColumnConfig("x", "numeric"))
    assert numeric.out_of_range == 3
    assert numeric.missing_share == pytest.approx(7 / 1000)
    hist = numeric.histogram
    assert len(hist["edges"]) == 21
    assert hist["edges"][0] == pytest.approx(ref_x.min())
    assert hist["edges"][-1] == pytest.approx(ref_x.max())
    assert sum(hist["reference"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(hist["current"]) + hist["below"]["current"] + hist["above"]["current"] == (
        pytest.approx(1.0, abs=1e-4)
    )
    assert hist["below"]["current"] == pytest.approx(2 / 993)

    ref_c = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20, dtype=object)
    cur_c = np.array(["a"] * 40 + ["b"] * 30 + ["d"] * 20 + ["e"] * 5 + [None] * 5, dtype=object)
    cat = column_drift(ref_c, cur_c, ColumnConfig("plan", "categorical"))
    assert cat.new_categories == 2
    assert cat.missing_share == pytest.approx(0.05)
    assert cat.test == "chisquare"
    assert cat.drifted and cat.score == 0.0  # a category the reference never had
    hist = cat.histogram
    assert hist["categories"][:2] == ["a", "b"]
    assert set(hist["new"]) == {"d", "e"}
    assert hist["new_rows"] == 25
    json.dumps(numeric.histogram), json.dumps(cat.histogram)


def test_empty_current_column_has_no_score_and_is_left_out_of_the_share():
    rng = np.random.default_rng(14)
    ref = {"a": rng.normal(size=2000), "b": rng.normal(size=2000)}
    cur = {"a": rng.normal(1.0, size=500), "b": np.full(500, np.nan)}
    result = dataset_drift(ref, cur, [ColumnConfig("a", "numeric"), ColumnConfig("b", "numeric")])
    b = result.column("b")
    assert b.score is None and not b.drifted and b.missing_share == 1.0
    assert result.drift_share == 1.0 and result.dataset_drift


def test_a_test_that_does_not_fit_the_kind_is_refused():
    with pytest.raises(ValueError, match="does not apply"):
        ColumnConfig("plan", "categorical", test="ks")
    with pytest.raises(ValueError, match="unknown test"):
        ColumnConfig("x", "numeric", test="anderson")
    with pytest.raises(ValueError, match="does not apply"):
        column_drift(np.array(["a", "b"]), np.array(["a"]), ColumnConfig("p", test="wasserstein"))


def test_categorical_sides_of_different_types_share_categories():
    ref = np.array([1, 2, 3] * 100)
    cur = np.array([1.0, 2.0, np.nan] * 100)  # floats (a NaN made them so) and no 3
    result = column_drift(ref, cur, ColumnConfig("stars", "categorical"))
    assert result.new_categories == 0
    assert result.missing_share == pytest.approx(1 / 3)
    assert result.histogram["categories"] == [1.0, 2.0, 3.0]
    assert result.drifted and result.test == "chisquare"


@pytest.mark.parametrize("rows", [900, 6000])
def test_named_tests_on_new_and_vanished_values(rows):
    """A category only the current window has and one it lost; a numeric column with 15
    values (one bin per value for PSI/KL/JS) and one of constant value."""
    rng = np.random.default_rng(15)
    ref = pd.DataFrame(
        {
            "plan": rng.choice(np.array(["basic", "pro", "team", "legacy"], dtype=object), rows),
            "level": rng.integers(0, 15, rows).astype(float),
            "const": np.full(rows, 3.0),
        }
    )
    cur = pd.DataFrame(
        {
            "plan": rng.choice(
                np.array(["basic", "pro", "team", "trial"], dtype=object),
                rows,
                p=[0.4, 0.3, 0.2, 0.1],
            ),
            "level": rng.integers(1, 16, rows).astype(float),
            "const": np.full(rows, 3.0),
        }
    )
    for test in ("psi", "kl_div", "jensenshannon", "hellinger"):
        args = {"tests": {"plan": test, "level": test}, "numeric": ["level"], "cat": ["plan"]}
        assert_agree(ours(ref, cur, **args), evidently(ref, cur, **args))
    for test in ("chisquare", "z"):
        args = {"tests": {"plan": test}, "numeric": [], "cat": ["plan"]}
        assert_agree(ours(ref, cur, **args), evidently(ref, cur, **args))
    args = {"numeric": ["level", "const"], "cat": ["plan"]}
    result = ours(ref, cur, **args)
    assert_agree(result, evidently(ref, cur, **args))
    assert result.column("plan").new_categories == 1
    assert result.column("level").out_of_range == int((cur["level"] == 15).sum())
    assert not result.column("const").drifted

"""``infer_kind`` against Evidently's own column-type inference, ``performance`` against
scikit-learn (installed with Evidently)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from evidently.core.datasets import infer_column_type
from sklearn import metrics

from apps.monitoring.drift import infer_kind, performance

rng = np.random.default_rng(0)

SERIES = {
    "floats": pd.Series(rng.normal(size=200)),
    "floats with nan": pd.Series([1.0, np.nan, 3.0] * 50),
    "few ints": pd.Series(rng.integers(0, 10, 300)),  # 10 distinct: categorical
    "many ints": pd.Series(rng.integers(0, 11, 3000)),  # 11 distinct: numeric
    "strings": pd.Series(rng.choice(["a", "b", "c"], 300)),
    "strings with none": pd.Series(["a", None, "b"] * 40, dtype=object),
    "bools": pd.Series(rng.random(100) < 0.5),
    "category": pd.Series(rng.choice(["x", "y"], 100)).astype("category"),
}

EVIDENTLY_KIND = {"num": "numeric", "cat": "categorical"}


@pytest.mark.parametrize("name", list(SERIES))
def test_infer_kind_matches_evidently(name):
    series = SERIES[name]
    expected = EVIDENTLY_KIND[infer_column_type(series).value]
    values = series.to_numpy() if name != "category" else series
    if name == "category":
        values = pa.array(series)  # a pandas category arrives as an Arrow dictionary array
    assert infer_kind(values) == expected
    if name != "category":
        assert infer_kind(pa.array(series, from_pandas=True)) == expected


def test_binary_classification_metrics_match_sklearn():
    truth = rng.integers(0, 2, 5000)
    score = np.clip(truth * 0.3 + rng.random(5000) * 0.8, 0, 1)
    score[:50] = 0.5  # ties
    pred = (score > 0.5).astype(int)
    result = performance(truth, pred, score)
    assert result["rows"] == 5000
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert result["f1"] == pytest.approx(metrics.f1_score(truth, pred))
    assert result["precision"] == pytest.approx(metrics.precision_score(truth, pred))
    assert result["recall"] == pytest.approx(metrics.recall_score(truth, pred))
    assert result["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, score))
    assert result["positive"] == 1


def test_string_labels_unlabelled_rows_and_multiclass():
    truth = np.array(["yes", "no", None, "yes", "no", "yes"], dtype=object)
    pred = np.array(["yes", "yes", "no", "no", "no", "yes"], dtype=object)
    result = performance(truth, pred)
    labelled = [0, 1, 3, 4, 5]
    assert result["rows"] == 5
    assert result["positive"] == "yes"
    assert result["f1"] == pytest.approx(
        metrics.f1_score(truth[labelled].astype(str), pred[labelled].astype(str), pos_label="yes")
    )
    assert result["roc_auc"] is None

    truth = rng.integers(0, 4, 2000)
    pred = np.where(rng.random(2000) < 0.7, truth, rng.integers(0, 4, 2000))
    result = performance(truth, pred)
    assert result["f1"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))


def test_regression_metrics_match_sklearn():
    truth = rng.normal(10, 3, 4000)
    pred = truth + rng.normal(0.5, 1, 4000)
    truth_with_gaps = truth.copy()
    truth_with_gaps[:100] = np.nan
    result = performance(truth_with_gaps, pred, task="regression")
    assert result["rows"] == 3900
    assert result["mae"] == pytest.approx(metrics.mean_absolute_error(truth[100:], pred[100:]))
    assert result["rmse"] == pytest.approx(metrics.root_mean_squared_error(truth[100:], pred[100:]))
    assert result["r2"] == pytest.approx(metrics.r2_score(truth[100:], pred[100:]))

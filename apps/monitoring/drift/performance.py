"""Model quality on labelled observations: accuracy, precision, recall, F1 and ROC AUC for
classification; MAE, RMSE and R² for regression. Rows without a label are left out."""

from __future__ import annotations

import math

import numpy as np

from .samples import _is_arrow, as_float


def _labels(values) -> np.ndarray:
    if _is_arrow(values):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values)


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        import pyarrow as pa

        nulls = pa.array(values, from_pandas=True).is_null()
        return nulls.to_numpy(zero_copy_only=False)
    return np.zeros(values.shape, dtype=bool)


def performance(y_true, y_pred, y_score=None, task: str = "classification") -> dict:
    """Metrics over the rows that have both a label and a prediction.

    Classification: with two classes the positive one is 1 (or True), else the larger of the
    two in sorted order; F1/precision/recall are of that class. With more classes they are
    macro averages, and ``roc_auc`` (from ``y_score``, the positive class's score) is None."""
    if task == "regression":
        return _regression(as_float(y_true), as_float(y_pred))
    if task != "classification":
        raise ValueError(f"task must be classification or regression, not {task!r}")
    truth, pred = _labels(y_true), _labels(y_pred)
    keep = ~(_missing(truth) | _missing(pred))
    score = None if y_score is None else as_float(y_score)
    if score is not None:
        keep &= ~np.isnan(score)
        score = score[keep]
    truth, pred = truth[keep], pred[keep]
    if truth.dtype != pred.dtype and (truth.dtype.kind in "OUS" or pred.dtype.kind in "OUS"):
        truth, pred = truth.astype(str), pred.astype(str)
    result = {"task": "classification", "rows": int(truth.size)}
    if truth.size == 0:
        return result | dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc"))
    classes, codes = np.unique(np.concatenate([truth, pred]), return_inverse=True)
    t, p = codes[: truth.size], codes[truth.size :]
    k = classes.size
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    result["accuracy"] = float(tp.sum() / truth.size)
    if k <= 2:
        positive = _positive_index(classes)
        if k == 1:
            positive = 0
        result["precision"] = float(precision[positive])
        result["recall"] = float(recall[positive])
        result["f1"] = float(f1[positive])
        result["positive"] = _plain(classes[positive])
        result["roc_auc"] = _roc_auc(t == positive, score) if score is not None and k == 2 else None
    else:
        present = actual > 0  # macro average over the classes that occur in the labels
        result["precision"] = float(precision[present].mean())
        result["recall"] = float(recall[present].mean())
        result["f1"] = float(f1[present].mean())
        result["roc_auc"] = None
    return result


def _positive_index(classes: np.ndarray) -> int:
    for i, value in enumerate(classes):
        if value is True or (isinstance(value, np.bool_) and bool(value)):
            return i
        if isinstance(value, int | np.integer) and value == 1:
            return i
        if isinstance(value, str) and value in ("1", "True", "true"):
            return i
    return classes.size - 1


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _roc_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """The Mann–Whitney form: the chance a positive row scores above a negative one (ties
    count half), from the ranks of the scores."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy import stats

    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _regression(truth: np.ndarray, pred: np.ndarray) -> dict:
    keep = np.isfinite(truth) & np.isfinite(pred)
    truth, pred = truth[keep], pred[keep]
    result = {"task": "regression", "rows": int(truth.size)}
    if truth.size == 0:
        return result | {"mae": None, "rmse": None, "r2": None}
    error = pred - truth
    result["mae"] = float(np.abs(error).mean())
    result["rmse"] = float(math.sqrt(np.square(error).mean()))
    spread = float(np.square(truth - truth.mean()).sum())
    result["r2"] = 1.0 - float(np.square(error).sum()) / spread if spread > 0 else None
    return result

"""Evaluate a model file on a labelled dataset (the CT loop's gate calls this).

    python -m model.evaluate --model MODEL.joblib --data DATA.csv --out metrics.json

MODEL is any model file train.py wrote, from this commit or an older one (the control
plane evaluates the candidate and the serving champion with the same command), or a bare
scikit-learn estimator saved with joblib.  DATA needs columns f0..f5 and ``label``
(data/eval.csv, data/raw.csv or a prepared features.csv all do); rows whose label is not
0 or 1 are skipped and counted.  The output is

    {"metrics": {"f1", "accuracy", "roc_auc", "latency_ms", "size_bytes"},
     "params":  {"threshold", "latency_rows"},
     "tags":    {"model_version", "model_type", "data_sha256", "n_rows", ...}}

Same model and data give the same metrics, except ``latency_ms``: the median (p50) wall
time of predicting one row at a time over the first ``--latency-rows`` rows, the lowest
of LATENCY_ROUNDS such medians (with the garbage collector paused, as timeit does), so that
another process on a busy machine inflates it less.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import pickle
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from . import features as F
from . import training

log = logging.getLogger("model.evaluate")

THRESHOLD = 0.5  # prediction = probability > THRESHOLD, as model.predict does
LATENCY_ROWS = 200
LATENCY_ROUNDS = 3
WARMUP_CALLS = 5


def load_model(path: Path | str) -> dict:
    """A bundle as train.py writes it; a bare estimator is wrapped in one."""
    obj = joblib.load(path)
    if isinstance(obj, dict) and "pipeline" in obj:
        return obj
    if hasattr(obj, "predict_proba"):
        return {"pipeline": obj, "model_version": "", "bare": True}
    raise ValueError(f"{path}: not a model (neither a train.py bundle nor an estimator with predict_proba)")


def predictor(bundle: dict):
    """fn(base matrix of f0..f5) -> P(class 1)."""
    if not bundle.get("bare"):
        return lambda base: training.predict_proba(bundle, base)
    est = bundle["pipeline"]
    # A bare estimator fitted on the raw base features or on the prepared ones.
    raw = getattr(est, "n_features_in_", len(F.FEATURE_COLUMNS)) == len(F.BASE_FEATURES)
    return lambda base: est.predict_proba(base if raw else F.transform(base))[:, 1]


def read_labelled(path: Path | str) -> tuple[np.ndarray, np.ndarray, int]:
    """(base features, labels, rows skipped for a missing/invalid label)."""
    header, rows = F.read_csv(path)
    missing = [c for c in [*F.BASE_FEATURES, F.LABEL_COLUMN] if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    kept = [r for r in rows if (r[F.LABEL_COLUMN] or "").strip() in {"0", "1"}]
    if not kept:
        raise ValueError(f"{path}: no rows with a 0/1 label")
    y = np.array([int(r[F.LABEL_COLUMN]) for r in kept], dtype=np.int64)
    return F.rows_to_base_matrix(kept), y, len(rows) - len(kept)


def p50_latency_ms(predict, base: np.ndarray, rows: int = LATENCY_ROWS,
                   rounds: int = LATENCY_ROUNDS) -> float:
    """Median wall time of one single-row prediction, in milliseconds (best of ``rounds``)."""
    sample = base[: max(1, rows)]
    for i in range(WARMUP_CALLS):
        predict(sample[i % len(sample)][None, :])
    medians = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, rounds)):
            times = []
            for row in sample:
                t0 = time.perf_counter_ns()
                predict(row[None, :])
                times.append(time.perf_counter_ns() - t0)
            medians.append(float(np.median(times)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return round(min(medians) / 1e6, 4)


def score(predict, base: np.ndarray, y: np.ndarray) -> dict:
    """The deterministic part: f1, accuracy and (when both classes occur) roc_auc."""
    proba = predict(base)
    pred = (proba > THRESHOLD).astype(np.int64)
    out = {
        "f1": round(float(f1_score(y, pred, zero_division=0)), 6),
        "accuracy": round(float(accuracy_score(y, pred)), 6),
    }
    if len(set(y.tolist())) == 2:
        auc = float(roc_auc_score(y, proba))
        if not math.isnan(auc):
            out["roc_auc"] = round(auc, 6)
    return out


def evaluate_arrays(bundle: dict, base: np.ndarray, y: np.ndarray, *, size_bytes: int,
                    latency_rows: int = LATENCY_ROWS) -> dict:
    predict = predictor(bundle)
    metrics = score(predict, base, y)
    metrics["latency_ms"] = p50_latency_ms(predict, base, latency_rows)
    metrics["size_bytes"] = int(size_bytes)
    return metrics


def evaluate_file(model_path: Path | str, data_path: Path | str, *,
                  latency_rows: int = LATENCY_ROWS) -> dict:
    """The report for one model file on one dataset (see the module docstring)."""
    bundle = load_model(model_path)
    base, y, skipped = read_labelled(data_path)
    metrics = evaluate_arrays(bundle, base, y, size_bytes=Path(model_path).stat().st_size,
                              latency_rows=latency_rows)
    tags = {
        "model_version": str(bundle.get("model_version", "")),
        "model_type": str(bundle.get("model_type", "logreg" if not bundle.get("bare") else "")),
        "model_sklearn_version": str(bundle.get("sklearn_version", "")),
        "sklearn_version": sklearn.__version__,
        "data_sha256": F.sha256_file(data_path),
        "n_rows": str(len(y)),
        "n_positive": str(int(y.sum())),
        "rows_skipped": str(skipped),
    }
    return {"metrics": metrics, "params": {"threshold": THRESHOLD, "latency_rows": latency_rows},
            "tags": tags}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model file (joblib)")
    ap.add_argument("--data", required=True, help="labelled CSV (f0..f5, label)")
    ap.add_argument("--out", required=True, help="metrics JSON to write")
    ap.add_argument("--latency-rows", type=int, default=LATENCY_ROWS,
                    help=f"rows timed one by one for latency_ms (default {LATENCY_ROWS})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        report = evaluate_file(args.model, args.data, latency_rows=args.latency_rows)
    except (OSError, ValueError, EOFError, ImportError, pickle.UnpicklingError) as exc:
        log.error("%s", exc)
        return 2
    out = Path(args.out)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info("%s on %s: %s", args.model, args.data,
             ", ".join(f"{k}={v}" for k, v in sorted(report["metrics"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

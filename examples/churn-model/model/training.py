"""Deterministic training of the churn classifier."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from . import features as F

log = logging.getLogger(__name__)

MODEL_NAME = "churn-logreg"
SEED = 42
TEST_SIZE = 0.25
# tol is far below the default (1e-4): the solver then runs to the exact optimum
# (~21 L-BFGS iterations here), so a different BLAS/CPU cannot shift the
# stopping iteration and move probabilities by more than the 1e-6 tolerance
# of the reproducibility check (with tol=1e-4 the optimum is missed by ~1e-4).
HYPERPARAMS = {"C": 1.0, "max_iter": 1000, "tol": 1e-10}


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(random_state=SEED, **HYPERPARAMS)),
        ]
    )


def model_version(data_sha256: str) -> str:
    """Stable identifier: depends only on the training data and hyperparameters."""
    spec = json.dumps({"data": data_sha256, "params": HYPERPARAMS, "seed": SEED,
                       "features": F.FEATURE_COLUMNS}, sort_keys=True)
    return f"{MODEL_NAME}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def train(X: np.ndarray, y: np.ndarray, data_sha256: str) -> tuple[dict, dict]:
    """Fit on a fixed stratified split; return (bundle, metrics)."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    pipe = build_pipeline().fit(X_train, y_train)
    pred = pipe.predict(X_test)
    proba = pipe.predict_proba(X_test)[:, 1]
    version = model_version(data_sha256)
    metrics = {
        "model": MODEL_NAME,
        "model_version": version,
        "accuracy": round(float(accuracy_score(y_test, pred)), 6),
        "f1": round(float(f1_score(y_test, pred)), 6),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 6),
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "features": list(F.FEATURE_COLUMNS),
        "dataset_sha256": data_sha256,
        "seed": SEED,
        "sklearn_version": sklearn.__version__,
    }
    bundle = {
        "pipeline": pipe,
        "feature_columns": list(F.FEATURE_COLUMNS),
        "model_version": version,
        "dataset_sha256": data_sha256,
        "sklearn_version": sklearn.__version__,
    }
    return bundle, metrics


def train_from_features_file(path: Path | str) -> tuple[dict, dict]:
    X, y = F.load_feature_table(path)
    return train(X, y, F.sha256_file(path))


def train_from_raw(raw_path: Path | str = F.RAW_DATA) -> tuple[dict, dict]:
    """prepare + train in memory (used when no model artifact exists).

    The fingerprint equals that of the features.csv prepare.py would write.
    """
    _, rows = F.read_csv(raw_path)
    table, _ = F.prepare_rows(rows)
    text = F.table_to_csv_text(table)
    header, body = table[0], table[1:]
    X, y = F.table_rows_to_xy([dict(zip(header, r)) for r in body])
    return train(X, y, F.sha256_text(text))


def save(bundle: dict, metrics: dict, out_dir: Path | str, model_name: str = "model.joblib") -> Path:
    """Write <out_dir>/<model_name> (atomically) and <out_dir>/metrics.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / model_name
    tmp = out / (model_name + ".tmp")
    joblib.dump(bundle, tmp)
    tmp.replace(model_path)  # a concurrent reader never sees half a file
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return model_path


def load_or_train(model_path: Path | str | None = None, *, allow_train: bool = True) -> dict:
    """Load the model bundle; if absent and allowed, train it from data/raw.csv.

    The freshly trained model is cached at ``model_path`` when the directory is
    writable; otherwise it is kept in memory only.
    """
    path = Path(model_path) if model_path else F.DEFAULT_MODEL
    if path.exists():
        bundle = joblib.load(path)
        if bundle.get("sklearn_version") != sklearn.__version__:
            log.warning("model %s was trained with scikit-learn %s, running %s",
                        path, bundle.get("sklearn_version"), sklearn.__version__)
        return bundle
    if not allow_train:
        raise FileNotFoundError(
            f"model file {path} not found; run `python prepare.py --in data/raw.csv "
            f"--out data/features.csv && python train.py --data data/features.csv --out artifacts/`"
        )
    t0 = time.perf_counter()
    log.warning("model %s not found: training it now from %s (deterministic, seed=%d)",
                path, F.RAW_DATA, SEED)
    bundle, metrics = train_from_raw(F.RAW_DATA)
    try:
        save(bundle, metrics, path.parent, path.name)
        log.warning("trained %s in %.2fs (accuracy=%.4f), saved to %s",
                    bundle["model_version"], time.perf_counter() - t0, metrics["accuracy"], path)
    except OSError as exc:
        log.warning("trained %s in memory only (could not save to %s: %s)",
                    bundle["model_version"], path, exc)
    return bundle


def predict_proba(bundle: dict, base: np.ndarray) -> np.ndarray:
    """Probability of class 1 for an (n, len(BASE_FEATURES)) raw feature matrix."""
    X = F.transform(base)
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    return bundle["pipeline"].predict_proba(X)[:, 1]

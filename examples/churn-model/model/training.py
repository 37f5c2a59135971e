"""Deterministic training of the churn classifier."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
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


# Model types train.py can fit (the `model_type` parameter of the `train` pipeline):
#   logreg - the default: what the push pipeline's build job ships (unchanged, reproducible);
#   gbm    - gradient boosting, `n_estimators` stages, fitted in chunks so each chunk's
#            per-stage losses can be logged while it trains;
#   dummy  - always predicts the training prior: a deliberately bad challenger (f1 = 0) for
#            showing a gate that fails.
MODEL_TYPES = ("logreg", "gbm", "dummy")
DEFAULT_MODEL_TYPE = "logreg"
DEFAULT_N_ESTIMATORS = 100
GBM_HYPERPARAMS = {"learning_rate": 0.1, "max_depth": 3}
# gbm is fitted in about this many warm-started chunks (at least one stage each).
GBM_CHUNKS = 10

# on_step(key, step, value): one point of a per-step metric series (see train.py).
StepCallback = Callable[[str, int, float], None]


def hyperparams(model_type: str = DEFAULT_MODEL_TYPE, n_estimators: int = DEFAULT_N_ESTIMATORS) -> dict:
    """The hyperparameters a model type is fitted with (recorded with the model)."""
    if model_type == "logreg":
        return dict(HYPERPARAMS)
    if model_type == "gbm":
        return {"n_estimators": int(n_estimators), **GBM_HYPERPARAMS}
    if model_type == "dummy":
        return {"strategy": "prior"}
    raise ValueError(f"unknown model_type {model_type!r} (choose one of {', '.join(MODEL_TYPES)})")


def build_pipeline(model_type: str = DEFAULT_MODEL_TYPE, *, n_estimators: int = DEFAULT_N_ESTIMATORS,
                   seed: int = SEED) -> Pipeline:
    params = hyperparams(model_type, n_estimators)
    impute = ("impute", SimpleImputer(strategy="median"))
    if model_type == "gbm":
        return Pipeline([impute, ("clf", GradientBoostingClassifier(random_state=seed, **params))])
    if model_type == "dummy":
        return Pipeline([impute, ("clf", DummyClassifier(**params))])
    return Pipeline(
        [
            impute,
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(random_state=seed, **params)),
        ]
    )


def model_version(data_sha256: str, *, model_type: str = DEFAULT_MODEL_TYPE,
                  n_estimators: int = DEFAULT_N_ESTIMATORS, seed: int = SEED) -> str:
    """Stable identifier: depends only on the training data, model type and hyperparameters.

    The default logistic regression keeps the identifier it always had.
    """
    spec = {"data": data_sha256, "params": hyperparams(model_type, n_estimators), "seed": seed,
            "features": F.FEATURE_COLUMNS}
    if model_type != "logreg":
        spec["model_type"] = model_type
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{model_name(model_type)}-{digest}"


def model_name(model_type: str = DEFAULT_MODEL_TYPE) -> str:
    return MODEL_NAME if model_type == "logreg" else f"churn-{model_type}"


def split(X: np.ndarray, y: np.ndarray, seed: int = SEED):
    """The fixed stratified train/holdout split: (X_train, X_test, y_train, y_test)."""
    return train_test_split(X, y, test_size=TEST_SIZE, random_state=seed, stratify=y)


def _log_losses(on_step: StepCallback, step: int, pipe: Pipeline, X_train, y_train, X_test, y_test) -> None:
    on_step("loss", step, float(log_loss(y_train, pipe.predict_proba(X_train)[:, 1], labels=[0, 1])))
    on_step("val_loss", step, float(log_loss(y_test, pipe.predict_proba(X_test)[:, 1], labels=[0, 1])))


def _fit(pipe: Pipeline, model_type: str, n_estimators: int, X_train, y_train, X_test, y_test,
         on_step: StepCallback | None) -> Pipeline:
    if model_type != "gbm":
        pipe.fit(X_train, y_train)
        if on_step:
            clf = pipe[-1]
            _log_losses(on_step, int(np.max(getattr(clf, "n_iter_", [1]))), pipe,
                        X_train, y_train, X_test, y_test)
        return pipe
    # TRICKY: boosting in warm-started chunks (deterministic: the chunks depend only on
    # n_estimators), so the per-stage losses of a chunk reach the metrics log while the next
    # chunk trains; staged_predict_proba gives the loss after every single stage.
    chunk = max(1, -(-n_estimators // GBM_CHUNKS))
    pipe.set_params(clf__warm_start=True)
    done = 0
    while done < n_estimators:
        target = min(n_estimators, done + chunk)
        pipe.set_params(clf__n_estimators=target)
        pipe.fit(X_train, y_train)
        if on_step:
            impute, clf = pipe[:-1], pipe[-1]
            Xt_train, Xt_test = impute.transform(X_train), impute.transform(X_test)
            stages = zip(
                itertools.islice(clf.staged_predict_proba(Xt_train), done, target),
                itertools.islice(clf.staged_predict_proba(Xt_test), done, target),
            )
            for step, (p_train, p_test) in enumerate(stages, start=done + 1):
                on_step("loss", step, float(log_loss(y_train, p_train[:, 1], labels=[0, 1])))
                on_step("val_loss", step, float(log_loss(y_test, p_test[:, 1], labels=[0, 1])))
        done = target
    pipe.set_params(clf__warm_start=False)
    return pipe


def train(X: np.ndarray, y: np.ndarray, data_sha256: str, *, model_type: str = DEFAULT_MODEL_TYPE,
          n_estimators: int = DEFAULT_N_ESTIMATORS, seed: int = SEED,
          on_step: StepCallback | None = None) -> tuple[dict, dict]:
    """Fit on a fixed stratified split; return (bundle, metrics).

    ``metrics`` is the flat dict the push pipeline's build job records (holdout scores and
    facts about the run); train.py turns it into the CT shape when asked.
    """
    params = hyperparams(model_type, n_estimators)  # validates model_type
    X_train, X_test, y_train, y_test = split(X, y, seed)
    pipe = build_pipeline(model_type, n_estimators=n_estimators, seed=seed)
    pipe = _fit(pipe, model_type, n_estimators, X_train, y_train, X_test, y_test, on_step)
    pred = pipe.predict(X_test)
    proba = pipe.predict_proba(X_test)[:, 1]
    version = model_version(data_sha256, model_type=model_type, n_estimators=n_estimators, seed=seed)
    metrics = {
        "model": model_name(model_type),
        "model_version": version,
        "accuracy": round(float(accuracy_score(y_test, pred)), 6),
        "f1": round(float(f1_score(y_test, pred, zero_division=0)), 6),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 6),
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "features": list(F.FEATURE_COLUMNS),
        "dataset_sha256": data_sha256,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
    }
    if model_type != "logreg":  # the default's flat metrics stay exactly as they were
        metrics["model_type"] = model_type
        metrics.update({k: v for k, v in params.items() if k == "n_estimators"})
    bundle = {
        "pipeline": pipe,
        "feature_columns": list(F.FEATURE_COLUMNS),
        "model_version": version,
        "model_type": model_type,
        "hyperparams": params,
        "seed": seed,
        "dataset_sha256": data_sha256,
        "sklearn_version": sklearn.__version__,
    }
    return bundle, metrics


def train_from_features_file(path: Path | str, **options) -> tuple[dict, dict]:
    """Train on a prepared features CSV; ``options`` as for ``train``."""
    X, y = F.load_feature_table(path)
    return train(X, y, F.sha256_file(path), **options)


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
    model_path = save_model(bundle, out_dir, model_name)
    write_metrics(metrics, out_dir)
    return model_path


def save_model(bundle: dict, out_dir: Path | str, model_name: str = "model.joblib") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / model_name
    tmp = out / (model_name + ".tmp")
    joblib.dump(bundle, tmp)
    tmp.replace(model_path)  # a concurrent reader never sees half a file
    return model_path


def write_metrics(doc: dict, out_dir: Path | str) -> Path:
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


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

"""Regenerate the committed synthetic data (fixed seed; output is byte-stable).

    python data/generate.py

Writes data/raw.csv (training data: id, f0..f5, label) and
tests/ref/input.csv (frozen reference input: id, f0..f5, no label) from
one make_classification draw.  Some noise is injected on purpose so that
prepare.py has something to clean: blank cells, missing/invalid labels,
duplicate ids and out-of-range values.

It also writes data/eval.csv (id, f0..f5, label; clean), the evaluation set
of the CT loop's gate: new rows from the same distribution, drawn with a
different seed (EVAL_SEED).  make_classification with another random_state
would draw another distribution too (other cluster centroids, covariances and
feature order), on which every model scores at chance; so ``draw`` repeats
make_classification's steps, keeping the distribution of the seed-7 draw
(checked to reproduce it exactly) and drawing only the rows anew.

You normally never need to run this; all three files are committed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.utils.random import sample_without_replacement

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_REF, N_EVAL = 800, 50, 400
SEED, EVAL_SEED = 7, 11
FEATURES = [f"f{i}" for i in range(6)]
# The one place the distribution is described (make_classification's arguments).
SHAPE = dict(n_features=6, n_informative=4, n_redundant=1, n_repeated=0,
             n_clusters_per_class=2, weights=[0.7, 0.3], flip_y=0.03, class_sep=1.0)


def draw(n_samples: int, rows_rng: np.random.RandomState, dist: dict | None = None):
    """make_classification(**SHAPE) step by step: returns (X, y, dist).

    Without ``dist`` the distribution (centroids, per-cluster covariance, the
    redundant feature's weights, the feature order) is drawn from ``rows_rng``
    in make_classification's order, so the result equals
    make_classification(n_samples, random_state=<that generator's seed>).
    With ``dist`` only the rows are drawn: same distribution, new rows.
    """
    inf, n_feat, sep = SHAPE["n_informative"], SHAPE["n_features"], SHAPE["class_sep"]
    n_clusters = 2 * SHAPE["n_clusters_per_class"]
    weights = SHAPE["weights"]
    per_cluster = [int(n_samples * weights[k % 2] / SHAPE["n_clusters_per_class"])
                   for k in range(n_clusters)]
    for i in range(n_samples - sum(per_cluster)):
        per_cluster[i % n_clusters] += 1
    fresh = dist is None
    dist = dist or {}
    if fresh:
        codes = sample_without_replacement(2**inf, n_clusters, random_state=rows_rng).astype(">u4")
        bits = np.unpackbits(codes.view(">u1")).reshape((-1, 32))[:, -inf:]
        dist["centroids"] = bits.astype(float) * 2 * sep - sep
    X = np.zeros((n_samples, n_feat))
    y = np.zeros(n_samples, dtype=int)
    X[:, :inf] = rows_rng.standard_normal(size=(n_samples, inf))
    stop = 0
    for k, centroid in enumerate(dist["centroids"]):
        start, stop = stop, stop + per_cluster[k]
        y[start:stop] = k % 2
        if fresh:
            dist.setdefault("A", []).append(2 * rows_rng.uniform(size=(inf, inf)) - 1)
        X[start:stop, :inf] = X[start:stop, :inf] @ dist["A"][k] + centroid
    if fresh:
        dist["B"] = 2 * rows_rng.uniform(size=(inf, SHAPE["n_redundant"])) - 1
    X[:, inf:inf + 1] = X[:, :inf] @ dist["B"]
    X[:, -1:] = rows_rng.standard_normal(size=(n_samples, 1))
    flip = rows_rng.uniform(size=n_samples) < SHAPE["flip_y"]
    y[flip] = rows_rng.randint(2, size=flip.sum())
    order = np.arange(n_samples)
    rows_rng.shuffle(order)
    X, y = X[order], y[order]
    if fresh:
        dist["columns"] = np.arange(n_feat)
        rows_rng.shuffle(dist["columns"])
    return X[:, dist["columns"]], y, dist


def fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.4f}"


def main() -> None:
    X, y = make_classification(n_samples=N_TRAIN + N_REF, random_state=SEED, **SHAPE)
    X_again, y_again, dist = draw(N_TRAIN + N_REF, np.random.RandomState(SEED))
    if not (np.array_equal(X, X_again) and np.array_equal(y, y_again)):
        raise SystemExit("draw() no longer reproduces make_classification (another "
                         "scikit-learn?): data/eval.csv would not match data/raw.csv")
    X_eval, y_eval, _ = draw(N_EVAL, np.random.RandomState(EVAL_SEED), dist)
    rng = np.random.default_rng(SEED)
    X = X.round(4)
    labels = [str(v) for v in y]

    # noise in the training part only
    blank = rng.random((N_TRAIN, 6)) < 0.01
    X[:N_TRAIN][blank] = np.nan   # ~1% blank cells
    for i in rng.choice(N_TRAIN, 4, replace=False):
        labels[i] = ""          # missing label
    labels[int(rng.integers(N_TRAIN))] = "yes"   # invalid label
    for i in rng.choice(N_TRAIN, 3, replace=False):
        X[i, int(rng.integers(6))] = float(rng.choice([-1, 1])) * 25.0  # outliers -> clipped

    with open(ROOT / "data" / "raw.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", *FEATURES, "label"])
        for i in range(N_TRAIN):
            w.writerow([f"c{i:04d}", *(fmt(v) for v in X[i]), labels[i]])
        # two exact duplicates of existing ids (dropped by prepare.py)
        for i in (10, 20):
            w.writerow([f"c{i:04d}", *(fmt(v) for v in X[i]), labels[i]])

    ref = X[N_TRAIN:].copy()
    ref[3, 2] = np.nan    # a missing value and an out-of-range value,
    ref[7, 0] = 12.5      # to exercise imputation and clipping at predict time
    (ROOT / "tests" / "ref").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "tests" / "ref" / "input.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", *FEATURES])
        for j, row in enumerate(ref):
            w.writerow([f"r{j:03d}", *(fmt(v) for v in row)])

    with open(ROOT / "data" / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", *FEATURES, "label"])
        for j, (row, label) in enumerate(zip(X_eval.round(4), y_eval)):
            w.writerow([f"e{j:04d}", *(fmt(v) for v in row), int(label)])


if __name__ == "__main__":
    main()

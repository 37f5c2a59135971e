"""Regenerate the committed synthetic data (fixed seed; output is byte-stable).

    python data/generate.py

Writes data/raw.csv (training data: id, f0..f5, label) and
tests/ref/input.csv (frozen reference input: id, f0..f5, no label) from
one make_classification draw.  Some noise is injected on purpose so that
prepare.py has something to clean: blank cells, missing/invalid labels,
duplicate ids and out-of-range values.  You normally never need to run this;
both files are committed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_REF = 800, 50
FEATURES = [f"f{i}" for i in range(6)]


def fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.4f}"


def main() -> None:
    X, y = make_classification(
        n_samples=N_TRAIN + N_REF, n_features=6, n_informative=4, n_redundant=1,
        n_repeated=0, n_clusters_per_class=2, weights=[0.7, 0.3], flip_y=0.03,
        class_sep=1.0, random_state=7,
    )
    rng = np.random.default_rng(7)
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


if __name__ == "__main__":
    main()

"""Train the churn classifier (deterministic).

    python train.py --data data/features.csv --out artifacts/

Writes artifacts/model.joblib and artifacts/metrics.json (accuracy, f1,
roc_auc, n_train, n_test, dataset_sha256, model_version, ...).
Running it twice on the same data gives identical metrics and predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from model import training


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/features.csv", help="prepared features CSV")
    ap.add_argument("--out", default="artifacts", help="output directory")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        bundle, metrics = training.train_from_features_file(args.data)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = training.save(bundle, metrics, args.out)
    print(json.dumps(metrics, sort_keys=True))
    print(f"train: wrote {path} in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

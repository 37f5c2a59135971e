"""Train the churn classifier (deterministic).

    python train.py --data data/features.csv --out artifacts/
    python train.py --out artifacts/ --metrics-shape nested     # the CT `train` pipeline

Writes artifacts/model.joblib and artifacts/metrics.json.  Running it twice with the same
data and parameters gives identical metrics and predictions (latency_ms aside).

Parameters (flag, else environment variable as the control plane sets it, else default):
  --model-type   PARAM_MODEL_TYPE    logreg | gbm | dummy            (logreg)
  --n-estimators PARAM_N_ESTIMATORS  boosting stages of gbm          (100)
  --seed         PARAM_SEED          split and model seed            (42)
  --data         DATA_FEATURES       prepared features CSV           (data/features.csv)
  --eval         DATA_EVAL           labelled evaluation CSV         (none: the holdout split)

--metrics-shape flat (default; what the push pipeline's build job records): accuracy, f1,
roc_auc on the holdout split plus facts about the run.  nested: {"metrics": {f1, accuracy,
roc_auc, latency_ms, size_bytes}, "params": {...}, "tags": {...}}, the metrics measured by
model.evaluate on the saved model file, on --eval when given, else on the holdout split.

When CONTROLPLANE_METRICS_LOG names a file, per-step series are appended to it as JSON
lines {"key": "loss", "step": n, "value": x} while training runs (loss and val_loss: log
loss on the training and holdout parts, per boosting stage for gbm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from model import evaluate, training
from model import features as F


class MetricsLog:
    """Appends one JSON line per point to $CONTROLPLANE_METRICS_LOG, flushed at once so the
    control plane's tail sees it while training goes on."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, key: str, step: int, value: float) -> None:
        if not self.path:
            return
        line = json.dumps({"key": key, "step": int(step), "value": round(float(value), 8)})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()


def _whole_number(text: str) -> int:
    value = float(text)  # a number param may arrive as "100" or "100.0"
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=env.get("DATA_FEATURES") or "data/features.csv",
                    help="prepared features CSV (default $DATA_FEATURES, then data/features.csv)")
    ap.add_argument("--eval", default=env.get("DATA_EVAL") or None,
                    help="labelled evaluation CSV for the nested metrics (default $DATA_EVAL)")
    ap.add_argument("--out", default="artifacts", help="output directory")
    ap.add_argument("--model-type", default=None, help="logreg | gbm | dummy ($PARAM_MODEL_TYPE)")
    ap.add_argument("--n-estimators", default=None, help="gbm stages ($PARAM_N_ESTIMATORS)")
    ap.add_argument("--seed", default=None, help="split and model seed ($PARAM_SEED)")
    ap.add_argument("--metrics-shape", choices=["flat", "nested"], default="flat")
    ap.add_argument("--latency-rows", type=int, default=evaluate.LATENCY_ROWS,
                    help="rows timed one by one for latency_ms (nested metrics)")
    args = ap.parse_args(argv)

    def pick(flag, name, default):
        value = flag if flag is not None else env.get(name, "").strip()
        return value if value != "" else default

    args.model_type = pick(args.model_type, "PARAM_MODEL_TYPE", training.DEFAULT_MODEL_TYPE)
    if args.model_type not in training.MODEL_TYPES:
        ap.error(f"model type {args.model_type!r}: choose one of {', '.join(training.MODEL_TYPES)}")
    for attr, name, default, low in (("n_estimators", "PARAM_N_ESTIMATORS", training.DEFAULT_N_ESTIMATORS, 1),
                                     ("seed", "PARAM_SEED", training.SEED, 0)):
        raw = pick(getattr(args, attr), name, default)
        try:
            value = _whole_number(str(raw))
        except ValueError:
            ap.error(f"{attr.replace('_', '-')} / {name}: {raw!r} is not a whole number")
        if value < low:
            ap.error(f"{attr.replace('_', '-')} / {name}: must be at least {low}, got {value}")
        setattr(args, attr, value)
    return args


def nested_metrics(bundle: dict, flat: dict, model_path: Path, args: argparse.Namespace) -> dict:
    """The CT shape: judged numbers in metrics, the knobs in params, the provenance in tags."""
    if args.eval:
        report = evaluate.evaluate_file(model_path, args.eval, latency_rows=args.latency_rows)
        metrics, evaluated_on = report["metrics"], "eval"
        eval_tags = {"eval_sha256": report["tags"]["data_sha256"], "n_eval": report["tags"]["n_rows"]}
    else:
        X, y = F.load_feature_table(args.data)
        _, X_test, _, y_test = training.split(X, y, args.seed)
        metrics = evaluate.evaluate_arrays(bundle, X_test[:, : len(F.BASE_FEATURES)], y_test,
                                           size_bytes=model_path.stat().st_size,
                                           latency_rows=args.latency_rows)
        evaluated_on, eval_tags = "holdout", {"n_eval": str(len(y_test))}
    params = {**bundle["hyperparams"], "model_type": args.model_type,
              "n_estimators": args.n_estimators, "seed": args.seed}
    tags = {
        "model": flat["model"],
        "model_version": bundle["model_version"],
        "sklearn_version": bundle["sklearn_version"],
        "dataset_sha256": bundle["dataset_sha256"],
        "evaluated_on": evaluated_on,
        "n_train": str(flat["n_train"]),
        "n_test": str(flat["n_test"]),
        "holdout_f1": str(flat["f1"]),
        **eval_tags,
    }
    return {"metrics": metrics, "params": params, "tags": tags}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    on_step = MetricsLog(os.environ.get("CONTROLPLANE_METRICS_LOG"))
    try:
        bundle, flat = training.train_from_features_file(
            args.data, model_type=args.model_type, n_estimators=args.n_estimators,
            seed=args.seed, on_step=on_step,
        )
        path = training.save_model(bundle, args.out)
        doc = flat
        if args.metrics_shape == "nested":
            doc = nested_metrics(bundle, flat, path, args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    training.write_metrics(doc, args.out)
    print(json.dumps(doc, sort_keys=True))
    print(f"train: wrote {path} in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

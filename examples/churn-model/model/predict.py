"""Batch prediction.

    python -m model.predict INPUT_CSV OUTPUT_CSV [--model artifacts/model.joblib]

INPUT_CSV needs columns f0..f5 (raw features; blanks = missing) and usually
``id``; other columns (e.g. label) are ignored.  OUTPUT_CSV gets
``id,prediction,probability`` where probability is P(class 1) written with
full (round-trip) float precision.

The model file (default artifacts/model.joblib, written by train.py) must
exist: a missing model is an error (exit code 2), never trained on the fly, so
a reproducibility check of the shipped model cannot quietly check a new one.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from . import features as F
from . import training

log = logging.getLogger("model.predict")


def predict_file(input_csv: Path | str, output_csv: Path | str, bundle: dict) -> int:
    header, rows = F.read_csv(input_csv)
    missing = [c for c in F.BASE_FEATURES if c not in header]
    if missing:
        raise ValueError(f"{input_csv}: missing feature columns {missing}")
    ids = [r[F.ID_COLUMN] for r in rows] if F.ID_COLUMN in header else [str(i) for i in range(len(rows))]
    proba = training.predict_proba(bundle, F.rows_to_base_matrix(rows))
    out = Path(output_csv)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "prediction", "probability"])
        for rid, p in zip(ids, proba):
            w.writerow([rid, int(p > 0.5), repr(float(p))])
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.predict", description="Batch prediction to CSV.")
    ap.add_argument("input_csv")
    ap.add_argument("output_csv")
    ap.add_argument("--model", default=None, help="model file (default artifacts/model.joblib, "
                    "written by train.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        bundle = training.load_or_train(args.model, allow_train=False)
        n = predict_file(args.input_csv, args.output_csv, bundle)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("wrote %d predictions to %s (model %s)", n, args.output_csv, bundle["model_version"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

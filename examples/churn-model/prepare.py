"""Data-preparation step: raw.csv -> features.csv (deterministic).

    python prepare.py --in data/raw.csv --out data/features.csv

Drops rows with a missing/invalid label, empty or duplicate ids and rows with
no feature values; clips features to [-6, 6]; adds the derived feature
``f0_x_f1``.  Missing feature cells are kept empty (imputed by the model).
The same row-level transform is applied at prediction time (model.features).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model import features as F


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in", dest="input", default=str(F.RAW_DATA), help="raw CSV (default data/raw.csv)")
    ap.add_argument("--out", dest="output", default="data/features.csv", help="features CSV to write")
    args = ap.parse_args(argv)

    header, rows = F.read_csv(args.input)
    missing = [c for c in [F.ID_COLUMN, *F.BASE_FEATURES, F.LABEL_COLUMN] if c not in header]
    if missing:
        print(f"error: {args.input} lacks columns {missing}", file=sys.stderr)
        return 2
    table, stats = F.prepare_rows(rows)
    text = F.table_to_csv_text(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8", newline="")
    print(f"prepare: {stats} -> {out} sha256={F.sha256_text(text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

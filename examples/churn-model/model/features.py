"""Feature definitions and the data-preparation step.

The preparation is purely row-level (no dataset statistics), so exactly the
same transform is applied when building ``data/features.csv`` for training and
when scoring new rows in ``model.predict`` / ``model.serve``; there is no
train/serve skew.  Dataset-level steps (median imputation, scaling) live inside
the fitted scikit-learn pipeline instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RAW_DATA = PROJECT_ROOT / "data" / "raw.csv"
DEFAULT_MODEL = PROJECT_ROOT / "artifacts" / "model.joblib"

ID_COLUMN = "id"
LABEL_COLUMN = "label"
BASE_FEATURES = ["f0", "f1", "f2", "f3", "f4", "f5"]
DERIVED_FEATURES = ["f0_x_f1"]
FEATURE_COLUMNS = BASE_FEATURES + DERIVED_FEATURES

# Values outside this range are treated as sensor/entry errors and clipped.
CLIP_LOW, CLIP_HIGH = -6.0, 6.0


def parse_value(value) -> float:
    """Parse a cell into a float; blank / None / 'nan' / 'NA' become NaN.

    Raises ValueError for anything else that is not numeric (including
    booleans, which JSON clients sometimes send by mistake).
    """
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() in {"nan", "na", "null", "none"}:
        return math.nan
    return float(text)


def transform(base: np.ndarray) -> np.ndarray:
    """Row-level preparation of an (n, len(BASE_FEATURES)) float matrix.

    Clips every base feature to [CLIP_LOW, CLIP_HIGH] and appends the derived
    interaction feature ``f0_x_f1``.  NaN (missing) stays NaN and is imputed by
    the model pipeline.  Idempotent on the base columns.
    """
    base = np.asarray(base, dtype=np.float64)
    if base.ndim != 2 or base.shape[1] != len(BASE_FEATURES):
        raise ValueError(f"expected shape (n, {len(BASE_FEATURES)}), got {base.shape}")
    clipped = np.clip(base, CLIP_LOW, CLIP_HIGH)
    derived = clipped[:, [0]] * clipped[:, [1]]
    return np.hstack([clipped, derived])


def rows_to_base_matrix(rows: Iterable[Mapping]) -> np.ndarray:
    """Extract BASE_FEATURES from dict rows (CSV or JSON) into a float matrix."""
    out = []
    for i, row in enumerate(rows):
        values = []
        for name in BASE_FEATURES:
            if name not in row:
                raise ValueError(f"row {i}: missing feature {name!r}")
            try:
                values.append(parse_value(row[name]))
            except (TypeError, ValueError):
                raise ValueError(f"row {i}: feature {name!r} is not numeric: {row[name]!r}") from None
        out.append(values)
    return np.array(out, dtype=np.float64).reshape(len(out), len(BASE_FEATURES))


def read_csv(path: Path | str) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def format_float(x: float) -> str:
    """Shortest round-trip representation; NaN is written as an empty cell."""
    return "" if math.isnan(x) else repr(float(x))


def prepare_rows(rows: list[dict]) -> tuple[list[list[str]], dict]:
    """Clean raw rows and build the feature table (header + rows as strings).

    Cleaning: drop rows whose label is missing/not 0 or 1, drop rows with an
    empty or duplicate id (first occurrence wins), drop rows where every base
    feature is missing.  Then clip + derive (see ``transform``).
    Returns (table, stats).
    """
    kept, seen = [], set()
    stats = {"rows_in": len(rows), "bad_label": 0, "duplicate_id": 0, "all_missing": 0}
    for row in rows:
        rid = (row.get(ID_COLUMN) or "").strip()
        label = (row.get(LABEL_COLUMN) or "").strip()
        if label not in {"0", "1"}:
            stats["bad_label"] += 1
            continue
        if not rid or rid in seen:
            stats["duplicate_id"] += 1
            continue
        base = rows_to_base_matrix([row])
        if np.isnan(base).all():
            stats["all_missing"] += 1
            continue
        seen.add(rid)
        kept.append((rid, base[0], label))

    base = np.array([b for _, b, _ in kept], dtype=np.float64).reshape(len(kept), len(BASE_FEATURES))
    feats = transform(base) if kept else np.empty((0, len(FEATURE_COLUMNS)))
    table = [[ID_COLUMN, *FEATURE_COLUMNS, LABEL_COLUMN]]
    for (rid, _, label), vec in zip(kept, feats):
        table.append([rid, *(format_float(v) for v in vec), label])
    stats["rows_out"] = len(kept)
    return table, stats


def table_to_csv_text(table: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(table)
    return buf.getvalue()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_feature_table(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read a prepared features CSV into (X, y)."""
    header, rows = read_csv(path)
    missing = [c for c in [*FEATURE_COLUMNS, LABEL_COLUMN] if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (did you run prepare.py?)")
    return table_rows_to_xy(rows)


def table_rows_to_xy(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    X = np.array([[parse_value(r[c]) for c in FEATURE_COLUMNS] for r in rows], dtype=np.float64)
    y = np.array([int(r[LABEL_COLUMN]) for r in rows], dtype=np.int64)
    return X.reshape(len(rows), len(FEATURE_COLUMNS)), y

import csv
import math

import numpy as np
import pytest

import prepare
from model import features as F


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_prepare_cli_output(tmp_path, root):
    out = tmp_path / "features.csv"
    assert prepare.main(["--in", str(root / "data" / "raw.csv"), "--out", str(out)]) == 0
    rows = read(out)
    assert list(rows[0].keys()) == ["id", *F.FEATURE_COLUMNS, "label"]
    assert len(rows) == 795  # 802 raw rows - 5 bad labels - 2 duplicate ids
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["label"] for r in rows} == {"0", "1"}
    for r in rows:
        vals = {c: F.parse_value(r[c]) for c in F.FEATURE_COLUMNS}
        for c in F.BASE_FEATURES:
            assert math.isnan(vals[c]) or F.CLIP_LOW <= vals[c] <= F.CLIP_HIGH
        if not (math.isnan(vals["f0"]) or math.isnan(vals["f1"])):
            assert vals["f0_x_f1"] == vals["f0"] * vals["f1"]


def test_prepare_is_deterministic_and_matches_in_memory(tmp_path, root):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    prepare.main(["--in", str(root / "data" / "raw.csv"), "--out", str(a)])
    prepare.main(["--in", str(root / "data" / "raw.csv"), "--out", str(b)])
    assert a.read_bytes() == b.read_bytes()
    _, rows = F.read_csv(root / "data" / "raw.csv")
    table, _ = F.prepare_rows(rows)
    assert F.sha256_text(F.table_to_csv_text(table)) == F.sha256_file(a)


def test_prepare_rows_cleaning():
    rows = [
        {"id": "a", "f0": "1", "f1": "2", "f2": "", "f3": "99", "f4": "0", "f5": "0", "label": "1"},
        {"id": "a", "f0": "1", "f1": "2", "f2": "3", "f3": "4", "f4": "0", "f5": "0", "label": "0"},  # dup id
        {"id": "b", "f0": "1", "f1": "2", "f2": "3", "f3": "4", "f4": "0", "f5": "0", "label": ""},   # no label
        {"id": "c", "f0": "", "f1": "", "f2": "", "f3": "", "f4": "", "f5": "", "label": "0"},        # empty
        {"id": "d", "f0": "-8", "f1": "0.5", "f2": "1", "f3": "1", "f4": "1", "f5": "1", "label": "0"},
    ]
    table, stats = F.prepare_rows(rows)
    assert stats == {"rows_in": 5, "bad_label": 1, "duplicate_id": 1, "all_missing": 1, "rows_out": 2}
    header, a, d = table
    assert header == ["id", *F.FEATURE_COLUMNS, "label"]
    assert a == ["a", "1.0", "2.0", "", "6.0", "0.0", "0.0", "2.0", "1"]  # f3 clipped, f2 missing
    assert d[1] == "-6.0" and d[7] == "-3.0"                              # f0 clipped, then derived


def test_transform_idempotent_on_base_columns():
    base = np.array([[7.0, -1.0, np.nan, 0.0, 2.0, -9.0]])
    once = F.transform(base)
    twice = F.transform(once[:, : len(F.BASE_FEATURES)])
    np.testing.assert_array_equal(once, twice)
    with pytest.raises(ValueError):
        F.transform(np.zeros((1, 3)))


def test_prepare_cli_rejects_missing_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,f0\n1,0.5\n")
    assert prepare.main(["--in", str(bad), "--out", str(tmp_path / "o.csv")]) == 2

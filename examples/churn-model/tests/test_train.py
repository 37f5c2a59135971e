import json

import numpy as np
import pytest

import prepare
import train
from model import features as F
from model import training


def test_training_is_deterministic():
    b1, m1 = training.train_from_raw()
    b2, m2 = training.train_from_raw()
    assert m1 == m2
    c1, c2 = b1["pipeline"][-1], b2["pipeline"][-1]
    np.testing.assert_array_equal(c1.coef_, c2.coef_)
    np.testing.assert_array_equal(c1.intercept_, c2.intercept_)
    assert b1["model_version"] == b2["model_version"]


def test_metrics_content(trained):
    _, bundle, m = trained
    assert {"accuracy", "f1", "n_train", "n_test", "dataset_sha256"} <= set(m)
    assert m["n_train"] + m["n_test"] == 795
    assert m["accuracy"] > 0.8 and m["f1"] > 0.7
    assert len(m["dataset_sha256"]) == 64
    assert m["model_version"] == bundle["model_version"]


def test_train_cli_matches_in_memory_training(tmp_path, root, trained, capsys):
    feats = tmp_path / "features.csv"
    prepare.main(["--in", str(root / "data" / "raw.csv"), "--out", str(feats)])
    out = tmp_path / "artifacts"
    assert train.main(["--data", str(feats), "--out", str(out)]) == 0
    assert (out / "model.joblib").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == trained[2]  # same data fingerprint, same numbers
    assert metrics["dataset_sha256"] == F.sha256_file(feats)


def test_train_cli_rejects_unprepared_data(tmp_path, root):
    assert train.main(["--data", str(root / "data" / "raw.csv"), "--out", str(tmp_path)]) == 2


def test_load_or_train(tmp_path, trained):
    missing = tmp_path / "nope" / "model.joblib"
    with pytest.raises(FileNotFoundError, match="train.py"):
        training.load_or_train(missing, allow_train=False)
    bundle = training.load_or_train(missing)           # trains and caches
    assert missing.is_file()
    assert bundle["model_version"] == trained[1]["model_version"]
    assert training.load_or_train(missing)["model_version"] == bundle["model_version"]

import csv
import importlib.util
import json

import joblib
import pytest
from sklearn.metrics import accuracy_score, f1_score

from model import evaluate, predict

JUDGED = {"f1", "accuracy", "roc_auc", "latency_ms", "size_bytes"}


def run(model, data, out, *extra):
    assert evaluate.main(["--model", str(model), "--data", str(data), "--out", str(out),
                          "--latency-rows", "20", *extra]) == 0
    return json.loads(out.read_text())


def without_latency(report):
    return {**report, "metrics": {k: v for k, v in report["metrics"].items() if k != "latency_ms"}}


def test_report_shape(tmp_path, trained, eval_csv):
    report = run(trained[0], eval_csv, tmp_path / "sub" / "m.json")
    assert set(report) == {"metrics", "params", "tags"}
    m = report["metrics"]
    assert set(m) == JUDGED
    assert m["size_bytes"] == trained[0].stat().st_size
    assert m["latency_ms"] > 0
    assert 0.8 < m["f1"] <= 1 and 0.8 < m["accuracy"] <= 1 and 0.9 < m["roc_auc"] <= 1
    assert report["tags"]["model_version"] == trained[1]["model_version"]
    assert report["tags"]["n_rows"] == "400" and report["tags"]["rows_skipped"] == "0"


def test_same_model_and_data_give_the_same_metrics(tmp_path, trained, eval_csv):
    first = run(trained[0], eval_csv, tmp_path / "a.json")
    second = run(trained[0], eval_csv, tmp_path / "b.json")
    assert without_latency(first) == without_latency(second)
    # ... also for a copy of the file elsewhere (the gate downloads the champion's model)
    copy = tmp_path / "champion.joblib"
    copy.write_bytes(trained[0].read_bytes())
    assert without_latency(run(copy, eval_csv, tmp_path / "c.json")) == without_latency(first)


def test_metrics_agree_with_the_batch_predictions(tmp_path, trained, eval_csv):
    predicted = tmp_path / "pred.csv"
    predict.predict_file(eval_csv, predicted, trained[1])
    with open(predicted, newline="") as fh:
        pred = [int(r["prediction"]) for r in csv.DictReader(fh)]
    with open(eval_csv, newline="") as fh:
        truth = [int(r["label"]) for r in csv.DictReader(fh)]
    m = run(trained[0], eval_csv, tmp_path / "m.json")["metrics"]
    assert m["f1"] == round(f1_score(truth, pred), 6)
    assert m["accuracy"] == round(accuracy_score(truth, pred), 6)


def test_a_bare_estimator_file_and_invalid_labels(tmp_path, trained, root):
    bare = tmp_path / "bare.joblib"
    joblib.dump(trained[1]["pipeline"], bare)  # fitted on the prepared (7) features
    on_raw = run(bare, root / "data" / "raw.csv", tmp_path / "m.json")
    bundled = run(trained[0], root / "data" / "raw.csv", tmp_path / "n.json")
    assert on_raw["tags"]["rows_skipped"] == "5"  # 4 blank labels and one "yes"
    assert {k: on_raw["metrics"][k] for k in ("f1", "accuracy", "roc_auc")} == {
        k: bundled["metrics"][k] for k in ("f1", "accuracy", "roc_auc")}


def test_errors(tmp_path, trained, eval_csv, caplog):
    out = tmp_path / "m.json"
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("id,f0,f1,f2,f3,f4,f5\n1,0,0,0,0,0,0\n")
    assert evaluate.main(["--model", str(trained[0]), "--data", str(no_label), "--out", str(out)]) == 2
    assert "missing columns ['label']" in caplog.text
    assert evaluate.main(["--model", str(tmp_path / "nope.joblib"), "--data", str(eval_csv),
                          "--out", str(out)]) == 2
    not_a_model = tmp_path / "x.joblib"
    joblib.dump({"weights": [1, 2]}, not_a_model)
    assert evaluate.main(["--model", str(not_a_model), "--data", str(eval_csv), "--out", str(out)]) == 2
    assert "not a model" in caplog.text
    assert not out.exists()


def test_eval_csv_is_regenerated_byte_for_byte(tmp_path, root, monkeypatch):
    spec = importlib.util.spec_from_file_location("generate", root / "data" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    generate.main()  # also checks that draw() reproduces make_classification
    for name in ("data/eval.csv", "data/raw.csv", "tests/ref/input.csv"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes(), name


@pytest.mark.parametrize("rows", ["0", "-3"])
def test_latency_rows_of_at_least_one(tmp_path, trained, eval_csv, rows):
    report = run(trained[0], eval_csv, tmp_path / "m.json", "--latency-rows", rows)
    assert report["metrics"]["latency_ms"] > 0

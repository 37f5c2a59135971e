"""train.py in the CT `train` pipeline: params from the environment, the nested metrics
shape, the per-step series, and a challenger that must lose the gate."""

import json
import math

import pytest

import train
from model import evaluate
from model import features as F

JUDGED = {"f1", "accuracy", "roc_auc", "latency_ms", "size_bytes"}
MIN_DELTA = 0.01  # the gate's min_delta in .controlplane.yml


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PARAM_MODEL_TYPE", "PARAM_N_ESTIMATORS", "PARAM_SEED", "DATA_FEATURES",
                 "DATA_EVAL", "CONTROLPLANE_METRICS_LOG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def nested(out, *argv):
    assert train.main([*argv, "--out", str(out), "--metrics-shape", "nested", "--latency-rows", "5"]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_nested_metrics_shape(tmp_path, clean_env, features_csv, eval_csv):
    doc = nested(tmp_path, "--data", str(features_csv), "--eval", str(eval_csv),
                 "--model-type", "gbm", "--n-estimators", "20", "--seed", "5")
    assert set(doc) == {"metrics", "params", "tags"}
    assert set(doc["metrics"]) == JUDGED
    assert all(isinstance(v, int | float) for v in doc["metrics"].values())
    assert doc["metrics"]["size_bytes"] == (tmp_path / "model.joblib").stat().st_size
    assert doc["params"] == {"model_type": "gbm", "n_estimators": 20, "seed": 5,
                             "learning_rate": 0.1, "max_depth": 3}
    tags = doc["tags"]
    assert tags["dataset_sha256"] == F.sha256_file(features_csv)
    assert tags["eval_sha256"] == F.sha256_file(eval_csv)
    assert tags["evaluated_on"] == "eval" and tags["n_eval"] == "400"
    assert tags["sklearn_version"] and tags["model_version"].startswith("churn-gbm-")
    assert all(isinstance(v, str) for v in tags.values())
    # The numbers are those the gate's evaluate command measures for this model file.
    gate = evaluate.evaluate_file(tmp_path / "model.joblib", eval_csv, latency_rows=10)["metrics"]
    assert {k: v for k, v in gate.items() if k != "latency_ms"} == {
        k: v for k, v in doc["metrics"].items() if k != "latency_ms"}


def test_params_and_data_from_the_environment(tmp_path, clean_env, features_csv, eval_csv):
    clean_env.setenv("PARAM_MODEL_TYPE", "gbm")
    clean_env.setenv("PARAM_N_ESTIMATORS", "12.0")  # a number param may come as a float
    clean_env.setenv("PARAM_SEED", "3")
    clean_env.setenv("DATA_FEATURES", str(features_csv))
    clean_env.setenv("DATA_EVAL", str(eval_csv))
    doc = nested(tmp_path)
    assert (doc["params"]["model_type"], doc["params"]["n_estimators"], doc["params"]["seed"]) == (
        "gbm", 12, 3)
    assert doc["tags"]["evaluated_on"] == "eval"
    # a flag wins over the environment
    assert nested(tmp_path / "b", "--model-type", "logreg")["params"]["model_type"] == "logreg"


def test_without_eval_data_the_holdout_split_is_scored(tmp_path, clean_env, features_csv):
    doc = nested(tmp_path, "--data", str(features_csv))
    assert doc["tags"]["evaluated_on"] == "holdout" and doc["tags"]["n_eval"] == doc["tags"]["n_test"]
    assert doc["metrics"]["f1"] == float(doc["tags"]["holdout_f1"])
    assert doc["params"]["model_type"] == "logreg"


@pytest.mark.parametrize("name, value", [
    ("PARAM_MODEL_TYPE", "forest"), ("PARAM_N_ESTIMATORS", "0"), ("PARAM_N_ESTIMATORS", "2.5"),
    ("PARAM_SEED", "-1"), ("PARAM_SEED", "abc"),
])
def test_bad_params_are_refused(tmp_path, clean_env, features_csv, name, value, capsys):
    clean_env.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        train.main(["--data", str(features_csv), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert value in capsys.readouterr().err
    assert not (tmp_path / "model.joblib").exists()


def read_series(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_gbm_appends_a_loss_series_per_stage(tmp_path, clean_env, features_csv):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"key": "earlier", "step": 0, "value": 1.0}\n')  # appended to, not truncated
    clean_env.setenv("CONTROLPLANE_METRICS_LOG", str(log))
    assert train.main(["--data", str(features_csv), "--out", str(tmp_path / "a"),
                       "--model-type", "gbm", "--n-estimators", "25"]) == 0
    points = read_series(log)
    assert points[0]["key"] == "earlier"
    points = points[1:]
    assert all(set(p) == {"key", "step", "value"} for p in points)
    for key in ("loss", "val_loss"):
        series = [p for p in points if p["key"] == key]
        assert [p["step"] for p in series] == list(range(1, 26))
        assert all(math.isfinite(p["value"]) and p["value"] > 0 for p in series)
        assert series[-1]["value"] < series[0]["value"] * 0.8  # it learns
    loss = [p["value"] for p in points if p["key"] == "loss"]
    assert all(b <= a for a, b in zip(loss, loss[1:]))  # training loss never rises


def test_logreg_and_dummy_log_a_point_and_no_log_without_the_variable(tmp_path, clean_env,
                                                                     features_csv):
    log = tmp_path / "metrics.jsonl"
    clean_env.setenv("CONTROLPLANE_METRICS_LOG", str(log))
    for model_type in ("logreg", "dummy"):
        assert train.main(["--data", str(features_csv), "--out", str(tmp_path / model_type),
                           "--model-type", model_type]) == 0
    assert [p["key"] for p in read_series(log)] == ["loss", "val_loss"] * 2
    clean_env.delenv("CONTROLPLANE_METRICS_LOG")
    log.unlink()
    assert train.main(["--data", str(features_csv), "--out", str(tmp_path / "c")]) == 0
    assert not log.exists()


def test_gbm_is_deterministic(tmp_path, clean_env, features_csv, eval_csv):
    a = nested(tmp_path / "a", "--data", str(features_csv), "--eval", str(eval_csv),
               "--model-type", "gbm", "--n-estimators", "15")
    b = nested(tmp_path / "b", "--data", str(features_csv), "--eval", str(eval_csv),
               "--model-type", "gbm", "--n-estimators", "15")
    a["metrics"].pop("latency_ms"), b["metrics"].pop("latency_ms")
    assert a == b


def test_the_worse_challengers_lose_the_gate(tmp_path, clean_env, features_csv, eval_csv):
    """Pipeline defaults (gbm, 100 stages) as the champion; `model_type: dummy` and
    `n_estimators: 3` score lower on f1 by more than min_delta, so their gate fails."""
    scores = {}
    for label, argv in {"champion": ["--model-type", "gbm"],
                        "dummy": ["--model-type", "dummy"],
                        "tiny": ["--model-type", "gbm", "--n-estimators", "3"]}.items():
        out = tmp_path / label
        assert train.main(["--data", str(features_csv), "--out", str(out), *argv]) == 0
        scores[label] = evaluate.evaluate_file(out / "model.joblib", eval_csv, latency_rows=5)["metrics"]
    champion = scores["champion"]["f1"]
    assert champion > 0.85
    for label in ("dummy", "tiny"):
        assert scores[label]["f1"] < champion - MIN_DELTA, label
        assert scores[label]["accuracy"] < scores["champion"]["accuracy"], label
    assert scores["dummy"]["roc_auc"] == 0.5

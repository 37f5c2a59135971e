import csv
import math


from model import predict


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_output_shape(tmp_path, root, trained):
    out = tmp_path / "sub" / "pred.csv"
    rc = predict.main([str(root / "tests/ref/input.csv"), str(out), "--model", str(trained[0])])
    assert rc == 0
    rows = read(out)
    assert len(rows) == len(read(root / "tests/ref/input.csv")) == 50
    assert list(rows[0].keys()) == ["id", "prediction", "probability"]
    for r in rows:
        p = float(r["probability"])
        assert 0.0 <= p <= 1.0 and not math.isnan(p)
        assert int(r["prediction"]) == int(p > 0.5)
        assert float(repr(p)) == p  # full round-trip precision


def test_predict_without_id_column_and_with_extra_columns(tmp_path, trained):
    src = tmp_path / "in.csv"
    src.write_text("f5,f4,f3,f2,f1,f0,label\n0,0,0,0,0,0,1\n1,,1,1,1,1,0\n")
    out = tmp_path / "out.csv"
    assert predict.main([str(src), str(out), "--model", str(trained[0])]) == 0
    assert [r["id"] for r in read(out)] == ["0", "1"]


def test_predict_errors(tmp_path, root, trained, caplog):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,f0,f1\n1,0,0\n")
    assert predict.main([str(bad), str(tmp_path / "o.csv"), "--model", str(trained[0])]) == 2
    assert "missing feature columns" in caplog.text
    assert predict.main([str(root / "tests/ref/input.csv"), str(tmp_path / "o.csv"),
                         "--model", str(tmp_path / "missing.joblib")]) == 2
    assert "not found" in caplog.text


def test_predict_without_a_model_fails_instead_of_training(tmp_path, root, monkeypatch, caplog):
    from model import features

    monkeypatch.setattr(features, "DEFAULT_MODEL", tmp_path / "artifacts" / "model.joblib")
    out = tmp_path / "o.csv"
    assert predict.main([str(root / "tests/ref/input.csv"), str(out)]) == 2
    assert "not found" in caplog.text and "train.py" in caplog.text
    assert not out.exists() and not (tmp_path / "artifacts").exists()

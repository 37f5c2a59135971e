"""apps.pipelines.reproducibility: pure CSV comparison (no database); the model a build bundled
handed to the check (``extract_model``), and, on a real worker, a check that tests the build's
model and an in-image check with no image that says it was skipped."""

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.pipelines.reproducibility import (
    ModelHandoffError,
    compare_predictions,
    extract_model,
    format_report,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "examples/churn-model/tests/ref/expected.csv"


def write(
    path: Path, rows: list[tuple], header: tuple = ("id", "prediction", "probability")
) -> Path:
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def ref_rows() -> list[list[str]]:
    return [line.split(",") for line in REF.read_text().splitlines()[1:]]


def rows_to_csv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("id,prediction,probability\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_identical_files_pass(tmp_path):
    copy = shutil.copy(REF, tmp_path / "actual.csv")
    r = compare_predictions(REF, Path(copy), tolerance=1e-6)
    assert r.passed
    assert (r.rows_compared, r.rows_outside, r.max_abs_diff) == (50, 0, 0.0)
    assert r.key_column == "id" and r.columns == ["id", "prediction", "probability"]
    assert r.reason == "all 50 rows within 1e-06 (max abs diff 0)"
    assert r.examples == [] and r.max_abs_diff_at is None


def test_small_diffs_inside_tolerance_pass(tmp_path):
    rows = ref_rows()
    for i, r in enumerate(rows):
        r[2] = repr(float(r[2]) + (4e-7 if i % 2 else -4e-7))
    r = compare_predictions(REF, rows_to_csv(tmp_path / "a.csv", rows), tolerance=1e-6)
    assert r.passed, r.reason
    assert 3.9e-7 < r.max_abs_diff < 4.1e-7
    assert r.max_abs_diff_at[1] == "probability"
    assert r.reason.startswith("all 50 rows within 1e-06 (max abs diff 4e-07")


def test_one_row_outside_tolerance(tmp_path):
    rows = ref_rows()
    exp17 = rows[17][2]
    rows[17][2] = repr(float(exp17) + 0.0123)
    rows[3][2] = repr(float(rows[3][2]) + 5e-7)  # inside: does not count
    r = compare_predictions(REF, rows_to_csv(tmp_path / "a.csv", rows), tolerance=1e-6)
    assert not r.passed
    assert (r.rows_compared, r.rows_outside) == (50, 1)
    assert r.max_abs_diff == pytest.approx(0.0123)
    assert r.max_abs_diff_at == ("r017", "probability")
    assert len(r.examples) == 1
    ex = r.examples[0]
    assert (ex.key, ex.column, ex.expected, ex.actual) == (
        "r017",
        "probability",
        exp17,
        rows[17][2],
    )
    assert ex.abs_diff == pytest.approx(0.0123)
    assert r.reason == (
        "1 of 50 rows differ by more than 1e-06 (max abs diff 0.0123 in 'probability' at id=r017)"
    )
    report = format_report(r)
    assert report.splitlines()[0].startswith("FAIL: 1 of 50 rows")
    header, rule, line = report.splitlines()[3:6]
    assert header.split() == ["key", "column", "expected", "actual", "abs", "diff"]
    assert set(rule) <= {"-", " "}
    assert line.split() == ["r017", "probability", exp17, rows[17][2], "0.0123"]
    assert header.index("expected") == line.index(exp17)  # aligned columns
    assert header.index("actual") == line.index(rows[17][2])


def test_label_mismatch_in_text_column(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, "cat", 0.5), (2, "dog", 0.25)], ("id", "label", "p"))
    act = write(tmp_path / "a.csv", [(1, "cat", 0.5), (2, "Dog", 0.25)], ("id", "label", "p"))
    r = compare_predictions(exp, act, tolerance=1e-6)
    assert not r.passed and r.rows_outside == 1
    assert r.examples[0].abs_diff is None
    assert (r.examples[0].expected, r.examples[0].actual) == ("dog", "Dog")
    assert r.max_abs_diff == 0.0
    assert r.reason == "1 of 2 rows differ by more than 1e-06 (first in 'label' at id=2)"
    assert "text" in format_report(r).splitlines()[-1]


def test_number_versus_text_is_a_difference(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 1, 0.5)])
    act = write(tmp_path / "a.csv", [(1, 1, "")])
    r = compare_predictions(exp, act, tolerance=1.0)
    assert not r.passed and r.examples[0].abs_diff is None


def test_integer_and_float_spellings_are_equal(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 1, "0.5")])
    act = write(tmp_path / "a.csv", [(1, "1.0", "5e-1")])
    assert compare_predictions(exp, act, tolerance=0.0).passed


def test_header_mismatch_names_columns(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 0, 0.5)])
    act = write(tmp_path / "a.csv", [(1, 0, 0.5)], ("id", "prediction", "prob"))
    r = compare_predictions(exp, act, tolerance=1e-6)
    assert not r.passed and r.rows_compared == 0
    assert "header mismatch" in r.reason
    assert "missing from actual ['probability']" in r.reason
    assert "extra columns in actual ['prob']" in r.reason
    assert format_report(r) == f"FAIL: {r.reason}"


def test_same_columns_in_another_order_are_matched_by_name(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 0, 0.5), (2, 1, 0.75)])
    act = write(
        tmp_path / "a.csv", [(0.5, 1, 0), (0.75, 2, 1)], ("probability", "id", "prediction")
    )
    assert compare_predictions(exp, act, tolerance=0.0).passed


def test_empty_file_and_unknown_key_fail_clearly(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 0, 0.5)])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert compare_predictions(exp, empty, tolerance=0).reason == "actual file is empty (no header)"
    r = compare_predictions(exp, exp, tolerance=0, key="row_id")
    assert not r.passed and "key column 'row_id' not in header" in r.reason


def test_missing_and_extra_rows_by_key(tmp_path):
    exp = write(tmp_path / "e.csv", [(i, 0, 0.5) for i in range(1, 6)])
    act = write(tmp_path / "a.csv", [(i, 0, 0.5) for i in (1, 2, 4, 5, 7, 8)])
    r = compare_predictions(exp, act, tolerance=1e-6)
    assert not r.passed
    assert (r.rows_expected, r.rows_actual, r.rows_compared, r.rows_outside) == (5, 6, 4, 0)
    assert (r.rows_missing, r.missing_keys) == (1, ["3"])
    assert (r.rows_extra, r.extra_keys) == (2, ["7", "8"])
    assert r.reason == (
        "row count differs (expected 5, actual 6); 1 expected rows missing from actual (id=3); "
        "2 unexpected rows in actual (id=7, id=8)"
    )
    report = format_report(r)
    assert "missing from actual: id=3" in report and "extra in actual: id=7, id=8" in report


def test_missing_keys_are_capped_at_max_examples(tmp_path):
    exp = write(tmp_path / "e.csv", [(i, 0, 0.5) for i in range(100)])
    act = write(tmp_path / "a.csv", [(0, 0, 0.5)])
    r = compare_predictions(exp, act, tolerance=0, max_examples=5)
    assert r.rows_missing == 99 and r.missing_keys == ["1", "2", "3", "4", "5"]
    assert "99 expected rows missing from actual (id=1, id=2, id=3, ...)" in r.reason


def test_examples_capped_but_all_rows_counted(tmp_path):
    exp = write(tmp_path / "e.csv", [(i, 0, 0.5) for i in range(30)])
    act = write(tmp_path / "a.csv", [(i, 0, 0.6) for i in range(30)])
    r = compare_predictions(exp, act, tolerance=0.01, max_examples=3)
    assert r.rows_outside == 30 and len(r.examples) == 3


def test_reordered_rows_with_key_pass(tmp_path):
    rows = ref_rows()
    shuffled = rows[::-1]
    shuffled[0], shuffled[25] = shuffled[25], shuffled[0]
    r = compare_predictions(REF, rows_to_csv(tmp_path / "a.csv", shuffled), tolerance=0)
    assert r.passed, r.reason
    assert r.rows_compared == 50


def test_explicit_key_column(tmp_path):
    header = ("sample", "score")
    exp = write(tmp_path / "e.csv", [("a", 1.0), ("b", 2.0)], header)
    act = write(tmp_path / "a.csv", [("b", 2.0), ("a", 1.5)], header)
    r = compare_predictions(exp, act, tolerance=0.1, key="sample")
    assert r.key_column == "sample" and r.max_abs_diff_at == ("a", "score")
    assert "at sample=a" in r.reason


def test_duplicate_keys_fail(tmp_path):
    exp = write(tmp_path / "e.csv", [(1, 0, 0.5), (2, 0, 0.5), (1, 0, 0.5)])
    act = write(tmp_path / "a.csv", [(2, 0, 0.5), (1, 0, 0.5), (1, 0, 0.5)])
    r = compare_predictions(exp, act, tolerance=0)
    assert not r.passed and "2 rows with a duplicate key (id=1, id=1)" in r.reason
    assert r.duplicate_keys == ["1", "1"] and r.rows_duplicate == 2
    act = write(tmp_path / "a.csv", [(1, 0, 0.5), (2, 0, 0.5), (2, 0, 0.5), (1, 0, 0.5)])
    r = compare_predictions(exp, act, tolerance=0)
    assert r.duplicate_keys == ["1", "2", "1"] and r.rows_extra == 0


def test_without_key_rows_align_by_position(tmp_path):
    header = ("score", "label")
    exp = write(tmp_path / "e.csv", [(0.1, "a"), (0.2, "b"), (0.3, "c")], header)
    act = write(tmp_path / "a.csv", [(0.1, "a"), (0.25, "b")], header)
    r = compare_predictions(exp, act, tolerance=0.01)
    assert r.key_column is None and not r.passed
    assert r.max_abs_diff_at == ("2", "score")
    assert r.missing_keys == ["3"]
    assert "at row 2" in r.reason and "(row 3)" in r.reason
    assert "aligned by: row position" in format_report(r)


def test_nan_and_infinity(tmp_path):
    header = ("id", "a", "b", "c")
    exp = write(tmp_path / "e.csv", [(1, "nan", "inf", 1.0), (2, "nan", "-inf", 2.0)], header)
    act = write(tmp_path / "a.csv", [(1, "NaN", "inf", 1.0), (2, 0.0, "inf", "nan")], header)
    r = compare_predictions(exp, act, tolerance=1e-6)
    assert not r.passed
    assert r.rows_outside == 1  # row 1: NaN == NaN and inf == inf
    assert [(d.column, d.abs_diff) for d in r.examples] == [
        ("a", math.inf),
        ("b", math.inf),
        ("c", math.inf),
    ]
    assert r.max_abs_diff == math.inf
    assert "max abs diff inf" in r.reason
    d = r.to_dict()
    assert d["max_abs_diff"] == "inf" and d["examples"][0]["abs_diff"] == "inf"
    json.dumps(d, allow_nan=False)


def test_to_dict_is_strict_json(tmp_path):
    rows = ref_rows()
    rows[3][1], rows[5][2] = "1", "nan"
    r = compare_predictions(REF, rows_to_csv(tmp_path / "a.csv", rows), tolerance=1e-6)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["passed"] is False and d["rows_outside"] == 2
    assert d["max_abs_diff_at"] == ["r005", "probability"]
    assert d["examples"][0] == {
        "key": "r003",
        "column": "prediction",
        "expected": "0",
        "actual": "1",
        "abs_diff": 1.0,
    }
    assert d["tolerance"] == 1e-6 and d["columns"] == ["id", "prediction", "probability"]


def test_negative_tolerance_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="tolerance"):
        compare_predictions(REF, REF, tolerance=-1)
    with pytest.raises(ValueError, match="tolerance"):
        compare_predictions(REF, REF, tolerance=math.nan)


def _big(path: Path, n: int, bump: int | None = None) -> Path:
    with open(path, "w") as fh:
        fh.write("id,prediction,probability\n")
        for i in range(n):
            p = (i * 7919 % 10007) / 10007
            if i == bump:
                p += 0.5
            fh.write(f"r{i:06d},{int(p > 0.5)},{p!r}\n")
    return path


def test_100k_rows_compare_fast(tmp_path):
    exp = _big(tmp_path / "e.csv", 100_000)
    same = _big(tmp_path / "s.csv", 100_000)
    diff = _big(tmp_path / "d.csv", 100_000, bump=54_321)
    t0 = time.perf_counter()
    r1 = compare_predictions(exp, same, tolerance=1e-6)
    t1 = time.perf_counter()
    r2 = compare_predictions(exp, diff, tolerance=1e-6)
    t2 = time.perf_counter()
    assert r1.passed and r1.rows_compared == 100_000
    assert not r2.passed and r2.max_abs_diff_at == ("r054321", "probability")
    assert t1 - t0 < 2.0, f"identical: {t1 - t0:.2f}s"
    assert t2 - t1 < 2.0, f"one diff: {t2 - t1:.2f}s"


def test_100k_rows_numeric_noise_everywhere_fast(tmp_path):
    """Worst case: every numeric cell differs as text, so every one is parsed."""
    exp = _big(tmp_path / "e.csv", 100_000)
    noisy = tmp_path / "n.csv"
    with open(exp) as src, open(noisy, "w") as dst:
        dst.write(next(src))
        for line in src:
            k, pred, p = line.rstrip("\n").split(",")
            dst.write(f"{k},{pred}.0,{float(p) + 1e-9!r}\n")
    t0 = time.perf_counter()
    r = compare_predictions(exp, noisy, tolerance=1e-6)
    elapsed = time.perf_counter() - t0
    assert r.passed, r.reason
    assert elapsed < 2.0, f"{elapsed:.2f}s"


def test_cli_exit_codes_and_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main([str(REF), str(REF), "--tolerance", "1e-6", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True
    assert capsys.readouterr().out.startswith("PASS: all 50 rows within 1e-06")
    rows = ref_rows()
    rows[0][2] = "0.9"
    act = rows_to_csv(tmp_path / "a.csv", rows)
    assert main([str(REF), str(act), "--tolerance", "1e-6", "--key", "id"]) == 1
    assert "FAIL: 1 of 50 rows" in capsys.readouterr().out
    assert main([str(REF), str(tmp_path / "nope.csv"), "--tolerance", "1e-6"]) == 1
    assert "nope.csv" in capsys.readouterr().err


def test_cli_runs_as_module_with_only_the_stdlib(tmp_path):
    """Inside a job's container only this file may be present: no Django import."""
    script = tmp_path / "reproducibility.py"
    shutil.copy(ROOT / "apps/pipelines/reproducibility.py", script)
    proc = subprocess.run(
        [sys.executable, "-S", "-I", str(script), str(REF), str(REF), "--tolerance", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASS")


def _bundle(tmp_path: Path, files: dict[str, bytes]) -> Path:
    import io
    import tarfile

    path = tmp_path / "bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_extract_model_writes_the_recorded_file(tmp_path):
    model = b"the model that ships" * 1000
    bundle = _bundle(tmp_path, {"train.py": b"x", "artifacts/model.joblib": model})
    dest = tmp_path / "ws" / "artifacts" / "model.joblib"
    got = extract_model(bundle, "./artifacts/model.joblib", dest, digest=_sha(model))
    assert got == _sha(model) and dest.read_bytes() == model


def test_extract_model_refuses_another_file_or_none(tmp_path):
    bundle = _bundle(tmp_path, {"artifacts/model.joblib": b"retrained"})
    dest = tmp_path / "model.joblib"
    with pytest.raises(ModelHandoffError, match="the build recorded sha256:"):
        extract_model(bundle, "artifacts/model.joblib", dest, digest=_sha(b"original"))
    assert not dest.exists()
    with pytest.raises(ModelHandoffError, match="holds no artifacts/other.joblib"):
        extract_model(bundle, "artifacts/other.joblib", dest, digest=_sha(b"x"))
    with pytest.raises(ModelHandoffError, match="cannot be read"):
        extract_model(tmp_path / "missing.tar.gz", "m", dest, digest=_sha(b"x"))


# On a real worker. The "model" is a CSV of predictions so the check needs no ML libraries:
# the predict command copies it to the output, and fails when it is absent (as the example's
# predict does), so the check passes only with the model the build made.
PREDICT = "cp artifacts/model.csv {output}"


def _model_run(project, admin_user):
    from apps.pipelines import services

    expected = REF.read_text()
    return services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "build",
                "kind": "build",
                "script": [
                    "mkdir -p artifacts ref",
                    f"cat > artifacts/model.csv <<'EOF'\n{expected}EOF",
                    "cp artifacts/model.csv ref/expected.csv",
                ],
                "options": {"model": "artifacts/model.csv", "model_name": "csv"},
            },
            {
                "name": "reproduce",
                "kind": "reproducibility",
                "needs": ["build"],
                "script": [f"cat > expected.csv <<'EOF'\n{expected}EOF"],
                "options": {
                    "command": PREDICT,
                    "input": "expected.csv",
                    "expected": "expected.csv",
                    "tolerance": 1e-6,
                },
            },
            {
                "name": "reproduce-image",
                "kind": "reproducibility",
                "needs": ["build"],
                "options": {
                    "in_image": "build",
                    "command": PREDICT,
                    "input": "expected.csv",
                    "expected": "expected.csv",
                },
            },
        ],
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_check_tests_the_model_its_build_made_and_a_check_without_image_is_skipped(
    project, admin_user
):
    from apps.pipelines.choices import RunStatus

    from .test_worker import finished, log_of
    from .worker import WorkerProcess

    worker = WorkerProcess().start()
    try:
        run = finished(_model_run(project, admin_user), timeout=120)
    finally:
        worker.stop()
    jobs = {j.name: j for j in run.jobs.all()}
    assert run.status == RunStatus.SUCCEEDED, {
        n: (j.status, j.error_message, log_of(run, n)[-1500:]) for n, j in jobs.items()
    }
    built = jobs["build"].result["model"]
    repro = jobs["reproduce"].result["reproducibility"]
    assert repro["passed"] and repro["rows_compared"] == 50
    assert repro["model"] == {
        "digest": built["digest"],
        "path": "artifacts/model.csv",
        "build_job": "build",
    }
    assert f"model artifacts/model.csv from 'build': {built['digest']}" in log_of(run, "reproduce")
    # Shown as skipped with its reason, never as a green success.
    assert jobs["reproduce-image"].status == "skipped"
    skipped = jobs["reproduce-image"].result
    assert "reproducibility" not in skipped  # nothing was compared: no figures to show
    assert skipped["in_image"]["status"] == "skipped"
    assert skipped["in_image"]["checked"] is False
    assert "the build job 'build' made no image" in skipped["in_image"]["reason"]
    assert "skipped, not checked in an image" in log_of(run, "reproduce-image")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_model_that_is_not_the_one_the_build_recorded_fails_the_check(project, admin_user):
    """The bundle in the store was replaced after the build: the check refuses to run."""
    from apps.pipelines import services
    from apps.pipelines.artifacts import bundle_store_path
    from apps.pipelines.choices import JobStatus, RunStatus

    from .test_worker import finished
    from .worker import WorkerProcess

    run = _model_run(project, admin_user)
    run.jobs.filter(name="reproduce-image").delete()
    reproduce = run.jobs.get(name="reproduce")
    reproduce.max_attempts = 1
    reproduce.save(update_fields=["max_attempts"])
    worker = WorkerProcess().start()
    try:
        run = finished(run, timeout=120)
        assert run.status == RunStatus.SUCCEEDED
        build = run.jobs.get(name="build")
        store = bundle_store_path(build.result["bundle_digest"])
        _bundle(store.parent, {"artifacts/model.csv": b"id,prediction,probability\n"}).replace(
            store
        )
        services.job_retry(job=run.jobs.get(name="reproduce"), actor=admin_user)
        run = finished(run, timeout=120)
    finally:
        worker.stop()
    reproduce = run.jobs.get(name="reproduce")
    assert run.status == RunStatus.FAILED
    assert reproduce.status == JobStatus.FAILED
    assert "The model of 'build' was not handed over" in reproduce.error_message
    assert "the build recorded " + build.result["model"]["digest"] in reproduce.error_message

"""The closed loop (apps/monitoring/retrain.py): a drifted window with labels becomes a new
version of the training dataset and a MONITOR run of the retrain pipeline, with the drift
evidence kept; the cooldown, the daily cap and the minimum of labelled rows hold it back, and
a RetrainRequest says so either way."""

from datetime import timedelta

import pyarrow.csv as pcsv
import pytest
from django.db.models import F

from apps.monitoring import checks, retrain
from apps.monitoring.choices import CheckStatus
from apps.monitoring.models import RetrainRequest
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.training.models import DatasetVersion
from tests.monitoring.checks_setup import (
    SPEC,
    aligned,
    churned,
    frame,
    make_world,
    observe,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_spec_cache():
    checks._SPEC_CACHE.clear()
    yield
    checks._SPEC_CACHE.clear()


def drifted_check(world, end, *, rows=400, labelled=None, seed=8):
    data = frame(rows, shift=1.0, plan_b=0.8, seed=seed)
    labels = churned(data)
    if labelled is not None:
        labels = labels.astype(float)
        labels[labelled:] = float("nan")
    observe(world, data, end - timedelta(minutes=55), labels=labels)
    result = checks.run_check(
        environment_id=world.environment.pk, window_start=end - timedelta(hours=1), window_end=end
    )
    assert result.status == CheckStatus.DRIFT
    return result, data


def test_a_drift_appends_the_labelled_window_and_starts_the_retrain_pipeline(project, tmp_path):
    world = make_world(project, tmp_path)
    end = aligned()
    check, data = drifted_check(world, end)
    request = RetrainRequest.objects.get()
    assert request.drift_check == check and request.skipped_reason == ""
    assert request.alert is not None and request.alert.rule == "dataset_drift"

    run = request.run
    assert (run.trigger, run.pipeline, run.environment) == (
        Trigger.MONITOR,
        "train",
        world.environment,
    )
    assert run.commit_sha == world.repo.head  # the commit serving in production
    assert run.trigger_detail.startswith("drift: f0 (")
    assert "plan (" in run.trigger_detail and "production" in run.trigger_detail
    assert "+400 labelled rows → features v2" in run.trigger_detail

    # The new version: the training rows, then the window's, the label as the target.
    version = request.dataset_version
    assert (version.dataset.name, version.version, version.rows) == ("features", 2, 2400)
    table = pcsv.read_csv(version.path)
    assert table.column_names == ["f0", "f1", "plan", "churned"]
    tail = table.slice(2000)
    assert tail.column("f0").to_pylist() == pytest.approx(list(data["f0"]))
    assert tail.column("plan").to_pylist() == list(data["plan"])
    assert tail.column("churned").to_pylist() == list(churned(data))
    # The run consumes it: it is the newest real version of the dataset.
    assert DatasetVersion.objects.filter(dataset__name="features").count() == 2

    evidence = request.evidence
    assert evidence["drifted_columns"] == check.drifted_columns
    assert evidence["window"] == [check.window_start.isoformat(), check.window_end.isoformat()]
    drifted = [c for c in evidence["columns"] if c["drifted"]]
    assert {c["column"] for c in drifted} == {"f0", "plan"}
    assert all({"test", "score", "threshold"} <= set(c) for c in evidence["columns"])
    assert evidence["dataset"] == {
        "name": "features",
        "version": 2,
        "rows_added": 400,
        "rows": 2400,
    }
    assert retrain.retrain_request_of(run) == request


def test_the_cooldown_holds_the_next_drift_back(project, tmp_path):
    world = make_world(project, tmp_path)
    end = aligned()
    drifted_check(world, end - timedelta(hours=1))
    drifted_check(world, end, seed=9)
    first, second = RetrainRequest.objects.order_by("created")
    assert first.run is not None and second.run is None
    assert second.skipped_reason.startswith("Cooldown: the last retrain started at")
    assert "monitor.retrain.cooldown 6h" in second.skipped_reason
    assert second.dataset_version is None
    assert second.evidence["drifted_columns"]  # the drift is kept even when skipped
    assert PipelineRun.objects.filter(trigger=Trigger.MONITOR).count() == 1
    assert DatasetVersion.objects.filter(dataset__name="features").count() == 2


def test_the_daily_cap(project, tmp_path):
    spec = SPEC.replace("cooldown: 6h, max_per_day: 2", "cooldown: 1m, max_per_day: 1")
    world = make_world(project, tmp_path, spec=spec)
    end = aligned()
    drifted_check(world, end - timedelta(hours=2))
    RetrainRequest.objects.update(created=F("created") - timedelta(minutes=10))  # past cooldown
    second, _ = drifted_check(world, end, seed=9)
    requests = list(RetrainRequest.objects.order_by("created"))
    assert [bool(r.run_id) for r in requests] == [True, False]
    assert requests[1].skipped_reason == (
        "Daily cap: 1 retrains in the last 24 hours (monitor.retrain.max_per_day 1)."
    )
    # A day later the cap is free again; only the rows no retrain appended yet are appended.
    monitor = checks.monitor_spec(project, world.repo.head)
    later = retrain.drift_retrain(
        check=second, monitor=monitor, now=requests[0].created + timedelta(days=1, minutes=1)
    )
    assert later.run is not None and later.evidence["dataset"]["rows_added"] == 400
    assert later.dataset_version.rows == 2800


def test_too_few_labelled_rows_start_nothing(project, tmp_path):
    world = make_world(project, tmp_path)
    drifted_check(world, aligned(), labelled=20)
    request = RetrainRequest.objects.get()
    assert request.run is None and request.dataset_version is None
    assert request.skipped_reason == (
        "20 labelled rows in the drifted window (monitor.retrain.min_rows 50)."
    )
    assert DatasetVersion.objects.filter(dataset__name="features").count() == 1


def test_no_lineage_no_retrain(project, tmp_path):
    world = make_world(project, tmp_path)
    check, _ = drifted_check(world, aligned())
    RetrainRequest.objects.all().delete()
    PipelineRun.objects.all().delete()
    world.model_version.trained_on.clear()
    request = retrain.drift_retrain(
        check=check, monitor=checks.monitor_spec(project, world.repo.head)
    )
    assert "no training dataset with column 'churned'" in request.skipped_reason


def test_a_pipeline_that_cannot_start_keeps_no_dataset_version(project, tmp_path):
    spec = SPEC.replace("pipelines:\n  train:\n", "pipelines:\n  train:\n    concurrency: skip\n")
    world = make_world(project, tmp_path, spec=spec)
    end = aligned()
    drifted_check(world, end - timedelta(hours=1))
    assert RetrainRequest.objects.get().run is not None  # still queued: active
    RetrainRequest.objects.update(created=F("created") - timedelta(hours=7))  # past cooldown
    drifted_check(world, end, seed=9)
    request = RetrainRequest.objects.order_by("-created").first()
    assert request.skipped_reason == "Pipeline 'train' is still running (concurrency: skip)."
    # The version appended for it went with the run that did not start.
    assert request.dataset_version is None
    assert DatasetVersion.objects.filter(dataset__name="features").count() == 2


def test_on_drift_alert_asks_for_no_retrain(project, tmp_path):
    world = make_world(project, tmp_path, spec=SPEC.replace("on_drift: retrain", "on_drift: alert"))
    drifted_check(world, aligned())
    assert not RetrainRequest.objects.exists()
    assert not PipelineRun.objects.filter(trigger=Trigger.MONITOR).exists()

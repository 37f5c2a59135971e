"""Drift checks (apps/monitoring/checks.py): which environments and windows are due, one check
of a window stored once with its columns, the drift and performance alerts it fires and
resolves, and the no_observations rule. A real Git repository holds the spec; observations
and labels are Parquet files in the store with their batch rows, as the ingest API writes."""

from datetime import timedelta

import numpy as np
import pytest

from apps.monitoring import checks, tasks
from apps.monitoring.choices import AlertStatus, CheckStatus
from apps.monitoring.models import Alert, ColumnDrift, DriftCheck, RetrainRequest
from tests.monitoring.checks_setup import (
    SPEC,
    aligned,
    churned,
    frame,
    make_world,
    observe,
)

pytestmark = pytest.mark.django_db

ALERT_ONLY = SPEC.replace("on_drift: retrain", "on_drift: alert")


@pytest.fixture(autouse=True)
def _fresh_caches():
    from django.core.cache import cache

    cache.clear()  # the "sent already" marks of the due windows
    checks._SPEC_CACHE.clear()
    yield
    checks._SPEC_CACHE.clear()


@pytest.fixture
def world(project, tmp_path):
    return make_world(project, tmp_path, spec=ALERT_ONLY)


def check(world, end, hours=1):
    return checks.run_check(
        environment_id=world.environment.pk,
        window_start=end - timedelta(hours=hours),
        window_end=end,
    )


def firing(rule):
    return Alert.objects.filter(rule=rule, status=AlertStatus.FIRING)


def test_a_window_like_the_reference_is_ok_with_every_column_and_the_performance(world):
    end = aligned()
    rows = frame(400, seed=12)
    observe(world, rows, end - timedelta(minutes=55), labels=churned(rows))
    result = check(world, end)
    assert result.status == CheckStatus.OK and not result.dataset_drift
    assert (result.rows, result.reference_rows) == (400, 2000)
    assert result.model_version == world.model_version and result.reference is not None
    columns = {c.column: c for c in result.columns.all()}
    assert set(columns) == {"f0", "f1", "plan"}
    assert columns["plan"].kind == "categorical" and columns["f0"].kind == "numeric"
    assert not any(c.drifted for c in columns.values())
    # Predictions are the rule the labels follow: perfect accuracy on every labelled row.
    assert result.performance["accuracy"] == 1.0
    assert result.performance["labelled_rows"] == 400
    assert not Alert.objects.exists()


def test_a_drifted_window_fires_dataset_and_column_alerts_and_a_later_ok_one_resolves_them(
    world,
):
    end = aligned()
    drifted = frame(400, shift=1.0, plan_b=0.8, seed=8)
    observe(world, drifted, end - timedelta(minutes=55))
    result = check(world, end)
    assert result.status == CheckStatus.DRIFT and result.dataset_drift
    assert set(result.drifted_columns) == {"f0", "plan"}
    assert result.drift_share == pytest.approx(2 / 3)
    alert = firing("dataset_drift").get()
    assert alert.drift_check == result and alert.environment == world.environment
    assert "f0" in alert.summary and "plan" in alert.summary
    assert sorted(a.labels["feature"] for a in firing("column_drift")) == ["f0", "plan"]
    assert not RetrainRequest.objects.exists()  # on_drift: alert

    later = end + timedelta(hours=1)
    observe(world, frame(400, seed=13), later - timedelta(minutes=55))
    assert check(world, later).status == CheckStatus.OK
    assert not firing("dataset_drift").exists() and not firing("column_drift").exists()
    assert Alert.objects.filter(status=AlertStatus.RESOLVED).count() == 3


def test_a_window_is_checked_once(world):
    end = aligned()
    observe(world, frame(300, seed=3), end - timedelta(minutes=50))
    assert check(world, end) is not None
    assert check(world, end) is None
    assert DriftCheck.objects.count() == 1
    assert ColumnDrift.objects.count() == 3


def test_a_check_that_decided_tells_its_alerts_at_once(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    """Not at the dispatcher's next beat: a dispatcher pass is sent after the check commits
    (what bench/drift_alert.py times)."""
    sent = []
    monkeypatch.setattr(tasks.dispatch_alerts_task, "delay", lambda: sent.append("dispatch"))
    end = aligned()
    observe(world, frame(400, shift=1.0, plan_b=0.8, seed=8), end - timedelta(minutes=55))
    with django_capture_on_commit_callbacks(execute=True):
        assert check(world, end).status == CheckStatus.DRIFT
    assert sent == ["dispatch"]
    later = end + timedelta(hours=1)
    observe(world, frame(40, seed=9), later - timedelta(minutes=55))
    with django_capture_on_commit_callbacks(execute=True):
        assert check(world, later).status == CheckStatus.INSUFFICIENT
    assert sent == ["dispatch"]  # nothing decided, nothing to tell


def test_too_few_rows_decide_nothing_and_leave_alerts_firing(world):
    end = aligned()
    observe(world, frame(400, shift=1.0, plan_b=0.8, seed=8), end - timedelta(minutes=55))
    assert check(world, end).status == CheckStatus.DRIFT
    later = end + timedelta(hours=1)
    observe(world, frame(40, seed=9), later - timedelta(minutes=55))
    thin = check(world, later)
    assert thin.status == CheckStatus.INSUFFICIENT and thin.rows == 40
    assert "min_rows is 100" in thin.error
    assert not thin.columns.exists()
    assert firing("dataset_drift").exists()  # nothing was decided


def test_only_rows_of_the_window_and_of_the_serving_model_version_count(world):
    end = aligned()
    observe(world, frame(150, seed=16), end - timedelta(minutes=30), seconds=600)
    # Before the window, and after it: not read.
    observe(world, frame(500, shift=3.0, seed=5), end - timedelta(hours=2), seconds=600)
    observe(world, frame(500, shift=3.0, seed=6), end, seconds=600)
    result = check(world, end)
    assert result.rows == 150 and result.status == CheckStatus.OK


def test_low_accuracy_on_the_labels_fires_the_performance_alert(world):
    end = aligned()
    rows = frame(400, seed=12)
    observe(world, rows, end - timedelta(minutes=55), labels=1 - churned(rows))  # all wrong
    result = check(world, end)
    assert result.performance["accuracy"] == 0.0
    alert = firing("performance").get()
    assert alert.severity == "critical" and alert.labels["metric"] == "accuracy"
    assert "below 0.8" in alert.summary and "400 labelled rows" in alert.summary

    later = end + timedelta(hours=1)
    rows = frame(400, seed=13)
    observe(world, rows, later - timedelta(minutes=55), labels=churned(rows))
    check(world, later)
    assert not firing("performance").exists()


def test_due_windows_are_aligned_to_every_and_sent_on_the_monitor_queue(world, monkeypatch):
    now = aligned() + timedelta(minutes=7)
    [due] = checks.due_checks(now)
    end = aligned()  # 7 min after it ended: past the 60 s delay
    assert (due.environment_id, due.window_end) == (world.environment.pk, end)
    assert due.window_end - due.window_start == timedelta(hours=1)  # window: 1h

    sent = []
    monkeypatch.setattr(checks, "due_checks", lambda: [due])
    monkeypatch.setattr(tasks.check_environment_task, "apply_async", lambda **kw: sent.append(kw))
    assert tasks.run_due_checks_task() == 1
    assert sent[0]["queue"] == "monitor"
    assert sent[0]["args"] == (world.environment.pk, due.window_start.isoformat(), end.isoformat())
    assert tasks.run_due_checks_task() == 0  # sent already: not again while it waits

    # The worker's side: the message checks the window; then it is not due any more.
    tasks.check_environment_task(*sent[0]["args"])
    monkeypatch.undo()
    assert checks.due_checks(now) == []


def test_the_routes_and_the_beat_entry(settings):
    from controlplane.celery import app

    assert app.amqp.router.route({}, "monitoring.check_environment")["queue"].name == "monitor"
    entry = settings.CELERY_BEAT_SCHEDULE["monitoring.run_due_checks"]
    assert (
        entry["schedule"]
        == timedelta(seconds=settings.MONITOR_DUE_INTERVAL)
        == timedelta(seconds=3)
    )


def test_only_environments_serving_a_release_whose_spec_monitors_are_checked(world, project):
    from apps.projects.models import Environment

    # staging serves nothing: not monitored.
    Environment.objects.get_or_create(project=project, name="staging")
    assert [m.environment for m in checks.monitored_environments()] == [world.environment]
    # The default branch drops the monitor block: production still serves the commit that
    # has it, so it stays monitored until a release of the new commit serves there.
    old = world.repo.head
    new = world.repo.commit("no monitoring", {".controlplane.yml": SPEC.split("monitor:")[0]})
    assert [m.commit_sha for m in checks.monitored_environments()] == [old]
    # A release of the new commit serves (the mirror fetches it when a check looks).
    world.environment.pipeline_commit_sha = new
    world.environment.save()
    assert checks.monitored_environments() == []


def test_no_observations_fires_after_the_spec_s_silence_and_counts_from_the_deployment(world):
    from django.utils import timezone

    now = timezone.now()
    # Deployed a day ago and never sent anything.
    [firing_] = list(checks.no_observations(now))
    assert firing_.environment == world.environment and "No observations" in firing_.summary
    assert firing_.annotations == {"last_observation": "never"}
    observe(world, frame(10, seed=1), now - timedelta(minutes=20), seconds=60)
    assert list(checks.no_observations(now)) == []  # 19 min < 30m
    [late] = list(checks.no_observations(now + timedelta(minutes=15)))
    assert late.value == pytest.approx(35 * 60 - 54, abs=1)  # the last one came at +54 s


def test_a_check_that_fails_is_stored_as_an_error(world, monkeypatch):
    end = aligned()
    observe(world, frame(300, seed=3), end - timedelta(minutes=50))

    def broken(*args, **kwargs):
        raise ValueError("bad reference")

    from apps.monitoring import reference

    monkeypatch.setattr(reference, "reference_table", broken)
    result = check(world, end)
    assert result.status == CheckStatus.ERROR and "bad reference" in result.error
    assert not Alert.objects.exists()


def test_numbers_stay_finite_in_the_json(world):
    end = aligned()
    rows = frame(300, seed=3)
    rows["f1"][:] = np.nan  # a column that arrived empty
    observe(world, rows, end - timedelta(minutes=50))
    result = check(world, end)
    assert result.status in (CheckStatus.OK, CheckStatus.DRIFT)
    f1 = result.columns.get(column="f1")
    assert f1.score is None or np.isfinite(f1.score)


def test_no_observations_fires_and_resolves_through_the_rules_evaluation(world):
    from django.utils import timezone

    from apps.monitoring.rules import evaluate_rules

    evaluate_rules(only=["no_observations"])
    alert = firing("no_observations").get()
    assert alert.environment == world.environment and alert.severity == "warning"
    observe(world, frame(10, seed=1), timezone.now() - timedelta(minutes=2), seconds=60)
    evaluate_rules(only=["no_observations"])
    assert not firing("no_observations").exists()


def test_a_check_publishes_its_scores_as_prometheus_gauges(world, client, settings):
    from prometheus_client.parser import text_string_to_metric_families

    end = aligned()
    observe(world, frame(400, shift=1.0, plan_b=0.8, seed=8), end - timedelta(minutes=55))
    result = check(world, end)
    settings.METRICS_TOKEN = "metrics-token-for-the-check-test"
    page = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
    samples = {
        (s.name, s.labels.get("feature")): s.value
        for family in text_string_to_metric_families(page.content.decode())
        for s in family.samples
        if s.labels.get("project") == world.project.slug
        and s.labels.get("environment") == "production"
    }
    assert samples[("controlplane_dataset_drift", None)] == 1
    assert samples[("controlplane_drift_share", None)] == pytest.approx(result.drift_share)
    assert samples[("controlplane_column_drift", "f0")] == 1
    assert samples[("controlplane_column_drift", "f1")] == 0
    f0 = result.columns.get(column="f0")
    assert samples[("controlplane_drift_score", "f0")] == pytest.approx(f0.score)

"""The rules registry, its beat task, and the rules webhook_failures and promotion_waiting."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.monitoring import rules
from apps.monitoring.choices import AlertStatus
from apps.monitoring.models import Alert
from apps.releases.models import Promotion
from apps.webhooks.models import WebhookDelivery
from tests.factories import PromotionFactory, ReleaseFactory, RunFactory

pytestmark = pytest.mark.django_db


def delivery(project, status, minutes_ago, detail=""):
    return WebhookDelivery.objects.create(
        provider="github",
        project=project,
        delivery_id=f"d-{status}-{minutes_ago}",
        status=status,
        http_status=403 if status == "rejected" else 202,
        detail=detail,
        received_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def spec_alerts(project, **alerts):
    """A default-branch run whose spec has ``monitor.alerts`` (what the rules read)."""
    RunFactory(
        project=project, ref=project.default_branch, spec={"raw": {"monitor": {"alerts": alerts}}}
    )


def firing(rule):
    return list(Alert.objects.filter(rule=rule, status=AlertStatus.FIRING))


def test_webhook_failures_fires_on_n_in_a_row_and_resolves_on_a_success(project):
    delivery(project, "accepted", 10)
    delivery(project, "rejected", 3)
    delivery(project, "invalid", 2)
    rules.evaluate_rules(only=["webhook_failures"])
    assert firing("webhook_failures") == []  # two in a row, the default is three
    delivery(project, "rejected", 1, detail="Bad signature.")
    outcome = rules.evaluate_rules(only=["webhook_failures"])
    (alert,) = firing("webhook_failures")
    assert outcome.fired == 1
    assert alert.project == project and alert.labels["project"] == project.slug
    assert alert.value == 3.0 and "Bad signature." in alert.summary
    rules.evaluate_rules(only=["webhook_failures"])  # still true: the same row
    assert Alert.objects.filter(rule="webhook_failures").count() == 1
    delivery(project, "accepted", 0)
    outcome = rules.evaluate_rules(only=["webhook_failures"])
    assert outcome.resolved == 1 and firing("webhook_failures") == []


def test_webhook_failures_threshold_from_the_spec(project):
    spec_alerts(project, webhook_failures=5)
    for i in range(4):
        delivery(project, "rejected", i)
    rules.evaluate_rules(only=["webhook_failures"])
    assert firing("webhook_failures") == []
    delivery(project, "error", 0)
    rules.evaluate_rules(only=["webhook_failures"])
    assert len(firing("webhook_failures")) == 1


def test_promotion_waiting_fires_per_promotion_and_resolves_when_decided(project, production):
    release = ReleaseFactory(project=project, version="v7")
    promotion = PromotionFactory(release=release, environment=production)
    rules.evaluate_rules(only=["promotion_waiting"])
    assert firing("promotion_waiting") == []  # young
    Promotion.objects.filter(pk=promotion.pk).update(created=timezone.now() - timedelta(hours=25))
    rules.evaluate_rules(only=["promotion_waiting"])
    (alert,) = firing("promotion_waiting")
    assert alert.environment == production
    assert alert.labels["release"] == "v7" and alert.labels["promotion"] == str(promotion.pk)
    assert "v7 to production has waited 25.0 h" in alert.summary
    Promotion.objects.filter(pk=promotion.pk).update(status="approved")
    rules.evaluate_rules(only=["promotion_waiting"])
    assert firing("promotion_waiting") == []


def test_promotion_waiting_threshold_from_the_spec(project, production):
    spec_alerts(project, promotion_waiting="2h")
    promotion = PromotionFactory(release=ReleaseFactory(project=project), environment=production)
    Promotion.objects.filter(pk=promotion.pk).update(created=timezone.now() - timedelta(hours=3))
    rules.evaluate_rules(only=["promotion_waiting"])
    assert len(firing("promotion_waiting")) == 1


def test_a_failing_rule_leaves_its_alerts_and_the_others_run(project, production):
    calls = {"n": 0}

    @rules.rule("flaky_test_rule")
    def flaky(now):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("broken")
        yield rules.Firing(labels={}, summary="on", environment=production)

    try:
        rules.evaluate_rules(only=["flaky_test_rule"])
        assert len(firing("flaky_test_rule")) == 1
        outcome = rules.evaluate_rules(only=["flaky_test_rule", "webhook_failures"])
        assert outcome.errors == ["flaky_test_rule"]
        assert len(firing("flaky_test_rule")) == 1  # not resolved by a broken evaluation
    finally:
        rules.REGISTRY.pop("flaky_test_rule")


def test_beat_runs_the_rules_every_30_seconds_then_dispatches(
    settings, project, heard, django_capture_on_commit_callbacks
):
    from apps.monitoring.tasks import evaluate_rules_task
    from controlplane.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["monitoring.evaluate_rules"]
    assert entry["task"] == "monitoring.evaluate_rules"
    assert entry["schedule"] == timedelta(seconds=30)
    assert "monitoring.evaluate_rules" in app.tasks
    assert {"webhook_failures", "promotion_waiting"} <= set(rules.registered())
    for i in range(3):
        delivery(project, "rejected", 60 + i)
    settings.ALERT_GROUP_WAIT_SECONDS = 0  # pytest-django's fixture: restored after
    with django_capture_on_commit_callbacks(execute=True):
        result = evaluate_rules_task()
    assert result["fired"] == 1 and result["notices"] == 1
    assert [k["reason"] for n, k in heard if n == "notify"] == ["firing"]

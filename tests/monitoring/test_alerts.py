"""Firing, deduplication, resolving, acknowledging, the audit log and the timeline."""

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from apps.core.exceptions import ConflictError, PermissionDeniedError
from apps.core.models import AuditEvent
from apps.monitoring.choices import AlertSource, AlertStatus, Severity
from apps.monitoring.models import Alert
from apps.monitoring.services.alerts import (
    alert_acknowledge,
    alert_fingerprint,
    alert_fire,
    alert_resolve,
    alert_resolve_missing,
)
from apps.releases.selectors import environment_timeline

pytestmark = pytest.mark.django_db


def _audit(alert):
    return list(
        AuditEvent.objects.filter(
            content_type=ContentType.objects.get_for_model(Alert), object_id=str(alert.pk)
        ).order_by("id")
    )


def fire(env, **kw):
    args = {
        "rule": "dataset_drift",
        "labels": {"model_version": "3"},
        "severity": Severity.WARNING,
        "summary": "3 of 5 columns drifted",
        "environment": env,
    }
    return alert_fire(**{**args, **kw})


def test_fire_stores_labels_fingerprint_and_an_audit_row(production):
    alert = fire(production, value=0.6)
    assert alert.labels == {
        "alertname": "dataset_drift",
        "environment": "production",
        "model_version": "3",
        "project": production.project.slug,
    }
    assert alert.project == production.project
    assert alert.status == AlertStatus.FIRING
    assert alert.group_key == f"{production.project.slug}/production/dataset_drift"
    assert alert.fingerprint == alert_fingerprint(
        rule="dataset_drift", labels={"model_version": "3"}, environment=production
    )
    (event,) = _audit(alert)
    assert (event.action, event.from_state, event.to_state) == ("alert.fired", "", "firing")
    assert event.project_id == production.project_id
    assert event.data["environment_id"] == production.pk
    assert event.data["url"].endswith(f"/alerts/{alert.pk}/")


def test_firing_again_updates_the_row_never_duplicates(production):
    first = fire(production, value=0.6)
    later = timezone.now() + timedelta(minutes=5)
    again = fire(production, value=0.8, summary="4 of 5 columns drifted", at=later)
    assert again.pk == first.pk
    assert Alert.objects.count() == 1
    again.refresh_from_db()
    assert again.value == 0.8
    assert again.summary == "4 of 5 columns drifted"
    assert again.last_seen_at == later
    assert len(_audit(again)) == 1  # seen again is not a transition
    # Other labels are another alert.
    other = fire(production, labels={"model_version": "4"})
    assert other.pk != first.pk


def test_resolve_then_fire_again_is_a_new_row(production):
    first = fire(production)
    resolved = alert_resolve(fingerprint=first.fingerprint)
    assert resolved.status == AlertStatus.RESOLVED and resolved.resolved_at is not None
    assert [e.action for e in _audit(first)] == ["alert.fired", "alert.resolved"]
    assert alert_resolve(fingerprint=first.fingerprint) is None  # nothing firing
    second = fire(production)
    assert second.pk != first.pk and second.status == AlertStatus.FIRING
    assert Alert.objects.filter(fingerprint=first.fingerprint).count() == 2


def test_signals_go_out_after_commit_only(production, heard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        alert = fire(production)
    assert heard == []
    for cb in callbacks:
        cb()
    assert heard == [
        ("changed", {"signal": heard[0][1]["signal"], "alert": alert, "old": "", "new": "firing"})
    ]
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(fingerprint=alert.fingerprint)
    assert heard[-1][1]["old"] == "firing" and heard[-1][1]["new"] == "resolved"


def test_resolve_missing_resolves_only_unseen_in_scope(project, production):
    staging = project.environments.get(name="staging")
    a = fire(production, rule="service_down", labels={})
    b = fire(staging, rule="service_down", labels={})
    c = fire(production, rule="other", labels={})
    done = alert_resolve_missing(
        rule="service_down", seen_fingerprints=[], scope={"environment": production}
    )
    assert [x.pk for x in done] == [a.pk]
    b.refresh_from_db(), c.refresh_from_db()
    assert b.status == c.status == AlertStatus.FIRING
    assert alert_resolve_missing(rule="service_down", seen_fingerprints=[b.fingerprint]) == []
    # Alertmanager's alerts are Alertmanager's to resolve.
    am = fire(production, rule="service_down", labels={"x": "1"}, source=AlertSource.ALERTMANAGER)
    alert_resolve_missing(rule="service_down", seen_fingerprints=[])
    am.refresh_from_db()
    assert am.status == AlertStatus.FIRING


def test_acknowledge_needs_developer_once_and_firing(
    production, member, heard, django_capture_on_commit_callbacks
):
    alert = fire(production)
    with pytest.raises(PermissionDeniedError):
        alert_acknowledge(alert=alert, actor=member("viewer"))
    dev = member("developer")
    with django_capture_on_commit_callbacks(execute=True):
        alert_acknowledge(alert=alert, actor=dev, comment="looking")
    alert.refresh_from_db()
    assert alert.acknowledged_by == dev and alert.acknowledged_at is not None
    assert heard[-1][1]["acknowledged"] is True
    event = _audit(alert)[-1]
    assert (event.action, event.actor, event.reason) == ("alert.acknowledged", dev, "looking")
    with pytest.raises(ConflictError):
        alert_acknowledge(alert=alert, actor=dev)
    alert_resolve(fingerprint=alert.fingerprint)
    other = fire(production, labels={"model_version": "9"})
    alert_resolve(fingerprint=other.fingerprint)
    with pytest.raises(ConflictError):
        alert_acknowledge(alert=other, actor=dev)


def test_unknown_severity_is_refused(production):
    from apps.core.exceptions import ServiceError

    with pytest.raises(ServiceError):
        fire(production, severity="loud")
    assert not Alert.objects.exists()


def test_alert_transitions_show_on_the_environment_timeline(project, production):
    staging = project.environments.get(name="staging")
    alert = fire(production)
    alert_resolve(fingerprint=alert.fingerprint)
    fire(staging, rule="latency_p95")
    entries = [e for e in environment_timeline(environment=production) if e.kind == "audit"]
    assert [e.text for e in entries] == ["Alert resolved", "Alert fired"]
    assert entries[1].detail == "dataset_drift: 3 of 5 columns drifted"
    assert entries[1].url.endswith(f"/alerts/{alert.pk}/")
    assert entries[0].status == "resolved"
    assert not any("latency" in e.detail for e in entries)


def test_environment_page_shows_alert_on_its_timeline(client, admin_user, production):
    fire(production, summary="f1 below 0.7", rule="performance")
    client.force_login(admin_user)
    page = client.get(production.get_absolute_url()).content.decode()
    assert "Alert fired" in page and "performance: f1 below 0.7" in page


@pytest.mark.django_db(transaction=True)
def test_concurrent_fires_of_one_fingerprint_make_one_row(admin_user):
    import threading

    from django.db import connection

    from apps.projects.services import project_create

    env = project_create(name="Race model", actor=admin_user).environments.get(name="production")
    barrier = threading.Barrier(4)
    ids, errors = [], []

    def worker():
        try:
            barrier.wait()
            ids.append(fire(env).pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
    assert Alert.objects.filter(status=AlertStatus.FIRING).count() == 1
    assert AuditEvent.objects.filter(action="alert.fired").count() == 1

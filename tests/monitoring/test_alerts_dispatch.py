"""The dispatcher: group wait, groups, repeats, resolved notices, silences and their expiry."""

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings
from django.utils import timezone

from apps.core.models import AuditEvent
from apps.monitoring.dispatch import dispatch
from apps.monitoring.models import Alert
from apps.monitoring.services.alerts import (
    alert_fire,
    alert_resolve,
    silence_create,
    silence_expire,
)
from apps.projects.services import project_create

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("settings_for_dispatch"),
]


@pytest.fixture
def settings_for_dispatch():
    with override_settings(ALERT_GROUP_WAIT_SECONDS=30, ALERT_REPEAT_HOURS=4):
        yield


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def fire(now):
    # TRICKY: every alert starts at `now`, so a slow machine cannot move one past the group
    # wait between two fires.
    def make(env, rule="error_rate", **labels):
        return alert_fire(
            rule=rule,
            labels=labels,
            severity="critical",
            summary=f"{rule} high",
            environment=env,
            at=now,
        )

    return make


def notices(heard):
    return [
        (k["group_key"], k["reason"], sorted(k["alert_ids"])) for n, k in heard if n == "notify"
    ]


def run(at, capture):
    with capture(execute=True):
        return dispatch(at=at)


def test_group_wait_then_one_notice_per_group(
    now, fire, production, heard, django_capture_on_commit_callbacks
):
    a = fire(production, instance="a")
    b = fire(production, instance="b")
    c = fire(production, rule="latency_p95")
    assert run(now + timedelta(seconds=5), django_capture_on_commit_callbacks) == []
    assert notices(heard) == []
    run(now + timedelta(seconds=31), django_capture_on_commit_callbacks)
    slug = production.project.slug
    assert notices(heard) == [
        (f"{slug}/production/error_rate", "firing", sorted([a.pk, b.pk])),
        (f"{slug}/production/latency_p95", "firing", [c.pk]),
    ]
    a.refresh_from_db()
    assert a.notified_count == 1 and a.last_notified_at == now + timedelta(seconds=31)
    # Told once: the next passes say nothing until the repeat interval.
    heard.clear()
    run(now + timedelta(hours=1), django_capture_on_commit_callbacks)
    assert notices(heard) == []
    run(now + timedelta(hours=4, seconds=32), django_capture_on_commit_callbacks)
    assert [(r, ids) for _g, r, ids in notices(heard)] == [
        ("repeat", sorted([a.pk, b.pk])),
        ("repeat", [c.pk]),
    ]


def test_resolved_is_told_once_and_only_if_firing_was(
    now, fire, production, heard, django_capture_on_commit_callbacks
):
    told = fire(production, instance="a")
    run(now + timedelta(seconds=31), django_capture_on_commit_callbacks)
    never = fire(production, rule="cpu")
    alert_resolve(fingerprint=told.fingerprint, at=now + timedelta(minutes=1))
    alert_resolve(fingerprint=never.fingerprint, at=now + timedelta(minutes=1))
    heard.clear()
    run(now + timedelta(minutes=2), django_capture_on_commit_callbacks)
    assert [(r, ids) for _g, r, ids in notices(heard)] == [("resolved", [told.pk])]
    heard.clear()
    run(now + timedelta(minutes=3), django_capture_on_commit_callbacks)
    assert notices(heard) == []
    # A resolve reported late (Alertmanager's endsAt before our last notice) is told too.
    late = fire(production, instance="late")
    run(now + timedelta(minutes=4), django_capture_on_commit_callbacks)
    alert_resolve(fingerprint=late.fingerprint, at=now + timedelta(seconds=10))
    heard.clear()
    run(now + timedelta(minutes=5), django_capture_on_commit_callbacks)
    assert [(r, ids) for _g, r, ids in notices(heard)] == [("resolved", [late.pk])]


def test_silenced_alert_notifies_no_one_until_the_silence_is_expired(
    now, fire, project, production, member, heard, django_capture_on_commit_callbacks
):
    dev = member("developer")
    silence = silence_create(
        project=project,
        matchers=[
            {"name": "alertname", "op": "=", "value": "error_rate"},
            {"name": "environment", "op": "=~", "value": "prod.*"},
        ],
        reason="known: deploy in progress",
        ends_at=now + timedelta(hours=2),
        actor=dev,
    )
    held = fire(production)
    other = fire(production, rule="cpu")
    run(now + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert [ids for _g, _r, ids in notices(heard)] == [[other.pk]]
    held.refresh_from_db()
    assert held.silenced_by == silence and held.notified_count == 0
    event = AuditEvent.objects.filter(
        content_type=ContentType.objects.get_for_model(Alert), object_id=str(held.pk)
    ).latest("id")
    assert event.action == "alert.silenced" and event.data["silence_id"] == silence.pk
    # Still silenced on the next passes, and only one audit row for it.
    run(now + timedelta(minutes=2), django_capture_on_commit_callbacks)
    assert AuditEvent.objects.filter(action="alert.silenced").count() == 1
    heard.clear()
    silence_expire(silence=silence, actor=dev)
    run(now + timedelta(minutes=3), django_capture_on_commit_callbacks)
    assert [(r, ids) for _g, r, ids in notices(heard)] == [("firing", [held.pk])]
    held.refresh_from_db()
    assert held.silenced_by is None and held.notified_count == 1


def test_a_silence_that_runs_out_lets_the_alert_through(
    now, fire, project, production, admin_user, heard, django_capture_on_commit_callbacks
):
    silence_create(
        project=project,
        matchers=[{"name": "alertname", "op": "=", "value": "error_rate"}],
        reason="maintenance",
        ends_at=now + timedelta(minutes=30),
        actor=admin_user,
    )
    held = fire(production)
    run(now + timedelta(minutes=10), django_capture_on_commit_callbacks)
    assert notices(heard) == []
    run(now + timedelta(minutes=31), django_capture_on_commit_callbacks)
    assert [ids for _g, _r, ids in notices(heard)] == [[held.pk]]


def test_a_silence_of_another_project_does_not_apply(
    now, fire, production, admin_user, heard, django_capture_on_commit_callbacks
):
    elsewhere = project_create(name="Other model", actor=admin_user)
    silence_create(
        project=elsewhere,
        matchers=[{"name": "alertname", "op": "=", "value": "error_rate"}],
        reason="not ours",
        ends_at=now + timedelta(hours=1),
        actor=admin_user,
    )
    alert = fire(production)
    run(now + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert [ids for _g, _r, ids in notices(heard)] == [[alert.pk]]


def test_signal_waits_for_commit(now, fire, production, heard, django_capture_on_commit_callbacks):
    fire(production)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sent = dispatch(at=timezone.now() + timedelta(minutes=1))
    assert len(sent) == 1 and notices(heard) == []
    for cb in callbacks:
        cb()
    assert len(notices(heard)) == 1

"""The whole path: Alertmanager posts → alerts → the dispatcher → the notifications app sends
mail (the locmem outbox); a silence holds it back until it is expired. The tasks run in the
test's thread when sent, as a worker would run them."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from apps.monitoring.dispatch import dispatch
from apps.monitoring.services.alerts import silence_create, silence_expire
from apps.monitoring.tasks import dispatch_alerts_task
from apps.notifications.models import NotificationTarget
from apps.notifications.tasks import deliver_task, dispatch_task

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
TOKEN = "alertmanager-e2e-token-0123456789"  # noqa: S105


@pytest.fixture
def worker(monkeypatch, settings):
    settings.ALERTMANAGER_TOKEN = TOKEN
    settings.ALERT_GROUP_WAIT_SECONDS = 0
    for task in (dispatch_task, deliver_task, dispatch_alerts_task):
        monkeypatch.setattr(task, "delay", lambda *args, _task=task: _task.apply(args=args))


def post(client, name):
    return client.post(
        reverse("alertmanager-receiver"),
        data=(FIXTURES / f"{name}.json").read_text(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )


def test_alertmanager_to_mail_with_a_silence_between(
    client, project, admin_user, worker, django_capture_on_commit_callbacks
):
    NotificationTarget.objects.create(
        project=project, kind="email", destination="oncall@example.com"
    )
    silence = silence_create(
        project=project,
        matchers=[{"name": "environment", "op": "=", "value": "staging"}],
        reason="staging is being rebuilt",
        ends_at=timezone.now() + timedelta(hours=1),
        actor=admin_user,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, "firing__project_environment").status_code == 200
    # Production told at once (the receiver runs a dispatcher pass); staging is silenced.
    assert len(mail.outbox) == 1
    assert "production" in mail.outbox[0].subject + mail.outbox[0].body
    assert "staging" not in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        silence_expire(silence=silence, actor=admin_user)
        dispatch()
    assert len(mail.outbox) == 2
    assert "staging" in mail.outbox[1].subject + mail.outbox[1].body
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, "resolved__project_environment").status_code == 200
    # Told once, though both the resolve and the dispatcher's next pass say so.
    with django_capture_on_commit_callbacks(execute=True):
        dispatch()
    subjects = [m.subject for m in mail.outbox]
    assert len(subjects) == 3, subjects
    assert "resolved" in subjects[2].lower() and "production" in subjects[2], subjects
    body = json.dumps([m.body for m in mail.outbox])
    assert "5xx share above 5%" in body

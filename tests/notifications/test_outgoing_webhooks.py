"""Outgoing webhooks, received by a real HTTP server on 127.0.0.1 and checked the way
docs/notifications.md tells a receiver to."""

import hashlib
import hmac
import json
import socket
import time

import pytest

from apps.notifications import outgoing
from apps.notifications.models import NotificationDelivery
from apps.notifications.services import dispatch
from apps.notifications.tasks import deliver_task
from apps.pipelines.models import PipelineRun
from apps.pipelines.signals import run_status_changed
from tests.factories import RunFactory

from .conftest import HOOK_SECRET as SECRET
from .conftest import SITE

pytestmark = pytest.mark.django_db


@pytest.fixture
def target(webhook_target):
    return webhook_target


@pytest.fixture
def failed_run(project):
    return RunFactory(project=project, number=7, status="failed", error_message="tests failed")


def _one_delivery(obj, django_capture_on_commit_callbacks, event="build.failed"):
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(event=event, obj=obj)
    return delivery


def receiver_verifies(secret: str, headers: dict, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's side, exactly as docs/notifications.md shows it (no control plane code)."""
    timestamp = headers["X-Controlplane-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Controlplane-Signature"])


def test_a_failed_build_is_posted_signed(target, hook_server, failed_run, after_commit):
    with after_commit():
        run_status_changed.send(
            sender=PipelineRun, run=failed_run, from_status="running", to_status="failed"
        )
    [request] = hook_server.received
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/cp-events"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Controlplane-Event"] == "build.failed"
    delivery = NotificationDelivery.objects.get()
    assert headers["X-Controlplane-Delivery"] == str(delivery.uuid)
    assert receiver_verifies(SECRET, headers, body)
    assert not receiver_verifies("another-secret-another-secret", headers, body)
    assert not receiver_verifies(SECRET, headers, body.replace(b"tests failed", b"all good"))

    data = json.loads(body)
    assert set(data) == {"event", "delivered_at", "project", "data"}
    assert data["event"] == "build.failed"
    assert data["project"]["slug"] == "churn-model"
    run = data["data"]["run"]
    assert (run["number"], run["status"], run["error_message"]) == (7, "failed", "tests failed")
    assert run["url"] == SITE + failed_run.get_absolute_url()
    assert data["data"]["transition"] == {"from": "running", "to": "failed"}
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("sent", 204, 1)


def test_our_verify_helper_agrees_and_refuses_replays():
    request = outgoing.build_request(
        event="test",
        delivery_uuid="d-1",
        project={"slug": "p"},
        data={},
        secret=SECRET,
        delivered_at="2026-01-01T00:00:00+00:00",
    )
    assert outgoing.verify(secret=SECRET, headers=request.headers, body=request.body)
    assert receiver_verifies(SECRET, request.headers, request.body)
    later = time.time() + 301
    assert not outgoing.verify(secret=SECRET, headers=request.headers, body=request.body, now=later)


def test_a_500_then_success(target, hook_server, failed_run, django_capture_on_commit_callbacks):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    hook_server.codes = [500]
    result = deliver_task.apply(args=[delivery.pk])
    assert result.successful()
    first, second = hook_server.received
    # The same delivery id both times (the receiver can drop a duplicate), each signed anew.
    assert (
        first["headers"]["X-Controlplane-Delivery"] == second["headers"]["X-Controlplane-Delivery"]
    )
    assert receiver_verifies(SECRET, second["headers"], second["body"])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 2, 204)
    assert delivery.error == "" and delivery.sent_at is not None


def test_a_429_is_retried(target, hook_server, failed_run, django_capture_on_commit_callbacks):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    hook_server.codes = [429, 503]
    deliver_task.apply(args=[delivery.pk])
    assert len(hook_server.received) == 3
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_always_500_fails_after_five_retries(
    target, hook_server, failed_run, django_capture_on_commit_callbacks
):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    hook_server.codes = [500] * 10
    result = deliver_task.apply(args=[delivery.pk])
    assert result.successful()  # the failure is recorded on the row, not raised
    assert len(hook_server.received) == 6
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 6, 500)
    assert delivery.error.startswith("HTTP 500")


def test_a_4xx_is_final(target, hook_server, failed_run, django_capture_on_commit_callbacks):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    hook_server.codes = [410]
    deliver_task.apply(args=[delivery.pk])
    assert len(hook_server.received) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("failed", 410, 1)


def test_a_redirect_is_not_followed(
    target, hook_server, failed_run, django_capture_on_commit_callbacks
):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    hook_server.codes = [302]
    deliver_task.apply(args=[delivery.pk])
    assert len(hook_server.received) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("failed", 302)


def test_an_unreachable_target_is_retried_then_failed(
    target, failed_run, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target.destination = f"http://127.0.0.1:{port}/x"
    target.save()
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    deliver_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 6)
    assert "ConnectionError" in delivery.error


def test_a_sent_delivery_is_not_sent_again(
    target, hook_server, failed_run, django_capture_on_commit_callbacks
):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    deliver_task.apply(args=[delivery.pk])
    deliver_task.apply(args=[delivery.pk])  # a duplicate message
    assert len(hook_server.received) == 1


def test_a_deleted_target_keeps_its_history(
    target, hook_server, failed_run, django_capture_on_commit_callbacks
):
    delivery = _one_delivery(failed_run, django_capture_on_commit_callbacks)
    target.delete()
    deliver_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.target) == ("skipped", None)
    assert hook_server.received == []


def test_the_task_is_named_and_queued_as_documented():
    assert deliver_task.name == "notifications.deliver"
    assert deliver_task.queue == "default"
    assert deliver_task.max_retries == 5
    assert deliver_task.acks_late is True

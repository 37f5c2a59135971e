"""Unverified deliveries: the first few a minute per source get a ledger row, the rest are
counted (one RejectedDeliveryCount row per source and minute), and the answer stays the same."""

import pytest
from django.test import Client

from apps.webhooks.models import RejectedDeliveryCount, WebhookDelivery
from apps.webhooks.services import delivery_prune

from .conftest import hook_url, payload_bytes

pytestmark = pytest.mark.django_db


def test_a_flood_from_one_address_costs_one_counter_row(deliver, hook_project, settings):
    settings.WEBHOOK_REJECTED_ROWS_PER_MINUTE = 3
    body = payload_bytes("github", "push__branch")
    for i in range(40):
        assert deliver("github", body, secret=f"guess-{i}").status_code == 403
    counters = list(RejectedDeliveryCount.objects.all())
    assert sum(c.count for c in counters) == 40
    rows = WebhookDelivery.objects.count()
    assert rows == 3 * len(counters) and rows + sum(c.not_stored for c in counters) == 40
    assert {c.project_id for c in counters} == {hook_project.pk}
    assert {c.remote_addr for c in counters} == {"127.0.0.1"}


def test_each_source_has_its_own_allowance(client, hook_project, settings):
    settings.WEBHOOK_REJECTED_ROWS_PER_MINUTE = 2
    body = payload_bytes("github", "push__branch")
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"}
    for addr in ("10.0.0.1", "10.0.0.2"):
        for _ in range(5):
            response = client.post(
                hook_url("github", hook_project.slug),
                data=body,
                content_type="application/json",
                headers=headers,
                REMOTE_ADDR=addr,
            )
            assert response.status_code == 403 and response.json() == {"detail": "Forbidden."}
    # An unknown project is a source too (its rows only show in the admin).
    Client().post(hook_url("github", "no-such-project"), data=body, content_type="application/json")
    assert WebhookDelivery.objects.filter(project=hook_project).count() == 4
    assert WebhookDelivery.objects.filter(project=None).count() == 1
    by_addr = {
        c.remote_addr: (c.count, c.not_stored)
        for c in RejectedDeliveryCount.objects.all()
        if c.slug == hook_project.slug
    }
    assert by_addr == {"10.0.0.1": (5, 3), "10.0.0.2": (5, 3)}


def test_a_signed_delivery_is_never_just_counted(deliver, hook_project, settings):
    settings.WEBHOOK_REJECTED_ROWS_PER_MINUTE = 0
    body = payload_bytes("github", "push__branch")
    assert deliver("github", body, secret="wrong").status_code == 403
    assert not WebhookDelivery.objects.exists()
    assert deliver("github", body).status_code == 202
    assert WebhookDelivery.objects.get().status == "accepted"


def test_oversized_bodies_are_counted_too(client, hook_project, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    settings.WEBHOOK_REJECTED_ROWS_PER_MINUTE = 1
    for _ in range(4):
        response = client.post(
            hook_url("github", hook_project.slug), data=b"x" * 50, content_type="application/json"
        )
        assert response.status_code == 413
    assert WebhookDelivery.objects.count() == 1
    assert RejectedDeliveryCount.objects.get().count == 4


def test_old_counters_are_pruned(deliver, hook_project, settings):
    from datetime import timedelta

    from django.utils import timezone

    deliver("github", payload_bytes("github", "push__branch"), secret="wrong")
    later = timezone.now() + settings.WEBHOOK_DELIVERY_RETENTION + timedelta(minutes=2)
    delivery_prune(now=later)
    assert not RejectedDeliveryCount.objects.exists()

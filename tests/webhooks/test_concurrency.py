"""Copies of one delivery arriving at the same moment, over real HTTP against a threaded server
and a real (committing) database: the unique constraint, not luck, keeps it to one accepted
delivery and so to one run. And several workers starting runs at once: one run per delivery."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from apps.pipelines.models import PipelineRun
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.outbox import delivery_start_runs
from apps.webhooks.testing import sign

from .conftest import SECRET, hook_url, payload_bytes

pytestmark = pytest.mark.django_db(transaction=True)

COPIES = 10


def _post_all_at_once(url: str, requests_to_send: list[tuple[bytes, dict]]) -> list:
    barrier = threading.Barrier(len(requests_to_send))

    def send(item):
        body, headers = item
        barrier.wait(timeout=30)  # release them together
        return requests.post(url, data=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(len(requests_to_send)) as pool:
        return list(pool.map(send, requests_to_send))


def test_ten_concurrent_copies_of_a_delivery_make_one_run(live_server, hook_project):
    # No "seen before?" query: only the database constraint stands between them and ten runs.
    body = payload_bytes("github", "push__branch")
    headers = sign("github", SECRET, body, delivery_id="one-guid-sent-ten-times")
    url = live_server.url + hook_url("github", hook_project.slug)

    answers = _post_all_at_once(url, [(body, headers)] * COPIES)

    assert [a.status_code for a in answers] == [202] * COPIES
    accepted = WebhookDelivery.objects.get(status=DeliveryStatus.ACCEPTED)
    assert [a.json() for a in answers].count({"detail": "accepted", "delivery": accepted.pk}) == 1
    assert [a.json() for a in answers].count({"detail": "already received"}) == COPIES - 1
    statuses = list(WebhookDelivery.objects.values_list("status", flat=True))
    assert statuses.count(DeliveryStatus.DUPLICATE) == COPIES - 1
    delivery_start_runs()  # what the woken worker does
    assert PipelineRun.objects.count() == 1
    accepted.refresh_from_db()
    assert accepted.run == PipelineRun.objects.get()


def test_ten_concurrent_distinct_pushes_make_ten_numbered_runs(live_server, hook_project):
    url = live_server.url + hook_url("generic", hook_project.slug)
    items = []
    for i in range(COPIES):
        body = json.dumps({"ref": "refs/heads/main", "commit": f"{i + 1:040x}"}).encode()
        items.append((body, sign("generic", SECRET, body, delivery_id=f"push-{i}")))

    answers = _post_all_at_once(url, items)

    assert [a.status_code for a in answers] == [202] * COPIES
    assert {a.json()["detail"] for a in answers} == {"accepted"}
    delivery_start_runs()
    numbers = sorted(PipelineRun.objects.values_list("number", flat=True))
    assert numbers == list(range(1, COPIES + 1))


def test_concurrent_forgeries_make_nothing(live_server, hook_project):
    body = payload_bytes("github", "push__branch")
    url = live_server.url + hook_url("github", hook_project.slug)
    items = [(body, sign("github", f"guess-{i}", body)) for i in range(COPIES)]

    answers = _post_all_at_once(url, items)

    assert {(a.status_code, a.content) for a in answers} == {(403, b'{"detail": "Forbidden."}')}
    assert delivery_start_runs() == 0
    assert not PipelineRun.objects.exists()
    assert not WebhookDelivery.objects.filter(payload__isnull=False).exists()


PENDING = 20


def _pending_deliveries(deliver, count: int) -> list[WebhookDelivery]:
    for i in range(count):
        body = json.dumps({"ref": "refs/heads/main", "commit": f"{i + 1:040x}"}).encode()
        response = deliver("generic", body, delivery_id=f"pending-{i}", start_runs=False)
        assert response.status_code == 202, response.content
    return list(WebhookDelivery.objects.filter(awaiting_run=True).order_by("id"))


def test_two_workers_starting_runs_at_once_make_one_run_per_delivery(deliver):
    """On PostgreSQL the second worker skips the rows the first holds (SKIP LOCKED); on SQLite
    the write lock serialises them. Either way: twenty deliveries, twenty runs, one each."""
    pending = _pending_deliveries(deliver, PENDING)
    assert len(pending) == PENDING and not PipelineRun.objects.exists()
    barrier = threading.Barrier(2)

    def worker():
        from django.db import connection

        try:
            barrier.wait(timeout=30)
            return delivery_start_runs(limit=3)  # small batches: the two interleave
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        handled = [f.result() for f in [pool.submit(worker) for _ in range(2)]]

    assert sum(handled) == PENDING
    assert PipelineRun.objects.count() == PENDING
    rows = WebhookDelivery.objects.order_by("id")
    assert not rows.filter(awaiting_run=True).exists()
    assert len({d.run_id for d in rows}) == PENDING
    assert sorted(PipelineRun.objects.values_list("number", flat=True)) == list(
        range(1, PENDING + 1)
    )
    # Each delivery's run is its own push.
    assert all(d.run.commit_sha == d.payload["commit"] for d in rows)


def test_a_delivery_another_worker_holds_is_skipped_not_waited_for(deliver):
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's (SQLite serialises writers instead)")
    held, *others = _pending_deliveries(deliver, 3)
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        from django.db import connection

        try:
            with transaction.atomic():
                WebhookDelivery.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(timeout=30)
        assert delivery_start_runs() == 2  # at once, without the held row
    finally:
        release.set()
        thread.join()
    assert WebhookDelivery.objects.get(pk=held.pk).awaiting_run
    assert all(WebhookDelivery.objects.get(pk=d.pk).run for d in others)
    assert delivery_start_runs() == 1  # released: now it is taken
    assert PipelineRun.objects.count() == 3

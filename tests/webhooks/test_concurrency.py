"""Copies of one delivery arriving at the same moment, over real HTTP against a threaded server
and a real (committing) database: the unique constraint, not luck, keeps it to one run."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from apps.pipelines.models import PipelineRun
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery
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


@pytest.mark.parametrize("precheck", [True, False], ids=["as-is", "without-the-precheck"])
def test_ten_concurrent_copies_of_a_delivery_make_one_run(
    live_server, hook_project, monkeypatch, precheck
):
    if not precheck:
        # As if every copy passed the cheap "seen before?" query at the same instant: only the
        # database constraint stands between them and ten runs.
        monkeypatch.setattr("apps.webhooks.services._accepted_before", lambda fields: False)
    body = payload_bytes("github", "push__branch")
    headers = sign("github", SECRET, body, delivery_id="one-guid-sent-ten-times")
    url = live_server.url + hook_url("github", hook_project.slug)

    answers = _post_all_at_once(url, [(body, headers)] * COPIES)

    assert [a.status_code for a in answers] == [202] * COPIES
    started = [a.json() for a in answers if "run" in a.json()]
    assert len(started) == 1
    assert [a.json() for a in answers].count({"detail": "already received"}) == COPIES - 1
    assert PipelineRun.objects.count() == 1
    statuses = list(WebhookDelivery.objects.values_list("status", flat=True))
    assert statuses.count(DeliveryStatus.ACCEPTED) == 1
    assert statuses.count(DeliveryStatus.DUPLICATE) == COPIES - 1


def test_ten_concurrent_distinct_pushes_make_ten_numbered_runs(live_server, hook_project):
    url = live_server.url + hook_url("generic", hook_project.slug)
    items = []
    for i in range(COPIES):
        body = json.dumps({"ref": "refs/heads/main", "commit": f"{i + 1:040x}"}).encode()
        items.append((body, sign("generic", SECRET, body, delivery_id=f"push-{i}")))

    answers = _post_all_at_once(url, items)

    assert [a.status_code for a in answers] == [202] * COPIES
    numbers = sorted(PipelineRun.objects.values_list("number", flat=True))
    assert numbers == list(range(1, COPIES + 1))


def test_concurrent_forgeries_make_nothing(live_server, hook_project):
    body = payload_bytes("github", "push__branch")
    url = live_server.url + hook_url("github", hook_project.slug)
    items = [(body, sign("github", f"guess-{i}", body)) for i in range(COPIES)]

    answers = _post_all_at_once(url, items)

    assert {(a.status_code, a.content) for a in answers} == {(403, b'{"detail": "Forbidden."}')}
    assert not PipelineRun.objects.exists()
    assert not WebhookDelivery.objects.filter(payload__isnull=False).exists()

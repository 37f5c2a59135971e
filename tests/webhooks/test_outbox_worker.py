"""The whole path with a real Celery worker process: a push is answered at once, the wake-up
message reaches the worker, the worker starts the run; and when that message is lost, the
beat's ``webhooks.start_runs`` does."""

import json
import time

import pytest

from apps.webhooks.models import WebhookDelivery
from tests.pipelines.worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _push(i: int) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "commit": f"{i:040x}"}).encode()


@pytest.fixture
def start_worker():
    """A worker on a queue emptied first: messages left by earlier tests (a wake-up sent by a
    test that had no worker) must not do what the test expects of the wake-up or the beat."""
    from controlplane.celery import app

    started = []

    def start(**kwargs):
        app.control.purge()
        started.append(WorkerProcess(**kwargs).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def test_the_woken_worker_starts_the_run(deliver, start_worker):
    start_worker()
    sent = time.monotonic()
    response = deliver("generic", _push(1), start_runs=False)
    assert response.status_code == 202, response.content
    pk = response.json()["delivery"]
    run = wait_for(lambda: WebhookDelivery.objects.get(pk=pk).run, 30, interval=0.01)
    took = time.monotonic() - sent
    assert run.number == 1 and run.commit_sha == f"{1:040x}"
    assert took < 10, took  # milliseconds when idle; generous for a loaded CI machine


def test_when_the_wake_up_is_lost_the_beat_starts_the_run(deliver, start_worker, monkeypatch):
    monkeypatch.setattr("apps.webhooks.outbox._send_start_runs", lambda countdown: None)
    response = deliver("generic", _push(2), start_runs=False)
    pk = response.json()["delivery"]
    assert WebhookDelivery.objects.get(pk=pk).awaiting_run
    start_worker(beat=True, extra_env={"CONTROLPLANE_SWEEPER_INTERVAL": "1"})
    run = wait_for(lambda: WebhookDelivery.objects.get(pk=pk).run, 60)
    assert run.commit_sha == f"{2:040x}"

"""Accept fast, start the run in a worker: the delivery row is the outbox. What the worker
(``delivery_start_runs``) does with it, how a web process wakes it, and the beat's safety net."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.core.exceptions import ConflictError
from apps.core.models import AuditEvent
from apps.pipelines.models import PipelineRun
from apps.webhooks import outbox, services
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.outbox import INTERNAL_ERROR, WAKE_WINDOW, Debounce, delivery_start_runs
from apps.webhooks.tasks import start_runs_task
from apps.webhooks.testing import sign

from .conftest import payload_bytes

pytestmark = pytest.mark.django_db


def _push(i: int) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "commit": f"{i:040x}"}).encode()


def _accept(deliver, *numbers: int) -> list[WebhookDelivery]:
    for i in numbers:
        assert deliver("generic", _push(i), start_runs=False).json()["detail"] == "accepted"
    return list(WebhookDelivery.objects.filter(awaiting_run=True).order_by("id"))


# --- the request ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around it
def test_accepting_a_push_is_one_insert(client, hook_project, sends):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from .conftest import SECRET, hook_url

    def post(body):
        headers = sign("generic", SECRET, body)
        url = hook_url("generic", hook_project.slug)
        return client.post(url, body, "application/json", headers=headers)

    post(_push(1))  # the first also looks up the name of the id sequence, once per process
    with CaptureQueriesContext(connection) as queries:
        response = post(_push(2))
    assert response.json()["detail"] == "accepted"
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        # The project, the row's id from its sequence, the row: no transaction, no savepoint.
        assert statements == ["SELECT", "SELECT", "INSERT"]
    else:
        assert statements.count("INSERT") == 1 and "SAVEPOINT" not in statements
    assert not PipelineRun.objects.exists()  # the run is the worker's
    assert len(sends) == 2  # and the worker was woken (a leading, then a trailing message)


# --- the worker -------------------------------------------------------------------------------


def test_a_delivery_whose_run_cannot_start_is_marked_error_and_the_others_get_runs(
    deliver, monkeypatch
):
    real = outbox.run_request
    refused, broken = f"{2:040x}", f"{4:040x}"

    def run_request(**kwargs):
        if kwargs["commit"].sha == refused:
            raise ConflictError("The project is archived.")
        if kwargs["commit"].sha == broken:
            raise RuntimeError("database on fire")
        return real(**kwargs)

    monkeypatch.setattr("apps.webhooks.outbox.run_request", run_request)
    first, second, third, fourth, fifth = _accept(deliver, 1, 2, 3, 4, 5)

    assert delivery_start_runs() == 5

    rows = {d.pk: d for d in WebhookDelivery.objects.select_related("run")}
    for ok in (first, third, fifth):
        row = rows[ok.pk]
        assert (row.status, row.awaiting_run) == (DeliveryStatus.ACCEPTED, False)
        assert row.run.commit_sha == row.payload["commit"]
        assert row.detail == f"Run #{row.run.number} started."
    assert [rows[d.pk].run.number for d in (first, third, fifth)] == [1, 2, 3]
    for failed, detail in ((second, "The project is archived."), (fourth, INTERNAL_ERROR)):
        row = rows[failed.pk]
        assert (row.status, row.detail, row.run, row.awaiting_run) == (
            DeliveryStatus.ERROR,
            detail,
            None,
            False,
        )
        # What the Git server was told stays recorded; the payload is kept for a redelivery.
        assert row.http_status == 202 and row.response_body["detail"] == "accepted"
        assert row.can_redeliver
    assert PipelineRun.objects.count() == 3
    assert delivery_start_runs() == 0


def test_an_errored_delivery_id_may_be_sent_again(deliver, monkeypatch):
    """As before: only accepted rows block their id, so the Git server's retry of a delivery
    whose run could not be started is accepted once the cause is fixed."""
    body = payload_bytes("github", "push__branch")

    def refuse(**kwargs):
        raise ConflictError("Not now.")

    monkeypatch.setattr("apps.webhooks.outbox.run_request", refuse)
    deliver("github", body, delivery_id="retry-me")
    assert WebhookDelivery.objects.get().status == DeliveryStatus.ERROR
    monkeypatch.undo()
    assert deliver("github", body, delivery_id="retry-me").json()["detail"] == "accepted"
    assert PipelineRun.objects.count() == 1


def test_batches_take_every_waiting_delivery(deliver):
    _accept(deliver, *range(1, 8))
    assert delivery_start_runs(limit=3) == 7
    assert sorted(PipelineRun.objects.values_list("number", flat=True)) == list(range(1, 8))


def test_a_deleted_run_is_not_started_again(deliver):
    deliver("generic", _push(1))
    PipelineRun.objects.get().delete()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.run, delivery.awaiting_run) == ("accepted", None, False)
    assert delivery_start_runs() == 0
    assert not PipelineRun.objects.exists()


def test_prune_keeps_the_payload_of_a_delivery_still_waiting(deliver):
    waiting, started = _accept(deliver, 1, 2)
    WebhookDelivery.objects.filter(pk=started.pk).update(awaiting_run=False)
    old = timezone.now() - settings.WEBHOOK_DELIVERY_RETENTION - timedelta(days=1)
    WebhookDelivery.objects.update(received_at=old)
    services.delivery_prune()
    assert WebhookDelivery.objects.get(pk=waiting.pk).payload is not None
    assert WebhookDelivery.objects.get(pk=started.pk).payload is None
    assert delivery_start_runs() == 1


def test_the_api_tells_a_run_still_to_come_from_no_run(api, member, deliver):
    response = deliver("generic", _push(1), start_runs=False)
    url = reverse("webhook-delivery-detail", args=[response.json()["delivery"]])
    client = api(member("viewer"))
    body = client.get(url).json()
    assert (body["run"], body["awaiting_run"]) == (None, True)
    assert body["response_body"] == response.json()
    delivery_start_runs()
    body = client.get(url).json()
    assert (body["run"]["number"], body["awaiting_run"]) == (1, False)
    assert body["detail"] == "Run #1 started."


def test_the_task_is_named_and_queued_as_documented():
    assert start_runs_task.name == "webhooks.start_runs"
    assert start_runs_task.queue == "default"
    assert start_runs_task.acks_late and start_runs_task.ignore_result


def test_the_task_starts_the_runs(deliver):
    _accept(deliver, 1, 2)
    start_runs_task.apply()
    assert PipelineRun.objects.count() == 2


def test_the_beat_runs_the_outbox_sweeper():
    entry = settings.CELERY_BEAT_SCHEDULE["webhooks.start_runs"]
    assert entry == {
        "task": "webhooks.start_runs",
        "schedule": timedelta(seconds=settings.SWEEPER_INTERVAL),
        "options": {"expires": settings.SWEEPER_INTERVAL},
    }


# --- redelivery stays synchronous ---------------------------------------------------------------


def test_a_redelivery_whose_run_cannot_start_answers_409(api, admin_user, deliver, monkeypatch):
    deliver("github", payload_bytes("github", "push__branch"), delivery_id="gh-1")
    original = WebhookDelivery.objects.get()

    def refuse(**kwargs):
        raise ConflictError("The project is archived.")

    monkeypatch.setattr("apps.webhooks.outbox.run_request", refuse)
    response = api(admin_user).post(reverse("webhook-delivery-redeliver", args=[original.pk]))
    body = response.json()
    assert (body["status"], body["http_status"]) == ("error", 409)
    assert body["response_body"] == {"detail": "The project is archived."}
    assert body["run"] is None
    assert not WebhookDelivery.objects.filter(awaiting_run=True).exists()


# --- waking a worker --------------------------------------------------------------------------


@pytest.fixture
def sends(monkeypatch):
    """The wake-up messages a web process would send: (when, countdown)."""
    sent: list[tuple[float, float | None]] = []
    monkeypatch.setattr(
        "apps.webhooks.outbox._send_start_runs",
        lambda countdown: sent.append((time.monotonic(), countdown)),
    )
    outbox._wake.reset()
    outbox._broker_away.reset()
    yield sent
    outbox._wake.reset()


class FakeClock:
    """A monotonic clock that moves only when told (thread-safe: read under the debounce's
    lock, advanced by each read when ``step`` is set)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


def test_an_accepted_push_wakes_a_worker_after_commit(
    deliver, sends, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deliver("generic", _push(1), start_runs=False)
        assert sends == []  # not before the commit
    assert [countdown for _, countdown in sends] == [None]


def test_other_answers_wake_nobody(deliver, sends, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deliver("github", payload_bytes("github", "ping__default"), event="ping")
        deliver("github", payload_bytes("github", "push__branch"), secret="forged")
        deliver("generic", _push(1), delivery_id="dup", start_runs=False)
        deliver("generic", _push(1), delivery_id="dup", start_runs=False)  # duplicate
    assert len(sends) == 1


def test_a_burst_sends_one_leading_and_one_trailing_message():
    clock = FakeClock()
    wake = Debounce(WAKE_WINDOW, clock=clock)
    decisions = [wake.next() for _ in range(1000)]  # all at the same instant
    assert [countdown for send, countdown in decisions if send] == [
        None,
        pytest.approx(WAKE_WINDOW),
    ]
    clock.now += WAKE_WINDOW * 0.99
    assert wake.next() == (False, None)  # still the same window: its trailing message is due
    clock.now += WAKE_WINDOW * 0.02
    assert wake.next() == (True, None)  # a new window: at once again
    assert wake.next() == (True, pytest.approx(WAKE_WINDOW))


def test_the_trailing_message_is_due_when_the_window_ends_not_a_window_later():
    """A push 30 ms after a lone one waits only for what is left of the window."""
    clock = FakeClock()
    wake = Debounce(WAKE_WINDOW, clock=clock)
    assert wake.next() == (True, None)
    clock.now += WAKE_WINDOW * 0.6
    send, countdown = wake.next()
    assert send and countdown == pytest.approx(WAKE_WINDOW * 0.4)


def test_the_wake_up_uses_the_process_debounce(sends, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(outbox._wake, "clock", clock)
    for _ in range(100):
        outbox.wake_run_starter()
    assert [countdown for _, countdown in sends] == [None, pytest.approx(WAKE_WINDOW)]
    clock.now += WAKE_WINDOW * 1.01  # the next window
    outbox.wake_run_starter()
    assert sends[-1][1] is None


def test_rapid_calls_from_many_threads_stay_within_the_window():
    """Leading events exactly a window apart, one trailing event per window, whatever the
    interleaving: 4 threads × 500 calls, each call 1 ms later on the injected clock."""
    clock = FakeClock(step=0.001)
    wake = Debounce(WAKE_WINDOW, clock=clock)
    barrier = threading.Barrier(4)
    decisions: list[tuple[bool, float | None]] = []

    def hammer():
        barrier.wait(timeout=10)
        for _ in range(500):
            decisions.append(wake.next())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decisions) == 2000  # 2 simulated seconds
    leading = [d for d in decisions if d == (True, None)]
    trailing = [d for d in decisions if d[0] and d[1] is not None]
    assert all(0 < countdown <= WAKE_WINDOW for _, countdown in trailing)
    windows = round(2.0 / WAKE_WINDOW)
    assert len(leading) == windows
    assert len(trailing) == windows
    assert sum(1 for send, _ in decisions if send) == 2 * windows  # not one per call


def test_a_failed_publish_is_logged_and_ignored(monkeypatch, caplog):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(start_runs_task, "apply_async", down)
    outbox._wake.reset()
    outbox.wake_run_starter()  # does not raise
    outbox._wake.reset()
    outbox._broker_away.reset()
    assert "Could not wake a worker" in caplog.text


def test_after_a_failed_publish_no_push_waits_on_the_broker_for_a_while(monkeypatch):
    """A broker that is down costs one push its wait, not every push: for
    WAKE_PAUSE_AFTER_FAILURE seconds nothing is sent (the beat starts those runs)."""
    clock, tries = FakeClock(), []

    def down(*args, **kwargs):
        tries.append(clock.now)
        raise ConnectionError("broker down")

    monkeypatch.setattr(start_runs_task, "apply_async", down)
    monkeypatch.setattr(outbox._wake, "clock", clock)
    monkeypatch.setattr(outbox._broker_away, "clock", clock)
    outbox._wake.reset()
    outbox._broker_away.reset()
    try:
        for _ in range(round(outbox.WAKE_PAUSE_AFTER_FAILURE / WAKE_WINDOW) - 1):
            outbox.wake_run_starter()
            clock.now += WAKE_WINDOW * 1.01  # each a new window: each would send
        assert len(tries) == 1
        clock.now = tries[0] + outbox.WAKE_PAUSE_AFTER_FAILURE
        outbox.wake_run_starter()  # the pause is over: it tries again
        assert len(tries) == 2
    finally:
        outbox._wake.reset()
        outbox._broker_away.reset()


def test_the_move_to_error_goes_through_the_transition_table_and_is_audited(deliver, monkeypatch):
    def refuse(**kwargs):
        raise ConflictError("The project is archived.")

    monkeypatch.setattr("apps.webhooks.outbox.run_request", refuse)
    deliver("generic", _push(1))
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.ERROR
    event = AuditEvent.objects.get(action="webhookdelivery.error")
    assert (event.from_state, event.to_state) == ("accepted", "error")
    assert event.actor_label == "webhook:generic"
    assert event.reason == "The project is archived."
    assert event.project_id == delivery.project_id


def test_a_final_delivery_cannot_be_moved(deliver):
    from apps.core.exceptions import IllegalTransition
    from apps.core.services import state_transition
    from apps.webhooks.choices import DELIVERY_TRANSITIONS

    deliver("github", payload_bytes("github", "ping__default"), event="ping")
    ping = WebhookDelivery.objects.get()
    with pytest.raises(IllegalTransition):
        state_transition(
            instance=ping, to=DeliveryStatus.ERROR, table=DELIVERY_TRANSITIONS, actor="t"
        )
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PING

"""The outbox: starting the runs of accepted pushes in a worker, and waking that worker.

The receiver answers as soon as the accepted delivery row is in (``awaiting_run``); a debounced
``webhooks.start_runs`` message (:func:`wake_run_starter`) wakes a worker that starts the runs
(:func:`delivery_start_runs`), and the beat runs the same task every ``SWEEPER_INTERVAL`` as a
safety net in case a message was lost.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import OperationalError, transaction

from apps.core.exceptions import ServiceError
from apps.core.services import StateMachine
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.pipelines.services import run_prepare, run_request

from .choices import DELIVERY_TRANSITIONS, DeliveryStatus, RefType
from .commit_status import commit_status_enqueue
from .models import WebhookDelivery
from .providers import PayloadError, get_provider

#: The ledger's one move, accepted → error (the run could not be started), audited.
delivery_transition: StateMachine[WebhookDelivery] = StateMachine(
    "delivery", DELIVERY_TRANSITIONS, {}, lambda delivery: delivery.project_id
)

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Internal error; the delivery is recorded and can be redelivered."
#: A worker is woken at most once per this many seconds per web process, plus one trailing
#: message per window, due when the window ends, so a delivery that arrives inside the window
#: is not left waiting. A lone push wakes it at once; under a burst a run starts at most this
#: much later, and the web process saves a broker publish (~0.5 ms of CPU) per push.
WAKE_WINDOW = 0.05
#: A batch of at most this many pushes is prepared by the worker that started its runs.
INLINE_PREPARE_MAX = 4
#: After a wake-up could not be sent (the broker is down or unreachable), a web process sends
#: none for this long: each attempt costs the push's answer ~0.6 s with Redis refusing
#: connections (measured), seconds when it does not answer, which under a burst would hold
#: every receiver. The deliveries are recorded all the same; beat's ``webhooks.start_runs``
#: starts their runs once the broker is back (docs/reliability.md, "Broker down").
WAKE_PAUSE_AFTER_FAILURE = 5.0


# --- starting the runs of accepted pushes (a worker) --------------------------------------------


def delivery_start_runs(*, limit: int = 200) -> int:
    """Start the run of every accepted push still waiting for it (the task
    ``webhooks.start_runs``: woken by the receivers, and every ``SWEEPER_INTERVAL`` by the beat
    in case a wake-up message was lost). Returns how many deliveries it took care of.

    Batches of ``limit`` rows, locked with SKIP LOCKED, so several workers share the work and
    each delivery gets exactly one run: a row another worker holds is skipped, and one it has
    finished no longer matches (``awaiting_run`` is re-checked under the lock). A delivery whose
    run cannot be started is marked ``error`` (redeliver it once fixed); the others go on.
    """
    handled = 0
    while True:
        with transaction.atomic():
            batch = list(
                WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("project")
                .filter(
                    awaiting_run=True,
                    status=DeliveryStatus.ACCEPTED,
                    run__isnull=True,
                    payload__isnull=False,
                )
                .order_by("id")[:limit]
            )
            # TRICKY: numbering a run locks its project's row until this transaction ends. Taking
            # the projects in one order (by id) means two workers never wait for each other in
            # a cycle (a deadlock); within a project, deliveries keep their arrival order.
            # A few pushes (the usual case) are prepared right here, after commit, one broker
            # hop sooner; a burst goes to the workers (prepare_run) to be prepared in parallel.
            inline = len(batch) <= INLINE_PREPARE_MAX
            for delivery in sorted(batch, key=lambda d: (d.project_id, d.pk)):
                run = start_run(
                    delivery, actor=f"webhook:{delivery.provider}", send_prepare=not inline
                )
                if run is not None and inline:
                    # After commit, after what start_run queued (its commit status).
                    transaction.on_commit(lambda run_id=run.pk: _prepare(run_id))
        handled += len(batch)
        if len(batch) < limit:
            return handled


def _prepare(run_id: int) -> None:
    try:
        run_prepare(run_id=run_id)
    except Exception:
        # The run stays queued without jobs: the sweeper sends it to a worker to try again.
        logger.exception("Preparing run %s failed; the sweeper will send it to a worker", run_id)


def start_run(
    delivery: WebhookDelivery, *, actor: Any, answered: bool = True, send_prepare: bool = True
) -> PipelineRun | None:
    """Start the run of one accepted delivery and record it on the row, or move the row to
    ``error`` (:func:`state_transition`, audited). The caller holds the row (locked, or inserted
    in its still open transaction). ``answered``: the Git server was already told 202, so the
    answer recorded stays as it is; a redelivery (not answered yet) records the error as its
    answer, as the receiver would."""
    try:
        with transaction.atomic():
            push = get_provider(delivery.provider).parse_push(delivery.payload)
            run = run_request(
                project=delivery.project,
                actor=actor,
                commit=push.commit,
                trigger=Trigger.TAG if push.ref_type == RefType.TAG else Trigger.PUSH,
                send_prepare=send_prepare,
            )
            delivery.run = run
            delivery.detail = f"Run #{run.number} started."
            delivery.awaiting_run = False
            delivery.save(update_fields=["run", "detail", "awaiting_run"])
            commit_status_enqueue(run=run)
            return run
    except OperationalError:
        raise  # the database (a lost connection, a deadlock): try the whole batch again later
    except (ServiceError, PayloadError) as exc:
        message, code = str(getattr(exc, "message", exc)), 409
    except Exception:
        logger.exception(
            "Starting the run of webhook delivery %s (%s) failed", delivery.pk, delivery.delivery_id
        )
        message, code = INTERNAL_ERROR, 500
    update: dict[str, Any] = {"detail": message[:500], "awaiting_run": False}
    if not answered:
        update |= {"http_status": code, "response_body": {"detail": message}}
    delivery_transition(
        delivery=delivery, to=DeliveryStatus.ERROR, actor=actor, reason=message[:500], update=update
    )
    return None


# --- waking a worker (a web process) ------------------------------------------------------------


class Debounce:
    """At most one leading and one trailing event per ``window`` seconds, whatever the call
    rate. ``clock`` (``time.monotonic``) is injectable so the window can be tested without
    sleeping. Thread-safe; one per process (see ``os.register_at_fork`` below)."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.last = float("-inf")  # clock() of the last leading event
        self.trailing = False  # a trailing event was sent in the current window

    def next(self) -> tuple[bool, float | None]:
        """(send, countdown): at once (countdown None) when the last leading event is a window
        old; else one trailing event per window, due when the window ends (the countdown is
        what is left of it); else nothing."""
        with self.lock:
            now = self.clock()
            if now - self.last >= self.window:
                self.last, self.trailing = now, False
                return True, None
            if not self.trailing:
                self.trailing = True
                return True, self.last + self.window - now
            return False, None


class Pause:
    """ "Not now" for ``seconds`` after :meth:`start`; ``clock`` injectable like Debounce's."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.until = float("-inf")

    def start(self) -> None:
        self.until = self.clock() + self.seconds

    @property
    def active(self) -> bool:
        return self.clock() < self.until


_wake = Debounce(WAKE_WINDOW)
_broker_away = Pause(WAKE_PAUSE_AFTER_FAILURE)
# A forked child (gunicorn) starts with a fresh lock, window and pause.
os.register_at_fork(after_in_child=_wake.reset)
os.register_at_fork(after_in_child=_broker_away.reset)


def wake_run_starter() -> None:
    """Send ``webhooks.start_runs`` to a worker, at most once per ``WAKE_WINDOW`` per process
    (leading edge), plus one trailing message per window, due when the window ends — after
    every delivery that arrived inside the window, so none waits for the beat. Called after the
    delivery's commit; never raises."""
    if _broker_away.active:
        return  # a recent wake-up failed: the beat starts these runs (WAKE_PAUSE_AFTER_FAILURE)
    send, countdown = _wake.next()
    if send:
        _send_start_runs(countdown)


def _send_start_runs(countdown: float | None) -> None:
    from .tasks import start_runs_task

    try:
        start_runs_task.apply_async(countdown=countdown)
    except Exception as exc:
        # The row is the outbox: the beat's webhooks.start_runs picks the delivery up.
        _broker_away.start()
        logger.warning(
            "Could not wake a worker to start webhook runs (%s); the beat will, and this "
            "process sends no wake-up for %.0fs",
            exc,
            WAKE_PAUSE_AFTER_FAILURE,
        )

"""Thin Celery tasks: take ids, call a service."""

from celery import shared_task

from apps.core.transient import RETRY_TRANSIENT
from controlplane.celery import CeleryQueue

from . import interactions, services


@shared_task(
    name="notifications.dispatch",
    queue=CeleryQueue.DEFAULT.value,
    ignore_result=True,
    acks_late=True,
    soft_time_limit=60,
    time_limit=90,
)
def dispatch_task(
    event: str,
    source: str,
    source_id: int,
    event_id: str,
    extra: dict | None = None,
    target_id: int | None = None,
) -> int:
    """One delivery row per target that wants the event (idempotent per ``event_id``)."""
    return len(
        services.dispatch_source(
            event=event,
            source=source,
            source_id=source_id,
            event_id=event_id,
            extra=extra,
            target_id=target_id,
        )
    )


# Only what may pass (TransientError) is retried; the service records everything else as final.
@shared_task(
    **RETRY_TRANSIENT, bind=True, name="notifications.deliver", queue=CeleryQueue.DEFAULT.value
)
def deliver_task(self, delivery_id: int) -> None:
    services.delivery_send(
        delivery_id=delivery_id, final_attempt=self.request.retries >= self.max_retries
    )


@shared_task(
    name="notifications.slack_interaction",
    queue=CeleryQueue.DEFAULT.value,
    ignore_result=True,
    acks_late=True,
    soft_time_limit=30,
    time_limit=60,
)
def slack_interaction_task(payload: dict) -> None:
    """An Approve click or a submitted reject modal (the view verified Slack's signature
    before enqueuing)."""
    interactions.slack_interaction_handle(payload=payload)


@shared_task(
    name="notifications.sweep_deliveries", queue=CeleryQueue.DEFAULT.value, ignore_result=True
)
def sweep_deliveries_task() -> int:
    """Safety net for deliveries whose message was lost (give it a beat entry)."""
    return services.delivery_sweep()

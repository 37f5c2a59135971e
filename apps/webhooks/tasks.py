"""Thin Celery tasks: take an id, call a service."""

from celery import shared_task

from apps.core.transient import RETRY_TRANSIENT
from controlplane.celery import CeleryQueue

from . import commit_status, outbox, services


# Only TransientError is retried: a 4xx is final and is recorded without raising.
@shared_task(
    **RETRY_TRANSIENT, name="webhooks.report_commit_status", queue=CeleryQueue.DEFAULT.value
)
def report_commit_status_task(run_id: int) -> None:
    commit_status.commit_status_report(run_id=run_id)


@shared_task(name="webhooks.prune_deliveries", queue=CeleryQueue.DEFAULT.value, ignore_result=True)
def prune_deliveries_task() -> int:
    return services.delivery_prune()


@shared_task(
    name="webhooks.start_runs",
    queue=CeleryQueue.DEFAULT.value,
    ignore_result=True,
    acks_late=True,
)
def start_runs_task() -> int:
    """Start the runs of accepted pushes (woken by the receivers; the beat's safety net)."""
    return outbox.delivery_start_runs()

"""Thin Celery tasks: take an id, call a service."""

import requests
from celery import shared_task

from controlplane.celery import CeleryQueue

from . import services
from .commit_status import TransientStatusError


@shared_task(
    name="webhooks.report_commit_status",
    queue=CeleryQueue.DEFAULT.value,
    ignore_result=True,
    acks_late=True,
    # Only what may pass: a 4xx is final and the service records it without raising.
    autoretry_for=(TransientStatusError, requests.ConnectionError, requests.Timeout),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=60,
    time_limit=90,
)
def report_commit_status_task(run_id: int) -> None:
    services.commit_status_report(run_id=run_id)


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
    return services.delivery_start_runs()

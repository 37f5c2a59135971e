"""Counters and histograms moved by the other apps' signals (connected in ``apps.py``).

Every receiver runs after the change committed (the apps send their signals from
``transaction.on_commit``; the webhook ledger's ``post_save`` is deferred the same way here),
in whichever process made the change: web for most deliveries and promotions, the worker for
runs, jobs and deployments. That is why ``PROMETHEUS_MULTIPROC_DIR`` must be shared by both
on one host (or the worker exports its own; docs/monitoring-prometheus.md)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.pipelines.choices import RUN_TERMINAL
from apps.pipelines.signals import job_finished, run_status_changed
from apps.releases.choices import DEPLOYMENT_TERMINAL
from apps.releases.signals import deployment_status_changed, promotion_status_changed
from apps.webhooks.choices import DeliveryStatus
from apps.webhooks.models import WebhookDelivery

from . import metrics

logger = logging.getLogger(__name__)


def _seconds(start, end) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


@receiver(run_status_changed, dispatch_uid="monitoring.metrics.run")
def _run_changed(sender, run, from_status, to_status, **_kwargs) -> None:
    if to_status not in RUN_TERMINAL:
        return
    project = run.project.slug
    metrics.RUNS_FINISHED.labels(project, to_status).inc()
    seconds = _seconds(run.started_at, run.finished_at)
    if seconds is not None:
        metrics.PIPELINE_DURATION.labels(to_status).observe(seconds)


@receiver(job_finished, dispatch_uid="monitoring.metrics.job")
def _job_finished(sender, job, **_kwargs) -> None:
    metrics.JOBS_FINISHED.labels(job.kind, job.status).inc()
    seconds = _seconds(job.started_at, job.finished_at)
    if seconds is not None:
        metrics.JOB_DURATION.labels(job.kind, job.status).observe(seconds)


@receiver(deployment_status_changed, dispatch_uid="monitoring.metrics.deployment")
def _deployment_changed(sender, deployment, from_status, to_status, **_kwargs) -> None:
    if to_status not in DEPLOYMENT_TERMINAL:
        return
    env = deployment.environment
    metrics.DEPLOYMENTS.labels(env.project.slug, env.name, to_status).inc()
    seconds = _seconds(deployment.started_at, deployment.finished_at)
    if seconds is not None:
        metrics.DEPLOYMENT_DURATION.labels(env.name, to_status).observe(seconds)


@receiver(promotion_status_changed, dispatch_uid="monitoring.metrics.promotion")
def _promotion_changed(sender, promotion, from_status, to_status, **_kwargs) -> None:
    env = promotion.environment
    metrics.PROMOTIONS.labels(env.project.slug, env.name, to_status).inc()


@receiver(post_save, sender=WebhookDelivery, dispatch_uid="monitoring.metrics.webhook")
def _delivery_saved(sender, instance, created, update_fields=None, **_kwargs) -> None:
    # A row is written once with its result; its one later move is accepted → error.
    if created or (
        instance.status == DeliveryStatus.ERROR and update_fields and "status" in update_fields
    ):
        provider, status = instance.provider, instance.status
        transaction.on_commit(lambda: metrics.WEBHOOK_DELIVERIES.labels(provider, status).inc())


# --- Celery worker --------------------------------------------------------------------------

_started: dict[str, float] = {}
_STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


@task_prerun.connect(dispatch_uid="monitoring.metrics.task_prerun")
def _task_prerun(task_id=None, task=None, **_kwargs) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect(dispatch_uid="monitoring.metrics.task_postrun")
def _task_postrun(task_id=None, task=None, state=None, **_kwargs) -> None:
    started = _started.pop(task_id, None) if task_id else None
    if task is None or getattr(task.request, "is_eager", False):
        return  # run in the caller's process (tests, eager mode): not a worker's task
    name = task.name or "unknown"
    metrics.WORKER_TASKS.labels(name, _STATES.get(state or "", (state or "unknown").lower())).inc()
    if started is not None:
        metrics.WORKER_TASK_DURATION.labels(name).observe(time.perf_counter() - started)


@worker_init.connect(dispatch_uid="monitoring.metrics.worker_init")
def _worker_exporter(**_kwargs: Any) -> None:
    """A worker on another host has no web process next to it to export its counters: with
    CONTROLPLANE_WORKER_METRICS_PORT set it serves them itself (all of its processes' files
    when PROMETHEUS_MULTIPROC_DIR is set)."""
    from django.conf import settings

    port = getattr(settings, "WORKER_METRICS_PORT", None)
    if not port:
        return
    from prometheus_client import start_http_server

    start_http_server(
        port,
        addr=settings.WORKER_METRICS_ADDR,
        registry=metrics.scrape_registry(database=False),
    )
    logger.info("Worker metrics on http://%s:%s/metrics", settings.WORKER_METRICS_ADDR, port)


@worker_process_shutdown.connect(dispatch_uid="monitoring.metrics.worker_process_shutdown")
def _worker_process_dead(pid=None, **_kwargs: Any) -> None:
    if metrics.multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())

"""Thin Celery tasks: take an id, call a service. The DB row decides what happens."""

import logging
import time
from collections.abc import Callable

from celery import shared_task
from django.conf import settings

from . import schedules, services, sweeper
from .executor import execute_job, worker_name
from .models import Job
from .routing import job_queue

logger = logging.getLogger(__name__)


@shared_task(
    name="pipelines.run_job", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def run_job_task(job_id: int) -> None:
    job = services.job_claim(job_id=job_id, worker=worker_name())
    if job is None:
        return  # already taken, finished or canceled: a duplicate message is harmless
    execute_chain(job, next_job_taker(run_job_task.app))


def execute_chain(job: Job, take: Callable[[Job], bool] | None) -> None:
    """Execute ``job``, then each job of its run that a finish handed to this worker."""
    later: list[Callable[[], None]] = []
    try:
        while job is not None:
            job = execute_job(job, take=take, later=later).taken
    finally:
        for step in later:  # off the way from one job to the next (the step-cache keys)
            try:
                step()
            except Exception:
                logger.exception("Bookkeeping after a job failed")


def next_job_taker(app) -> Callable[[Job], bool] | None:
    """Which job made ready by a finished one this worker runs next itself, claimed in the
    finishing transaction (no broker hop): one whose queue it consumes, and whose timeout
    still fits in this task's time limit (the chain runs in one task). None: it takes none
    (``CONTROLPLANE_JOBS_TAKE_NEXT`` off), every ready job goes to the broker."""
    if not settings.JOBS_TAKE_NEXT:
        return None
    queues = set(app.amqp.queues.consume_from or ())
    limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    started = time.monotonic()

    def take(job: Job) -> bool:
        fits = time.monotonic() - started + job.timeout_seconds < limit
        return fits and job_queue(job) in queues

    return take


@shared_task(name="pipelines.sweep_unclaimed_jobs", ignore_result=True)
def sweep_unclaimed_jobs_task() -> int:
    return sweeper.job_sweep_unclaimed()


@shared_task(name="pipelines.reap_lost_jobs", ignore_result=True)
def reap_lost_jobs_task() -> int:
    return sweeper.job_reap_lost()


@shared_task(name="pipelines.prepare_run", ignore_result=True, acks_late=True)
def prepare_run_task(run_id: int) -> None:
    """Prepare the run; a first job this worker may run (it consumes its queue) is claimed
    for it as the run starts, and run here (no broker hop to the first command)."""
    take = next_job_taker(prepare_run_task.app)
    run = services.run_prepare(run_id=run_id, take=take, worker=worker_name())
    first = getattr(run, "taken", None)
    if first is not None:
        execute_chain(first, take)


@shared_task(name="pipelines.fire_schedule", ignore_result=True, acks_late=True)
def fire_schedule_task(schedule_id: int) -> None:
    """Sent by beat at a schedule's fire time (its PeriodicTask); see schedules.py."""
    schedules.schedule_fire(schedule_id=schedule_id)


@shared_task(name="pipelines.sweep_schedules", ignore_result=True)
def sweep_schedules_task() -> int:
    return schedules.schedules_sweep()

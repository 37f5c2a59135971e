"""Thin Celery tasks: take an id, call a service. The DB row decides what happens."""

from celery import shared_task

from . import schedules, services, sweeper
from .executor import execute_job, worker_name


@shared_task(
    name="pipelines.run_job", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def run_job_task(job_id: int) -> None:
    job = services.job_claim(job_id=job_id, worker=worker_name())
    if job is None:
        return  # already taken, finished or canceled: a duplicate message is harmless
    execute_job(job)


@shared_task(name="pipelines.sweep_unclaimed_jobs", ignore_result=True)
def sweep_unclaimed_jobs_task() -> int:
    return sweeper.job_sweep_unclaimed()


@shared_task(name="pipelines.reap_lost_jobs", ignore_result=True)
def reap_lost_jobs_task() -> int:
    return sweeper.job_reap_lost()


@shared_task(name="pipelines.prepare_run", ignore_result=True, acks_late=True)
def prepare_run_task(run_id: int) -> None:
    services.run_prepare(run_id=run_id)


@shared_task(name="pipelines.fire_schedule", ignore_result=True, acks_late=True)
def fire_schedule_task(schedule_id: int) -> None:
    """Sent by beat at a schedule's fire time (its PeriodicTask); see schedules.py."""
    schedules.schedule_fire(schedule_id=schedule_id)


@shared_task(name="pipelines.sweep_schedules", ignore_result=True)
def sweep_schedules_task() -> int:
    return schedules.schedules_sweep()

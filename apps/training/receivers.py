"""Reactions of the training app to the pipelines signals (thin: they call services)."""

import logging

from apps.pipelines.choices import JobKind, JobStatus
from apps.pipelines.models import Job
from apps.pipelines.signals import job_finished, job_metrics_logged, job_script_succeeded

from .evaluation import train_outcome
from .services import metric_points_record, train_job_record

logger = logging.getLogger(__name__)


def train_job_script_succeeded(sender, *, job, workspace, log, run_command, **kwargs) -> dict:
    """In the worker, after a train job's script: its model, metrics and gate (see
    :mod:`apps.training.evaluation`); a ``JobStepError`` fails the job with its message."""
    if job.kind != JobKind.TRAIN:
        return {}
    return train_outcome(job=job, workspace=workspace, log=log, run_command=run_command)


def train_job_finished(sender, *, job, **kwargs) -> None:
    # After the job's transition committed: the job is succeeded whatever happens here.
    if job.kind != JobKind.TRAIN or job.status != JobStatus.SUCCEEDED:
        return
    try:
        train_job_record(job=job)
    except Exception:
        # Nothing was written (one transaction); releases records it again (idempotent)
        # before it makes a release from the run.
        logger.exception("Could not register the model of job %s", job.pk)


def store_metric_points(sender, *, job_id: int, points: list, **kwargs) -> None:
    """The per-step points a running job logged since the last heartbeat."""
    if points:
        metric_points_record(job_id=job_id, points=points)


def connect() -> None:
    job_script_succeeded.connect(
        train_job_script_succeeded, sender=Job, dispatch_uid="training.train_outcome"
    )
    job_finished.connect(train_job_finished, sender=Job, dispatch_uid="training.register")
    job_metrics_logged.connect(store_metric_points, dispatch_uid="training.store_metric_points")

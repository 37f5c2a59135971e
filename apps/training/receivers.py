"""Reactions of the training app to the pipelines signals (thin: they call services)."""

import logging

from apps.pipelines.choices import JobKind, JobStatus

from .evaluation import train_outcome
from .services import train_job_record

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

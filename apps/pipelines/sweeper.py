"""The safety nets beat runs every ``SWEEPER_INTERVAL`` / ``REAPER_INTERVAL``: queued jobs and
runs whose message was lost are sent again, running jobs whose worker died are re-queued or
failed (see docs/architecture.md, "Execution guarantees")."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.projects.models import Project

from . import orphans
from .choices import JobStatus, RunStatus
from .models import Job, PipelineRun
from .services import (
    _lock_job,
    _send_job,
    _send_prepare,
    job_transition,
    run_advance,
    run_start_waiting,
)

logger = logging.getLogger(__name__)


def job_sweep_unclaimed(*, now: datetime | None = None) -> int:
    """Re-send queued jobs nobody claimed: the broker lost the message, or was down when the
    job was queued. Claiming is idempotent, so a duplicate message is harmless."""
    now = now or timezone.now()
    cutoff = now - settings.JOB_UNCLAIMED_AFTER
    # Its last message went out at queued_at, or at enqueued_at when the sweeper re-sent it.
    stale = list(
        Job.objects.filter(status=JobStatus.QUEUED, queued_at__lt=cutoff).filter(
            Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff)
        )
    )
    for job in stale:
        logger.warning("Re-sending unclaimed job %s (%s)", job.pk, job)
        _send_job(job, resend=True)
    # Runs whose "prepare" message was lost: queued, no jobs, no spec, not touched for a while.
    unprepared = PipelineRun.objects.filter(
        status=RunStatus.QUEUED, jobs__isnull=True, modified__lt=cutoff
    ).select_related("project")
    for run in unprepared:
        logger.warning("Re-sending unprepared run %s", run)
        _send_prepare(run)
    # Runs waiting for a free slot, in case the run that freed it could not start them.
    waiting = (
        PipelineRun.objects.filter(
            status=RunStatus.QUEUED, jobs__status=JobStatus.PENDING, modified__lt=cutoff
        )
        .values_list("project_id", flat=True)
        .distinct()
    )
    for project in Project.objects.filter(pk__in=list(waiting)):
        run_start_waiting(project=project)
    return len(stale) + len(unprepared)


def job_reap_lost(*, now: datetime | None = None) -> int:
    """Retry or fail running jobs whose heartbeat stopped: their worker died (kill -9, OOM,
    host lost). Without this they would stay "running" for ever.

    First what the lost attempt started is ended (``orphans.py``: its process group, its
    containers), so the retry never runs beside it. What cannot be reached from this worker
    (a process group on another host) holds the retry back until a worker there ends it, or
    until the job's own timeout has passed since its last heartbeat."""
    now = now or timezone.now()
    cutoff = now - settings.JOB_HEARTBEAT_TIMEOUT
    lost = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", "processes", "heartbeat_at", "timeout_seconds"
        )
    )
    reaped = 0
    for job_id, processes, heartbeat_at, timeout in lost:
        # Outside the transaction: stopping a group takes up to its grace period.
        ending = orphans.processes_end(processes) if processes else orphans.Ending()
        if not ending.settled and now - heartbeat_at < timedelta(seconds=timeout):
            logger.warning("Job %s is lost but may still run (%s)", job_id, ending.describe())
            continue
        with transaction.atomic():
            job, _ = _lock_job(job_id)
            if job is None or job.status != JobStatus.RUNNING or job.heartbeat_at >= cutoff:
                continue  # it moved on while we looked
            silent = int((now - job.heartbeat_at).total_seconds())
            # Kept when not all was ended: the next attempt's worker tries again.
            cleared = {"processes": {}} if ending.settled else {}
            lost_note = f"Worker lost ({job.worker}, silent {silent}s"
            if ending.describe():
                lost_note += f"; {ending.describe()}"
            if job.attempt < job.max_attempts:
                job_transition(
                    job=job,
                    to=JobStatus.QUEUED,
                    actor="reaper",
                    reason=f"{lost_note}); "
                    f"retrying as attempt {job.attempt + 1} of {job.max_attempts}.",
                    update={
                        "attempt": job.attempt + 1,
                        "worker": "",
                        "heartbeat_at": None,
                        **cleared,
                    },
                )
            else:
                job_transition(
                    job=job,
                    to=JobStatus.FAILED,
                    actor="reaper",
                    reason=f"{lost_note}).",
                    update={
                        "error_message": "worker lost",
                        "heartbeat_at": None,
                        **cleared,
                    },
                )
            run_advance(run=job.run, actor="reaper", locked=True)
            reaped += 1
    return reaped

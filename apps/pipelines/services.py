"""Every write to runs and jobs. Tasks and views call these; nothing else changes a status."""

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import state_transition
from apps.projects.models import Project

from .choices import (
    JOB_KIND_QUEUE,
    JOB_TERMINAL,
    JOB_TIMESTAMPS,
    JOB_TRANSITIONS,
    RUN_TERMINAL,
    RUN_TIMESTAMPS,
    RUN_TRANSITIONS,
    JobStatus,
    RunStatus,
    Trigger,
)
from .models import Job, PipelineRun

logger = logging.getLogger(__name__)


# --- transitions ----------------------------------------------------------------------------


def run_transition(
    *, run: PipelineRun, to: str, actor: Any, reason: str = "", update: Mapping | None = None
) -> PipelineRun:
    return state_transition(
        instance=run,
        to=to,
        table=RUN_TRANSITIONS,
        timestamps=RUN_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=run.project_id,
        update=update,
    )


def job_transition(
    *, job: Job, to: str, actor: Any, reason: str = "", update: Mapping | None = None
) -> Job:
    on_commit = _send_job if to == JobStatus.QUEUED else None
    return state_transition(
        instance=job,
        to=to,
        table=JOB_TRANSITIONS,
        timestamps=JOB_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=job.run.project_id,
        update=update,
        on_commit=on_commit,
    )


def _send_job(job: Job) -> None:
    """Tell a worker of the job's kind to look at it. Called only after commit."""
    from .tasks import run_job_task

    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    try:
        run_job_task.apply_async(args=[job.pk], queue=JOB_KIND_QUEUE[job.kind].value)
    except Exception:
        # The row says "queued"; the sweeper will send it again once the broker is back.
        logger.exception("Could not send job %s to the broker; the sweeper will retry", job.pk)


# --- runs -----------------------------------------------------------------------------------


def run_create(
    *,
    project: Project,
    jobs: Iterable[Mapping[str, Any]],
    actor: Any,
    trigger: str = Trigger.MANUAL,
    ref: str = "",
    commit_sha: str = "",
    commit_message: str = "",
    commit_author: str = "",
    commit_author_email: str = "",
    commit_url: str = "",
    spec: Mapping[str, Any] | None = None,
) -> PipelineRun:
    """Create a run and its jobs, and queue the jobs that need nothing."""
    job_specs = list(jobs)
    names = [j["name"] for j in job_specs]
    if not names:
        raise ServiceError("A pipeline needs at least one job.")
    if len(set(names)) != len(names):
        raise ServiceError("Job names must be unique within a pipeline.")
    for j in job_specs:
        unknown = set(j.get("needs", [])) - set(names)
        if unknown:
            raise ServiceError(f"Job '{j['name']}' needs unknown job(s): {sorted(unknown)}.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        # Lock the project row so run numbers are handed out one at a time.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        number = (project.runs.aggregate(n=Max("number"))["n"] or 0) + 1
        run = PipelineRun.objects.create(
            project=project,
            number=number,
            trigger=trigger,
            ref=ref,
            commit_sha=commit_sha,
            commit_message=commit_message,
            commit_author=commit_author,
            commit_author_email=commit_author_email,
            commit_url=commit_url,
            spec=dict(spec or {}),
            created_by=user,
        )
        Job.objects.bulk_create(
            Job(
                run=run,
                name=j["name"],
                kind=j.get("kind", "script"),
                needs=list(j.get("needs", [])),
                runner=j.get("runner", "local"),
                image=j.get("image", ""),
                script=list(j.get("script", [])),
                options=dict(j.get("options", {})),
                timeout_seconds=int(j.get("timeout", 3600)),
                max_attempts=1 + int(j.get("retries", 1)),
            )
            for j in job_specs
        )
        from apps.core.services import audit_log

        audit_log(
            actor=actor,
            action="pipelinerun.created",
            obj=run,
            project_id=project.pk,
            to_state=run.status,
            data={"trigger": trigger, "ref": ref, "sha": commit_sha},
        )
        run_advance(run=run, actor=actor)
    return run


def run_advance(*, run: PipelineRun, actor: Any = "scheduler") -> PipelineRun:
    """Queue jobs whose needs succeeded, skip those whose needs did not, finish the run when
    every job is terminal. Safe to call any number of times."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run.pk)
        if run.is_terminal:
            return run
        jobs = list(run.jobs.select_related("run").order_by("id"))
        by_name = {j.name: j for j in jobs}
        progressed = True
        while progressed:  # skipping one job can settle the jobs after it
            progressed = False
            for job in jobs:
                if job.status != JobStatus.PENDING:
                    continue
                needs = [by_name[n] for n in job.needs if n in by_name]
                if all(n.status == JobStatus.SUCCEEDED for n in needs):
                    job_transition(job=job, to=JobStatus.QUEUED, actor=actor)
                    progressed = True
                elif any(n.status in JOB_TERMINAL - {JobStatus.SUCCEEDED} for n in needs):
                    job_transition(
                        job=job,
                        to=JobStatus.SKIPPED,
                        actor=actor,
                        reason="A job it needs did not succeed.",
                    )
                    progressed = True
        if all(j.status in JOB_TERMINAL for j in jobs):
            statuses = {j.status for j in jobs}
            if JobStatus.FAILED in statuses:
                final = RunStatus.FAILED
            elif JobStatus.CANCELED in statuses:
                final = RunStatus.CANCELED
            else:
                final = RunStatus.SUCCEEDED
            run = run_transition(run=run, to=final, actor=actor)
    return run


def run_cancel(*, run: PipelineRun, actor: Any, reason: str = "Canceled by user.") -> PipelineRun:
    """Cancel every unfinished job (a running one is killed by its worker) and the run."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run.pk)
        if run.is_terminal:
            raise ConflictError(f"Run {run} has already finished ({run.status}).")
        for job in run.jobs.select_related("run").exclude(status__in=JOB_TERMINAL):
            job_transition(job=job, to=JobStatus.CANCELED, actor=actor, reason=reason)
        return run_transition(
            run=run,
            to=RunStatus.CANCELED,
            actor=actor,
            reason=reason,
            update={"error_message": reason},
        )


def run_fail(*, run: PipelineRun, actor: Any, message: str) -> PipelineRun:
    """Fail a run before it could start (e.g. an invalid pipeline spec)."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run.pk)
        for job in run.jobs.select_related("run").exclude(status__in=JOB_TERMINAL):
            job_transition(job=job, to=JobStatus.CANCELED, actor=actor, reason=message)
        return run_transition(
            run=run,
            to=RunStatus.FAILED,
            actor=actor,
            reason=message,
            update={"error_message": message},
        )


# --- jobs -----------------------------------------------------------------------------------


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """Take a queued job for this worker, or return None if it is not (any longer) queued.

    The row lock makes two workers given the same message agree on one winner.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("run")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.status != JobStatus.QUEUED:
            return None
        if job.run.status in RUN_TERMINAL:
            return None
        job = job_transition(
            job=job,
            to=JobStatus.RUNNING,
            actor=f"worker:{worker}",
            update={"worker": worker, "heartbeat_at": timezone.now(), "exit_code": None},
        )
        run = PipelineRun.objects.select_for_update().get(pk=job.run_id)
        if run.status == RunStatus.QUEUED:
            run_transition(run=run, to=RunStatus.RUNNING, actor=f"worker:{worker}")
    return job


def job_heartbeat(*, job_id: int, worker: str, log_size: int) -> str | None:
    """Record that the worker still runs the job; return the job's status as the DB sees it
    (a ``canceled`` answer tells the runner to stop)."""
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
        heartbeat_at=timezone.now(), log_size=log_size
    )
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def job_finish(
    *,
    job_id: int,
    worker: str,
    succeeded: bool,
    exit_code: int | None,
    error_message: str = "",
    log_size: int = 0,
    result: Mapping[str, Any] | None = None,
) -> Job:
    """Record the outcome of a run attempt, unless the job was canceled or taken away from
    this worker meanwhile (then the outcome is kept only as data, the status stays)."""
    with transaction.atomic():
        job = Job.objects.select_for_update(of=("self",)).select_related("run").get(pk=job_id)
        fields = {"exit_code": exit_code, "log_size": log_size, "result": dict(result or {})}
        if job.status != JobStatus.RUNNING or job.worker != worker:
            Job.objects.filter(pk=job.pk).update(**fields)
        else:
            job = job_transition(
                job=job,
                to=JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED,
                actor=f"worker:{worker}",
                reason=error_message,
                update={**fields, "error_message": error_message},
            )
        run_advance(run=job.run, actor=f"worker:{worker}")
    return job


def job_sweep_unclaimed(*, now: datetime | None = None) -> int:
    """Re-send queued jobs nobody claimed: the broker lost the message, or was down when the
    job was queued. Claiming is idempotent, so a duplicate message is harmless."""
    now = now or timezone.now()
    cutoff = now - settings.JOB_UNCLAIMED_AFTER
    stale = list(
        Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=cutoff)
        | Job.objects.filter(
            status=JobStatus.QUEUED, enqueued_at__isnull=True, queued_at__lt=cutoff
        )
    )
    for job in stale:
        logger.warning("Re-sending unclaimed job %s (%s)", job.pk, job)
        _send_job(job)
    return len(stale)


def job_reap_lost(*, now: datetime | None = None) -> int:
    """Retry or fail running jobs whose heartbeat stopped: their worker died (kill -9, OOM,
    host lost). Without this they would stay "running" for ever."""
    now = now or timezone.now()
    cutoff = now - settings.JOB_HEARTBEAT_TIMEOUT
    lost_ids = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    reaped = 0
    for job_id in lost_ids:
        with transaction.atomic():
            job = Job.objects.select_for_update(of=("self",)).select_related("run").get(pk=job_id)
            if job.status != JobStatus.RUNNING or job.heartbeat_at >= cutoff:
                continue  # it moved on while we looked
            silent = int((now - job.heartbeat_at).total_seconds())
            if job.attempt < job.max_attempts:
                job_transition(
                    job=job,
                    to=JobStatus.QUEUED,
                    actor="reaper",
                    reason=f"Worker lost ({job.worker}, silent {silent}s); "
                    f"retrying as attempt {job.attempt + 1} of {job.max_attempts}.",
                    update={"attempt": job.attempt + 1, "worker": "", "heartbeat_at": None},
                )
            else:
                job_transition(
                    job=job,
                    to=JobStatus.FAILED,
                    actor="reaper",
                    reason=f"Worker lost ({job.worker}, silent {silent}s).",
                    update={"error_message": "worker lost", "heartbeat_at": None},
                )
            run_advance(run=job.run, actor="reaper")
            reaped += 1
    return reaped

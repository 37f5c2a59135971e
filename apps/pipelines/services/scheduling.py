"""The run and job state machines, what happens after each change commits (a queued job's
message to a worker, a finished run's listeners, runs waiting for a slot), and moving a run
on: which jobs are ready, skipped or done (:func:`run_advance`). TRICKY: the lock order every
writer keeps (run, then its jobs) is :func:`_lock_job`'s."""

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.core.services import StateMachine
from apps.projects.models import Project

from ..choices import (
    JOB_TERMINAL,
    JOB_TIMESTAMPS,
    JOB_TRANSITIONS,
    RUN_TERMINAL,
    RUN_TIMESTAMPS,
    RUN_TRANSITIONS,
    JobStatus,
    RunStatus,
)
from ..models import Job, PipelineRun
from ..routing import job_queue
from ..signals import job_finished, run_status_changed

logger = logging.getLogger(__name__)


def _run_changed(run: PipelineRun) -> None:
    """After commit: tell listeners (commit statuses, notifications) and, when a run ends,
    start runs that waited for a free slot."""
    run_status_changed.send(
        sender=PipelineRun, run=run, from_status=run._previous_state, to_status=run.status
    )
    if run.status in RUN_TERMINAL:
        run_start_waiting(project=run.project)


run_transition: StateMachine[PipelineRun] = StateMachine(
    "run", RUN_TRANSITIONS, RUN_TIMESTAMPS, lambda run: run.project_id, _run_changed
)


def _job_changed(job: Job) -> None:
    # A job queued and then taken by the worker that finished the job it needed, in the same
    # transaction (job_finish's ``take``), is running by now: no message for it.
    if job.status == JobStatus.QUEUED:
        _send_job(job)
    elif job.status in JOB_TERMINAL:
        job_finished.send(sender=Job, job=job)


job_transition: StateMachine[Job] = StateMachine(
    "job", JOB_TRANSITIONS, JOB_TIMESTAMPS, lambda job: job.run.project_id, _job_changed
)


def _send_job(job: Job, *, resend: bool = False) -> None:
    """Tell a worker of the job's kind to look at it. Called only after commit.

    The first message goes out at the job's ``queued_at``; a re-send (the sweeper) records its
    time in ``enqueued_at``, so the next re-send waits a full ``JOB_UNCLAIMED_AFTER`` again.
    Not written for the first one: that update would contend for the row with the worker
    claiming it, on the hot path from push to first command."""
    from ..tasks import run_job_task

    sent_at = timezone.now()
    try:
        run_job_task.apply_async(args=[job.pk], queue=job_queue(job))
    except Exception:
        # The row says "queued"; the sweeper will send it again once the broker is back.
        logger.exception("Could not send job %s to the broker; the sweeper will retry", job.pk)
    if resend:
        Job.objects.filter(pk=job.pk).update(enqueued_at=sent_at)


def _lock_job(job_id: int, *, with_siblings: bool = False) -> tuple[Job | None, list[Job]]:
    """Lock a job's run (with its project), then the job, or (``with_siblings``) every job of
    the run in one statement, as :func:`run_advance` needs them after a job ends. Returns the
    job and the jobs locked. TRICKY: always the run first, the order run_cancel, job_retry and
    run_advance lock in, so two writers never wait on each other in a circle (PostgreSQL would
    end one of them with a deadlock error)."""
    # One statement finds and locks the run through the job (FOR UPDATE OF the run only).
    runs = PipelineRun.objects.select_for_update(of=("self",)).select_related("project")
    run = runs.filter(jobs__pk=job_id).first()
    if run is None:
        return None, []
    if with_siblings:
        jobs = list(run.jobs.select_for_update().order_by("id"))
    else:
        jobs = [Job.objects.select_for_update().get(pk=job_id)]
    for job in jobs:  # the audit rows describe jobs by run and project: no queries for that
        job.run = run
    return next((job for job in jobs if job.pk == job_id), None), jobs


def run_start_waiting(
    *,
    project: Project,
    actor: Any = "scheduler",
    held: tuple[PipelineRun, list[Job]] | None = None,
) -> int:
    """Start prepared runs that wait for a slot under the project's concurrency limit.

    ``held``: a run and its jobs the caller locked in its open transaction (after the run, the
    order :func:`_lock_job` keeps); if that run starts, it starts from them."""
    started = 0
    # No savepoint when nested (2 round trips): no caller catches an error here and goes on.
    with transaction.atomic(savepoint=False):
        Project.objects.select_for_update().filter(pk=project.pk).first()
        working = Exists(
            Job.objects.filter(run=OuterRef("pk"), status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        )
        runs = PipelineRun.objects.filter(project=project)
        busy = runs.filter(
            Q(status=RunStatus.RUNNING) | (Q(status=RunStatus.QUEUED) & working)
        ).count()
        room = max(project.max_concurrent_runs - busy, 0)
        waiting = (
            runs.filter(Exists(Job.objects.filter(run=OuterRef("pk"))), status=RunStatus.QUEUED)
            .exclude(working)
            .order_by("number")[:room]
            if room
            else []
        )
        for run in waiting:
            if held is not None and run.pk == held[0].pk:
                run_advance(run=held[0], actor=actor, locked=True, jobs=held[1])
            else:
                run_advance(run=run, actor=actor)
            started += 1
    return started


def run_advance(
    *,
    run: PipelineRun,
    actor: Any = "scheduler",
    locked: bool = False,
    jobs: list[Job] | None = None,
) -> PipelineRun:
    """Queue jobs whose needs succeeded, skip those whose needs did not, finish the run when
    every job is terminal. Safe to call any number of times.

    ``locked=True``: the caller read ``run`` (with its project) with ``select_for_update()`` in
    its open transaction (:func:`_lock_job`), so it is not read and locked a second time;
    ``jobs``: it locked the run's jobs too, after the run (``_lock_job(with_siblings=True)``)."""
    with transaction.atomic(savepoint=False):  # see run_start_waiting
        if not locked:
            run = (
                PipelineRun.objects.select_for_update(of=("self",))
                .select_related("project")
                .get(pk=run.pk)
            )
        if run.is_terminal:
            return run
        if jobs is None:
            # Locked in one statement (after the run, the order _lock_job keeps), so that each
            # transition below changes its job in place: no second read, no savepoint.
            jobs = list(run.jobs.select_for_update().order_by("id"))
            for job in jobs:  # the audit rows describe jobs by run and project: no queries
                job.run = run
        by_name = {j.name: j for j in jobs}
        progressed = True
        while progressed:  # skipping one job can settle the jobs after it
            progressed = False
            for job in jobs:
                if job.status != JobStatus.PENDING:
                    continue
                needs = [by_name[n] for n in job.needs if n in by_name]
                when = job.options.get("when", "on_success")
                if when == "manual":
                    job_transition(
                        job=job,
                        to=JobStatus.SKIPPED,
                        actor=actor,
                        held_lock=True,
                        reason="Manual jobs are started by hand: use Retry.",
                    )
                elif all(n.status == JobStatus.SUCCEEDED for n in needs) or (
                    when == "always" and all(n.status in JOB_TERMINAL for n in needs)
                ):
                    job_transition(job=job, to=JobStatus.QUEUED, actor=actor, held_lock=True)
                elif when != "always" and any(
                    n.status in JOB_TERMINAL - {JobStatus.SUCCEEDED} for n in needs
                ):
                    job_transition(
                        job=job,
                        to=JobStatus.SKIPPED,
                        actor=actor,
                        held_lock=True,
                        reason="A job it needs did not succeed.",
                    )
                else:
                    continue
                progressed = True
        if all(j.status in JOB_TERMINAL for j in jobs):
            statuses = {j.status for j in jobs}
            if JobStatus.FAILED in statuses:
                final = RunStatus.FAILED
            elif JobStatus.CANCELED in statuses:
                final = RunStatus.CANCELED
            else:
                final = RunStatus.SUCCEEDED
            run = run_transition(run=run, to=final, actor=actor, held_lock=True)
    return run


def _claim_locked(job: Job, worker: str) -> Job:
    """queued → running for ``worker``; the job and its run (with its project) are locked."""
    run, project = job.run, job.run.project
    again = {"started_at": job.started_at, "finished_at": None} if job.started_at else {}
    claimed = job_transition(
        job=job,
        to=JobStatus.RUNNING,
        actor=f"worker:{worker}",
        update={"worker": worker, "heartbeat_at": timezone.now(), "exit_code": None} | again,
        held_lock=True,
    )
    if run.status == RunStatus.QUEUED:  # the run's first job starts it
        run_transition(run=run, to=RunStatus.RUNNING, actor=f"worker:{worker}", held_lock=True)
    claimed.run, run.project = run, project
    return claimed


def _take_ready(jobs: list[Job], take: Callable[[Job], bool], worker: str) -> Job | None:
    """The first of ``jobs`` that is queued now (an advance just made it ready) and that
    ``take`` accepts, claimed for ``worker``, or None. The caller holds the run's and the
    jobs' locks; no message goes out for the job taken (see ``_job_changed``)."""
    job = next((j for j in jobs if j.status == JobStatus.QUEUED and take(j)), None)
    return _claim_locked(job, worker) if job is not None else None

"""A job's life on a worker: claimed, beating, what it started recorded, finished (and the
next ready job handed to the same worker), retried by a person."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.exceptions import ConflictError
from apps.core.services import audit_batch

from ..choices import (
    RUN_TERMINAL,
    JobStatus,
    RunStatus,
)
from ..models import Artifact, Job, PipelineRun
from .scheduling import (
    _claim_locked,
    _lock_job,
    _take_ready,
    job_transition,
    run_advance,
    run_transition,
)


def job_retry(*, job: Job, actor: Any) -> Job:
    """Run a finished job again (a new attempt), reopening its run; the jobs after it that
    were skipped or canceled because of it go back to pending."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=job.run_id)
        job = Job.objects.select_for_update(of=("self",)).select_related("run").get(pk=job.pk)
        if job.status not in (
            JobStatus.FAILED,
            JobStatus.CANCELED,
            JobStatus.SKIPPED,
            JobStatus.SUCCEEDED,
        ):
            raise ConflictError(f"Job {job.name} is {job.status}; only finished jobs are retried.")
        if run.status in RUN_TERMINAL:
            run_transition(
                run=run,
                to=RunStatus.RUNNING,
                actor=actor,
                reason=f"Job {job.name} retried.",
                update={"error_message": "", "started_at": run.started_at, "finished_at": None},
            )
        job_transition(
            job=job,
            to=JobStatus.QUEUED,
            actor=actor,
            reason="Retried.",
            update={
                "attempt": job.attempt + 1,
                "max_attempts": job.max_attempts + 1,
                "worker": "",
                "exit_code": None,
                "error_message": "",
            },
        )
        for later in _jobs_after(run, job.name):
            if later.status in (JobStatus.SKIPPED, JobStatus.CANCELED):
                job_transition(
                    job=later, to=JobStatus.PENDING, actor=actor, reason=f"{job.name} retried."
                )
    return job


def _jobs_after(run: PipelineRun, name: str) -> list[Job]:
    jobs = list(run.jobs.select_related("run"))
    after, frontier = set(), {name}
    while frontier:
        frontier = {j.name for j in jobs if set(j.needs) & frontier} - after
        after |= frontier
    return [j for j in jobs if j.name in after]


def job_cache_key_record(*, job_id: int, cache_key: str) -> None:
    """The step-cache key of a finished job that was not looked up in the cache (see
    :class:`apps.pipelines.cache.StepCache`): a later re-run of its run finds it by this key.
    Bookkeeping on a finished job, like the log size: no transition, no audit row."""
    Job.objects.filter(pk=job_id, cache_key="").update(cache_key=cache_key)


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """Take a queued job for this worker, or return None if it is not (any longer) queued.

    The row lock makes two workers given the same message agree on one winner.
    """
    with transaction.atomic(), audit_batch():
        job, _ = _lock_job(job_id)  # the executor needs the run and project too
        if job is None or job.status != JobStatus.QUEUED or job.run.status in RUN_TERMINAL:
            return None
        return _claim_locked(job, worker)


def job_heartbeat(*, job_id: int, worker: str, log_size: int) -> str | None:
    """Record that the worker still runs the job; return the job's status as the DB sees it
    (a ``canceled`` answer tells the runner to stop)."""
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
        heartbeat_at=timezone.now(), log_size=log_size
    )
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def job_processes_record(*, job_id: int, worker: str, processes: dict) -> bool:
    """Record the process groups and containers the running attempt started (``processes``,
    built by :func:`apps.pipelines.orphans.processes_add`), before it does any work: should the
    worker die, the reaper or the next attempt's worker ends them (``orphans.py``).
    Bookkeeping, no transition: one conditional UPDATE, so only while the job is still this
    worker's (False: it is not any more). The attempt is the field's only writer meanwhile:
    it started from an empty record (its leftovers ended), so it passes the whole of it."""
    running = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker)
    return running.update(processes=processes) == 1


def job_processes_clear(*, job_id: int) -> None:
    """What the job started was ended (or ended by itself): nothing to end any more."""
    Job.objects.filter(pk=job_id).update(processes={})


def job_finish(
    *,
    job_id: int,
    worker: str,
    succeeded: bool,
    exit_code: int | None,
    skipped: bool = False,
    error_message: str = "",
    log_size: int = 0,
    result: Mapping[str, Any] | None = None,
    artifacts: Iterable["Artifact"] = (),
    cache_key: str = "",  # the step cache's key (pipelines.cache) and, on a hit, its source
    cached_from: Job | None = None,
    take: Callable[[Job], bool] | None = None,
) -> Job:
    """Record the outcome of a run attempt, unless the job was canceled or taken away from
    this worker meanwhile (then the outcome is kept only as data, the status stays).

    ``take``: which of the jobs this outcome makes ready the finishing worker may run next
    (it serves their queue). The first such job is claimed for it in the same transaction, so
    no message goes to the broker for it and no other worker waits for one; the returned
    job's ``taken`` is that job (the next to execute), or None."""
    with transaction.atomic(), audit_batch():
        job, jobs = _lock_job(job_id, with_siblings=True)
        if job is None:
            raise Job.DoesNotExist(f"Job {job_id} is gone.")
        fields = {"exit_code": exit_code, "log_size": log_size, "result": dict(result or {})}
        fields |= {"cache_key": cache_key, "cached_from": cached_from}
        if job.attempt > 1:
            Artifact.objects.filter(job=job).delete()  # a retried job keeps its latest only
        Artifact.objects.bulk_create(artifacts)
        if job.status != JobStatus.RUNNING or job.worker != worker:
            Job.objects.filter(pk=job.pk).update(**fields)
        else:
            job = job_transition(
                job=job,
                to=(
                    JobStatus.FAILED
                    if not succeeded
                    else JobStatus.SKIPPED
                    if skipped
                    else JobStatus.SUCCEEDED
                ),
                actor=f"worker:{worker}",
                reason=error_message,
                # The attempt is over: its runner ended what it started.
                update={**fields, "error_message": error_message, "processes": {}},
                held_lock=True,
            )
        pending = [j for j in jobs if j.status == JobStatus.PENDING]
        run_advance(run=job.run, actor=f"worker:{worker}", locked=True, jobs=jobs)
        # Only jobs this advance queued: one queued before has its message out already.
        taken = _take_ready(pending, take, worker) if take is not None else None
    job.taken = taken
    return job

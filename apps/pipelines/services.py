"""Every write to runs and jobs. Tasks and views call these; nothing else changes a status."""

import logging
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import StateMachine, audit_log
from apps.projects.models import Project
from apps.projects.spec import SPEC_FILENAME, PipelineSpec, ref_matches

from . import git
from .choices import (
    JOB_TERMINAL,
    JOB_TIMESTAMPS,
    JOB_TRANSITIONS,
    RUN_ACTIVE,
    RUN_TERMINAL,
    RUN_TIMESTAMPS,
    RUN_TRANSITIONS,
    JobStatus,
    RunStatus,
    Trigger,
)
from .commits import Commit
from .models import Artifact, Job, PipelineRun
from .routing import job_queue
from .signals import job_finished, run_status_changed
from .specs import SpecUnavailable, spec_at

logger = logging.getLogger(__name__)


# --- transitions ----------------------------------------------------------------------------


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
    from .tasks import run_job_task

    sent_at = timezone.now()
    try:
        run_job_task.apply_async(args=[job.pk], queue=job_queue(job))
    except Exception:
        # The row says "queued"; the sweeper will send it again once the broker is back.
        logger.exception("Could not send job %s to the broker; the sweeper will retry", job.pk)
    if resend:
        Job.objects.filter(pk=job.pk).update(enqueued_at=sent_at)


# --- runs -----------------------------------------------------------------------------------


def _run_insert(*, project: Project, actor: Any, trigger: str, **fields: Any) -> PipelineRun:
    """A new queued run with the project's next number (the project row lock serialises)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    Project.objects.select_for_update().filter(pk=project.pk).first()
    number = (project.runs.aggregate(n=Max("number"))["n"] or 0) + 1
    run = PipelineRun.objects.create(
        project=project, number=number, trigger=trigger, created_by=user, **fields
    )
    audit_log(
        actor=actor,
        action="pipelinerun.created",
        obj=run,
        project_id=project.pk,
        to_state=run.status,
        data={"trigger": trigger, "ref": run.ref, "sha": run.commit_sha},
    )
    return run


def _jobs_create(run: PipelineRun, job_specs: list[Mapping[str, Any]]) -> None:
    names = [j["name"] for j in job_specs]
    if not names:
        raise ServiceError("A pipeline needs at least one job.")
    if len(set(names)) != len(names):
        raise ServiceError("Job names must be unique within a pipeline.")
    for j in job_specs:
        unknown = set(j.get("needs", [])) - set(names)
        if unknown:
            raise ServiceError(f"Job '{j['name']}' needs unknown job(s): {sorted(unknown)}.")
    Job.objects.bulk_create(
        Job(
            run=run,
            name=j["name"],
            kind=j.get("kind", "script"),
            needs=list(j.get("needs", [])),
            runner=j.get("runner", "local"),
            image=j.get("image") or "",
            script=list(j.get("script", [])),
            options=dict(j.get("options", {})),
            timeout_seconds=int(j.get("timeout", 3600)),
            max_attempts=1 + int(j.get("retries", 1)),
        )
        for j in job_specs
    )


def jobs_from_spec(spec: PipelineSpec, pipeline: str = "") -> list[dict[str, Any]]:
    """Job rows of a pipeline of a parsed `.controlplane.yml` ("" = the push `jobs`), in
    dependency order."""
    specs, variables = spec.pipeline_jobs(pipeline)
    jobs = []
    for name in spec.topological_order(pipeline):
        job = specs[name]
        jobs.append(
            {
                "name": name,
                "kind": job.kind,
                "needs": list(job.needs),
                "runner": job.runner,
                "image": job.image or "",
                "script": list(job.script),
                "timeout": job.timeout,
                "retries": job.retries,
                "options": {
                    **job.options,
                    "artifacts": list(job.artifacts),
                    "reports": dict(job.reports),
                    "cache": list(job.cache),
                    "variables": {**variables, **job.variables},
                    "when": job.when,
                    **job.ct_options(),  # produces, consumes, step_cache, inputs, resources, gate
                },
            }
        )
    return jobs


def run_create(
    *,
    project: Project,
    jobs: Iterable[Mapping[str, Any]],
    actor: Any,
    trigger: str = Trigger.MANUAL,
    commit: Commit | None = None,
    spec: Mapping[str, Any] | None = None,
) -> PipelineRun:
    """Create a run with the given jobs (no Git involved) and start it when there is room."""
    with transaction.atomic():
        run = _run_insert(
            project=project,
            actor=actor,
            trigger=trigger,
            spec=dict(spec or {}),
            **(commit or Commit()).run_fields(),
        )
        _jobs_create(run, list(jobs))
        run_start_waiting(project=project, actor=actor)
    run.refresh_from_db()
    return run


def run_request(
    *,
    project: Project,
    actor: Any,
    commit: Commit,
    trigger: str = Trigger.PUSH,
    send_prepare: bool = True,
    fields: Mapping[str, Any] | None = None,
) -> PipelineRun:
    """Start a run of the pipeline spec found at ``commit.sha`` (or at the head of ``commit.ref``).

    Fast on purpose (UI and API requests, and the webhook outbox worker, call it): it only
    records a queued run with no jobs yet. A worker then fetches the commit, reads
    `.controlplane.yml` there and creates the jobs, or fails the run with the spec's errors
    (:func:`run_prepare`). ``send_prepare=False``: the caller, already a worker, calls
    :func:`run_prepare` itself after commit (one broker hop less); if it never does, the
    sweeper sends the run to a worker. ``fields``: more columns (pipeline, params, environment,
    schedule, trigger_detail, rerun_of; see :func:`apps.pipelines.triggers.pipeline_start`).
    """
    if not commit.sha and not commit.ref:
        raise ServiceError("Say which branch, tag or commit to run.")
    with transaction.atomic():
        run = _run_insert(
            project=project, actor=actor, trigger=trigger, **commit.run_fields(), **(fields or {})
        )
        if send_prepare:
            transaction.on_commit(lambda: _send_prepare(run))
    return run


def _send_prepare(run: PipelineRun) -> None:
    from .tasks import prepare_run_task

    try:
        prepare_run_task.delay(run.pk)
    except Exception:
        logger.exception("Could not send run %s to the broker; the sweeper will retry", run.pk)


def _run_protected(run: PipelineRun, sha: str) -> bool:
    """Whether the run's jobs may get protected variables: its ref is protected (the project's
    ``protected_refs``) and its commit is that tag or on that branch's history. The sha and
    the ref of a manual run are both the caller's choice: a commit pushed to a feature branch
    does not become protected by naming ``main``. When the mirror's ref does not hold the
    commit yet, fetch once (a fast-forward merge pushes a sha the mirror already has)."""
    project = run.project
    if not project.ref_protected(run.ref):
        return False
    try:
        if git.on_ref(project, sha, run.ref):
            return True
        git.mirror_update(project)
        return git.on_ref(project, sha, run.ref)
    except (git.GitError, subprocess.TimeoutExpired):
        logger.warning("Could not tell whether run %s is on %s; not protected", run.pk, run.ref)
        return False


def run_prepare(*, run_id: int) -> PipelineRun | None:
    """Fetch the run's commit, read and validate its `.controlplane.yml`, create the jobs.

    Idempotent: a run that has jobs or is no longer queued is left alone. An invalid or missing
    spec fails the run at once with the validation errors as its message.
    """
    # One query: the run, its project and whether it has jobs already.
    run = (
        PipelineRun.objects.select_related("project")
        .annotate(has_jobs=Exists(Job.objects.filter(run=OuterRef("pk"))))
        .filter(pk=run_id)
        .first()
    )
    if run is None or run.status != RunStatus.QUEUED or run.has_jobs:
        return run
    project = run.project
    try:
        info, spec = spec_at(project, sha=run.commit_sha, ref=run.ref)
    except SpecUnavailable as exc:
        return run_fail(run=run, actor="scheduler", message=exc.message)
    protected = _run_protected(run, info["sha"])  # git, outside the transaction
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.QUEUED or run.jobs.exists():
            return run
        ref_type = "tag" if run.trigger == Trigger.TAG else "branch"
        if (
            run.ref
            and run.trigger in (Trigger.PUSH, Trigger.TAG)
            and not ref_matches(spec, ref_type, run.ref)
        ):
            return run_cancel(
                run=run,
                actor="scheduler",
                reason=f"The {ref_type} '{run.ref}' is not in the spec's {ref_type} filter.",
            )
        run.commit_sha = info["sha"]
        run.protected = protected
        run.commit_message = run.commit_message or info["message"]
        run.commit_author = run.commit_author or info["author"]
        run.commit_author_email = run.commit_author_email or info["author_email"]
        run.spec = spec.to_dict()
        run.save(
            update_fields=[
                "commit_sha",
                "commit_message",
                "commit_author",
                "commit_author_email",
                "spec",
                "protected",
                "modified",
            ]
        )
        try:
            _jobs_create(run, jobs_from_spec(spec, run.pipeline))
        except KeyError:
            message = f"No pipeline '{run.pipeline}' in {SPEC_FILENAME} at {info['sha'][:12]}."
            return run_fail(run=run, actor="scheduler", message=message)
        if spec.cancel_previous and run.trigger == Trigger.PUSH and run.ref:
            older = PipelineRun.objects.filter(
                project=project, ref=run.ref, number__lt=run.number, status__in=RUN_ACTIVE
            )
            for old in older:
                run_cancel(
                    run=old,
                    actor="scheduler",
                    reason=f"Superseded by run #{run.number} on {run.ref}.",
                )
        run_start_waiting(project=project)
        if run.ref == project.default_branch and not run.environment_id:
            # The default branch's spec says which schedules exist (see pipelines/schedules.py).
            # After commit and after the ready jobs' messages went out (on_commit callbacks
            # run in order): not on the way to the first job's first command.
            transaction.on_commit(lambda: _schedules_sync(project, spec, run.commit_sha))
    run.refresh_from_db()
    return run


def _schedules_sync(project: Project, spec: PipelineSpec, sha: str) -> None:
    from .schedules import schedules_sync_from_run

    schedules_sync_from_run(project=project, spec=spec, commit_sha=sha)


def run_start_waiting(*, project: Project, actor: Any = "scheduler") -> int:
    """Start prepared runs that wait for a slot under the project's concurrency limit."""
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
            run_advance(run=run, actor=actor)
            started += 1
    return started


def run_advance(*, run: PipelineRun, actor: Any = "scheduler", locked: bool = False) -> PipelineRun:
    """Queue jobs whose needs succeeded, skip those whose needs did not, finish the run when
    every job is terminal. Safe to call any number of times.

    ``locked=True``: the caller read ``run`` (with its project) with ``select_for_update()`` in
    its open transaction (:func:`_lock_job`), so it is not read and locked a second time."""
    with transaction.atomic(savepoint=False):  # see run_start_waiting
        if not locked:
            run = (
                PipelineRun.objects.select_for_update(of=("self",))
                .select_related("project")
                .get(pk=run.pk)
            )
        if run.is_terminal:
            return run
        # Locked in one statement (after the run, the order _lock_job keeps), so that each
        # transition below changes its job in place: no second read, no savepoint.
        jobs = list(run.jobs.select_for_update().order_by("id"))
        for job in jobs:  # the audit rows describe jobs by run and project: no queries for that
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


def run_rerun(*, run: PipelineRun, actor: Any) -> PipelineRun:
    """A new run of the same commit, ref, pipeline, parameters and environment, reading the
    spec afresh (see docs/caching.md: re-use)."""
    if not run.commit_sha or not run.project.repository_url:
        raise ConflictError("Only runs of a Git commit can be re-run; trigger a new run instead.")
    same = ("pipeline", "params", "environment_id")
    fields = {name: getattr(run, name) for name in same} | {"rerun_of": run}
    return run_request(
        project=run.project,
        actor=actor,
        commit=Commit.of_run(run),
        trigger=Trigger.RERUN,
        fields=fields | {"trigger_detail": f"re-run of #{run.number}"},
    )


def job_cache_key_record(*, job_id: int, cache_key: str) -> None:
    """The step-cache key of a finished job that was not looked up in the cache (see
    :class:`apps.pipelines.cache.StepCache`): a later re-run of its run finds it by this key.
    Bookkeeping on a finished job, like the log size: no transition, no audit row."""
    Job.objects.filter(pk=job_id, cache_key="").update(cache_key=cache_key)


def _lock_job(job_id: int) -> Job | None:
    """Lock a job's run (with its project), then the job. TRICKY: always in this order, the one
    run_cancel, job_retry and run_advance lock in, so two writers never wait on each other in
    a circle (PostgreSQL would end one of them with a deadlock error)."""
    # One statement finds and locks the run through the job (FOR UPDATE OF the run only).
    runs = PipelineRun.objects.select_for_update(of=("self",)).select_related("project")
    run = runs.filter(jobs__pk=job_id).first()
    if run is None:
        return None
    job = Job.objects.select_for_update().get(pk=job_id)
    job.run = run
    return job


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """Take a queued job for this worker, or return None if it is not (any longer) queued.

    The row lock makes two workers given the same message agree on one winner.
    """
    with transaction.atomic():
        job = _lock_job(job_id)  # the executor needs the run and project too
        if job is None or job.status != JobStatus.QUEUED or job.run.status in RUN_TERMINAL:
            return None
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


def job_heartbeat(*, job_id: int, worker: str, log_size: int) -> str | None:
    """Record that the worker still runs the job; return the job's status as the DB sees it
    (a ``canceled`` answer tells the runner to stop)."""
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
        heartbeat_at=timezone.now(), log_size=log_size
    )
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def job_processes_record(*, job_id: int, worker: str, entry: dict, kind: str) -> bool:
    """Record a process group (``kind`` "group") or container ("container") the running
    attempt started, before it does any work: should the worker die, the reaper or the next
    attempt's worker ends it (``orphans.py``). Bookkeeping, no transition: whether it was
    recorded (False: the job is no longer this worker's)."""
    from .orphans import processes_add

    with transaction.atomic():
        # Only the job row is locked (nothing else is held), so this never waits in a circle.
        job = (
            Job.objects.select_for_update()
            .filter(pk=job_id, status=JobStatus.RUNNING, worker=worker)
            .only("pk", "processes")
            .first()
        )
        if job is None:
            return False
        added = processes_add(job.processes, **{kind: entry})
        Job.objects.filter(pk=job_id).update(processes=added)
    return True


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
) -> Job:
    """Record the outcome of a run attempt, unless the job was canceled or taken away from
    this worker meanwhile (then the outcome is kept only as data, the status stays)."""
    with transaction.atomic():
        job = _lock_job(job_id)
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
        run_advance(run=job.run, actor=f"worker:{worker}", locked=True)
    return job

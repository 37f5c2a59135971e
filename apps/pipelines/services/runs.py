"""Starting runs (by hand, from a push, a schedule or a re-run), preparing them (the commit's
spec read, the jobs created), and ending them (cancel, fail)."""

import logging
import subprocess
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import audit_batch, audit_log
from apps.projects.models import Project
from apps.projects.spec import SPEC_FILENAME, PipelineSpec, ref_matches

from .. import git
from ..choices import (
    JOB_TERMINAL,
    RUN_ACTIVE,
    JobStatus,
    RunStatus,
    Trigger,
)
from ..commits import Commit
from ..models import Job, PipelineRun
from ..specs import SpecUnavailable, spec_at
from .scheduling import _take_ready, job_transition, run_start_waiting, run_transition

logger = logging.getLogger(__name__)


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


def _jobs_create(run: PipelineRun, job_specs: list[Mapping[str, Any]]) -> list[Job]:
    names = [j["name"] for j in job_specs]
    if not names:
        raise ServiceError("A pipeline needs at least one job.")
    if len(set(names)) != len(names):
        raise ServiceError("Job names must be unique within a pipeline.")
    for j in job_specs:
        unknown = set(j.get("needs", [])) - set(names)
        if unknown:
            raise ServiceError(f"Job '{j['name']}' needs unknown job(s): {sorted(unknown)}.")
    return Job.objects.bulk_create(
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
    # No savepoint when nested (2 round trips): a caller that goes on after an error here
    # (the webhook outbox, per delivery) has a savepoint of its own.
    with transaction.atomic(savepoint=False):
        run = _run_insert(
            project=project, actor=actor, trigger=trigger, **commit.run_fields(), **(fields or {})
        )
        if send_prepare:
            transaction.on_commit(lambda: _send_prepare(run))
    return run


def _send_prepare(run: PipelineRun) -> None:
    from ..tasks import prepare_run_task

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


def run_prepare(
    *, run_id: int, take: Callable[[Job], bool] | None = None, worker: str = ""
) -> PipelineRun | None:
    """Fetch the run's commit, read and validate its `.controlplane.yml`, create the jobs.

    Idempotent: a run that has jobs or is no longer queued is left alone. An invalid or missing
    spec fails the run at once with the validation errors as its message.

    ``take`` (with ``worker``): of the jobs the run starts with, the first ``take`` accepts is
    claimed for ``worker`` in the same transaction, as :func:`job_finish` hands the next job
    on; it is the returned run's ``taken`` (None when none).
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
    taken = None
    with transaction.atomic(), audit_batch():
        run = (
            PipelineRun.objects.select_for_update(of=("self",))
            .select_related("project")
            .annotate(has_jobs=Exists(Job.objects.filter(run=OuterRef("pk"))))
            .get(pk=run.pk)
        )
        if run.status != RunStatus.QUEUED or run.has_jobs:
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
            jobs = _jobs_create(run, jobs_from_spec(spec, run.pipeline))
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
        # The run and its new jobs are locked here already (bulk_create inserted the rows):
        # when it is the one to start, they are not read and locked a second time.
        run_start_waiting(project=project, held=(run, jobs) if all(j.pk for j in jobs) else None)
        if take is not None:  # only jobs the start queued (not held: none, they read pending)
            taken = _take_ready(jobs, take, worker)
        if run.ref == project.default_branch and not run.environment_id:
            # The default branch's spec says which schedules exist (see pipelines/schedules.py).
            # After commit and after the ready jobs' messages went out (on_commit callbacks
            # run in order): not on the way to the first job's first command.
            transaction.on_commit(lambda: _schedules_sync(project, spec, run.commit_sha))
    run.refresh_from_db()
    run.project = project  # dropped by the refresh; the taken job's executor reads it
    run.taken = taken
    return run


def _schedules_sync(project: Project, spec: PipelineSpec, sha: str) -> None:
    from ..schedules import schedules_sync_from_run

    schedules_sync_from_run(project=project, spec=spec, commit_sha=sha)


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

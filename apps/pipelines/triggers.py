"""Starting runs of named pipelines (`pipelines:` in `.controlplane.yml`): by hand, through the
API, on a schedule, on a new dataset version, from monitoring. A push starts only the push
pipeline (`jobs:`) through :func:`apps.pipelines.services.run_request`.

Every path goes through :func:`pipeline_start`, which reads the spec of the commit the run will
run (the default branch head, or the commit of the release serving in the run's environment),
validates the parameters against it, and applies the pipeline's ``concurrency``.
"""

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment, Project
from apps.projects.spec import SPEC_FILENAME, ParamError, PipelineSpec, validate_params

from .choices import RUN_ACTIVE, Concurrency, Trigger
from .commits import Commit
from .models import PipelineRun, Schedule
from .services import run_cancel, run_request
from .specs import spec_at

logger = logging.getLogger(__name__)


class PipelineNotFound(ServiceError):
    status_code = 404


def pipeline_commit(project: Project, environment: Environment | None) -> Commit:
    """What a run of ``environment`` (None: project level) runs: the pipelines of the release
    serving there when it records one, else the default branch head."""
    if environment is not None and environment.pipeline_commit_sha:
        # That commit came from a release, and releases come from runs of ``releases_from``:
        # the run is of that branch again, so a retrain there can release its model too.
        return Commit(sha=environment.pipeline_commit_sha, ref=project.releases_from)
    return Commit(ref=project.default_branch)


def pipeline_spec(pipeline: str, spec: PipelineSpec, sha: str):
    """The named pipeline (None for "" = the push jobs); PipelineNotFound when the spec of
    that commit has no such pipeline."""
    if not pipeline:
        return None
    if pipeline not in spec.pipelines:
        raise PipelineNotFound(f"No pipeline '{pipeline}' in {SPEC_FILENAME} at {sha[:12]}.")
    return spec.pipelines[pipeline]


def pipeline_start(
    *,
    project: Project,
    pipeline: str,
    actor: Any,
    trigger: str,
    params: Mapping[str, Any] | None = None,
    reason: str = "",
    environment: Environment | None = None,
    schedule: Schedule | None = None,
    commit: Commit | None = None,
) -> PipelineRun | None:
    """Start a run of ``pipeline`` ("" = the push jobs) and return it, or None when the
    pipeline's ``concurrency: skip`` finds a run of it (in that environment) still active.

    Raises ``ParamError`` (naming the parameter) when ``params`` do not fit the pipeline's
    declaration at that commit, ``PipelineNotFound`` when the commit has no such pipeline and
    ``SpecUnavailable`` when its spec cannot be read. ``reason`` goes on the run as its
    ``trigger_detail`` (who or what started it)."""
    commit = commit or pipeline_commit(project, environment)
    info, spec = spec_at(project, sha=commit.sha, ref=commit.ref)
    named = pipeline_spec(pipeline, spec, info["sha"])
    values = validate_params(named.params if named else {}, params)
    concurrency = named.concurrency if named else Concurrency.QUEUE
    resolved = Commit(
        sha=info["sha"],
        ref=commit.ref,
        message=info["message"],
        author=info["author"],
        author_email=info["author_email"],
        url=commit.url,
    )
    with transaction.atomic():
        # The project row lock (also taken by _run_insert) serialises two starts of one
        # pipeline, so `skip` cannot let both through.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = list(
            PipelineRun.objects.filter(
                project=project, pipeline=pipeline, environment=environment, status__in=RUN_ACTIVE
            ).order_by("number")
        )
        label = _label(pipeline, environment)
        if active and concurrency == Concurrency.SKIP:
            why = f"{label}: run #{active[-1].number} is still active (concurrency: skip)."
            logger.info("Not starting %s of %s: %s", trigger, project, why)
            audit_log(
                actor=actor,
                action="pipeline.skipped",
                obj=schedule or project,
                project_id=project.pk,
                reason=why,
                data={"pipeline": pipeline, "trigger": trigger, "detail": reason[:500]},
            )
            return None
        run = run_request(
            project=project,
            actor=actor,
            commit=resolved,
            trigger=trigger,
            fields={
                "pipeline": pipeline,
                "params": values,
                "trigger_detail": reason[:500],
                "environment": environment,
                "schedule": schedule,
            },
        )
        if concurrency == Concurrency.CANCEL_PREVIOUS:
            why = f"Superseded by run #{run.number} of {label} (concurrency: cancel_previous)."
            for old in active:
                try:
                    run_cancel(run=old, actor="scheduler", reason=why)
                except ConflictError:
                    pass  # it finished meanwhile
    return run


def _label(pipeline: str, environment: Environment | None) -> str:
    name = f"pipeline '{pipeline}'" if pipeline else "the push pipeline"
    return f"{name} in {environment.name}" if environment else name


def pipelines_on_dataset(
    *, project: Project, dataset: str, version_label: str, actor: Any
) -> list[PipelineRun]:
    """Start every pipeline whose ``on_dataset`` lists ``dataset`` (the spec at the default
    branch head), after a new version of it was recorded; ``version_label`` is e.g. "v3".
    Returns the runs started (a pipeline skipped by its concurrency starts none)."""
    info, spec = spec_at(project, ref=project.default_branch)
    runs = []
    for name in spec.pipelines_on_dataset(dataset):
        try:
            run = pipeline_start(
                project=project,
                pipeline=name,
                actor=actor,
                trigger=Trigger.DATASET,
                reason=f"dataset {dataset} {version_label}",
                commit=Commit(sha=info["sha"], ref=project.default_branch),
            )
        except ParamError as exc:  # a required parameter without a default: say so, go on
            logger.warning("Not starting pipeline %s of %s on %s: %s", name, project, dataset, exc)
            continue
        if run is not None:
            runs.append(run)
    return runs

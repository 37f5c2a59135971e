"""Releases: making the immutable release (by hand, or from a succeeded pipeline run with its
evidence), blocking one everywhere, and moving one on to its next environment."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment
from apps.projects.services import environments_from_spec
from apps.training.selectors import gate_verdict_of
from apps.training.services import model_version_register, train_job_record

from ..choices import DeploymentStatus, PromotionStatus
from ..models import Promotion, Release
from .deployments import deployment_request
from .promotions import promotion_request
from .transitions import deployment_transition, promotion_transition

# The reproducibility figures a release keeps from each reproducibility job.
REPRODUCIBILITY_FIELDS = (
    "passed",
    "max_abs_diff",
    "rows_outside",
    "rows_compared",
    "tolerance",
    "image",  # checked inside the release's image
    "model",  # the build's model it checked: digest, path, build job
)


@transaction.atomic
def release_create(*, project, version: str, commit_sha: str, actor: Any, **fields) -> Release:
    if Release.objects.filter(project=project, version=version).exists():
        raise ConflictError(f"Release {version} exists already; releases are immutable.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    release = Release.objects.create(
        project=project, version=version, commit_sha=commit_sha, created_by=user, **fields
    )
    audit_log(
        actor=actor,
        action="release.created",
        obj=release,
        project_id=project.pk,
        data={"commit": commit_sha},
    )
    return release


def release_from_run(*, run) -> Release | None:
    """The reaction to a succeeded pipeline run, in one transaction: its release (see
    :func:`release_create_from_run`), the environments its spec names that the project lacks
    (created, never changed), and the release's first step (deploy or ask for approval).

    A failure anywhere leaves nothing behind, so calling it again for the same run makes the
    release then; a run that already has its release makes nothing.
    """
    with transaction.atomic():
        release = release_create_from_run(run=run)
        if release is None:
            return None
        environments_from_spec(project=run.project, spec=run.spec, actor="pipeline")
        release_advance(release=release)  # the first environment
    return release


@transaction.atomic
def release_create_from_run(*, run) -> Release | None:
    """The immutable release of a succeeded pipeline on the project's release branch that
    built a bundle: commit, bundle digest, image, the evidence (tests, reproducibility) and the
    registered model version. Idempotent: one release per run (None when there is none to
    make or it exists).

    A run with a train job releases only when that job's champion/challenger gate passed: the
    train job's bundle, its ModelVersion and the gate's evidence (both scores, the dataset,
    the champion). A failed gate, or none, makes no release; so does a named pipeline run
    without a train job (``docs/gate.md``)."""
    from apps.pipelines.choices import JobKind, JobStatus, RunStatus

    project = run.project
    if run.status != RunStatus.SUCCEEDED or not run.commit_sha or run.ref != project.releases_from:
        return None
    # One read: the succeeded jobs give the evidence, a skipped in-image check its reason.
    ended = list(run.jobs.filter(status__in=(JobStatus.SUCCEEDED, JobStatus.SKIPPED)))
    jobs = [j for j in ended if j.status == JobStatus.SUCCEEDED]
    trains = [j for j in jobs if j.kind == JobKind.TRAIN and j.result.get("model")]
    if trains:  # a model release: only through its gate's pass (see _gated_model)
        gated = _gated_model(trains)
        if gated is None:
            return None
        build, model_version, gate = gated
    elif run.pipeline:  # a named pipeline without a train job makes no release
        return None
    else:
        build = next(
            (j for j in jobs if j.kind == JobKind.BUILD and j.result.get("bundle_digest")), None
        )
        model_version = gate = None
    if build is None:
        return None
    version = f"r{run.number}-{run.commit_sha[:8]}"
    if Release.objects.filter(project=project, version=version).exists():
        return None
    evidence: dict[str, Any] = {
        "run": run.number,
        "tests": {j.name: j.result["junit"] for j in jobs if "junit" in j.result},
        "reproducibility": {
            j.name: {k: j.result["reproducibility"].get(k) for k in REPRODUCIBILITY_FIELDS}
            for j in jobs
            if "reproducibility" in j.result
        },
    }
    # An in-image check that had no image to run in ended skipped: the evidence says so, and why.
    for j in ended:
        if "in_image" in j.result:
            evidence["reproducibility"][j.name] = j.result["in_image"]
    image = build.result.get("image") or {}
    if image.get("repo_digest"):
        evidence["image"] = {"repo_digest": image["repo_digest"]}
    model = build.result.get("model")
    if gate is not None:
        evidence["model"] = {**model, "version": model_version.version}
        evidence["gate"] = gate
    elif model:
        evidence["model"] = model
        model_version = model_version_register(
            project=project,
            run=run,
            name=model.get("name") or "model",
            commit_sha=run.commit_sha,
            metrics=model.get("metrics") or {},  # either shape: split into params and tags
            job=build,
            artifact_uri=f"bundle:{model.get('path', '')}",
            artifact_digest=model["digest"],
        )
    try:
        return release_create(  # its own savepoint: a concurrent insert costs only this one
            project=project,
            version=version,
            commit_sha=run.commit_sha,
            actor="pipeline",
            ref=run.ref,
            pipeline_run=run,
            bundle_digest=build.result["bundle_digest"],
            image_ref=image.get("pushed") or image.get("ref", ""),
            image_digest=image.get("id", ""),
            model_version=model_version,
            evidence=evidence,
        )
    except (ConflictError, IntegrityError):
        return None  # made by a concurrent call


def _gated_model(trains: list) -> tuple[Any, Any, dict] | None:
    """(train job, its ModelVersion, the gate evidence) when the run's one train job made a
    bundle and its gate passed; None otherwise (no gate, a failed gate, several models). The
    train job's bundle is the release's: the code at the commit with the new model in it."""
    if len(trains) != 1 or not trains[0].result.get("bundle_digest"):
        return None
    job = trains[0]
    model_version = train_job_record(job=job)  # idempotent: done when the job finished
    verdict = gate_verdict_of(model_version=model_version) if model_version else None
    if verdict is None or not verdict.passed:
        return None
    recorded = job.result.get("gate") or {}
    champion, dataset = verdict.champion, verdict.evaluated_on
    return (
        job,
        model_version,
        {
            "job": job.name,
            "passed": True,
            "reason": verdict.reason,
            "metric": verdict.metric,
            "direction": verdict.direction,
            "min_delta": verdict.min_delta,
            "relative": verdict.relative,
            "guards": verdict.guards,
            "environment": recorded.get("environment", ""),
            "evaluated": recorded.get("evaluated", False),
            "candidate": {"name": model_version.name, "version": model_version.version},
            "candidate_metrics": verdict.candidate_metrics,
            "champion": None
            if champion is None
            else {
                "name": champion.name,
                "version": champion.version,
                "digest": champion.artifact_digest,
            },
            "champion_metrics": verdict.champion_metrics,
            "dataset": {
                "name": recorded.get("dataset"),
                "path": recorded.get("data_path"),
                "digest": recorded.get("data_digest"),
                "version": dataset.version if dataset else None,
            },
        },
    )


@transaction.atomic
def release_block(*, release: Release, actor: Any, reason: str) -> Release:
    """Stop a release everywhere: pending promotions of it are rejected, no deploy starts."""
    if not reason.strip():
        raise ServiceError("Say why the release is blocked.")
    release = Release.objects.select_for_update().get(pk=release.pk)
    if release.is_blocked:
        raise ConflictError(f"Release {release.version} is blocked already.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    release.blocked_at = timezone.now()
    release.blocked_reason = reason
    release.blocked_by = user
    release.save(update_fields=["blocked_at", "blocked_reason", "blocked_by", "modified"])
    audit_log(
        actor=actor,
        action="release.blocked",
        obj=release,
        project_id=release.project_id,
        reason=reason,
    )
    for promotion in release.promotions.select_related("environment").filter(
        status=PromotionStatus.PENDING
    ):
        promotion_transition(
            promotion=promotion,
            to=PromotionStatus.REJECTED,
            actor=actor,
            reason=f"Release blocked: {reason}",
        )
    for deployment in release.deployments.select_related("environment").filter(
        status=DeploymentStatus.PENDING
    ):
        deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.FAILED,
            actor=actor,
            reason=f"Release blocked: {reason}",
            update={"error_message": f"Release blocked: {reason}", "hold_reason": ""},
        )
    return release


def release_advance(*, release: Release, after: Environment | None = None) -> None:
    """Move a release on to the environment after ``after`` (the first when None): deploy it
    there when that environment deploys automatically, else ask for approval."""
    environments = Environment.objects.filter(project_id=release.project_id)
    if after is not None:
        environments = environments.filter(order__gt=after.order)
    nxt = environments.order_by("order", "name").first()
    if nxt is None:
        return
    release.refresh_from_db(fields=["blocked_at", "blocked_reason"])
    if release.is_blocked:
        return
    if nxt.auto_deploy:
        deployment_request(release=release, environment=nxt, actor="pipeline")
    elif not Promotion.objects.filter(
        release=release,
        environment=nxt,
        status__in=(
            PromotionStatus.PENDING,
            PromotionStatus.APPROVED,
            PromotionStatus.DEPLOYING,
            PromotionStatus.DEPLOYED,
        ),
    ).exists():
        promotion_request(release=release, environment=nxt, actor="pipeline")

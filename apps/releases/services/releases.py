"""Releases: making the immutable release (by hand, or from a succeeded pipeline run with its
evidence), blocking one everywhere, and moving one on to its next environment."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment
from apps.projects.services import environments_from_spec
from apps.training.services import model_version_register

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
    make or it exists)."""
    from apps.pipelines.choices import JobKind, JobStatus, RunStatus

    project = run.project
    if run.status != RunStatus.SUCCEEDED or not run.commit_sha or run.ref != project.releases_from:
        return None
    # One read: the succeeded jobs give the evidence, a skipped in-image check its reason.
    ended = list(run.jobs.filter(status__in=(JobStatus.SUCCEEDED, JobStatus.SKIPPED)))
    jobs = [j for j in ended if j.status == JobStatus.SUCCEEDED]
    build = next(
        (j for j in jobs if j.kind == JobKind.BUILD and j.result.get("bundle_digest")), None
    )
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
    model_version = None
    if model:
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

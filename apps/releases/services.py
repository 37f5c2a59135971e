"""Writes to releases, deployments, promotions and approvals, with the approval rules."""

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.permissions import has_role
from apps.core.exceptions import ConflictError, PermissionDeniedError, ServiceError
from apps.core.services import audit_log, state_transition
from apps.projects.models import Environment

from .choices import (
    DEPLOYMENT_TIMESTAMPS,
    DEPLOYMENT_TRANSITIONS,
    PROMOTION_TIMESTAMPS,
    PROMOTION_TRANSITIONS,
    ApprovalChannel,
    ApprovalDecision,
    PromotionStatus,
)
from .models import Approval, Deployment, Promotion, Release


def deployment_transition(
    *,
    deployment: Deployment,
    to: str,
    actor: Any,
    reason: str = "",
    update: Mapping | None = None,
) -> Deployment:
    return state_transition(
        instance=deployment,
        to=to,
        table=DEPLOYMENT_TRANSITIONS,
        timestamps=DEPLOYMENT_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=deployment.environment.project_id,
        update=update,
    )


def promotion_transition(
    *,
    promotion: Promotion,
    to: str,
    actor: Any,
    reason: str = "",
    update: Mapping | None = None,
) -> Promotion:
    return state_transition(
        instance=promotion,
        to=to,
        table=PROMOTION_TRANSITIONS,
        timestamps=PROMOTION_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=promotion.environment.project_id,
        update=update,
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


def release_create_from_run(*, run) -> Release | None:
    """The immutable release of a succeeded pipeline on the project's release branch that
    built a bundle: commit, bundle digest, image, and the evidence (tests, reproducibility).
    Idempotent: one release per run."""
    from apps.pipelines.choices import JobKind, JobStatus, RunStatus

    project = run.project
    if run.status != RunStatus.SUCCEEDED or not run.commit_sha or run.ref != project.releases_from:
        return None
    jobs = list(run.jobs.filter(status=JobStatus.SUCCEEDED))
    build = next(
        (j for j in jobs if j.kind == JobKind.BUILD and j.result.get("bundle_digest")), None
    )
    if build is None:
        return None
    version = f"r{run.number}-{run.commit_sha[:8]}"
    if Release.objects.filter(project=project, version=version).exists():
        return None
    evidence = {
        "run": run.number,
        "tests": {j.name: j.result["junit"] for j in jobs if "junit" in j.result},
        "reproducibility": {
            j.name: {
                k: j.result["reproducibility"].get(k)
                for k in ("passed", "max_abs_diff", "rows_outside", "rows_compared", "tolerance")
            }
            for j in jobs
            if "reproducibility" in j.result
        },
    }
    image = build.result.get("image") or {}
    try:
        return release_create(
            project=project,
            version=version,
            commit_sha=run.commit_sha,
            actor="pipeline",
            ref=run.ref,
            pipeline_run=run,
            bundle_digest=build.result["bundle_digest"],
            image_ref=image.get("ref", ""),
            image_digest=image.get("id", ""),
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
    return release


@transaction.atomic
def promotion_request(*, release: Release, environment: Environment, actor: Any) -> Promotion:
    """Ask for approval to deploy ``release`` to ``environment``; supersedes older requests."""
    if release.project_id != environment.project_id:
        raise ServiceError("The release and the environment belong to different projects.")
    # Read the row, not the caller's copy: it may have been blocked meanwhile.
    release = Release.objects.select_for_update().get(pk=release.pk)
    if release.is_blocked:
        raise ConflictError(f"Release {release.version} is blocked: {release.blocked_reason}")
    for older in Promotion.objects.select_related("environment").filter(
        environment=environment, status=PromotionStatus.PENDING
    ):
        promotion_transition(
            promotion=older,
            to=PromotionStatus.SUPERSEDED,
            actor=actor,
            reason=f"Superseded by release {release.version}.",
        )
    user = actor if getattr(actor, "is_authenticated", False) else None
    promotion = Promotion.objects.create(
        release=release,
        environment=environment,
        requested_by=user,
        required_approvals=max(environment.required_approvals, 1),
        expires_at=timezone.now() + environment.approval_ttl,
    )
    audit_log(
        actor=actor,
        action="promotion.requested",
        obj=promotion,
        project_id=environment.project_id,
        to_state=promotion.status,
    )
    return promotion


def _check_may_decide(*, promotion: Promotion, user) -> None:
    env = promotion.environment
    if not has_role(user, env.project_id, env.approver_min_role):
        raise PermissionDeniedError(
            f"Only members with the {env.approver_min_role} role may approve deploys to {env.name}."
        )
    if env.allow_self_approval:
        return
    if promotion.requested_by_id == user.pk:
        raise PermissionDeniedError("You requested this promotion; someone else must approve it.")
    author_email = (
        promotion.release.pipeline_run.commit_author_email
        if promotion.release.pipeline_run_id
        else ""
    )
    if author_email and user.email and author_email.lower() == user.email.lower():
        raise PermissionDeniedError("You wrote this commit; someone else must approve it.")


def promotion_decide(
    *,
    promotion: Promotion,
    user,
    decision: str,
    comment: str = "",
    channel: str = ApprovalChannel.WEB,
) -> Promotion:
    """Record one approver's decision. A rejection ends the request; the N-th approval
    approves it."""
    with transaction.atomic():
        promotion = (
            Promotion.objects.select_for_update(of=("self",))
            .select_related("environment", "release", "release__pipeline_run")
            .get(pk=promotion.pk)
        )
        _check_may_decide(promotion=promotion, user=user)
        if promotion.status != PromotionStatus.PENDING:
            raise ConflictError(f"This promotion is {promotion.status}; it takes no decisions.")
        if promotion.expires_at and promotion.expires_at <= timezone.now():
            raise ConflictError("This promotion has expired.")
        if promotion.release.is_blocked:
            raise ConflictError(f"Release {promotion.release.version} is blocked.")
        try:
            with transaction.atomic():
                Approval.objects.create(
                    promotion=promotion,
                    user=user,
                    decision=decision,
                    comment=comment,
                    channel=channel,
                )
        except IntegrityError:
            raise ConflictError("You have already decided on this promotion.") from None
        audit_log(
            actor=user,
            action=f"promotion.{decision}",
            obj=promotion,
            project_id=promotion.environment.project_id,
            reason=comment,
            data={"channel": channel},
        )
        if decision == ApprovalDecision.REJECT:
            return promotion_transition(
                promotion=promotion, to=PromotionStatus.REJECTED, actor=user, reason=comment
            )
        approvals = promotion.approvals.filter(decision=ApprovalDecision.APPROVE).count()
        if approvals >= promotion.required_approvals:
            return promotion_transition(
                promotion=promotion,
                to=PromotionStatus.APPROVED,
                actor=user,
                reason=f"{approvals} of {promotion.required_approvals} approvals.",
            )
        return promotion


def promotion_expire_due() -> int:
    """Expire pending promotions past their time (periodic)."""
    expired = 0
    for promotion in Promotion.objects.select_related("environment").filter(
        status=PromotionStatus.PENDING, expires_at__lte=timezone.now()
    ):
        promotion_transition(
            promotion=promotion,
            to=PromotionStatus.EXPIRED,
            actor="expiry",
            reason="No decision before the approval deadline.",
        )
        expired += 1
    return expired

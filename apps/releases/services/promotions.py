"""Promotions: asking for approval to deploy a release to an environment, the approval rules
(approver role, no self-approval, N approvals, a rejection says why), approving and rejecting,
expiry and reminders."""

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.permissions import has_role
from apps.core.exceptions import (
    ConflictError,
    IllegalTransition,
    PermissionDeniedError,
    ServiceError,
)
from apps.core.services import audit_log
from apps.projects.models import Environment

from ..choices import ApprovalChannel, ApprovalDecision, PromotionStatus
from ..models import Approval, Promotion, Release
from ..signals import approval_recorded, promotion_reminder, promotion_status_changed
from .deployments import deployment_request
from .transitions import promotion_transition

logger = logging.getLogger(__name__)

REJECTION_NEEDS_A_COMMENT = "A rejection needs a comment: the reason is the audit trail."


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
    transaction.on_commit(
        lambda: promotion_status_changed.send(
            sender=Promotion, promotion=promotion, from_status=None, to_status=promotion.status
        )
    )
    return promotion


def promotion_decision_blocker(*, promotion: Promotion, user) -> str | None:
    """Why ``user`` may not decide on ``promotion`` (role, own request, own run, own commit),
    or None. Four eyes: the requester, whoever triggered the run that built the release and the
    commit's author may not approve it, unless the environment allows self-approval.

    Pure (no writes, no status check): the decision services raise it, the approvals inbox and
    the promotion page show it before anyone clicks.
    """
    env = promotion.environment
    if not has_role(user, env.project_id, env.approver_min_role):
        return (
            f"Only members with the {env.approver_min_role} role may approve deploys to {env.name}."
        )
    if env.allow_self_approval:
        return None
    if promotion.requested_by_id == user.pk:
        return "You requested this promotion; someone else must approve it."
    run = promotion.release.pipeline_run if promotion.release.pipeline_run_id else None
    if run is not None and run.created_by_id and run.created_by_id == user.pk:
        return "You triggered the run that built this release; someone else must approve it."
    author_email = run.commit_author_email if run is not None else ""
    if author_email and user.email and author_email.lower() == user.email.lower():
        return "You wrote this commit; someone else must approve it."
    return None


def promotion_approve(
    *,
    promotion: Promotion,
    user,
    comment: str = "",
    channel: str = ApprovalChannel.WEB,
) -> Promotion:
    """Record one approval; the N-th approves the promotion and requests its deployment in the
    same transaction."""
    return _decide(
        promotion=promotion,
        user=user,
        decision=ApprovalDecision.APPROVE,
        comment=comment,
        channel=channel,
    )


def promotion_reject(
    *,
    promotion: Promotion,
    user,
    comment: str,
    channel: str = ApprovalChannel.WEB,
) -> Promotion:
    """Reject the promotion: it ends at once. The comment (why) is required."""
    return _decide(
        promotion=promotion,
        user=user,
        decision=ApprovalDecision.REJECT,
        comment=comment,
        channel=channel,
    )


def _decide(*, promotion: Promotion, user, decision: str, comment: str, channel: str) -> Promotion:
    """The one decision rule behind approve and reject: who may decide, on what, once."""
    with transaction.atomic():
        promotion = (
            Promotion.objects.select_for_update(of=("self",))
            .select_related("environment", "release", "release__pipeline_run")
            .get(pk=promotion.pk)
        )
        blocker = promotion_decision_blocker(promotion=promotion, user=user)
        if blocker is not None:
            raise PermissionDeniedError(blocker)
        if promotion.status != PromotionStatus.PENDING:
            raise ConflictError(f"This promotion is {promotion.status}; it takes no decisions.")
        if promotion.expires_at and promotion.expires_at <= timezone.now():
            raise ConflictError("This promotion has expired.")
        if promotion.release.is_blocked:
            raise ConflictError(f"Release {promotion.release.version} is blocked.")
        if decision == ApprovalDecision.REJECT and not (comment or "").strip():
            raise ServiceError(REJECTION_NEEDS_A_COMMENT, code="comment_required")
        try:
            with transaction.atomic():
                approval = Approval.objects.create(
                    promotion=promotion,
                    user=user,
                    decision=decision,
                    comment=comment,
                    channel=channel,
                )
        except IntegrityError:
            raise ConflictError("You have already decided on this promotion.") from None
        transaction.on_commit(lambda: approval_recorded.send(sender=Approval, approval=approval))
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
            promotion = promotion_transition(
                promotion=promotion,
                to=PromotionStatus.APPROVED,
                actor=user,
                reason=f"{approvals} of {promotion.required_approvals} approvals.",
            )
            # Approved means deployed next: the deployment is made in the same transaction
            # (held, not refused, while a freeze window is open).
            deployment_request(
                release=promotion.release,
                environment=promotion.environment,
                actor=user,
                promotion=promotion,
            )
            promotion.refresh_from_db()
        return promotion


def promotion_expire_due() -> int:
    """Expire pending promotions past their time (periodic).

    One that was decided between the query and its turn is left as it is: the decision won.
    """
    expired = 0
    for promotion in Promotion.objects.select_related("environment").filter(
        status=PromotionStatus.PENDING, expires_at__lte=timezone.now()
    ):
        try:
            promotion_transition(
                promotion=promotion,
                to=PromotionStatus.EXPIRED,
                actor="expiry",
                reason="No decision before the approval deadline.",
            )
        except IllegalTransition:
            logger.info("Promotion %s was decided before it could expire", promotion.pk)
            continue
        expired += 1
    return expired


def promotion_remind_due() -> int:
    """Send one reminder for each pending promotion close to its deadline (periodic)."""
    soon = timezone.now() + settings.APPROVAL_REMINDER_BEFORE
    reminded = 0
    for promotion in Promotion.objects.filter(
        status=PromotionStatus.PENDING, reminder_sent_at__isnull=True, expires_at__lte=soon
    ):
        claimed = Promotion.objects.filter(pk=promotion.pk, reminder_sent_at__isnull=True).update(
            reminder_sent_at=timezone.now()
        )
        if claimed:  # one reminder even when two beat ticks overlap
            promotion_reminder.send(sender=Promotion, promotion=promotion)
            reminded += 1
    return reminded

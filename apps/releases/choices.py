"""Statuses and transition tables of Deployment and Promotion."""

from django.db import models


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SUPERSEDED = "superseded", "Superseded"


DEPLOYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    DeploymentStatus.PENDING: frozenset(
        {DeploymentStatus.RUNNING, DeploymentStatus.FAILED, DeploymentStatus.SUPERSEDED}
    ),
    DeploymentStatus.RUNNING: frozenset({DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED}),
    DeploymentStatus.SUCCEEDED: frozenset(),
    DeploymentStatus.FAILED: frozenset({DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.ROLLED_BACK: frozenset(),
    DeploymentStatus.SUPERSEDED: frozenset(),
}
DEPLOYMENT_ACTIVE = frozenset({DeploymentStatus.PENDING, DeploymentStatus.RUNNING})
DEPLOYMENT_TERMINAL = frozenset(
    {
        DeploymentStatus.SUCCEEDED,
        DeploymentStatus.FAILED,
        DeploymentStatus.ROLLED_BACK,
        DeploymentStatus.SUPERSEDED,
    }
)
DEPLOYMENT_TIMESTAMPS = {
    DeploymentStatus.RUNNING: "started_at",
    DeploymentStatus.SUCCEEDED: "finished_at",
    DeploymentStatus.FAILED: "finished_at",
    DeploymentStatus.SUPERSEDED: "finished_at",
}


class PromotionStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    DEPLOYING = "deploying", "Deploying"
    DEPLOYED = "deployed", "Deployed"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    SUPERSEDED = "superseded", "Superseded"


PROMOTION_TRANSITIONS: dict[str, frozenset[str]] = {
    PromotionStatus.PENDING: frozenset(
        {
            PromotionStatus.APPROVED,
            PromotionStatus.REJECTED,
            PromotionStatus.EXPIRED,
            PromotionStatus.SUPERSEDED,
        }
    ),
    PromotionStatus.APPROVED: frozenset({PromotionStatus.DEPLOYING}),
    PromotionStatus.DEPLOYING: frozenset({PromotionStatus.DEPLOYED, PromotionStatus.FAILED}),
    PromotionStatus.DEPLOYED: frozenset(),
    PromotionStatus.FAILED: frozenset(),
    PromotionStatus.REJECTED: frozenset(),
    PromotionStatus.EXPIRED: frozenset(),
    PromotionStatus.SUPERSEDED: frozenset(),
}
PROMOTION_OPEN = frozenset({PromotionStatus.PENDING})
PROMOTION_TERMINAL = frozenset(
    {
        PromotionStatus.DEPLOYED,
        PromotionStatus.FAILED,
        PromotionStatus.REJECTED,
        PromotionStatus.EXPIRED,
        PromotionStatus.SUPERSEDED,
    }
)
PROMOTION_TIMESTAMPS = {
    PromotionStatus.APPROVED: "decided_at",
    PromotionStatus.REJECTED: "decided_at",
    PromotionStatus.EXPIRED: "decided_at",
    PromotionStatus.SUPERSEDED: "decided_at",
    PromotionStatus.DEPLOYED: "finished_at",
    PromotionStatus.FAILED: "finished_at",
}


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class ApprovalChannel(models.TextChoices):
    WEB = "web", "Browser"
    API = "api", "API"
    SLACK = "slack", "Slack"

from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse

from apps.core.models import TimeStampedModel
from apps.pipelines.artifacts import bundle_store_path
from apps.pipelines.models import PipelineRun
from apps.projects.models import Environment, Project
from apps.training.models import ModelVersion

from .choices import (
    DEPLOYMENT_TERMINAL,
    ApprovalChannel,
    ApprovalDecision,
    DeploymentStatus,
    PromotionStatus,
)


class Release(TimeStampedModel):
    """An immutable, deployable unit: one commit, one bundle, one image, one model version.

    Only ``blocked_*`` may change after creation (a block stops it in every environment).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="releases")
    version = models.CharField(max_length=100)
    pipeline_run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="releases"
    )
    commit_sha = models.CharField(max_length=64)
    ref = models.CharField(max_length=255, blank=True)
    bundle_digest = models.CharField(max_length=80, blank=True)
    image_ref = models.CharField(max_length=300, blank=True)
    image_digest = models.CharField(max_length=80, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="releases"
    )
    evidence = models.JSONField(
        default=dict, blank=True, help_text="Test and reproducibility results at build time."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    blocked_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.TextField(blank=True)
    blocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="release_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} {self.version}"

    def get_absolute_url(self) -> str:
        return reverse("releases:detail", kwargs={"slug": self.project.slug, "key": self.url_key})

    @property
    def url_key(self) -> str:
        """What names the release in its page's URL: its version (the id for a version a URL
        path cannot hold)."""
        return self.version if self.version and "/" not in self.version else str(self.pk)

    @property
    def is_blocked(self) -> bool:
        return self.blocked_at is not None

    @property
    def bundle_path(self) -> Path | None:
        """The bundle in the content-addressed store (kept by the build job)."""
        if not self.bundle_digest:
            return None
        return bundle_store_path(self.bundle_digest)


class Deployment(TimeStampedModel):
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="deployments"
    )
    status = models.CharField(
        max_length=16,
        choices=DeploymentStatus.choices,
        default=DeploymentStatus.PENDING,
        db_index=True,
    )
    # What was serving before; a failed deployment rolls back to it.
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_rollback = models.BooleanField(default=False)
    deployer = models.CharField(max_length=16, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    # Why a pending deployment waits (a freeze window, another deploy); cleared when it starts.
    hold_reason = models.CharField(max_length=300, blank=True)
    url = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Progress lines of the deployer, appended as they come (see services.deployment_log).
    log = models.TextField(blank=True)
    promotion = models.ForeignKey(
        "Promotion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["environment", "status"])]
        constraints = [
            # The per-environment deploy lock: one deployment runs at a time.
            models.UniqueConstraint(
                fields=["environment"],
                condition=models.Q(status="running"),
                name="deployment_one_running_per_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.release.version} → {self.environment.name}"

    def get_absolute_url(self) -> str:
        return reverse(
            "releases:deployment",
            kwargs={"slug": self.environment.project.slug, "pk": self.pk},
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in DEPLOYMENT_TERMINAL


class Promotion(TimeStampedModel):
    """A request to deploy a release to an environment that needs approval."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="promotions")
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="promotions"
    )
    status = models.CharField(
        max_length=16,
        choices=PromotionStatus.choices,
        default=PromotionStatus.PENDING,
        db_index=True,
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # At most one open request per environment: a newer release supersedes it.
            models.UniqueConstraint(
                fields=["environment"],
                condition=models.Q(status="pending"),
                name="promotion_one_pending_per_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"promote {self.release.version} to {self.environment.name}"

    def get_absolute_url(self) -> str:
        return reverse(
            "releases:promotion", kwargs={"slug": self.release.project.slug, "pk": self.pk}
        )


class Approval(models.Model):
    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=ApprovalDecision.choices)
    comment = models.TextField(blank=True)
    channel = models.CharField(
        max_length=8, choices=ApprovalChannel.choices, default=ApprovalChannel.WEB
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]
        constraints = [
            models.UniqueConstraint(fields=["promotion", "user"], name="approval_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.decision}d {self.promotion}"

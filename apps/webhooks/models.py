from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.pipelines.models import PipelineRun
from apps.projects.models import Project

from .choices import DELIVERY_REDELIVERABLE, DeliveryStatus, Provider


class WebhookDelivery(models.Model):
    """The ledger: one row per request a receiver answered (and per redelivery), with what
    became of it. Rows are written once, but for an accepted push's run: the receiver answers as
    soon as the row is in (``awaiting_run``), and a worker starts the run and records it
    (``outbox.delivery_start_runs``) — or moves the row to ``error`` when the run cannot be
    started (``DELIVERY_TRANSITIONS``, the ledger's one state change, audited).

    Forged, unreadable or oversized requests get a minimal row (no payload, a bounded subset of
    headers) so a project's owner can see that something knocked, while a forger cannot fill
    the disk.
    """

    provider = models.CharField(max_length=16, choices=Provider.choices)
    # Null when the URL named no project (the row then only shows in the admin).
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    # The hook, where one event reaches several hooks under one delivery id (GitHub's
    # X-GitHub-Hook-ID); empty for the others.
    hook_id = models.CharField(max_length=64, blank=True)
    # X-GitHub-Delivery, Idempotency-Key / X-Gitlab-Webhook-UUID, X-Gitea-Delivery, … or the
    # SHA-256 of the body when the sender gives none.
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, db_index=True)
    detail = models.CharField(max_length=500, blank=True, help_text="Why, in a few words.")
    http_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(default=dict, blank=True)
    ref = models.CharField(max_length=255, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey(
        PipelineRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_deliveries",
    )
    # The outbox flag: accepted, run not started yet. Set by the receiver, cleared by the worker
    # that starts the run (so a run deleted later is not started again).
    awaiting_run = models.BooleanField(default=False, editable=False)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Only for authenticated deliveries (never for rejected or unreadable ones).
    payload = models.JSONField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="A subset; never secrets.")
    body_sha256 = models.CharField(max_length=64, blank=True)
    body_size = models.PositiveIntegerField(default=0)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    redelivery_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="redeliveries"
    )
    redelivered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # TRICKY: the guarantee behind "the same delivery sent N times makes one run", also
            # when the copies arrive at once: the second insert waits for the first transaction
            # and then fails; the receiver turns that into "already received". Per hook: two
            # GitHub hooks on one project get the same X-GitHub-Delivery for one push.
            models.UniqueConstraint(
                fields=["project", "provider", "hook_id", "delivery_id"],
                condition=models.Q(status="accepted"),
                name="webhookdelivery_unique_accepted",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-received_at"]),
            models.Index(fields=["project", "provider", "delivery_id"]),
            # The worker's query; holds only the few rows waiting for their run.
            models.Index(
                fields=["id"],
                condition=models.Q(awaiting_run=True),
                name="webhookdelivery_awaiting_run",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event or '?'} {self.delivery_id[:12]} ({self.status})"

    def get_absolute_url(self) -> str:
        if self.project_id is None:
            # No project, no project page: only admins see these rows.
            return reverse("admin:webhooks_webhookdelivery_change", args=[self.pk])
        return reverse("webhooks:detail", kwargs={"slug": self.project.slug, "pk": self.pk})

    @property
    def can_redeliver(self) -> bool:
        return (
            self.status in DELIVERY_REDELIVERABLE
            and self.project_id is not None
            and self.payload is not None
        )


class CommitStatusReport(models.Model):
    """The last commit status sent (or tried) to the Git server for a run."""

    run = models.OneToOneField(
        PipelineRun, on_delete=models.CASCADE, related_name="commit_status_report"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    run_status = models.CharField(max_length=16, blank=True, help_text="The run status reported.")
    state = models.CharField(max_length=16, blank=True, help_text="As the Git server calls it.")
    description = models.CharField(max_length=140, blank=True)
    target_url = models.URLField(max_length=500, blank=True)
    # Set when the Git server took the status; unchanged by a later failed attempt.
    reported_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The last failure, with the token scrubbed out; empty after a success.
    error_message = models.TextField(blank=True)
    modified = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.run} → {self.state or '—'}"


class RejectedDeliveryCount(models.Model):
    """Requests the receivers refused unverified (bad signature, unknown project, oversized),
    counted per source and minute. The first ``WEBHOOK_REJECTED_ROWS_PER_MINUTE`` of a source in
    a minute also get their ledger row (a project's owner sees what knocked); the rest only
    add to ``count`` here, so a flood of forged requests costs one row a minute, not one each.

    A source is the provider, the project slug the URL named and the sender's address.
    """

    provider = models.CharField(max_length=16)
    slug = models.CharField(max_length=100, help_text="The project slug the URL named.")
    # Null when the URL named no project (the row then only shows in the admin).
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rejected_delivery_counts",
    )
    remote_addr = models.CharField(max_length=45, blank=True)
    minute = models.DateTimeField(help_text="The minute the requests arrived in (UTC).")
    count = models.PositiveIntegerField(default=0)
    # How many of ``count`` got no ledger row (over the per-minute allowance).
    not_stored = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-minute", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "slug", "remote_addr", "minute"],
                name="rejecteddeliverycount_unique_source_minute",
            )
        ]
        indexes = [models.Index(fields=["project", "-minute"])]

    def __str__(self) -> str:
        return f"{self.count} rejected {self.provider}/{self.slug} from {self.remote_addr or '?'}"

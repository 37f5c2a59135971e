import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models

from apps.core.fields import EncryptedTextField
from apps.core.models import TimeStampedModel
from apps.monitoring.choices import SEVERITY_RANK, Severity
from apps.projects.models import Project

from .choices import ALERT_EVENTS, KIND_EVENTS, DeliveryStatus, Event, TargetKind


class NotificationTarget(TimeStampedModel):
    """Where a project's events are sent: a Slack channel, email addresses or a URL."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="notification_targets"
    )
    name = models.CharField(max_length=100, blank=True, help_text="A label for people.")
    kind = models.CharField(max_length=16, choices=TargetKind.choices)
    destination = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Slack: the channel id (C0123…). Email: comma-separated addresses (may be "
        "empty: approval requests still go to the approvers). Webhook: the URL.",
    )
    # Webhooks only: the HMAC-SHA256 key of X-Controlplane-Signature.
    secret = EncryptedTextField(blank=True)
    events = models.JSONField(
        default=list, blank=True, help_text="Event names to send; empty means all."
    )
    # Alerts only: the least severe alert sent here; empty means every alert.
    min_severity = models.CharField(
        max_length=16,
        choices=Severity.choices,
        blank=True,
        help_text="Alerts at least this severe are sent; empty means all.",
    )
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["project_id", "kind", "id"]

    def __str__(self) -> str:
        return f"{self.project.slug}: {self.name or self.get_kind_display()} ({self.kind})"

    def wants(self, event: str, severity: str | None = None) -> bool:
        """Whether the target takes ``event``; an alert's also by its ``severity``."""
        if event not in KIND_EVENTS.get(self.kind, ()):
            return False
        if event in ALERT_EVENTS and not self.takes_severity(severity):
            return False
        return event == Event.TEST or not self.events or event in self.events

    def takes_severity(self, severity: str | None) -> bool:
        if not self.min_severity:
            return True
        # An unknown severity (an Alertmanager label we do not know) counts as the least.
        return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK[self.min_severity]

    @property
    def destination_display(self) -> str:
        """The destination for pages: a webhook URL shows its scheme and host only (its path or
        query may hold a token, its user info a password)."""
        if self.kind != TargetKind.WEBHOOK or not self.destination:
            return self.destination
        try:
            parts = urlsplit(self.destination)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "(hidden)"
        hidden = "…" if parts.path.strip("/") or parts.query or parts.fragment else ""
        return f"{parts.scheme}://{host}{port}/{hidden}"

    @property
    def email_addresses(self) -> list[str]:
        return [a.strip() for a in self.destination.split(",") if a.strip()]


class SlackIdentity(models.Model):
    """Links a Slack user to an account, so a button clicked in Slack acts as that account."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_identity"
    )
    slack_user_id = models.CharField(max_length=32, unique=True)
    team_id = models.CharField(
        max_length=32, blank=True, help_text="The Slack workspace (T…); empty: any."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "Slack identities"

    def __str__(self) -> str:
        return f"{self.slack_user_id} → {self.user}"


class NotificationDelivery(models.Model):
    """The ledger: one row per (event occurrence, target), with what became of it."""

    class ObjectType(models.TextChoices):
        RUN = "run", "Pipeline run"
        PROMOTION = "promotion", "Promotion"
        DEPLOYMENT = "deployment", "Deployment"
        TARGET = "target", "Notification target"
        ALERT = "alert", "Alert"

    # X-Controlplane-Delivery: the same across retries, so a receiver can drop duplicates.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="notification_deliveries"
    )
    # Kept (null) when the target is deleted: the history stays readable.
    target = models.ForeignKey(
        NotificationTarget,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    kind = models.CharField(max_length=16, choices=TargetKind.choices)
    event = models.CharField(max_length=32, choices=Event.choices, db_index=True)
    # One signal sent = one event id; a repeated dispatch message makes no second row.
    event_id = models.UUIDField(editable=False)
    object_type = models.CharField(max_length=16, choices=ObjectType.choices)
    object_id = models.BigIntegerField()
    object_repr = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=16,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why it failed or was skipped.")
    # What the event said when it happened (the "data" of a webhook body).
    payload = models.JSONField(default=dict, blank=True)
    # Email: who got it (so a retry does not mail them twice).
    recipients = models.JSONField(default=list, blank=True)
    # Slack: the message posted (or edited), so later events can edit it.
    slack_channel = models.CharField(max_length=32, blank=True)
    slack_ts = models.CharField(max_length=32, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "target"], name="notificationdelivery_once_per_target"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-created"]),
            # The Slack messages of a promotion, found again to be edited.
            models.Index(fields=["target", "object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.kind} ({self.status})"

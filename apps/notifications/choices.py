"""Kinds of notification target, the events they can receive, and the delivery outcomes."""

from django.db import models


class TargetKind(models.TextChoices):
    SLACK = "slack", "Slack channel"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Outgoing webhook"


class Event(models.TextChoices):
    """What is notified. The value is the ``event`` of a webhook body and the
    ``X-Controlplane-Event`` header."""

    BUILD_FAILED = "build.failed", "Build failed"
    PROMOTION_PENDING = "promotion.pending", "Promotion awaiting approval"
    PROMOTION_REMINDER = "promotion.reminder", "Approval reminder (deadline near)"
    APPROVAL_RECORDED = "approval.recorded", "Approval or rejection recorded"
    PROMOTION_APPROVED = "promotion.approved", "Promotion approved"
    PROMOTION_REJECTED = "promotion.rejected", "Promotion rejected"
    PROMOTION_EXPIRED = "promotion.expired", "Promotion expired"
    PROMOTION_SUPERSEDED = "promotion.superseded", "Promotion superseded"
    PROMOTION_DEPLOYED = "promotion.deployed", "Approved promotion deployed"
    PROMOTION_FAILED = "promotion.failed", "Approved promotion failed to deploy"
    DEPLOYMENT_SUCCEEDED = "deployment.succeeded", "Deployed"
    DEPLOYMENT_FAILED = "deployment.failed", "Deploy failed"
    DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back", "Rolled back"
    ALERT_FIRING = "alert.firing", "Alert firing"
    ALERT_RESOLVED = "alert.resolved", "Alert resolved"
    ALERT_ACKNOWLEDGED = "alert.acknowledged", "Alert acknowledged"
    TEST = "test", "Test notification"


#: Promotion status → the event it notifies (other statuses notify nothing: a deploy is told by
#: its deployment's events).
PROMOTION_STATUS_EVENTS: dict[str, str] = {
    "pending": Event.PROMOTION_PENDING,
    "approved": Event.PROMOTION_APPROVED,
    "rejected": Event.PROMOTION_REJECTED,
    "expired": Event.PROMOTION_EXPIRED,
    "superseded": Event.PROMOTION_SUPERSEDED,
    # "deploying" follows "approved" in the same transaction: the approved update shows it.
    "deployed": Event.PROMOTION_DEPLOYED,
    "failed": Event.PROMOTION_FAILED,
}

#: Events about a promotion; their object reference is the promotion.
PROMOTION_EVENTS = frozenset(
    {
        Event.PROMOTION_PENDING,
        Event.PROMOTION_REMINDER,
        Event.APPROVAL_RECORDED,
        Event.PROMOTION_APPROVED,
        Event.PROMOTION_REJECTED,
        Event.PROMOTION_EXPIRED,
        Event.PROMOTION_SUPERSEDED,
        Event.PROMOTION_DEPLOYED,
        Event.PROMOTION_FAILED,
    }
)
#: Slack messages that carry the Approve / Reject buttons; later events of the same promotion
#: edit these messages (chat.update) instead of posting new ones.
SLACK_ROOT_EVENTS = frozenset({Event.PROMOTION_PENDING, Event.PROMOTION_REMINDER})
#: Slack events that only edit the promotion's messages: with no message to edit, nothing is
#: posted (a lone "1 of 2 approvals" would be noise).
SLACK_UPDATE_ONLY_EVENTS = frozenset(
    {
        Event.APPROVAL_RECORDED,
        Event.PROMOTION_SUPERSEDED,
        Event.PROMOTION_DEPLOYED,
        Event.PROMOTION_FAILED,
    }
)
#: Events about an alert (object type ``alert``). ``alert.firing`` posts the alert's Slack message
#: (a repeat replies in its thread); resolved and acknowledged edit it in place, and go only to
#: the targets that were told it fired.
ALERT_EVENTS = frozenset({Event.ALERT_FIRING, Event.ALERT_RESOLVED, Event.ALERT_ACKNOWLEDGED})
ALERT_UPDATE_EVENTS = frozenset({Event.ALERT_RESOLVED, Event.ALERT_ACKNOWLEDGED})

#: Emails go to the approvers of the environment as well as to the target's addresses.
EMAIL_APPROVER_EVENTS = frozenset({Event.PROMOTION_PENDING, Event.PROMOTION_REMINDER})

#: The events each kind of target can receive. A target with no ``events`` gets all of its
#: kind's. Email takes no per-click ``approval.recorded`` (one mail per click is noise), no
#: ``promotion.deployed`` / ``promotion.failed`` (the ``deployment.*`` mails say it) and no
#: ``alert.acknowledged`` (Slack's message and webhooks show it; a mail would be noise).
KIND_EVENTS: dict[str, frozenset[str]] = {
    TargetKind.SLACK: frozenset(Event.values),
    TargetKind.WEBHOOK: frozenset(Event.values),
    TargetKind.EMAIL: frozenset(Event.values)
    - {
        Event.APPROVAL_RECORDED,
        Event.PROMOTION_DEPLOYED,
        Event.PROMOTION_FAILED,
        Event.ALERT_ACKNOWLEDGED,
    },
}


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


DELIVERY_TERMINAL = frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED})

#: A delivery's state machine (through ``core.services.state_transition``): a pending row ends
#: once. A transient failure that will be retried is no move: the row stays pending, with its
#: attempts and last error. Nothing leaves an end state; sending again means a new event.
DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {
    DeliveryStatus.PENDING: DELIVERY_TERMINAL,
    DeliveryStatus.SENT: frozenset(),
    DeliveryStatus.FAILED: frozenset(),
    DeliveryStatus.SKIPPED: frozenset(),
}
#: The time stamped on entering a state.
DELIVERY_TIMESTAMPS = {DeliveryStatus.SENT: "sent_at"}

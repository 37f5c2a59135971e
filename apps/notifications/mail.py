"""Email: who gets an event, what it says (text + HTML from templates/notifications/email/)
and :func:`send` (one delivery, one message per recipient)."""

import smtplib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from apps.accounts.models import Membership
from apps.core.transient import TransientError
from apps.projects.models import Project
from apps.releases.choices import ApprovalDecision, PromotionStatus
from apps.releases.models import Promotion
from apps.releases.services import promotion_decision_blocker

from . import events
from .choices import EMAIL_APPROVER_EVENTS, DeliveryStatus, Event
from .models import NotificationDelivery, NotificationTarget
from .outcome import Outcome

ObjectType = NotificationDelivery.ObjectType


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def approver_addresses(promotion: Promotion) -> list[str]:
    """Members who may decide on the promotion, with an email address: those the releases
    app's own rule (``promotion_decision_blocker``: the approver role, and four eyes — not
    the requester, not whoever triggered the run that built the release, not the commit's
    author, unless the environment allows self-approval) lets approve."""
    env = promotion.environment
    members = Membership.objects.filter(project_id=env.project_id).select_related("user")
    return [
        m.user.email
        for m in members
        if m.user.email and promotion_decision_blocker(promotion=promotion, user=m.user) is None
    ]


def unique_addresses(*groups: list[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for group in groups:
        for address in group:
            if address.lower() not in seen:
                seen.add(address.lower())
                result.append(address)
    return result


def _details(event: str, data: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str, str]:
    """(intro, [(label, value)], link, link label)."""
    if event == Event.BUILD_FAILED:
        run = data["run"]
        details = [
            ("Pipeline", f"#{run['number']}"),
            ("Ref", run["ref"]),
            ("Commit", run["commit_sha"][:12]),
            ("Author", run["commit_author"]),
            ("Message", run["commit_message"]),
            ("Error", run["error_message"]),
        ]
        return "A pipeline failed.", details, run["url"], "Open the run"
    if "deployment" in data:
        d = data["deployment"]
        details = [
            ("Release", d["release"]),
            ("Environment", d["environment"]),
            ("Rollback", "yes" if d["is_rollback"] else ""),
            ("Previous release", d["previous_release"] or ""),
            ("By", d["triggered_by"] or ""),
            ("Error", d["error_message"]),
        ]
        intro = {
            Event.DEPLOYMENT_SUCCEEDED: "A deploy finished.",
            Event.DEPLOYMENT_FAILED: "A deploy failed.",
            Event.DEPLOYMENT_ROLLED_BACK: "An environment was rolled back.",
        }.get(event, "")
        return intro, details, d["url"], "Open the environment"
    if "promotion" in data:
        p = data["promotion"]
        approvers = [a["user"] for a in p["approvals"] if a["decision"] == ApprovalDecision.APPROVE]
        approvals = f"{len(approvers)} of {p['required_approvals']}"
        if approvers:
            approvals += f" ({', '.join(approvers)})"
        details = [
            ("Release", p["release"]["version"]),
            ("Commit", p["release"]["commit_sha"][:12]),
            ("Environment", p["environment"]),
            ("Requested by", p["requested_by"] or ""),
            ("Approvals", approvals),
            ("Expires", (p["expires_at"] or "") if p["status"] == "pending" else ""),
            ("Reason", p["reason"]),
        ]
        intro = {
            Event.PROMOTION_PENDING: "A deploy is waiting for your approval.",
            Event.PROMOTION_REMINDER: "A deploy is still waiting for approval, and its "
            "request expires soon.",
            Event.PROMOTION_APPROVED: "A deploy was approved.",
            Event.PROMOTION_REJECTED: "A deploy was rejected.",
            Event.PROMOTION_EXPIRED: "A deploy request expired without enough approvals.",
            Event.PROMOTION_SUPERSEDED: "A deploy request was superseded by a newer release.",
        }.get(event, "")
        label = (
            "Approve or reject"
            if event in (Event.PROMOTION_PENDING, Event.PROMOTION_REMINDER)
            else "Open the promotion"
        )
        return intro, details, p["url"], label
    if "alert" in data:
        return _alert_details(event, data["alert"])
    return "This is a test notification: the target works.", [], "", ""


def _alert_details(
    event: str, alert: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], str, str]:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
    description = alert["annotations"].get("description", "")
    details = [
        ("Alert", alert["summary"] or alert["rule"]),
        ("Severity", alert["severity"]),
        ("Environment", alert["environment"] or ""),
        ("Rule", alert["rule"]),
        ("Value", "" if alert["value"] is None else f"{alert['value']:.6g}"),
        ("Description", description),
        ("Labels", labels),
        ("Since", alert["starts_at"] or ""),
        ("Resolved", alert["resolved_at"] or ""),
        ("Acknowledged by", alert["acknowledged_by"] or ""),
        ("Silenced until", alert["silenced_until"] or ""),
    ]
    intro = {
        Event.ALERT_FIRING: "An alert is firing.",
        Event.ALERT_RESOLVED: "An alert resolved.",
        Event.ALERT_ACKNOWLEDGED: "An alert was acknowledged.",
    }.get(event, "")
    return intro, details, alert["url"], "Open the alert"


def render(*, event: str, title: str, project: Project, data: dict[str, Any]) -> Email:
    intro, details, url, url_label = _details(event, data)
    context = {
        "title": title,
        "intro": intro,
        "details": [(label, value) for label, value in details if value],
        "url": url,
        "url_label": url_label,
        "project": project,
        "event": event,
    }
    return Email(
        subject=title,
        text=render_to_string("notifications/email/message.txt", context),
        html=render_to_string("notifications/email/message.html", context),
    )


def recipients(delivery: NotificationDelivery, target: NotificationTarget) -> list[str]:
    """The target's addresses, and the approvers for an approval request still pending."""
    approvers: list[str] = []
    if delivery.event in EMAIL_APPROVER_EVENTS and delivery.object_type == ObjectType.PROMOTION:
        promotion = events.load(ObjectType.PROMOTION, delivery.object_id)
        if promotion is not None and promotion.status == PromotionStatus.PENDING:
            approvers = approver_addresses(promotion)
    return unique_addresses(approvers, target.email_addresses)


def send(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    """Mail everyone not mailed yet; ``delivery.recipients`` grows as each one is sent (the
    ledger saves it, so a retry mails only the others)."""
    everyone = recipients(delivery, target)
    done = {a.lower() for a in delivery.recipients}
    remaining = [a for a in everyone if a.lower() not in done]
    if not everyone:
        return Outcome(DeliveryStatus.SKIPPED, error="Nobody to send it to.")
    title = events.title(delivery.event, delivery.project, delivery.payload)
    message = render(
        event=delivery.event, title=title, project=delivery.project, data=delivery.payload
    )
    refused = []
    try:
        # One message per person: recipients do not see each other's addresses.
        with get_connection() as connection:
            for address in remaining:
                email = EmailMultiAlternatives(
                    subject=message.subject,
                    body=message.text,
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    to=[address],
                    connection=connection,
                    headers={"X-Controlplane-Event": delivery.event},
                )
                email.attach_alternative(message.html, "text/html")
                try:
                    email.send()
                except smtplib.SMTPRecipientsRefused:
                    refused.append(address)
                    continue
                # Kept on the row even if a later one fails: the retry mails only the others.
                delivery.recipients = [*delivery.recipients, address]
    except (smtplib.SMTPException, OSError) as exc:
        # No answer, or the server failed mid-conversation: a later attempt may pass.
        raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    error = f"Refused by the mail server: {', '.join(refused)}" if refused else ""
    if refused and not delivery.recipients:
        return Outcome(DeliveryStatus.FAILED, error=error)
    return Outcome(DeliveryStatus.SENT, error=error)

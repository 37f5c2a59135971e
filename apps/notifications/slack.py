"""Slack: the Web API client, request verification, the Block Kit messages of each event and
:func:`send` (one delivery to a channel).

Recording and retrying are the ledger's (:mod:`apps.notifications.services`); acting on a
clicked button is :mod:`apps.notifications.interactions`.
"""

import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from apps.core.transient import TransientError, is_transient_status
from apps.core.transient import is_transient as is_transient_call
from apps.monitoring.choices import AlertStatus, Severity
from apps.releases.choices import ApprovalDecision, PromotionStatus
from apps.releases.models import Promotion

from . import events
from .choices import (
    ALERT_UPDATE_EVENTS,
    SLACK_ROOT_EVENTS,
    SLACK_UPDATE_ONLY_EVENTS,
    DeliveryStatus,
    Event,
)
from .models import NotificationDelivery, NotificationTarget
from .outcome import Outcome

logger = logging.getLogger(__name__)

#: Seconds to wait for Slack (the Web API and response URLs).
TIMEOUT = 10
ObjectType = NotificationDelivery.ObjectType
#: Slack's own codes for a failure worth retrying (the HTTP part is ``is_transient_status``).
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
ACTION_APPROVE = "promotion_approve"
ACTION_REJECT = "promotion_reject"
#: Button action id → the decision it records (Reject asks for a reason first: a modal).
DECISION_ACTIONS = {
    ACTION_APPROVE: ApprovalDecision.APPROVE,
    ACTION_REJECT: ApprovalDecision.REJECT,
}
#: The reject modal: its ``callback_id`` and the ids of its reason input.
REJECT_VIEW = "promotion_reject_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"
MAX_REASON = 2000
#: Section text is capped by Slack at 3000 characters.
MAX_TEXT = 2900


def web_client() -> WebClient:
    base_url = settings.SLACK_API_URL
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=base_url, timeout=TIMEOUT)


def webhook_client(url: str) -> WebhookClient:
    return WebhookClient(url, timeout=TIMEOUT)


def is_transient(exc: Exception) -> bool:
    """A failure worth retrying: no answer, a transient HTTP status, or Slack's own "try
    later" (``ratelimited``, …) in an HTTP 200 answer."""
    if isinstance(exc, SlackApiError):
        code = getattr(exc.response, "status_code", None)
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return is_transient_status(code) or error in TRANSIENT_ERRORS
    # URLError, timeouts, refused connections (not SlackRequestError: a bad setting).
    return is_transient_call(exc)


def describe(exc: Exception) -> tuple[int | None, str]:
    """(HTTP status, a short message) of a failed call, with no token in it."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = response.get("error") if isinstance(response.data, dict) else None
        return response.status_code, f"Slack: {error or 'HTTP ' + str(response.status_code)}"
    return None, f"{type(exc).__name__}: {exc}"[:500]


# --- incoming requests ------------------------------------------------------------------------


def verify_request(*, body: bytes, headers: Any) -> bool:
    """Slack's signature over the raw body (v0, HMAC-SHA256 with the signing secret) and a
    timestamp at most 5 minutes old. No signing secret configured: nothing is trusted."""
    secret = settings.SLACK_SIGNING_SECRET
    if not secret or not secret.strip():
        return False
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    try:
        return SignatureVerifier(secret).is_valid(
            body=body, timestamp=timestamp, signature=signature
        )
    except (UnicodeDecodeError, ValueError):
        return False


def parse_interaction(body: bytes) -> dict[str, Any]:
    """The JSON of the form field ``payload`` (raises ValueError)."""
    form = parse_qs(body.decode("utf-8"), max_num_fields=10)
    raw = form.get("payload")
    if not raw:
        raise ValueError("No payload field.")
    payload = json.loads(raw[0])
    if not isinstance(payload, dict):
        raise ValueError("The payload is not an object.")
    return payload


# --- messages ---------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for mrkdwn: &, < and > are control characters there."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    return f"<{url}|{esc(label)}>"


def _date(iso: str | None) -> str:
    """A date Slack shows in each reader's time zone (fallback: the ISO text)."""
    if not iso:
        return ""
    stamp = int(datetime.fromisoformat(iso).timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{iso}>"


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_TEXT]}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(*parts: str, block_id: str | None = None) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": p[:MAX_TEXT]} for p in parts if p][:10]
    block: dict[str, Any] = {"type": "context", "elements": elements}
    if block_id:
        block["block_id"] = block_id
    return block


def _link_button(text: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "url": url,
        "action_id": action_id,
    }


def approvals_line(promotion_data: dict[str, Any]) -> str:
    """``1 of 2 approvals: alice`` (and who rejected, if anyone)."""
    approvals = promotion_data["approvals"]
    approvers = [a["user"] for a in approvals if a["decision"] == ApprovalDecision.APPROVE]
    line = f"{len(approvers)} of {promotion_data['required_approvals']} approvals"
    if approvers:
        line += ": " + ", ".join(esc(u) for u in approvers)
    rejecters = [a for a in approvals if a["decision"] == ApprovalDecision.REJECT]
    for r in rejecters:
        line += f" · rejected by {esc(r['user'])}"
        if r["comment"]:
            line += f": “{esc(r['comment'][:300])}”"
    return line


def _outcome(promotion_data: dict[str, Any]) -> str:
    status = promotion_data["status"]
    approvers = [
        a["user"] for a in promotion_data["approvals"] if a["decision"] == ApprovalDecision.APPROVE
    ]
    by = f" by {', '.join(esc(u) for u in approvers)}" if approvers else ""
    if status == PromotionStatus.APPROVED:
        return f":white_check_mark: *Approved*{by}"
    if status == PromotionStatus.DEPLOYING:
        return f":white_check_mark: *Approved*{by} · deploying"
    if status == PromotionStatus.DEPLOYED:
        return f":white_check_mark: *Approved*{by} · deployed"
    if status == PromotionStatus.FAILED:
        return f":white_check_mark: *Approved*{by} · the deploy failed"
    if status == PromotionStatus.REJECTED:
        rejecters = [
            a for a in promotion_data["approvals"] if a["decision"] == ApprovalDecision.REJECT
        ]
        who = f" by {esc(rejecters[0]['user'])}" if rejecters else ""
        reason = promotion_data["reason"] or (rejecters[0]["comment"] if rejecters else "")
        return f":x: *Rejected*{who}" + (f": {esc(reason[:500])}" if reason else "")
    if status == PromotionStatus.EXPIRED:
        return ":hourglass: *Expired* without enough approvals"
    if status == PromotionStatus.SUPERSEDED:
        return ":fast_forward: *Superseded* by a newer release"
    return esc(status)


def promotion_message(
    promotion: Promotion, data: dict[str, Any], *, reminder: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The message of a promotion as it is *now*: with Approve / Reject while it is pending,
    with its outcome in place of the buttons after. ``data`` is :func:`events.promotion_data`.
    Rendering the current state (not the event) makes late or reordered updates harmless."""
    project = promotion.release.project
    release = data["release"]
    target = f"*{esc(data['environment'])}*"
    pending = data["status"] == PromotionStatus.PENDING
    if reminder and pending:
        head = ":alarm_clock: *Reminder: approval still needed* to deploy"
    elif pending:
        head = ":raising_hand: *Approval needed* to deploy"
    else:
        head = "Deploy"
    text = (
        f"{head} {link(release['url'], release['version'])} to {target} "
        f"· {link(data['url'], project.name)}"
    )
    meta = [f"commit `{esc(release['commit_sha'][:10])}`"]
    if data["requested_by"]:
        meta.insert(0, f"requested by {esc(data['requested_by'])}")
    if pending and data["expires_at"]:
        meta.append(f"expires {_date(data['expires_at'])}")
    blocks = [
        _section(text, block_id="promotion"),
        _context(" · ".join(meta), block_id="promotion_meta"),
        _context(approvals_line(data), block_id="promotion_approvals"),
    ]
    if pending:
        value = str(promotion.pk)
        blocks.append(
            {
                "type": "actions",
                "block_id": "promotion_actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "action_id": ACTION_APPROVE,
                        "value": value,
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "action_id": ACTION_REJECT,
                        # Opens a modal asking for the reason (the confirmation as well).
                        "value": value,
                    },
                    _link_button("Open", data["url"], "open_promotion"),
                ],
            }
        )
    else:
        blocks.append(_section(_outcome(data), block_id="promotion_outcome"))
    prefix = "Reminder: " if reminder and pending else ""
    fallback = (
        f"[{project.slug}] {prefix}{release['version']} → {data['environment']}: "
        f"{PromotionStatus(data['status']).label}"
    )
    return fallback, blocks


def event_message(event: str, title: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Blocks of a one-off message: a failed build, a deploy, a test."""
    if event == Event.BUILD_FAILED:
        run = data["run"]
        on = f" on `{esc(run['ref'])}`" if run["ref"] else ""
        author = f" by {esc(run['commit_author'])}" if run["commit_author"] else ""
        message = f": {esc(run['commit_message'])}" if run["commit_message"] else ""
        label = f"Pipeline #{run['number']} failed"
        blocks = [
            _section(f":red_circle: *{link(run['url'], label)}*{on}"),
            _context(f"commit `{esc(run['commit_sha'][:10])}`{author}{message}"),
        ]
        if run["error_message"]:
            blocks.append(_context(esc(run["error_message"][:500])))
        blocks.append(
            {"type": "actions", "elements": [_link_button("Open run", run["url"], "open_run")]}
        )
        return blocks
    if "deployment" in data:
        d = data["deployment"]
        icon = {
            Event.DEPLOYMENT_SUCCEEDED: ":rocket:",
            Event.DEPLOYMENT_FAILED: ":boom:",
            Event.DEPLOYMENT_ROLLED_BACK: ":rewind:",
        }.get(event, ":information_source:")
        meta = []
        if d["triggered_by"]:
            meta.append(f"by {esc(d['triggered_by'])}")
        if d["previous_release"] and not d["is_rollback"]:
            meta.append(f"previous release {esc(d['previous_release'])}")
        blocks = [_section(f"{icon} *{esc(title)}*")]
        if meta:
            blocks.append(_context(" · ".join(meta)))
        if d["error_message"]:
            blocks.append(_context(esc(d["error_message"][:500])))
        blocks.append(
            {
                "type": "actions",
                "elements": [_link_button("Open deployment", d["url"], "open_deployment")],
            }
        )
        return blocks
    return [_section(f":wave: {esc(title)}"), _context("Sent by the control plane.")]


SEVERITY_ICONS = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}
#: Labels shown as the message's place, not repeated in its label list.
_PLACE_LABELS = frozenset({"alertname", "project", "environment", "severity"})
MAX_LABELS = 20


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def alert_message(project_slug: str, data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The message of an alert as it is *now* (``data`` is :func:`events.alert_data`): firing,
    acknowledged or resolved, and silenced until when a silence holds it. Rendering the
    current state makes late or reordered updates harmless, like promotions'."""
    resolved = data["status"] == AlertStatus.RESOLVED
    severity = data["severity"]
    icon = ":white_check_mark:" if resolved else SEVERITY_ICONS.get(severity, ":bell:")
    what = data["summary"] or data["rule"]
    state = "Resolved" if resolved else "Firing"
    head = f"{icon} *{state}* · *{esc(str(severity).upper())}* · {link(data['url'], what)}"
    place = [f"project *{esc(project_slug)}*"]
    if data["environment"]:
        place.append(f"environment *{esc(data['environment'])}*")
    place.append(f"rule `{esc(data['rule'])}`")
    if data["value"] is not None:
        place.append(f"value *{esc(_value(data['value']))}*")
    blocks = [
        _section(head, block_id="alert"),
        _context(" · ".join(place), block_id="alert_place"),
    ]
    description = data["annotations"].get("description") or data["annotations"].get("summary")
    if description and description != data["summary"]:
        blocks.append(_section(esc(str(description)[:1000]), block_id="alert_description"))
    labels = [
        f"`{esc(k)}={esc(v)}`" for k, v in sorted(data["labels"].items()) if k not in _PLACE_LABELS
    ][:MAX_LABELS]
    if labels:
        blocks.append(_context(" ".join(labels), block_id="alert_labels"))
    status = [f"since {_date(data['starts_at'])}"]
    if resolved:
        status = [f":white_check_mark: resolved {_date(data['resolved_at'])}"]
        status.append(f"fired {_date(data['starts_at'])}")
    if data["acknowledged"]:
        by = f" by {esc(data['acknowledged_by'])}" if data["acknowledged_by"] else ""
        status.append(f":eyes: acknowledged{by} {_date(data['acknowledged_at'])}")
    if data["silenced_until"] and not resolved:
        status.append(f":zzz: silenced until {_date(data['silenced_until'])}")
    blocks.append(_context(" · ".join(status), block_id="alert_status"))
    blocks.append(
        {
            "type": "actions",
            "block_id": "alert_actions",
            "elements": [_link_button("Open alert", data["url"], "open_alert")],
        }
    )
    extra = "acknowledged, " if data["acknowledged"] and not resolved else ""
    where = f" ({data['environment']})" if data["environment"] else ""
    fallback = f"[{project_slug}] {state.upper()} {severity}: {what}{where} ({extra}{data['rule']})"
    return fallback, blocks


def reject_modal(
    *, promotion: Promotion, channel_id: str = "", response_url: str = ""
) -> dict[str, Any]:
    """The modal the Reject button opens: a required reason. ``private_metadata`` carries
    what the submission needs (Slack sends no channel or response URL with it)."""
    metadata = {"promotion": promotion.pk, "channel": channel_id, "response_url": response_url}
    what = f"{promotion.release.version} → {promotion.environment.name}"
    return {
        "type": "modal",
        "callback_id": REJECT_VIEW,
        "private_metadata": json.dumps(metadata),
        "title": {"type": "plain_text", "text": "Reject this promotion"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(f"Reject *{esc(what)}*? A rejection ends the request for everyone."),
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }


def reject_submission(payload: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """(the modal's metadata, the typed reason) of a reject modal's ``view_submission``, or
    None when the payload is something else."""
    view = payload.get("view")
    if payload.get("type") != "view_submission" or not isinstance(view, dict):
        return None
    if view.get("callback_id") != REJECT_VIEW:
        return None
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None
    if not isinstance(metadata, dict):
        return None
    values = (view.get("state") or {}).get("values") or {}
    typed = ((values.get(REASON_BLOCK) or {}).get(REASON_INPUT) or {}).get("value")
    return metadata, str(typed or "").strip()[:MAX_REASON]


# --- sending ----------------------------------------------------------------------------------


def send(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    """Post (or edit) the delivery's message in the target's channel."""
    if not settings.SLACK_BOT_TOKEN:
        return Outcome(DeliveryStatus.FAILED, error="SLACK_BOT_TOKEN is not set.")
    client = web_client()
    try:
        if delivery.object_type == ObjectType.PROMOTION:
            return _send_promotion(client, delivery, target)
        if delivery.object_type == ObjectType.ALERT:
            return _send_alert(client, delivery, target)
        title = events.title(delivery.event, delivery.project, delivery.payload)
        blocks = event_message(delivery.event, title, delivery.payload)
        response = client.chat_postMessage(
            channel=target.destination, text=title, blocks=blocks, unfurl_links=False
        )
    except (SlackClientError, OSError) as exc:
        code, message = describe(exc)
        if is_transient(exc):
            raise TransientError(message, code) from exc
        return Outcome(DeliveryStatus.FAILED, response_code=code, error=message)
    return _sent(response)


def _sent(response: Any, channel: str = "", ts: str = "") -> Outcome:
    return Outcome(
        DeliveryStatus.SENT,
        response_code=response.status_code,
        fields={
            "slack_channel": channel or response.get("channel") or "",
            "slack_ts": ts or response.get("ts") or "",
        },
    )


def _send_promotion(
    client: WebClient, delivery: NotificationDelivery, target: NotificationTarget
) -> Outcome:
    """Post the promotion's message (pending, reminder) or edit the ones posted before.

    Every message renders the promotion as it is now, so two updates racing each other, or
    an update that runs before the message it follows, still end on the current state."""
    promotion = events.load(ObjectType.PROMOTION, delivery.object_id)
    if promotion is None:
        return Outcome(DeliveryStatus.SKIPPED, error="The promotion no longer exists.")
    data = events.promotion_data(promotion)
    roots = list(
        NotificationDelivery.objects.filter(
            target=target,
            object_type=ObjectType.PROMOTION,
            object_id=promotion.pk,
            event__in=SLACK_ROOT_EVENTS,
        )
        .exclude(slack_ts="")
        .exclude(pk=delivery.pk)
        .order_by("pk")
    )
    if delivery.event in SLACK_ROOT_EVENTS:
        reminder = delivery.event == Event.PROMOTION_REMINDER
        text, blocks = promotion_message(promotion, data, reminder=reminder)
        thread = {}
        if reminder and roots:
            # In the first message's thread, and shown in the channel: people are notified
            # and the whole story stays in one place.
            thread = {"thread_ts": roots[0].slack_ts, "reply_broadcast": True}
        channel = roots[0].slack_channel if thread else target.destination
        response = client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False, **thread
        )
        return _sent(response)
    text, blocks = promotion_message(promotion, data)
    if not roots:
        if delivery.event in SLACK_UPDATE_ONLY_EVENTS:
            return Outcome(
                DeliveryStatus.SKIPPED, error="No Slack message of this promotion to update."
            )
        response = client.chat_postMessage(
            channel=target.destination, text=text, blocks=blocks, unfurl_links=False
        )
        return _sent(response)
    response = None
    for root in roots:
        response = client.chat_update(
            channel=root.slack_channel, ts=root.slack_ts, text=text, blocks=blocks
        )
    return _sent(response, roots[0].slack_channel, roots[0].slack_ts)


def _send_alert(
    client: WebClient, delivery: NotificationDelivery, target: NotificationTarget
) -> Outcome:
    """Post the alert's message when it first fires; a repeat replies in its thread (shown in
    the channel) and edits it; a resolve or an acknowledgement edits every message of the
    alert in this target (``chat.update`` with the stored channel and ``ts``)."""
    alert = events.load(ObjectType.ALERT, delivery.object_id)
    if alert is None:
        return Outcome(DeliveryStatus.SKIPPED, error="The alert no longer exists.")
    data = events.alert_data(alert)
    text, blocks = alert_message(delivery.project.slug, data)
    roots = list(
        NotificationDelivery.objects.filter(
            target=target,
            object_type=ObjectType.ALERT,
            object_id=alert.pk,
            event=Event.ALERT_FIRING,
        )
        .exclude(slack_ts="")
        .exclude(pk=delivery.pk)
        .order_by("pk")
    )
    if delivery.event in ALERT_UPDATE_EVENTS or (roots and alert.status != AlertStatus.FIRING):
        if not roots:
            return Outcome(
                DeliveryStatus.SKIPPED, error="No Slack message of this alert to update."
            )
        response = None
        for root in roots:
            response = client.chat_update(
                channel=root.slack_channel, ts=root.slack_ts, text=text, blocks=blocks
            )
        return _sent(response, roots[0].slack_channel, roots[0].slack_ts)
    if not roots:
        response = client.chat_postMessage(
            channel=target.destination, text=text, blocks=blocks, unfurl_links=False
        )
        return _sent(response)
    # A repeat: the first message shows the current value, and the thread says it again.
    for root in roots:
        client.chat_update(channel=root.slack_channel, ts=root.slack_ts, text=text, blocks=blocks)
    response = client.chat_postMessage(
        channel=roots[0].slack_channel,
        text=text,
        blocks=blocks,
        unfurl_links=False,
        thread_ts=roots[0].slack_ts,
        reply_broadcast=True,
    )
    return _sent(response)

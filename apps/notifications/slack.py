"""Slack: the Web API client, request verification and the Block Kit messages of each event.

Sending, retrying and recording are in :mod:`apps.notifications.services`.
"""

import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from apps.releases.choices import ApprovalDecision, PromotionStatus
from apps.releases.models import Promotion

from .choices import Event

logger = logging.getLogger(__name__)

#: Seconds to wait for Slack (the Web API and response URLs).
TIMEOUT = 10
#: Slack's own codes for a failure worth retrying (HTTP 429 and 5xx are retried as well).
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
ACTION_APPROVE = "promotion_approve"
ACTION_REJECT = "promotion_reject"
#: Button action id → the decision it records.
DECISION_ACTIONS = {
    ACTION_APPROVE: ApprovalDecision.APPROVE,
    ACTION_REJECT: ApprovalDecision.REJECT,
}
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
    """A failure worth retrying: no answer, a 5xx or 429, or Slack's own "try later"."""
    if isinstance(exc, SlackApiError):
        code = getattr(exc.response, "status_code", None) or 0
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return code >= 500 or code == 429 or error in TRANSIENT_ERRORS
    # URLError, timeouts, refused connections (not SlackRequestError: a bad setting).
    return isinstance(exc, OSError)


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
                        "value": value,
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Reject this promotion?"},
                            "text": {
                                "type": "plain_text",
                                "text": "A rejection ends the request for everyone.",
                            },
                            "confirm": {"type": "plain_text", "text": "Reject"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                        },
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

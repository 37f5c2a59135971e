"""Slack interactivity: Approve / Reject clicked on a promotion's message.

The endpoint (``views.slack_interactions``) verifies Slack's signature, then calls
:func:`slack_interaction_receive`, which answers within Slack's 3 seconds:

* **Approve** is handed to a worker (``notifications.slack_interaction``), which finds the
  account and calls ``releases.services.promotion_approve`` — the same service as the browser.
* **Reject** needs a reason: the click opens a modal (``views.open`` with the interaction's
  ``trigger_id``, which expires after 3 s, hence in the request) with a required text input.
  Its ``view_submission`` is handed to the worker, which calls
  ``releases.services.promotion_reject`` with the typed reason. A blank reason is refused in
  the modal itself. If the modal cannot be opened, the clicker is told to reject in the browser
  and nothing is recorded.

The clicker is told what happened ephemerally (the interaction's ``response_url``, else
``chat.postEphemeral``).
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from slack_sdk.errors import SlackClientError

from apps.core.exceptions import ServiceError
from apps.releases import services as release_services
from apps.releases.choices import ApprovalChannel, ApprovalDecision, PromotionStatus
from apps.releases.models import Promotion

from . import slack
from .models import SlackIdentity

logger = logging.getLogger(__name__)


# --- who clicked ------------------------------------------------------------------------------


def slack_user_account(*, slack_user_id: str, team_id: str = "") -> Any | None:
    """The account a Slack user acts as, or None.

    1. A :class:`SlackIdentity` the user linked (its team, when recorded, must match).
    2. Else Slack's ``users.info``: a live, human user whose email Slack has confirmed
       (``is_email_confirmed``) and which is the email of exactly one active account, case
       aside — and that account has not linked another Slack user. Nothing is stored.
    """
    identity = SlackIdentity.objects.select_related("user").filter(slack_user_id=slack_user_id)
    identity = identity.first()
    if identity is not None:
        if identity.team_id and team_id and identity.team_id != team_id:
            return None
        return identity.user if identity.user.is_active else None
    if not settings.SLACK_BOT_TOKEN:
        return None
    try:
        info = slack.web_client().users_info(user=slack_user_id)
    except (SlackClientError, OSError) as exc:
        logger.warning("users.info for %s failed: %s", slack_user_id, slack.describe(exc)[1])
        return None
    member = info.get("user") or {}
    if (
        member.get("deleted")
        or member.get("is_bot")
        or member.get("is_email_confirmed") is not True
    ):
        return None
    if team_id and member.get("team_id") and member["team_id"] != team_id:
        return None
    email = ((member.get("profile") or {}).get("email") or "").strip()
    if not email:
        return None
    matches = list(
        get_user_model()
        .objects.filter(email__iexact=email, is_active=True, slack_identity__isnull=True)
        .order_by("pk")[:2]
    )
    return matches[0] if len(matches) == 1 else None


def _clicker(payload: dict[str, Any]) -> tuple[str, str]:
    """(Slack user id, team id) of whoever sent the interaction."""
    member = payload.get("user") or {}
    slack_user_id = str(member.get("id") or "")
    team_id = str((payload.get("team") or {}).get("id") or member.get("team_id") or "")
    return slack_user_id, team_id


# --- in the request ---------------------------------------------------------------------------


def _block_action(payload: dict[str, Any]) -> dict[str, Any] | None:
    if payload.get("type") != "block_actions":
        return None
    for action in payload.get("actions") or []:
        if isinstance(action, dict) and action.get("action_id") in slack.DECISION_ACTIONS:
            return action
    return None


def slack_interaction_receive(*, payload: dict[str, Any]) -> dict[str, Any] | None:
    """What the endpoint does with a verified interaction. Returns the JSON body to answer
    with (the modal's errors), or None for an empty 200 (which also closes a modal)."""
    action = _block_action(payload)
    if action is not None and action["action_id"] == slack.ACTION_REJECT:
        _open_reject_modal(payload, action)
        return None
    submission = slack.reject_submission(payload)
    if submission is not None and not submission[1]:
        return {
            "response_action": "errors",
            "errors": {slack.REASON_BLOCK: "A rejection needs a reason."},
        }
    if action is not None or submission is not None:
        _enqueue(payload)
    return None


def _enqueue(payload: dict[str, Any]) -> None:
    from .tasks import slack_interaction_task

    try:
        slack_interaction_task.delay(payload)
    except Exception:
        # TRICKY: the broker is down. Acting here, slower than Slack likes, beats losing a
        # decision someone made.
        logger.exception("Could not queue a Slack interaction; handling it in the request")
        slack_interaction_handle(payload=payload)


def _open_reject_modal(payload: dict[str, Any], action: dict[str, Any]) -> None:
    slack_user_id, _team_id = _clicker(payload)
    response_url = _response_url(payload)
    channel = _channel(payload)
    promotion = _promotion(action.get("value"))
    if promotion is None:
        _reply_ephemeral(response_url, channel, slack_user_id, "This promotion no longer exists.")
        return
    trigger_id = payload.get("trigger_id")
    try:
        if not trigger_id or not settings.SLACK_BOT_TOKEN:
            raise ValueError("no trigger id or no bot token")
        slack.web_client().views_open(
            trigger_id=str(trigger_id),
            view=slack.reject_modal(
                promotion=promotion, channel_id=channel, response_url=response_url
            ),
        )
    except (SlackClientError, OSError, ValueError) as exc:
        logger.warning("Could not open the reject modal: %s", slack.describe(exc)[1])
        page = settings.SITE_URL + promotion.get_absolute_url()
        _reply_ephemeral(
            response_url,
            channel,
            slack_user_id,
            f":memo: A rejection needs a reason: reject in the browser at {page} "
            "(nothing was recorded).",
        )


# --- in the worker ----------------------------------------------------------------------------


def slack_interaction_handle(*, payload: dict[str, Any]) -> str | None:
    """Act on an Approve click or a submitted reject modal: find the account, call the same
    service as the browser, and tell the clicker (ephemeral) what happened. Returns the reply.

    Never raises once a decision may be recorded: a retry would find it decided already and
    tell the user the wrong thing."""
    slack_user_id, team_id = _clicker(payload)
    submission = slack.reject_submission(payload)
    if submission is not None:
        metadata, reason = submission
        reply = _decide_from_slack(
            slack_user_id=slack_user_id,
            team_id=team_id,
            decision=ApprovalDecision.REJECT,
            value=metadata.get("promotion"),
            comment=reason,
        )
        response_url, channel = metadata.get("response_url"), metadata.get("channel")
    else:
        action = _block_action(payload)
        if action is None or action["action_id"] != slack.ACTION_APPROVE:
            return None
        reply = _decide_from_slack(
            slack_user_id=slack_user_id,
            team_id=team_id,
            decision=ApprovalDecision.APPROVE,
            value=action.get("value"),
        )
        response_url, channel = _response_url(payload), _channel(payload)
    _reply_ephemeral(response_url, channel, slack_user_id, reply)
    return reply


def _promotion(value: Any) -> Promotion | None:
    try:
        promotion_id = int(value)
    except (TypeError, ValueError):
        return None
    return (
        Promotion.objects.select_related("release", "environment", "release__project")
        .filter(pk=promotion_id)
        .first()
    )


def _decide_from_slack(
    *, slack_user_id: str, team_id: str, decision: str, value: Any, comment: str = ""
) -> str:
    try:
        int(value)
    except (TypeError, ValueError):
        return "This button does not name a promotion."
    user = (
        slack_user_account(slack_user_id=slack_user_id, team_id=team_id) if slack_user_id else None
    )
    if user is None:
        page = settings.SITE_URL + reverse("notifications:slack-account")
        return (
            ":link: I don't know which control plane account is yours, so nothing was "
            f"recorded. Link your Slack account at {page} with your member ID "
            f"`{slack.esc(slack_user_id)}`"
            + (f" (team `{slack.esc(team_id)}`)" if team_id else "")
            + ", or use the same confirmed email address in Slack and in the control plane."
        )
    promotion = _promotion(value)
    if promotion is None:
        return "This promotion no longer exists."
    try:
        if decision == ApprovalDecision.REJECT:
            promotion = release_services.promotion_reject(
                promotion=promotion, user=user, comment=comment, channel=ApprovalChannel.SLACK
            )
        else:
            promotion = release_services.promotion_approve(
                promotion=promotion, user=user, channel=ApprovalChannel.SLACK
            )
    except ServiceError as exc:
        return f":no_entry: Nothing was recorded: {exc.message}"
    except Exception:
        logger.exception("A Slack decision on promotion %s failed", promotion.pk)
        return ":warning: Something went wrong; nothing was recorded. Try again in the browser."
    what = f"{promotion.release.version} → {promotion.environment.name}"
    if decision == ApprovalDecision.REJECT:
        return f":x: You rejected {what}: “{slack.esc(comment[:300])}”"
    if promotion.status != PromotionStatus.PENDING:  # approved, and maybe deploying already
        return f":white_check_mark: You approved {what}; it is approved and will deploy."
    count = promotion.approvals.filter(decision=ApprovalDecision.APPROVE).count()
    return (
        f":white_check_mark: You approved {what} "
        f"({count} of {promotion.required_approvals} approvals)."
    )


# --- the ephemeral reply ----------------------------------------------------------------------


def _response_url(payload: dict[str, Any]) -> str:
    url = payload.get("response_url")
    return url if isinstance(url, str) else ""


def _channel(payload: dict[str, Any]) -> str:
    return str(
        (payload.get("channel") or {}).get("id")
        or (payload.get("container") or {}).get("channel_id")
        or ""
    )


def _reply_ephemeral(response_url: Any, channel: Any, slack_user_id: str, text: str) -> None:
    """Only the clicker sees it: through the interaction's ``response_url`` (no token
    needed), else ``chat.postEphemeral``. A lost reply is logged, never retried."""
    try:
        if isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
            response = slack.webhook_client(response_url).send(
                text=text, response_type="ephemeral", replace_original=False
            )
            if response.status_code != 200:
                logger.warning("Slack response_url answered %s", response.status_code)
            return
        if channel and slack_user_id and settings.SLACK_BOT_TOKEN:
            slack.web_client().chat_postEphemeral(
                channel=str(channel), user=slack_user_id, text=text
            )
    except (SlackClientError, OSError) as exc:
        logger.warning("Could not answer a Slack interaction: %s", slack.describe(exc)[1])

"""Linking a Slack identity needs proof from Slack, not a claim (docs/security.md).

Two steps: :func:`slack_link_start` checks the member ID, makes a one-time code and has the bot
send it to that Slack user (``chat.postMessage`` to the user id: a direct message only that
user reads); :func:`slack_link_confirm` takes the code back from the signed-in account and only
then records the link (:func:`services.slack_identity_link`). The pending code lives in the
cache for ``CODE_TTL``, stored as an HMAC, and is dropped after ``MAX_TRIES`` wrong codes.

TRICKY: unlike the rest of this app, the message is sent in the web request, not by a task —
the person is waiting on the page, and Slack's "no such user" must reach them there.
"""

import hashlib
import hmac
import secrets
from typing import Any

from django.conf import settings
from django.core.cache import cache
from slack_sdk.errors import SlackApiError, SlackClientError

from apps.core.exceptions import ConflictError, ServiceError

from . import services, slack
from .models import SlackIdentity

CODE_TTL = 600  # seconds
MAX_TRIES = 5
CODE_DIGITS = 6


def _key(user: Any) -> str:
    return f"notifications:slack-link:{user.pk}"


def _digest(user: Any, code: str) -> str:
    return hmac.new(
        settings.SECRET_KEY.encode(), f"{user.pk}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def slack_link_pending(*, user: Any) -> dict | None:
    """The link waiting for its code (slack_user_id, team_id), or None."""
    pending = cache.get(_key(user))
    return {k: pending[k] for k in ("slack_user_id", "team_id")} if pending else None


def slack_link_start(*, user: Any, slack_user_id: str, team_id: str = "") -> dict:
    """Send a one-time code to ``slack_user_id`` in Slack; nothing is linked yet."""
    slack_user_id = (slack_user_id or "").strip()
    team_id = (team_id or "").strip()
    services.validate_slack_ids(slack_user_id=slack_user_id, team_id=team_id)
    if SlackIdentity.objects.filter(slack_user_id=slack_user_id).exclude(user=user).exists():
        raise ConflictError("That Slack user is linked to another account.")
    if not settings.SLACK_BOT_TOKEN:
        raise ServiceError("Slack is not set up on this control plane (no bot token).")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    text = (
        f"Your code to link this Slack account to *{user.get_username()}* on "
        f"{settings.SITE_URL}: *{code}* (valid {CODE_TTL // 60} minutes). If you did not ask for "
        "it, ignore this message: nothing is linked without the code."
    )
    try:
        slack.web_client().chat_postMessage(channel=slack_user_id, text=text)
    except SlackApiError as exc:
        error = exc.response.get("error", "error") if exc.response is not None else "error"
        raise ServiceError(
            f"Slack could not send a message to {slack_user_id} ({error}). Check the member ID."
        ) from None
    except (SlackClientError, OSError) as exc:
        raise ServiceError(f"Slack could not be reached ({exc}); try again.") from None
    pending = {
        "slack_user_id": slack_user_id,
        "team_id": team_id,
        "digest": _digest(user, code),
        "tries": 0,
    }
    cache.set(_key(user), pending, CODE_TTL)
    return {"slack_user_id": slack_user_id, "team_id": team_id}


def slack_link_confirm(*, user: Any, code: str) -> SlackIdentity:
    """Link the Slack user the code was sent to, if ``code`` is that code."""
    pending = cache.get(_key(user))
    if not pending:
        raise ServiceError("No code is waiting (or it expired): ask for a new one.")
    code = "".join((code or "").split())
    if not hmac.compare_digest(pending["digest"], _digest(user, code)):
        pending["tries"] += 1
        if pending["tries"] >= MAX_TRIES:
            cache.delete(_key(user))
            raise ServiceError("Wrong code, too many times: ask for a new one.")
        cache.set(_key(user), pending, CODE_TTL)
        raise ServiceError("That is not the code Slack sent you.")
    cache.delete(_key(user))
    return services.slack_identity_link(
        user=user, slack_user_id=pending["slack_user_id"], team_id=pending["team_id"]
    )


def slack_link_cancel(*, user: Any) -> None:
    cache.delete(_key(user))

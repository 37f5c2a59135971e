"""Every write of the notifications app: targets, Slack identities, dispatching an event to the
targets that want it, sending one delivery (Slack, email, webhook) and acting on a button
clicked in Slack.

The flow: a signal receiver calls :func:`notify`, which enqueues ``notifications.dispatch``
after commit with ids only; that task calls :func:`dispatch` (one ledger row per matching
target) and enqueues ``notifications.deliver`` per row; that task calls :func:`delivery_send`.
Only tasks do network I/O.
"""

import logging
import re
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone
from slack_sdk.errors import SlackClientError

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import audit_log
from apps.projects.models import Project
from apps.releases.choices import ApprovalChannel, ApprovalDecision, PromotionStatus
from apps.releases.models import Promotion
from apps.releases.services import promotion_decide

from . import events, mail, outgoing, slack
from .choices import (
    EMAIL_APPROVER_EVENTS,
    KIND_EVENTS,
    SLACK_ROOT_EVENTS,
    SLACK_UPDATE_ONLY_EVENTS,
    DeliveryStatus,
    Event,
    TargetKind,
)
from .models import NotificationDelivery, NotificationTarget, SlackIdentity

logger = logging.getLogger(__name__)

ObjectType = NotificationDelivery.ObjectType
#: Seconds to connect to / read from a webhook target.
WEBHOOK_TIMEOUT = (5, 10)
#: Shortest webhook secret accepted (it keys an HMAC: guessable secrets make forgeable calls).
MIN_SECRET_LENGTH = 16
#: A pending delivery untouched this long lost its message (the sweeper sends it again).
STALE_AFTER = timedelta(minutes=15)
SLACK_CHANNEL = re.compile(r"^(#[a-z0-9._-]{1,80}|[A-Z0-9]{6,32})$")


class TransientDeliveryError(Exception):
    """A failure worth retrying (no answer, 5xx, 429); the task retries with backoff."""


# --- targets ----------------------------------------------------------------------------------


def _clean_target(*, kind: str, destination: str, secret: str, events_: list[str]) -> str:
    """Check a target's settings for its kind; returns the normalised destination."""
    destination = (destination or "").strip()
    if kind not in TargetKind.values:
        raise ServiceError(f"Unknown kind '{kind}'.")
    if kind == TargetKind.SLACK and not SLACK_CHANNEL.match(destination):
        raise ServiceError("A Slack target needs a channel id (C0123ABCD) or #channel-name.")
    if kind == TargetKind.EMAIL:
        addresses = [a.strip() for a in destination.split(",") if a.strip()]
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ServiceError(f"'{address}' is not an email address.") from None
        destination = ", ".join(addresses)
    if kind == TargetKind.WEBHOOK:
        try:
            URLValidator(schemes=["http", "https"])(destination)
        except ValidationError:
            raise ServiceError("A webhook target needs an http(s) URL.") from None
        if len(secret or "") < MIN_SECRET_LENGTH:
            raise ServiceError(
                f"A webhook target needs a secret of at least {MIN_SECRET_LENGTH} characters."
            )
    if not isinstance(events_, list) or not all(isinstance(e, str) for e in events_):
        raise ServiceError("events must be a list of event names.")
    unknown = [e for e in events_ if e not in KIND_EVENTS[kind]]
    if unknown:
        raise ServiceError(f"A {kind} target does not take: {', '.join(sorted(unknown))}.")
    return destination


@transaction.atomic
def target_create(
    *,
    project: Project,
    actor: Any,
    kind: str,
    destination: str = "",
    name: str = "",
    secret: str = "",
    events: list[str] | None = None,
    enabled: bool = True,
) -> NotificationTarget:
    events_ = list(dict.fromkeys(events or []))
    destination = _clean_target(kind=kind, destination=destination, secret=secret, events_=events_)
    user = actor if getattr(actor, "is_authenticated", False) else None
    target = NotificationTarget.objects.create(
        project=project,
        name=name,
        kind=kind,
        destination=destination,
        secret=secret,
        events=events_,
        enabled=enabled,
        created_by=user,
    )
    audit_log(
        actor=actor,
        action="notification_target.created",
        obj=target,
        project_id=project.pk,
        data={"kind": kind, "events": events_},
    )
    return target


#: What may change on a target (kind and project are fixed at creation).
TARGET_UPDATABLE = ("name", "destination", "secret", "events", "enabled")


@transaction.atomic
def target_update(*, target: NotificationTarget, actor: Any, **changes: Any) -> NotificationTarget:
    """Change a target. ``secret`` absent (or None) keeps the current one."""
    unknown = set(changes) - set(TARGET_UPDATABLE)
    if unknown:
        raise ServiceError(f"Cannot change: {', '.join(sorted(unknown))}.")
    target = NotificationTarget.objects.select_for_update().get(pk=target.pk)
    if changes.get("secret") is None:
        changes.pop("secret", None)
    if "events" in changes:
        changes["events"] = list(dict.fromkeys(changes["events"] or []))
    merged = {name: changes.get(name, getattr(target, name)) for name in TARGET_UPDATABLE}
    merged["destination"] = _clean_target(
        kind=target.kind,
        destination=merged["destination"],
        secret=merged["secret"],
        events_=merged["events"],
    )
    for name in changes:
        setattr(target, name, merged[name])
    target.save()
    audit_log(
        actor=actor,
        action="notification_target.updated",
        obj=target,
        project_id=target.project_id,
        # Never the secret's value: only that it changed.
        data={"fields": sorted(changes)},
    )
    return target


@transaction.atomic
def target_delete(*, target: NotificationTarget, actor: Any) -> None:
    audit_log(
        actor=actor,
        action="notification_target.deleted",
        obj=target,
        project_id=target.project_id,
        data={"kind": target.kind},
    )
    target.delete()


def target_test(*, target: NotificationTarget, actor: Any) -> None:
    """Send the ``test`` event to this one target (after commit, by a worker)."""
    if not target.enabled:
        raise ConflictError("The target is disabled.")
    event_id = str(uuid.uuid4())
    transaction.on_commit(
        lambda: _send_dispatch(Event.TEST, "target", target.pk, event_id, None, target.pk)
    )


# --- Slack identities -------------------------------------------------------------------------


@transaction.atomic
def slack_identity_link(*, user: Any, slack_user_id: str, team_id: str = "") -> SlackIdentity:
    """Link (or re-link) the user's account to a Slack user. A Slack user links to one
    account only."""
    slack_user_id = slack_user_id.strip()
    team_id = (team_id or "").strip()
    if not re.fullmatch(r"[UW][A-Z0-9]{2,31}", slack_user_id):
        raise ServiceError("A Slack member ID looks like U012AB3CD (Profile → ⋮ → Copy member ID).")
    if team_id and not re.fullmatch(r"[TE][A-Z0-9]{2,31}", team_id):
        raise ServiceError("A Slack team ID looks like T012AB3CD.")
    taken = SlackIdentity.objects.filter(slack_user_id=slack_user_id).exclude(user=user)
    if taken.exists():
        raise ConflictError("That Slack user is linked to another account.")
    try:
        with transaction.atomic():
            identity, _created = SlackIdentity.objects.update_or_create(
                user=user, defaults={"slack_user_id": slack_user_id, "team_id": team_id}
            )
    except IntegrityError:
        raise ConflictError("That Slack user is linked to another account.") from None
    audit_log(
        actor=user,
        action="slack_identity.linked",
        obj=identity,
        data={"slack_user_id": slack_user_id, "team_id": team_id},
    )
    return identity


@transaction.atomic
def slack_identity_unlink(*, user: Any) -> bool:
    identity = SlackIdentity.objects.filter(user=user).first()
    if identity is None:
        return False
    audit_log(
        actor=user,
        action="slack_identity.unlinked",
        obj=identity,
        data={"slack_user_id": identity.slack_user_id},
    )
    identity.delete()
    return True


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


# --- from a signal to the ledger --------------------------------------------------------------


def notify(*, event: str, obj: Model, extra: dict[str, Any] | None = None) -> None:
    """Have a worker notify ``event`` about ``obj`` (after commit; ids only). For receivers.

    Projects without an enabled target cost one indexed query and no broker message."""
    source, pk = events.source_of(obj)
    project_id = events.project_id_of(obj)
    event_id = str(uuid.uuid4())

    def send() -> None:
        if NotificationTarget.objects.filter(project_id=project_id, enabled=True).exists():
            _send_dispatch(event, source, pk, event_id, extra)

    transaction.on_commit(send)


def _send_dispatch(
    event: str,
    source: str,
    pk: int,
    event_id: str,
    extra: dict | None,
    target_id: int | None = None,
) -> None:
    from .tasks import dispatch_task

    try:
        dispatch_task.delay(event, source, pk, event_id, extra, target_id)
    except Exception:
        # A missed notification must not break the transition that caused it.
        logger.exception("Could not queue notification %s about %s %s", event, source, pk)


def dispatch_source(
    *,
    event: str,
    source: str,
    source_id: int,
    event_id: str,
    extra: dict | None = None,
    target_id: int | None = None,
) -> list[NotificationDelivery]:
    """The dispatch task's entry: load what the signal carried, then :func:`dispatch`."""
    obj = events.load_source(source, source_id)
    if obj is None:
        return []  # deleted meanwhile
    targets = None
    if target_id is not None:
        targets = list(NotificationTarget.objects.filter(pk=target_id, enabled=True))
    return dispatch(
        event=event, obj=obj, event_id=uuid.UUID(event_id), extra=extra, targets=targets
    )


def dispatch(
    *,
    event: str,
    obj: Model,
    event_id: uuid.UUID | None = None,
    extra: dict[str, Any] | None = None,
    targets: list[NotificationTarget] | None = None,
) -> list[NotificationDelivery]:
    """One pending delivery per enabled target of the object's project that wants ``event``,
    each sent by a worker after commit. Idempotent per ``event_id``: a repeated dispatch
    makes no second row and sends nothing again."""
    object_type, subject = events.subject_of(obj)
    project = events.project_of(object_type, subject)
    if targets is None:
        targets = list(NotificationTarget.objects.filter(project=project, enabled=True))
    targets = [t for t in targets if t.project_id == project.pk and t.wants(event)]
    if not targets:
        return []
    data = events.event_data(event=event, obj=obj, extra=extra)
    event_id = event_id or uuid.uuid4()
    created = []
    with transaction.atomic():
        for target in targets:
            delivery, new = NotificationDelivery.objects.get_or_create(
                event_id=event_id,
                target=target,
                defaults={
                    "project": project,
                    "kind": target.kind,
                    "event": event,
                    "object_type": object_type,
                    "object_id": subject.pk,
                    "object_repr": str(subject)[:200],
                    "payload": data,
                },
            )
            if new:
                created.append(delivery)
        ids = [d.pk for d in created]
        transaction.on_commit(lambda: _send_deliveries(ids))
    return created


def _send_deliveries(ids: list[int]) -> None:
    from .tasks import deliver_task

    for pk in ids:
        try:
            deliver_task.delay(pk)
        except Exception:
            # The row stays pending; the sweeper sends it.
            logger.exception("Could not queue notification delivery %s", pk)


def delivery_sweep() -> int:
    """Send again the pending deliveries whose message was lost (a broker outage, a worker
    killed between retries). Retries end well within ``STALE_AFTER``, so a row untouched for
    that long has nobody working on it."""
    cutoff = timezone.now() - STALE_AFTER
    ids = list(
        NotificationDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            created__lt=cutoff,
            created__gte=timezone.now() - timedelta(days=1),
        )
        .exclude(last_attempt_at__gte=cutoff)
        .values_list("pk", flat=True)[:500]
    )
    _send_deliveries(ids)
    return len(ids)


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str
    response_code: int | None = None
    error: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def delivery_send(*, delivery_id: int, final_attempt: bool = True) -> NotificationDelivery | None:
    """Send one pending delivery and record what happened (the deliver task calls this).

    The row is locked while it is sent, so a duplicate message waits and then finds it done.
    A transient failure (no answer, 5xx, 429) is recorded and raised for the task to retry,
    unless this is the ``final_attempt``: then the delivery is failed. Other failures are
    final at once (a 4xx, Slack's ``channel_not_found``, …).
    """
    transient = None
    with transaction.atomic():
        delivery = (
            NotificationDelivery.objects.select_for_update(of=("self",))
            .select_related("target", "project")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return delivery
        target = delivery.target
        delivery.attempts += 1
        delivery.last_attempt_at = timezone.now()
        if target is None or not target.enabled:
            outcome = Outcome(DeliveryStatus.SKIPPED, error="The target was deleted or disabled.")
        else:
            sender = {
                TargetKind.SLACK: _send_slack,
                TargetKind.EMAIL: _send_email,
                TargetKind.WEBHOOK: _send_webhook,
            }[delivery.kind]
            try:
                outcome = sender(delivery, target)
            except TransientDeliveryError as exc:
                transient = exc
                outcome = Outcome(
                    DeliveryStatus.FAILED if final_attempt else DeliveryStatus.PENDING,
                    response_code=getattr(exc, "response_code", None),
                    error=str(exc),
                )
            except Exception:
                # A bug, not the other side: record it rather than leave the row pending for
                # the sweeper to try again and again.
                logger.exception("Notification delivery %s failed unexpectedly", delivery.pk)
                outcome = Outcome(DeliveryStatus.FAILED, error="Internal error (see the logs).")
        delivery.status = outcome.status
        delivery.response_code = outcome.response_code
        delivery.error = outcome.error[:2000]
        for name, value in outcome.fields.items():
            setattr(delivery, name, value)
        if outcome.status == DeliveryStatus.SENT:
            delivery.sent_at = timezone.now()
        delivery.save()
    if transient is not None:
        level = logging.WARNING if final_attempt else logging.INFO
        logger.log(
            level,
            "Notification delivery %s (%s %s) failed%s: %s",
            delivery.pk,
            delivery.kind,
            delivery.event,
            "" if final_attempt else " (will retry)",
            transient,
        )
        if not final_attempt:
            raise transient
    elif outcome.status == DeliveryStatus.FAILED:
        logger.warning(
            "Notification delivery %s (%s %s) failed: %s",
            delivery.pk,
            delivery.kind,
            delivery.event,
            delivery.error,
        )
    return delivery


def _transient(message: str, code: int | None = None) -> TransientDeliveryError:
    exc = TransientDeliveryError(message)
    exc.response_code = code  # type: ignore[attr-defined]
    return exc


# Slack ---------------------------------------------------------------------------------------


def _send_slack(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    if not settings.SLACK_BOT_TOKEN:
        return Outcome(DeliveryStatus.FAILED, error="SLACK_BOT_TOKEN is not set.")
    client = slack.web_client()
    try:
        if delivery.object_type == ObjectType.PROMOTION:
            return _send_slack_promotion(client, delivery, target)
        title = events.title(delivery.event, delivery.project, delivery.payload)
        blocks = slack.event_message(delivery.event, title, delivery.payload)
        response = client.chat_postMessage(
            channel=target.destination, text=title, blocks=blocks, unfurl_links=False
        )
    except (SlackClientError, OSError) as exc:
        code, message = slack.describe(exc)
        if slack.is_transient(exc):
            raise _transient(message, code) from exc
        return Outcome(DeliveryStatus.FAILED, response_code=code, error=message)
    return _slack_sent(response)


def _slack_sent(response: Any, channel: str = "", ts: str = "") -> Outcome:
    return Outcome(
        DeliveryStatus.SENT,
        response_code=response.status_code,
        fields={
            "slack_channel": channel or response.get("channel") or "",
            "slack_ts": ts or response.get("ts") or "",
        },
    )


def _send_slack_promotion(
    client: Any, delivery: NotificationDelivery, target: NotificationTarget
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
        text, blocks = slack.promotion_message(promotion, data, reminder=reminder)
        thread = {}
        if reminder and roots:
            # In the first message's thread, and shown in the channel: people are notified
            # and the whole story stays in one place.
            thread = {"thread_ts": roots[0].slack_ts, "reply_broadcast": True}
        channel = roots[0].slack_channel if thread else target.destination
        response = client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False, **thread
        )
        return _slack_sent(response)
    text, blocks = slack.promotion_message(promotion, data)
    if not roots:
        if delivery.event in SLACK_UPDATE_ONLY_EVENTS:
            return Outcome(
                DeliveryStatus.SKIPPED, error="No Slack message of this promotion to update."
            )
        response = client.chat_postMessage(
            channel=target.destination, text=text, blocks=blocks, unfurl_links=False
        )
        return _slack_sent(response)
    response = None
    for root in roots:
        response = client.chat_update(
            channel=root.slack_channel, ts=root.slack_ts, text=text, blocks=blocks
        )
    return _slack_sent(response, roots[0].slack_channel, roots[0].slack_ts)


# Email ---------------------------------------------------------------------------------------


def email_recipients(delivery: NotificationDelivery, target: NotificationTarget) -> list[str]:
    approvers: list[str] = []
    if delivery.event in EMAIL_APPROVER_EVENTS and delivery.object_type == ObjectType.PROMOTION:
        promotion = events.load(ObjectType.PROMOTION, delivery.object_id)
        if promotion is not None and promotion.status == PromotionStatus.PENDING:
            approvers = mail.approver_addresses(promotion)
    return mail.unique_addresses(approvers, target.email_addresses)


def _send_email(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    recipients = email_recipients(delivery, target)
    done = {a.lower() for a in delivery.recipients}
    remaining = [a for a in recipients if a.lower() not in done]
    if not recipients:
        return Outcome(DeliveryStatus.SKIPPED, error="Nobody to send it to.")
    title = events.title(delivery.event, delivery.project, delivery.payload)
    message = mail.render(
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
        raise _transient(f"{type(exc).__name__}: {exc}"[:500]) from exc
    error = f"Refused by the mail server: {', '.join(refused)}" if refused else ""
    if refused and not delivery.recipients:
        return Outcome(DeliveryStatus.FAILED, error=error)
    return Outcome(DeliveryStatus.SENT, error=error)


# Webhooks ------------------------------------------------------------------------------------


def _send_webhook(delivery: NotificationDelivery, target: NotificationTarget) -> Outcome:
    if not target.secret:
        return Outcome(DeliveryStatus.FAILED, error="The target has no secret.")
    project = delivery.project
    request = outgoing.build_request(
        event=delivery.event,
        delivery_uuid=str(delivery.uuid),
        project={
            "id": project.pk,
            "slug": project.slug,
            "name": project.name,
            "url": settings.SITE_URL + project.get_absolute_url(),
        },
        data=delivery.payload,
        secret=target.secret,
        delivered_at=timezone.now().isoformat(),
    )
    try:
        response = requests.post(
            target.destination,
            data=request.body,
            headers=request.headers,
            timeout=WEBHOOK_TIMEOUT,
            # A redirect is an answer we do not follow (it could lead anywhere).
            allow_redirects=False,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _transient(f"{type(exc).__name__}: {exc}"[:500]) from exc
    except requests.RequestException as exc:  # an invalid URL, …: retrying will not help
        return Outcome(DeliveryStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(DeliveryStatus.SENT, response_code=code)
    message = f"HTTP {code}: {response.text[:500]}"
    if code >= 500 or code == 429:
        raise _transient(message, code)
    return Outcome(DeliveryStatus.FAILED, response_code=code, error=message)


# --- Slack interactivity ----------------------------------------------------------------------


def slack_interaction_enqueue(*, payload: dict[str, Any]) -> bool:
    """Hand a verified Slack interaction to a worker (Slack wants its answer within 3 s).
    Returns whether it is one we act on."""
    if _decision_action(payload) is None:
        return False
    from .tasks import slack_interaction_task

    try:
        slack_interaction_task.delay(payload)
    except Exception:
        # TRICKY: the broker is down. Acting here, slower than Slack likes, beats losing a
        # decision someone made.
        logger.exception("Could not queue a Slack interaction; handling it in the request")
        slack_interaction_handle(payload=payload)
    return True


def _decision_action(payload: dict[str, Any]) -> dict[str, Any] | None:
    if payload.get("type") != "block_actions":
        return None
    for action in payload.get("actions") or []:
        if isinstance(action, dict) and action.get("action_id") in slack.DECISION_ACTIONS:
            return action
    return None


def slack_interaction_handle(*, payload: dict[str, Any]) -> str | None:
    """Act on an Approve / Reject click: find the account, call the same service as the
    browser, and tell the clicker (ephemeral) what happened. Returns the reply.

    Never raises once a decision may be recorded: a retry would find it decided already and
    tell the user the wrong thing."""
    action = _decision_action(payload)
    if action is None:
        return None
    decision = slack.DECISION_ACTIONS[action["action_id"]]
    member = payload.get("user") or {}
    slack_user_id = str(member.get("id") or "")
    team_id = str((payload.get("team") or {}).get("id") or member.get("team_id") or "")
    reply = _decide_from_slack(
        slack_user_id=slack_user_id,
        team_id=team_id,
        decision=decision,
        value=action.get("value"),
    )
    _reply_ephemeral(payload, slack_user_id, reply)
    return reply


def _decide_from_slack(*, slack_user_id: str, team_id: str, decision: str, value: Any) -> str:
    try:
        promotion_id = int(value)
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
    promotion = Promotion.objects.filter(pk=promotion_id).first()
    if promotion is None:
        return "This promotion no longer exists."
    try:
        promotion = promotion_decide(
            promotion=promotion,
            user=user,
            decision=decision,
            comment="",
            channel=ApprovalChannel.SLACK,
        )
    except ServiceError as exc:
        return f":no_entry: Nothing was recorded: {exc.message}"
    except Exception:
        logger.exception("A Slack decision on promotion %s failed", promotion_id)
        return ":warning: Something went wrong; nothing was recorded. Try again in the browser."
    what = f"{promotion.release.version} → {promotion.environment.name}"
    if decision == ApprovalDecision.REJECT:
        return f":x: You rejected {what}."
    if promotion.status != PromotionStatus.PENDING:  # approved, and maybe deploying already
        return f":white_check_mark: You approved {what}; it is approved and will deploy."
    count = promotion.approvals.filter(decision=ApprovalDecision.APPROVE).count()
    return (
        f":white_check_mark: You approved {what} "
        f"({count} of {promotion.required_approvals} approvals)."
    )


def _reply_ephemeral(payload: dict[str, Any], slack_user_id: str, text: str) -> None:
    """Only the clicker sees it: through the interaction's ``response_url`` (no token
    needed), else ``chat.postEphemeral``. A lost reply is logged, never retried."""
    response_url = payload.get("response_url")
    try:
        if isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
            response = slack.webhook_client(response_url).send(
                text=text, response_type="ephemeral", replace_original=False
            )
            if response.status_code != 200:
                logger.warning("Slack response_url answered %s", response.status_code)
            return
        channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get(
            "channel_id"
        )
        if channel and slack_user_id and settings.SLACK_BOT_TOKEN:
            slack.web_client().chat_postEphemeral(channel=channel, user=slack_user_id, text=text)
    except (SlackClientError, OSError) as exc:
        logger.warning("Could not answer a Slack interaction: %s", slack.describe(exc)[1])

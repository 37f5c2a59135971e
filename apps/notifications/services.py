"""Every write of the notifications app: targets, Slack identities and the delivery ledger
(dispatching an event to the targets that want it, sending one delivery through its channel,
sending again what was lost).

The flow: a signal receiver calls :func:`notify`, which enqueues ``notifications.dispatch``
after commit with ids only; that task calls :func:`dispatch` (one ledger row per matching
target) and enqueues ``notifications.deliver`` per row; that task calls :func:`delivery_send`,
which hands the row to its channel's ``send(delivery, target) -> Outcome`` (:mod:`.slack`,
:mod:`.mail`, :mod:`.outgoing`). Only tasks do network I/O. Slack buttons:
:mod:`.interactions`.
"""

import logging
import re
import uuid
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from apps.core.exceptions import ConflictError, ServiceError
from apps.core.services import StateMachine, audit_log
from apps.core.transient import TransientError
from apps.monitoring.alert_selectors import alert_route
from apps.monitoring.choices import AlertStatus, Severity
from apps.monitoring.models import Alert
from apps.projects.models import Project

from . import events, mail, outgoing, slack
from .choices import (
    ALERT_UPDATE_EVENTS,
    DELIVERY_TIMESTAMPS,
    DELIVERY_TRANSITIONS,
    KIND_EVENTS,
    DeliveryStatus,
    Event,
    TargetKind,
)
from .models import NotificationDelivery, NotificationTarget, SlackIdentity
from .outcome import Outcome

ObjectType = NotificationDelivery.ObjectType

#: The ledger's ends (pending → sent | failed | skipped), audited like every status change.
delivery_transition: StateMachine[NotificationDelivery] = StateMachine(
    "delivery", DELIVERY_TRANSITIONS, DELIVERY_TIMESTAMPS, lambda delivery: delivery.project_id
)

logger = logging.getLogger(__name__)

#: Shortest webhook secret accepted (it keys an HMAC: guessable secrets make forgeable calls).
MIN_SECRET_LENGTH = 16
#: A pending delivery untouched this long lost its message (the sweeper sends it again).
STALE_AFTER = timedelta(minutes=15)
SLACK_CHANNEL = re.compile(r"^(#[a-z0-9._-]{1,80}|[A-Z0-9]{6,32})$")


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


def _clean_severity(value: str | None) -> str:
    value = (value or "").strip()
    if value and value not in Severity.values:
        raise ServiceError(
            f"min_severity must be empty (every alert) or one of: {', '.join(Severity.values)}."
        )
    return value


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
    min_severity: str = "",
    enabled: bool = True,
) -> NotificationTarget:
    events_ = list(dict.fromkeys(events or []))
    destination = _clean_target(kind=kind, destination=destination, secret=secret, events_=events_)
    min_severity = _clean_severity(min_severity)
    user = actor if getattr(actor, "is_authenticated", False) else None
    target = NotificationTarget.objects.create(
        project=project,
        name=name,
        kind=kind,
        destination=destination,
        secret=secret,
        events=events_,
        min_severity=min_severity,
        enabled=enabled,
        created_by=user,
    )
    audit_log(
        actor=actor,
        action="notification_target.created",
        obj=target,
        project_id=project.pk,
        data={"kind": kind, "events": events_, "min_severity": min_severity},
    )
    return target


#: What may change on a target (kind and project are fixed at creation).
TARGET_UPDATABLE = ("name", "destination", "secret", "events", "min_severity", "enabled")


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
    if "min_severity" in changes:
        changes["min_severity"] = _clean_severity(changes["min_severity"])
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


def validate_slack_ids(*, slack_user_id: str, team_id: str) -> None:
    if not re.fullmatch(r"[UW][A-Z0-9]{2,31}", slack_user_id):
        raise ServiceError("A Slack member ID looks like U012AB3CD (Profile → ⋮ → Copy member ID).")
    if team_id and not re.fullmatch(r"[TE][A-Z0-9]{2,31}", team_id):
        raise ServiceError("A Slack team ID looks like T012AB3CD.")


@transaction.atomic
def slack_identity_link(*, user: Any, slack_user_id: str, team_id: str = "") -> SlackIdentity:
    """Link (or re-link) the user's account to a Slack user. A Slack user links to one
    account only. Records what the caller proved: the pages and the API reach it only through
    :mod:`.linking` (a one-time code sent to that Slack user)."""
    slack_user_id = slack_user_id.strip()
    team_id = (team_id or "").strip()
    validate_slack_ids(slack_user_id=slack_user_id, team_id=team_id)
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


# --- from a signal to the ledger --------------------------------------------------------------


def notify(
    *,
    event: str,
    obj: Model,
    extra: dict[str, Any] | None = None,
    event_id: uuid.UUID | str | None = None,
) -> None:
    """Have a worker notify ``event`` about ``obj`` (after commit; ids only). For receivers.

    ``event_id`` names the occurrence (default: a new one): notifying the same id twice makes
    no second delivery. Projects without an enabled target cost one indexed query and no
    broker message; an object of no project (an alert without one) costs nothing."""
    source, pk = events.source_of(obj)
    project_id = events.project_id_of(obj)
    if project_id is None:
        return
    event_id = str(event_id or uuid.uuid4())

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
    if project is None:
        return []
    if targets is None:
        targets = list(NotificationTarget.objects.filter(project=project, enabled=True))
    severity = subject.severity if object_type == ObjectType.ALERT else None
    targets = [t for t in targets if t.project_id == project.pk and t.wants(event, severity)]
    if object_type == ObjectType.ALERT and targets:
        # The spec's monitor.route: which channels get an alert of this severity.
        kinds = alert_route(subject)
        if kinds is not None:
            targets = [t for t in targets if t.kind in kinds]
    if object_type == ObjectType.ALERT and event in ALERT_UPDATE_EVENTS:
        targets = _told_of_alert(subject, targets)
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
                    "object_repr": events.object_repr(object_type, subject),
                    "payload": data,
                },
            )
            if new:
                created.append(delivery)
        ids = [d.pk for d in created]
        transaction.on_commit(lambda: _send_deliveries(ids))
    return created


def _told_of_alert(alert: Alert, targets: list[NotificationTarget]) -> list[NotificationTarget]:
    """An alert's resolve or acknowledgement goes only where its firing went (not skipped).
    While a silence holds the alert, only Slack hears of it: an edit of the message it has,
    which pings nobody; mails and webhooks wait (they are what a silence silences)."""
    told = set(
        NotificationDelivery.objects.filter(
            object_type=ObjectType.ALERT,
            object_id=alert.pk,
            event=Event.ALERT_FIRING,
            target__in=targets,
        )
        .exclude(status=DeliveryStatus.SKIPPED)
        .values_list("target_id", flat=True)
    )
    silenced = events.silenced_until(alert) is not None
    return [t for t in targets if t.pk in told and (t.kind == TargetKind.SLACK or not silenced)]


# --- alerts (from apps.monitoring's signals) ---------------------------------------------------

#: Namespace of the alert events' ids (uuid5): the same occurrence told twice (by
#: ``alerts_notify`` and ``alert_status_changed``, or a signal sent again) is one event.
ALERT_EVENT_NAMESPACE = uuid.UUID("6c1f3f0e-5b8e-4d57-9a59-8d3f1b0e7a11")
#: ``alerts_notify``'s reason → the event it is.
ALERT_REASON_EVENTS = {
    "firing": Event.ALERT_FIRING,
    "repeat": Event.ALERT_FIRING,
    "resolved": Event.ALERT_RESOLVED,
}


def alert_event_id(*, alert: Alert, event: str, reason: str = "") -> uuid.UUID:
    """The id of one thing told about an alert. A firing (first or repeat) is one per time the
    dispatcher stamped ``last_notified_at``; a resolve is one per alert row; an
    acknowledgement one per ``acknowledged_at``."""
    if event == Event.ALERT_RESOLVED:
        key = f"{alert.pk}:resolved"
    elif event == Event.ALERT_ACKNOWLEDGED:
        key = f"{alert.pk}:acknowledged:{events._iso(alert.acknowledged_at)}"
    else:
        stamp = events._iso(alert.last_notified_at)
        key = f"{alert.pk}:firing:{reason}:{alert.notified_count}:{stamp}"
    return uuid.uuid5(ALERT_EVENT_NAMESPACE, key)


def alerts_notify(*, alert_ids: list[int], group_key: str = "", reason: str = "firing") -> int:
    """Tell what the monitoring dispatcher decided is due (silences, grouping and the repeat
    interval already applied): one event per alert, to the targets of its project that take
    its severity. Returns how many alerts were handed on."""
    event = ALERT_REASON_EVENTS.get(reason)
    if event is None:
        logger.warning("alerts_notify with an unknown reason %r: nothing sent", reason)
        return 0
    alerts = list(
        Alert.objects.filter(pk__in=list(alert_ids), project__isnull=False).order_by("pk")
    )
    extra = {"reason": reason, "group_key": group_key}
    for alert in alerts:
        notify(
            event=event,
            obj=alert,
            extra=extra,
            event_id=alert_event_id(alert=alert, event=event, reason=reason),
        )
    return len(alerts)


def alert_changed(*, alert: Alert, new: str | None, acknowledged: bool = False) -> str | None:
    """``alert_status_changed``: a resolve or an acknowledgement updates what was sent about the
    alert (the Slack message in place; mail and webhooks where the firing went). A new firing
    waits for the dispatcher's ``alerts_notify``. Returns the event handed on, if any."""
    if acknowledged:
        event = Event.ALERT_ACKNOWLEDGED
    elif new == AlertStatus.RESOLVED:
        event = Event.ALERT_RESOLVED
    else:
        return None
    notify(
        event=event,
        obj=alert,
        extra={"reason": "acknowledged" if acknowledged else "resolved"},
        event_id=alert_event_id(alert=alert, event=event),
    )
    return event


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

#: Who records a delivery's end in the audit log.
LEDGER_ACTOR = "notifications"


def _channel_send(kind: str):
    """The channel's ``send(delivery, target) -> Outcome`` (looked up at call time)."""
    return {
        TargetKind.SLACK: slack.send,
        TargetKind.EMAIL: mail.send,
        TargetKind.WEBHOOK: outgoing.send,
    }[kind]


def delivery_send(*, delivery_id: int, final_attempt: bool = True) -> NotificationDelivery | None:
    """Send one pending delivery and record what happened (the deliver task calls this).

    The row is locked while it is sent, so a duplicate message waits and then finds it done.
    A :class:`TransientError` from the channel (no answer, a transient HTTP status, Slack's
    ``ratelimited``) is recorded on the still-pending row and raised for the task to retry,
    unless this is the ``final_attempt``: then the delivery is failed. Other failures are final
    at once (a 4xx, Slack's ``channel_not_found``, …). The end (sent, failed, skipped) goes
    through :func:`state_transition` with ``DELIVERY_TRANSITIONS``: one audit row each.
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
            try:
                outcome = _channel_send(delivery.kind)(delivery, target)
            except TransientError as exc:
                transient = exc
                outcome = Outcome(
                    DeliveryStatus.FAILED if final_attempt else DeliveryStatus.PENDING,
                    response_code=exc.response_code,
                    error=str(exc),
                )
            except Exception:
                # A bug, not the other side: record it rather than leave the row pending for
                # the sweeper to try again and again.
                logger.exception("Notification delivery %s failed unexpectedly", delivery.pk)
                outcome = Outcome(DeliveryStatus.FAILED, error="Internal error (see the logs).")
        delivery = _record(delivery, outcome)
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


def _record(delivery: NotificationDelivery, outcome: Outcome) -> NotificationDelivery:
    """Write the attempt on the (locked) row: an end through the state machine, a retry to
    come as an update of the pending row."""
    changes = {
        "attempts": delivery.attempts,
        "last_attempt_at": delivery.last_attempt_at,
        "response_code": outcome.response_code,
        "error": outcome.error[:2000],
        # Email: who got it so far (a retry mails only the others).
        "recipients": delivery.recipients,
        **outcome.fields,
    }
    if outcome.status == DeliveryStatus.PENDING:
        for name, value in changes.items():
            setattr(delivery, name, value)
        delivery.save(update_fields=list(changes))
        return delivery
    return delivery_transition(
        delivery=delivery,
        to=outcome.status,
        actor=LEDGER_ACTOR,
        reason=outcome.error[:2000],
        update=changes,
    )

"""Reactions to other apps' signals (connected in :class:`NotificationsConfig.ready`).

Thin: each names the event and hands ids to a worker after commit; no network I/O here, and
nothing raised back into the sender (a notification never breaks a transition)."""

import logging
from typing import Any

from apps.pipelines.choices import RunStatus

from . import events, services
from .choices import Event

logger = logging.getLogger(__name__)


def _notify(event: str | None, obj: Any, extra: dict | None = None) -> None:
    if event is None:
        return
    try:
        services.notify(event=event, obj=obj, extra=extra)
    except Exception:
        logger.exception("Could not notify %s about %r", event, obj)


def _transition(from_status: Any, to_status: Any) -> dict:
    return {"transition": {"from": from_status or None, "to": to_status}}


def on_run_status_changed(sender: Any, *, run, from_status=None, to_status=None, **kwargs) -> None:
    """``pipelines.signals.run_status_changed``: a failed build."""
    if to_status == RunStatus.FAILED:
        _notify(Event.BUILD_FAILED, run, _transition(from_status, to_status))


def on_promotion_status_changed(
    sender: Any, *, promotion, from_status=None, to_status=None, **kwargs
) -> None:
    """``releases.signals.promotion_status_changed``: pending (new), approved, rejected,
    expired, superseded."""
    _notify(
        events.promotion_event(to_status=to_status),
        promotion,
        _transition(from_status, to_status),
    )


def on_promotion_reminder(sender: Any, *, promotion, **kwargs) -> None:
    """``releases.signals.promotion_reminder``: the approval deadline is near."""
    _notify(Event.PROMOTION_REMINDER, promotion)


def on_approval_recorded(sender: Any, *, approval, **kwargs) -> None:
    """``releases.signals.approval_recorded``: one approval or rejection."""
    _notify(Event.APPROVAL_RECORDED, approval)


def on_deployment_status_changed(
    sender: Any, *, deployment, from_status=None, to_status=None, **kwargs
) -> None:
    """``releases.signals.deployment_status_changed``: deployed, failed, rolled back."""
    _notify(
        events.deployment_event(deployment=deployment, to_status=to_status),
        deployment,
        _transition(from_status, to_status),
    )


def on_alerts_notify(
    sender: Any, *, alert_ids=(), group_key: str = "", reason: str = "firing", **kwargs
) -> None:
    """``monitoring.signals.alerts_notify``: alerts the dispatcher says are due (firing, a
    repeat, resolved), after silences and grouping."""
    try:
        services.alerts_notify(alert_ids=list(alert_ids), group_key=group_key, reason=reason)
    except Exception:
        logger.exception("Could not notify alerts %s (%s)", list(alert_ids), reason)


def on_alert_status_changed(
    sender: Any, *, alert, old=None, new=None, acknowledged: bool = False, **kwargs
) -> None:
    """``monitoring.signals.alert_status_changed``: a resolve or an acknowledgement edits
    what was sent (a new firing is told by ``alerts_notify``)."""
    try:
        services.alert_changed(alert=alert, new=new, acknowledged=acknowledged)
    except Exception:
        logger.exception("Could not notify the change of alert %r", alert)

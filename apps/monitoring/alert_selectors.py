"""Reads for the alert and silence pages and the API."""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.permissions import restrict_to_visible
from apps.core.models import AuditEvent

from .dispatch import active_silences, silence_for
from .models import Alert, Silence


def alert_list(*, user: Any) -> QuerySet[Alert]:
    return restrict_to_visible(
        Alert.objects.select_related("project", "environment", "acknowledged_by", "silenced_by"),
        user,
    )


def silence_list(*, user: Any) -> QuerySet[Silence]:
    return restrict_to_visible(
        Silence.objects.select_related("project", "created_by", "expired_by"), user
    )


def with_current_silences(alerts: list[Alert]) -> list[Alert]:
    """Each alert gets ``current_silence``: the active silence matching it now, if any."""
    silences = active_silences(at=timezone.now())
    for a in alerts:
        a.current_silence = silence_for(a, silences) if a.status == "firing" else None
    return alerts


def alert_history(*, alert: Alert) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        content_type=ContentType.objects.get_for_model(Alert), object_id=str(alert.pk)
    ).order_by("created", "id")


def alert_route(alert: Alert) -> tuple[str, ...] | None:
    """The channel kinds (slack, email, webhook) ``monitor.route`` of the spec serving in the
    alert's environment sends an alert of its severity to; None when it names none for it (or
    the alert has no monitored environment): every target, by its min_severity."""
    if alert.environment_id is None:
        return None
    from .checks import monitored_environments

    monitored = next(iter(monitored_environments(alert.environment_id)), None)
    if monitored is None:
        return None
    return monitored.monitor.route.get(alert.severity)

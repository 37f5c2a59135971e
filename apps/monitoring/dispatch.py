"""Decides what people are told about alerts, and when; ``signals.alerts_notify`` carries it
to the notifications app (which decides who and how).

One pass (the beat task ``monitoring.evaluate_rules`` runs one every 30 s, after the rules):

- alerts are told in groups, ``group_key`` = project/environment/alertname;
- a firing alert never told is held for ``CONTROLPLANE_ALERT_GROUP_WAIT_SECONDS`` after the
  group's first pending alert started, so alerts that start together are told together;
- a firing alert told before is told again ("repeat") every ``CONTROLPLANE_ALERT_REPEAT_HOURS``;
- a resolved alert that was told while firing is told once more ("resolved");
- an alert an active silence matches is not told: the silence is recorded on it
  (``silenced_by``, and an audit row when it changes). Once the silence ends (or is expired
  early) the next pass tells it like any other — that is why expiry needs no event of its own.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from . import signals
from .choices import AlertStatus
from .models import Alert, Silence
from .services.alerts import _audit
from .silences import matchers_match, matchers_text

# pg_try_advisory_xact_lock key: one pass at a time, a second one simply skips.
DISPATCH_LOCK = 0x6D6F6E5F64697370  # "mon_disp"


@dataclass(frozen=True)
class Notice:
    group_key: str
    reason: str  # firing | resolved | repeat
    alert_ids: tuple[int, ...]


def active_silences(*, at: datetime) -> list[Silence]:
    return list(Silence.objects.filter(starts_at__lte=at, ends_at__gt=at).order_by("ends_at"))


def silence_for(alert: Alert, silences: list[Silence]) -> Silence | None:
    """The active silence that holds ``alert`` back (the one ending last), if any."""
    found = None
    for s in silences:
        if s.project_id is not None and s.project_id != alert.project_id:
            continue
        if matchers_match(s.matchers, alert.labels):
            found = s  # ordered by ends_at: the last match lasts longest
    return found


def dispatch(*, at: datetime | None = None) -> list[Notice]:
    """One pass; returns what it told (the signal goes out after the commit)."""
    now = at or timezone.now()
    group_wait = timedelta(seconds=settings.ALERT_GROUP_WAIT_SECONDS)
    repeat = timedelta(hours=settings.ALERT_REPEAT_HOURS)
    notices: list[Notice] = []
    with transaction.atomic():
        if connection.vendor == "postgresql":  # SQLite (the embedded stack) locks it all
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DISPATCH_LOCK])
                if not cursor.fetchone()[0]:
                    return []
        silences = active_silences(at=now)
        candidates = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(
                Q(status=AlertStatus.FIRING)
                | Q(
                    status=AlertStatus.RESOLVED,
                    notified_count__gt=0,
                    resolved_notified_at__isnull=True,
                )
            )
            .order_by("starts_at", "id")
        )
        pending: dict[str, list[Alert]] = defaultdict(list)
        due: dict[tuple[str, str], list[Alert]] = defaultdict(list)
        for alert in candidates:
            silence = silence_for(alert, silences)
            if silence is not None:
                if alert.silenced_by_id != silence.pk:
                    alert.silenced_by = silence
                    alert.save(update_fields=["silenced_by"])
                    _audit(
                        alert,
                        action="alert.silenced",
                        actor="dispatcher",
                        old=alert.status,
                        new=alert.status,
                        reason=silence.reason,
                        data={
                            "silence_id": silence.pk,
                            "matchers": matchers_text(silence.matchers),
                        },
                    )
                continue
            if alert.silenced_by_id is not None:
                alert.silenced_by = None
                alert.save(update_fields=["silenced_by"])
            key = alert.group_key or "-"
            if alert.status == AlertStatus.RESOLVED:
                due[(key, "resolved")].append(alert)
            elif alert.last_notified_at is None:
                pending[key].append(alert)
            elif now - alert.last_notified_at >= repeat:
                due[(key, "repeat")].append(alert)
        for key, alerts in pending.items():
            # From when it started, or when we heard of it if it claims to start later.
            if now - min(min(a.starts_at, a.created) for a in alerts) >= group_wait:
                due[(key, "firing")].extend(alerts)
        for (key, reason), alerts in sorted(due.items()):
            ids = tuple(a.pk for a in alerts)
            if reason == "resolved":
                Alert.objects.filter(pk__in=ids).update(resolved_notified_at=now)
            else:
                Alert.objects.filter(pk__in=ids).update(
                    last_notified_at=now, notified_count=F("notified_count") + 1
                )
            notices.append(Notice(group_key=key, reason=reason, alert_ids=ids))
        transaction.on_commit(lambda: _send(notices))
    return notices


def _send(notices: list[Notice]) -> None:
    for n in notices:
        signals.alerts_notify.send_robust(
            sender=Alert, alert_ids=list(n.alert_ids), group_key=n.group_key, reason=n.reason
        )

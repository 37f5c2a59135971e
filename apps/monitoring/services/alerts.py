"""Alerts fire, are acknowledged and resolve; silences hold their notifications back.

Every change is one transaction with its audit row (on the alert or the silence, with the
project and ``data.environment_id`` so the environment's timeline shows it), and
``signals.alert_status_changed`` goes out after the commit. What people are told, and when,
is the dispatcher's business (``apps/monitoring/dispatch.py``).
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ConflictError, PermissionDeniedError, ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment, Project

from .. import signals
from ..choices import ALERT_TRANSITIONS, AlertSource, AlertStatus, Severity
from ..models import Alert, Silence
from ..silences import matchers_clean, matchers_text

MAX_LABELS = 50
MAX_VALUE = 1000


def alert_labels(
    *,
    rule: str,
    labels: Mapping[str, Any],
    project: Project | None = None,
    environment: Environment | None = None,
) -> dict[str, str]:
    """The labels an alert is stored (and fingerprinted) with: the given ones as strings, with
    ``alertname`` = the rule and, when the alert is about them, ``project`` (slug) and
    ``environment`` (name)."""
    out = {str(k): str(v)[:MAX_VALUE] for k, v in labels.items()}
    out["alertname"] = rule
    if environment is not None:
        out.setdefault("environment", environment.name)
        project = project or environment.project
    if project is not None:
        out.setdefault("project", project.slug)
    return dict(sorted(out.items()))


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """SHA-256 of the sorted labels (alertname included)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def alert_fingerprint(
    *,
    rule: str,
    labels: Mapping[str, Any],
    project: Project | None = None,
    environment: Environment | None = None,
) -> str:
    """The fingerprint ``alert_fire`` gives these arguments (to resolve it later)."""
    return fingerprint_of(
        alert_labels(rule=rule, labels=labels, project=project, environment=environment)
    )


def alert_url(alert: Alert) -> str:
    if alert.project_id is None:
        return ""  # no project, no page: only the API (superusers) shows it
    return reverse("alerts:detail", kwargs={"slug": alert.project.slug, "pk": alert.pk})


def _audit(
    alert: Alert,
    *,
    action: str,
    actor: Any,
    old: str,
    new: str,
    reason: str = "",
    data: Mapping[str, Any] | None = None,
) -> None:
    audit_log(
        actor=actor,
        action=action,
        obj=alert,
        project_id=alert.project_id,
        from_state=old,
        to_state=new,
        reason=reason,
        data={
            "environment_id": alert.environment_id,
            "rule": alert.rule,
            "fingerprint": alert.fingerprint,
            "severity": alert.severity,
            "url": alert_url(alert),
            **(data or {}),
        },
    )


def _changed_after_commit(alert: Alert, *, old: str, new: str, **extra: Any) -> None:
    transaction.on_commit(
        lambda: signals.alert_status_changed.send_robust(
            sender=Alert, alert=alert, old=old, new=new, **extra
        )
    )


def alert_fire(
    *,
    rule: str,
    labels: Mapping[str, Any],
    severity: str,
    summary: str,
    annotations: Mapping[str, Any] | None = None,
    value: float | None = None,
    project: Project | None = None,
    environment: Environment | None = None,
    source: str = AlertSource.CONTROLPLANE,
    drift_check=None,
    deployment=None,
    at: datetime | None = None,
) -> Alert:
    """Fire ``rule`` for ``labels``: a new Alert row, or, when one with the same fingerprint
    is firing, that row brought up to date (last seen, value, summary) — never a second one."""
    if severity not in Severity.values:
        raise ServiceError(f"Unknown severity {severity!r}.", code="severity")
    if environment is not None and project is None:
        project = environment.project
    labels = alert_labels(rule=rule, labels=labels, project=project, environment=environment)
    if len(labels) > MAX_LABELS:
        raise ServiceError(f"At most {MAX_LABELS} labels.", code="labels")
    fingerprint = fingerprint_of(labels)
    now = timezone.now()
    at = at or now
    annotations = {str(k): str(v) for k, v in (annotations or {}).items()}
    with transaction.atomic():
        current = _firing_locked(fingerprint)
        if current is None:
            try:
                with transaction.atomic():  # a savepoint: a concurrent fire may win the insert
                    alert = Alert.objects.create(
                        project=project,
                        environment=environment,
                        source=source,
                        rule=rule,
                        fingerprint=fingerprint,
                        labels=labels,
                        annotations=annotations,
                        severity=severity,
                        status=AlertStatus.FIRING,
                        summary=summary[:300],
                        value=value,
                        drift_check=drift_check,
                        deployment=deployment,
                        starts_at=at,
                        last_seen_at=max(at, now),
                        group_key=group_key_of(labels),
                    )
            except IntegrityError:
                current = _firing_locked(fingerprint)
                if current is None:
                    raise
            else:
                _audit(
                    alert,
                    action="alert.fired",
                    actor=source,
                    old="",
                    new=AlertStatus.FIRING,
                    reason=f"{rule}: {summary}"[:1000],
                    data={"value": value},
                )
                _changed_after_commit(alert, old="", new=AlertStatus.FIRING)
                return alert
        # Already firing: the same alert seen again.
        current.last_seen_at = max(current.last_seen_at, at, now)
        current.value = value
        current.summary = summary[:300]
        current.annotations = annotations or current.annotations
        current.severity = severity
        update = ["last_seen_at", "value", "summary", "annotations", "severity"]
        for name, given in (("drift_check", drift_check), ("deployment", deployment)):
            if given is not None:
                setattr(current, name, given)
                update.append(name)
        current.save(update_fields=update)
        return current


def _firing_locked(fingerprint: str) -> Alert | None:
    return (
        Alert.objects.select_for_update(of=("self",))
        .select_related("project")
        .filter(fingerprint=fingerprint, status=AlertStatus.FIRING)
        .first()
    )


def group_key_of(labels: Mapping[str, str]) -> str:
    """Alerts told together: per project, environment and alertname."""
    return "/".join(labels.get(k, "") or "-" for k in ("project", "environment", "alertname"))[:200]


def _resolve_locked(alert: Alert, *, at: datetime, actor: Any, reason: str) -> Alert:
    if AlertStatus.RESOLVED not in ALERT_TRANSITIONS[alert.status]:
        raise ConflictError(f"Alert {alert.pk} is {alert.status}.", code="illegal_transition")
    old = alert.status
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = at
    alert.save(update_fields=["status", "resolved_at"])
    _audit(alert, action="alert.resolved", actor=actor, old=old, new=alert.status, reason=reason)
    _changed_after_commit(alert, old=old, new=alert.status)
    return alert


def alert_resolve(
    *, fingerprint: str, at: datetime | None = None, actor: Any = None, reason: str = ""
) -> Alert | None:
    """Resolve the firing alert of ``fingerprint``; None when none is firing."""
    with transaction.atomic():
        alert = _firing_locked(fingerprint)
        if alert is None:
            return None
        return _resolve_locked(
            alert,
            at=at or timezone.now(),
            actor=actor or alert.source,
            reason=reason or f"{alert.rule}: resolved",
        )


def alert_resolve_missing(
    *,
    rule: str,
    seen_fingerprints: Iterable[str],
    scope: Q | Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> list[Alert]:
    """After one evaluation of ``rule``: resolve its firing alerts (of the control plane,
    within ``scope``: a Q or filter kwargs on Alert, e.g. ``{"environment": env}``) whose
    fingerprints the evaluation did not yield."""
    seen = set(seen_fingerprints)
    qs = Alert.objects.filter(rule=rule, status=AlertStatus.FIRING, source=AlertSource.CONTROLPLANE)
    if isinstance(scope, Q):
        qs = qs.filter(scope)
    elif scope:
        qs = qs.filter(**scope)
    resolved = []
    at = at or timezone.now()
    with transaction.atomic():
        for alert in (
            qs.exclude(fingerprint__in=seen)
            .select_related("project")
            .select_for_update(of=("self",), skip_locked=True)
        ):
            resolved.append(
                _resolve_locked(alert, at=at, actor="rules", reason=f"{rule}: no longer true")
            )
    return resolved


def alert_acknowledge(*, alert: Alert, actor: Any, comment: str = "") -> Alert:
    """Someone is on it: a firing alert is marked acknowledged (once)."""
    if alert.project_id is not None and not has_role(actor, alert.project_id, Role.DEVELOPER):
        raise PermissionDeniedError("Acknowledging an alert needs the developer role.")
    with transaction.atomic():
        locked = (
            Alert.objects.select_for_update(of=("self",)).select_related("project").get(pk=alert.pk)
        )
        if locked.status != AlertStatus.FIRING:
            raise ConflictError("Only a firing alert can be acknowledged.", code="not_firing")
        if locked.acknowledged_at is not None:
            raise ConflictError("The alert is already acknowledged.", code="acknowledged")
        locked.acknowledged_at = timezone.now()
        locked.acknowledged_by = actor if getattr(actor, "is_authenticated", False) else None
        locked.save(update_fields=["acknowledged_at", "acknowledged_by"])
        _audit(
            locked,
            action="alert.acknowledged",
            actor=actor,
            old=locked.status,
            new=locked.status,
            reason=comment,
        )
        _changed_after_commit(locked, old=locked.status, new=locked.status, acknowledged=True)
    alert.acknowledged_at, alert.acknowledged_by = locked.acknowledged_at, locked.acknowledged_by
    return locked


# --- silences -------------------------------------------------------------------------------


def silence_create(
    *,
    project: Project | None,
    matchers: Any,
    reason: str,
    ends_at: datetime,
    actor: Any,
    starts_at: datetime | None = None,
) -> Silence:
    """Hold back notifications of alerts matching every matcher until ``ends_at``. In a
    project it applies to that project's alerts only; without one (superusers) to all."""
    if project is None:
        if not getattr(actor, "is_superuser", False):
            raise PermissionDeniedError("A silence outside a project needs a superuser.")
    elif not has_role(actor, project.pk, Role.DEVELOPER):
        raise PermissionDeniedError("Silencing needs the developer role.")
    cleaned = matchers_clean(matchers)
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why (the reason is shown with the silence).", code="reason")
    now = timezone.now()
    starts_at = starts_at or now
    if ends_at <= max(starts_at, now):
        raise ServiceError("The silence must end in the future, after it starts.", code="ends_at")
    with transaction.atomic():
        silence = Silence.objects.create(
            project=project,
            matchers=cleaned,
            reason=reason,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        audit_log(
            actor=actor,
            action="silence.created",
            obj=silence,
            project_id=project.pk if project else None,
            reason=reason,
            data={
                "matchers": cleaned,
                "text": matchers_text(cleaned),
                "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(),
            },
        )
    return silence


def silence_expire(*, silence: Silence, actor: Any) -> Silence:
    """End a silence now; alerts it held back are told on the dispatcher's next pass."""
    if silence.project_id is None:
        if not getattr(actor, "is_superuser", False):
            raise PermissionDeniedError("Only a superuser can expire a global silence.")
    elif not has_role(actor, silence.project_id, Role.DEVELOPER):
        raise PermissionDeniedError("Expiring a silence needs the developer role.")
    now = timezone.now()
    with transaction.atomic():
        locked = Silence.objects.select_for_update().get(pk=silence.pk)
        if locked.ends_at <= now:
            raise ConflictError("The silence has already ended.", code="expired")
        locked.ends_at = now
        locked.starts_at = min(locked.starts_at, now)
        locked.expired_by = actor if getattr(actor, "is_authenticated", False) else None
        locked.save(update_fields=["ends_at", "starts_at", "expired_by"])
        audit_log(
            actor=actor,
            action="silence.expired",
            obj=locked,
            project_id=locked.project_id,
            data={"text": matchers_text(locked.matchers)},
        )
    silence.ends_at, silence.starts_at = locked.ends_at, locked.starts_at
    silence.expired_by = locked.expired_by
    return locked

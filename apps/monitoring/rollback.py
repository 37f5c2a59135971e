"""Automatic rollback on alert (docs/monitoring-rollback.md).

An environment lists alert rules in ``rollback_on`` (``service_down``, ``error_rate``, a
Prometheus alertname, ...) and a ``rollback_watch`` duration. When an alert of such a rule starts
firing for the environment within the watch after the serving deployment succeeded, the
environment is rolled back to the release that served before, through releases' own rollback
service (``deployment_rollback``: a rollback deployment a worker carries out, held by a freeze
window like any automatic deploy). The rollback deployment says why in its ``details``, the
audit log has ``deployment.auto_rollback``, and the deployment signals notify as for any
rollback. Outside the watch, or for a rule not listed, the alert is all that happens.

Not rolled back automatically: a deployment that is itself a rollback (no ping-pong between
two bad releases), an alert about a deployment that no longer serves, and an environment where
a deployment is already on its way.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.exceptions import ServiceError
from apps.core.services import audit_log
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.releases.services import deployment_rollback

from .choices import AlertStatus
from .models import Alert

logger = logging.getLogger(__name__)

ACTOR = "monitoring"


def watch_ends(deployment: Deployment) -> Any:
    """When the watch after ``deployment`` ends (None: it did not succeed, or no watch)."""
    environment = deployment.environment
    if not deployment.finished_at or not environment.rollback_on:
        return None
    return deployment.finished_at + environment.rollback_watch


def _serving(environment) -> Deployment | None:
    return (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("release")
        .filter(environment=environment, status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def _previous_release_deployment(serving: Deployment) -> Deployment | None:
    """The last deployment before ``serving`` that succeeded with another release (a replaced
    deployment keeps its "succeeded")."""
    return (
        Deployment.objects.select_related("release")
        .filter(
            environment_id=serving.environment_id,
            status=DeploymentStatus.SUCCEEDED,
            finished_at__lt=serving.finished_at,
        )
        .exclude(release_id=serving.release_id)
        .order_by("-finished_at", "-pk")
        .first()
    )


def _skip(alert: Alert, serving: Deployment, why: str) -> None:
    audit_log(
        actor=ACTOR,
        action="deployment.auto_rollback_skipped",
        obj=serving,
        project_id=serving.environment.project_id,
        reason=why,
        data={
            "alert_id": alert.pk,
            "rule": alert.rule,
            "environment_id": serving.environment_id,
            "release": serving.release.version,
            "url": serving.get_absolute_url(),
        },
    )


def rollback_on_alert(*, alert: Alert) -> Deployment | None:
    """Roll the alert's environment back when its rule is in ``rollback_on`` and it started
    firing within the watch after the serving deployment; returns the rollback deployment
    (pending: a worker carries it out), or None when the alert is all that happens."""
    environment = alert.environment
    if environment is None or alert.status != AlertStatus.FIRING:
        return None
    if alert.rule not in (environment.rollback_on or []):
        return None
    with transaction.atomic():
        serving = _serving(environment)
        if serving is None or serving.finished_at is None:
            return None
        fired_at = alert.starts_at or timezone.now()
        after = (fired_at - serving.finished_at).total_seconds()
        if after < 0 or after > environment.rollback_watch.total_seconds():
            return None  # outside the watch: only the alert
        if alert.deployment_id and alert.deployment_id != serving.pk:
            return None  # about a deployment that no longer serves
        if serving.is_rollback:
            _skip(alert, serving, "The serving deployment is a rollback itself: not rolled back.")
            return None
        if Deployment.objects.filter(
            environment=environment,
            status__in=(DeploymentStatus.PENDING, DeploymentStatus.RUNNING),
        ).exists():
            _skip(alert, serving, "A deployment is already on its way: not rolled back.")
            return None
        target = _previous_release_deployment(serving)
        if target is None:
            _skip(alert, serving, "No earlier release served here: nothing to roll back to.")
            return None
        what = alert.summary or alert.rule
        reason = (
            f"Automatic rollback: alert {alert.rule} ({what}) fired {after:.0f} s after "
            f"{serving.release.version} was deployed (watch {environment.rollback_watch})."
        )[:1000]
        try:
            rollback = deployment_rollback(
                environment=environment, release=target.release, actor=ACTOR, reason=reason
            )
        except ServiceError as exc:
            _skip(alert, serving, f"Rollback refused: {exc}")
            return None
        evidence = {
            "alert_id": alert.pk,
            "rule": alert.rule,
            "summary": alert.summary,
            "value": alert.value,
            "fired_at": fired_at.isoformat(),
            "seconds_after_deploy": round(after, 1),
            "from_deployment": serving.pk,
            "from_release": serving.release.version,
            "to_release": target.release.version,
        }
        rollback.details = {**rollback.details, "automatic_rollback": evidence}
        rollback.save(update_fields=["details", "modified"])
        serving.details = {
            **serving.details,
            "rolled_back_by_alert": {**evidence, "rollback_deployment": rollback.pk},
        }
        serving.save(update_fields=["details", "modified"])
        if alert.deployment_id is None:
            Alert.objects.filter(pk=alert.pk).update(deployment=serving)
        audit_log(
            actor=ACTOR,
            action="deployment.auto_rollback",
            obj=rollback,
            project_id=environment.project_id,
            from_state=serving.release.version,
            to_state=target.release.version,
            reason=reason,
            # environment_id: the environment's timeline shows it (releases reads audit rows).
            data={**evidence, "environment_id": environment.pk, "url": rollback.get_absolute_url()},
        )
    logger.info("Rolling %s back to %s: %s", environment, target.release.version, reason)
    return rollback


def on_alert_status_changed(sender: Any, alert: Alert, old: Any, new: Any, **kwargs: Any) -> None:
    """``signals.alert_status_changed`` (sent after commit): a new firing may roll back."""
    if new != AlertStatus.FIRING or old == AlertStatus.FIRING:
        return  # resolved, or an acknowledgement
    try:
        rollback_on_alert(alert=alert)
    except Exception:  # the alert stands whatever happens here; never break its sender
        logger.exception("Automatic rollback for alert %s failed", alert.pk)

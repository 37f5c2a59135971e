"""What an event says: the object it is about, its data (the ``data`` of a webhook body, also
the context of emails) and a one-line title. No I/O but database reads."""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.monitoring.choices import AlertStatus
from apps.monitoring.models import Alert
from apps.pipelines.models import PipelineRun
from apps.projects.models import Project
from apps.releases.choices import ApprovalDecision, DeploymentStatus
from apps.releases.models import Approval, Deployment, Promotion

from .choices import PROMOTION_STATUS_EVENTS, Event
from .models import NotificationDelivery, NotificationTarget

ObjectType = NotificationDelivery.ObjectType

_MODELS: dict[str, type[models.Model]] = {
    ObjectType.RUN: PipelineRun,
    ObjectType.PROMOTION: Promotion,
    ObjectType.DEPLOYMENT: Deployment,
    ObjectType.TARGET: NotificationTarget,
    ObjectType.ALERT: Alert,
}
_RELATED: dict[str, tuple[str, ...]] = {
    ObjectType.RUN: ("project",),
    ObjectType.PROMOTION: (
        "release__project",
        "release__pipeline_run",
        "environment",
        "requested_by",
    ),
    ObjectType.DEPLOYMENT: (
        "release__project",
        "environment",
        "previous__release",
        "triggered_by",
    ),
    ObjectType.TARGET: ("project",),
    ObjectType.ALERT: ("project", "environment", "acknowledged_by", "silenced_by"),
}


#: What a signal carried, named in a task's arguments (ids only, never objects).
_SOURCES: dict[str, tuple[type[models.Model], tuple[str, ...]]] = {
    "run": (PipelineRun, _RELATED[ObjectType.RUN]),
    "promotion": (Promotion, _RELATED[ObjectType.PROMOTION]),
    "deployment": (Deployment, _RELATED[ObjectType.DEPLOYMENT]),
    "approval": (
        Approval,
        ("user", *(f"promotion__{path}" for path in _RELATED[ObjectType.PROMOTION])),
    ),
    "target": (NotificationTarget, _RELATED[ObjectType.TARGET]),
    "alert": (Alert, _RELATED[ObjectType.ALERT]),
}


def source_of(obj: models.Model) -> tuple[str, int]:
    for name, (model, _related) in _SOURCES.items():
        if isinstance(obj, model):
            return name, obj.pk
    raise TypeError(f"No notifications about {type(obj).__name__}.")


def project_id_of(obj: models.Model) -> int | None:
    """The project of what a signal carried, from the objects at hand (an alert may have
    none: an Alertmanager alert without a ``project`` label notifies nobody)."""
    if isinstance(obj, Approval):
        obj = obj.promotion
    if isinstance(obj, PipelineRun | NotificationTarget | Alert):
        return obj.project_id
    if isinstance(obj, Promotion | Deployment):
        return obj.environment.project_id
    raise TypeError(f"No notifications about {type(obj).__name__}.")


def load_source(name: str, pk: int) -> models.Model | None:
    model, related = _SOURCES[name]
    return model.objects.select_related(*related).filter(pk=pk).first()


# --- which event, about what ------------------------------------------------------------------


def deployment_event(*, deployment: Deployment, to_status: str) -> str | None:
    """``succeeded`` of a rollback the user asked for is a rollback; ``rolled_back`` is a failed
    deploy whose previous release kept (or went back to) serving."""
    if to_status == DeploymentStatus.SUCCEEDED:
        return (
            Event.DEPLOYMENT_ROLLED_BACK if deployment.is_rollback else Event.DEPLOYMENT_SUCCEEDED
        )
    if to_status == DeploymentStatus.FAILED:
        return Event.DEPLOYMENT_FAILED
    if to_status == DeploymentStatus.ROLLED_BACK:
        return Event.DEPLOYMENT_ROLLED_BACK
    return None


def promotion_event(*, to_status: str) -> str | None:
    return PROMOTION_STATUS_EVENTS.get(to_status)


def subject_of(obj: models.Model) -> tuple[str, models.Model]:
    """The object a notification is about: an approval's is its promotion."""
    if isinstance(obj, Approval):
        return ObjectType.PROMOTION, obj.promotion
    for object_type, model in _MODELS.items():
        if isinstance(obj, model):
            return object_type, obj
    raise TypeError(f"No notifications about {type(obj).__name__}.")


def load(object_type: str, object_id: int) -> models.Model | None:
    model = _MODELS[object_type]
    return model.objects.select_related(*_RELATED[object_type]).filter(pk=object_id).first()


def project_of(object_type: str, obj: Any) -> Project | None:
    if object_type in (ObjectType.RUN, ObjectType.TARGET, ObjectType.ALERT):
        return obj.project
    return obj.release.project


def object_repr(object_type: str, obj: Any) -> str:
    """What the ledger's "About" column says."""
    if object_type == ObjectType.ALERT:
        where = f" · {obj.environment.name}" if obj.environment_id else ""
        return f"{obj.rule}{where} ({obj.severity}): {obj.summary}"[:200]
    return str(obj)[:200]


#: URL names tried for the alert's page, most specific first (the monitoring app's
#: ``alerts`` URLs under ``/p/<slug>/alerts/``), with the arguments each takes.
ALERT_PAGES = (
    ("alerts:detail", ("slug", "pk")),
    ("alerts:list", ("slug",)),
)


def alert_path(alert: Alert) -> str:
    """The alert's page: its own ``get_absolute_url`` if it has one, else the first of
    ``ALERT_PAGES`` that exists, else its project's page."""
    if hasattr(alert, "get_absolute_url"):
        return alert.get_absolute_url()
    if alert.project_id is None:
        return "/"
    values = {"slug": alert.project.slug, "pk": alert.pk}
    for name, args in ALERT_PAGES:
        try:
            return reverse(name, kwargs={a: values[a] for a in args})
        except NoReverseMatch:
            continue
    return alert.project.get_absolute_url()


def absolute_url(object_type: str, obj: Any) -> str:
    """The page of the object, for people (Slack buttons, email links, webhook ``url``)."""
    if object_type == ObjectType.TARGET:
        path = obj.project.get_absolute_url()
    elif object_type == ObjectType.ALERT:
        path = alert_path(obj)
    else:
        path = obj.get_absolute_url()
    return settings.SITE_URL + path


# --- data -------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def approval_data(approval: Approval) -> dict[str, Any]:
    return {
        "user": _username(approval.user),
        "decision": approval.decision,
        "comment": approval.comment,
        "channel": approval.channel,
        "created": _iso(approval.created),
    }


def run_data(run: PipelineRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "number": run.number,
        "status": run.status,
        "ref": run.ref,
        "commit_sha": run.commit_sha,
        "commit_message": run.commit_message.splitlines()[0][:200] if run.commit_message else "",
        "commit_author": run.commit_author,
        "error_message": run.error_message[:1000],
        "finished_at": _iso(run.finished_at),
        "url": absolute_url(ObjectType.RUN, run),
    }


def promotion_data(promotion: Promotion) -> dict[str, Any]:
    release = promotion.release
    approvals = list(promotion.approvals.select_related("user").order_by("created", "id"))
    return {
        "id": promotion.pk,
        "status": promotion.status,
        "release": {
            "id": release.pk,
            "version": release.version,
            "commit_sha": release.commit_sha,
            "url": settings.SITE_URL + release.get_absolute_url(),
        },
        "environment": promotion.environment.name,
        "required_approvals": promotion.required_approvals,
        "approvals": [approval_data(a) for a in approvals],
        "requested_by": _username(promotion.requested_by),
        "expires_at": _iso(promotion.expires_at),
        "decided_at": _iso(promotion.decided_at),
        "reason": promotion.reason,
        "url": absolute_url(ObjectType.PROMOTION, promotion),
    }


def deployment_data(deployment: Deployment) -> dict[str, Any]:
    previous = deployment.previous
    return {
        "id": deployment.pk,
        "status": deployment.status,
        "release": deployment.release.version,
        "environment": deployment.environment.name,
        "is_rollback": deployment.is_rollback,
        "previous_release": previous.release.version if previous is not None else None,
        "triggered_by": _username(deployment.triggered_by),
        "error_message": deployment.error_message[:1000],
        "started_at": _iso(deployment.started_at),
        "finished_at": _iso(deployment.finished_at),
        "url": absolute_url(ObjectType.DEPLOYMENT, deployment),
    }


def silenced_until(alert: Alert, at: datetime | None = None) -> datetime | None:
    """The end of the silence holding the alert's notifications back now, if any."""
    silence = alert.silenced_by
    if silence is None or not silence.is_active(at or timezone.now()):
        return None
    return silence.ends_at


def alert_data(alert: Alert) -> dict[str, Any]:
    until = silenced_until(alert)
    return {
        "id": alert.pk,
        "rule": alert.rule,
        "status": alert.status,
        "acknowledged": alert.acknowledged_at is not None,
        "severity": alert.severity,
        "summary": alert.summary,
        "labels": dict(alert.labels or {}),
        "annotations": dict(alert.annotations or {}),
        "value": alert.value,
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "environment": alert.environment.name if alert.environment_id else None,
        "group_key": alert.group_key,
        "starts_at": _iso(alert.starts_at),
        "last_seen_at": _iso(alert.last_seen_at),
        "resolved_at": _iso(alert.resolved_at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": _username(alert.acknowledged_by),
        "silenced_until": _iso(until),
        "url": absolute_url(ObjectType.ALERT, alert),
    }


def event_data(*, event: str, obj: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` of the event: the object as it is now (read once, at dispatch)."""
    if isinstance(obj, Approval):
        data = {"promotion": promotion_data(obj.promotion), "approval": approval_data(obj)}
    elif isinstance(obj, PipelineRun):
        data = {"run": run_data(obj)}
    elif isinstance(obj, Promotion):
        data = {"promotion": promotion_data(obj)}
    elif isinstance(obj, Deployment):
        data = {"deployment": deployment_data(obj)}
    elif isinstance(obj, NotificationTarget):
        data = {"target": {"id": obj.pk, "name": obj.name, "kind": obj.kind}}
    elif isinstance(obj, Alert):
        data = {"alert": alert_data(obj)}
    else:
        raise TypeError(f"No notifications about {type(obj).__name__}.")
    if extra:
        data.update(extra)
    return data


def title(event: str, project: Project, data: dict[str, Any]) -> str:
    """One line: an email subject, the text of a Slack notification."""
    slug = project.slug
    if event == Event.BUILD_FAILED:
        run = data["run"]
        on = f" on {run['ref']}" if run["ref"] else ""
        return f"[{slug}] Pipeline #{run['number']} failed{on}"
    if event == Event.TEST:
        return f"[{slug}] Test notification"
    if "alert" in data:
        return alert_title(event, slug, data["alert"])
    if "deployment" in data:
        d = data["deployment"]
        if event == Event.DEPLOYMENT_SUCCEEDED:
            return f"[{slug}] Deployed {d['release']} to {d['environment']}"
        if event == Event.DEPLOYMENT_FAILED:
            what = "Rollback" if d["is_rollback"] else "Deploy"
            return f"[{slug}] {what} of {d['release']} to {d['environment']} failed"
        back_to = d["release"] if d["is_rollback"] else d["previous_release"]
        return f"[{slug}] {d['environment']} rolled back" + (f" to {back_to}" if back_to else "")
    p = data["promotion"]
    what = f"{p['release']['version']} → {p['environment']}"
    if event == Event.APPROVAL_RECORDED:
        a = data["approval"]
        verb = "approved" if a["decision"] == ApprovalDecision.APPROVE else "rejected"
        return f"[{slug}] {a['user']} {verb} {what}"
    return {
        Event.PROMOTION_PENDING: f"[{slug}] Approval needed: {what}",
        Event.PROMOTION_REMINDER: f"[{slug}] Reminder: approval needed: {what}",
        Event.PROMOTION_APPROVED: f"[{slug}] Approved: {what}",
        Event.PROMOTION_REJECTED: f"[{slug}] Rejected: {what}",
        Event.PROMOTION_EXPIRED: f"[{slug}] Expired without a decision: {what}",
        Event.PROMOTION_SUPERSEDED: f"[{slug}] Superseded: {what}",
        Event.PROMOTION_DEPLOYED: f"[{slug}] Deployed: {what}",
        Event.PROMOTION_FAILED: f"[{slug}] Deploy failed: {what}",
    }[event]


def alert_title(event: str, slug: str, alert: dict[str, Any]) -> str:
    """``[churn-model] FIRING critical: Dataset drift (production)``."""
    what = alert["summary"] or alert["rule"]
    where = f" ({alert['environment']})" if alert["environment"] else ""
    if event == Event.ALERT_RESOLVED or alert["status"] == AlertStatus.RESOLVED:
        state = "RESOLVED"
    elif event == Event.ALERT_ACKNOWLEDGED:
        state = "ACKNOWLEDGED"
    else:
        state = "FIRING"
    return f"[{slug}] {state} {alert['severity']}: {what}{where}"[:250]

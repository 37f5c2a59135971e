"""Alertmanager's webhook (payload version 4) → alerts.

Alertmanager posts one group: ``{"version": "4", "status", "receiver", "groupKey",
"groupLabels", "commonLabels", "commonAnnotations", "externalURL", "truncatedAlerts",
"alerts": [{"status": "firing"|"resolved", "labels", "annotations", "startsAt", "endsAt",
"generatorURL", "fingerprint"}]}``. Each alert fires or resolves by its own status. The
labels ``project`` (a slug) and ``environment`` (a name in that project) link it to rows; one
that names neither is stored without a project (only superusers see it).

The whole payload is checked before anything is written: a malformed one is refused (400,
naming the alert and the field) and nothing of it is stored.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

from apps.core.exceptions import ServiceError
from apps.projects.models import Environment, Project

from .choices import AlertSource, AlertStatus, Severity
from .services.alerts import MAX_LABELS, alert_fingerprint, alert_fire, alert_resolve

# Alertmanager's "no end" (Go's zero time).
ZERO_TIME_PREFIX = "0001-01-01"
SEVERITIES = {
    "info": Severity.INFO,
    "warning": Severity.WARNING,
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "error": Severity.CRITICAL,
}


class Unauthorized(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_token(authorization: str) -> None:
    """``Authorization: Bearer <CONTROLPLANE_ALERTMANAGER_TOKEN>``: none → 401, wrong → 403,
    receiver not configured → 403."""
    expected = settings.ALERTMANAGER_TOKEN
    scheme, _, given = (authorization or "").partition(" ")
    if not authorization:
        raise Unauthorized(401, "Send Authorization: Bearer <token>.")
    if not expected:
        raise Unauthorized(403, "The Alertmanager receiver is not configured.")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Unauthorized(403, "Invalid token.")


@dataclass(frozen=True)
class Incoming:
    status: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    project: Project | None
    environment: Environment | None


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ServiceError(f"{where}: expected an object of strings.", code="malformed")
    return value


def _time(value: Any, where: str, *, required: bool) -> datetime | None:
    if value in (None, "") or (isinstance(value, str) and value.startswith(ZERO_TIME_PREFIX)):
        if required:
            raise ServiceError(f"{where}: missing.", code="malformed")
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ServiceError(f"{where}: not an RFC 3339 time: {value!r}.", code="malformed")
    return parsed


def parse_payload(data: Any) -> list[Incoming]:
    if not isinstance(data, dict):
        raise ServiceError("Expected a JSON object.", code="malformed")
    if str(data.get("version")) != "4":
        raise ServiceError(
            f"Unsupported payload version {data.get('version')!r} (expected '4').", code="malformed"
        )
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise ServiceError("alerts: expected a list.", code="malformed")
    common = _str_map(data.get("commonLabels"), "commonLabels")
    projects: dict[str, Project | None] = {}
    out = []
    for i, raw in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(raw, dict):
            raise ServiceError(f"{where}: expected an object.", code="malformed")
        status = raw.get("status")
        if status not in (AlertStatus.FIRING, AlertStatus.RESOLVED):
            raise ServiceError(
                f"{where}.status: expected 'firing' or 'resolved'.", code="malformed"
            )
        labels = {**common, **_str_map(raw.get("labels"), f"{where}.labels")}
        rule = labels.get("alertname", "")
        if not rule:
            raise ServiceError(f"{where}.labels: no alertname.", code="malformed")
        if len(labels) > MAX_LABELS:
            raise ServiceError(f"{where}.labels: at most {MAX_LABELS}.", code="malformed")
        annotations = _str_map(raw.get("annotations"), f"{where}.annotations")
        if raw.get("generatorURL"):
            annotations = {**annotations, "generatorURL": str(raw["generatorURL"])}
        starts_at = _time(raw.get("startsAt"), f"{where}.startsAt", required=True)
        ends_at = _time(raw.get("endsAt"), f"{where}.endsAt", required=False)
        project = environment = None
        slug = labels.get("project")
        if slug:
            if slug not in projects:
                projects[slug] = Project.objects.filter(slug=slug).first()
            project = projects[slug]
            if project is None:
                raise ServiceError(
                    f"{where}.labels.project: no project {slug!r}.", code="unknown_project"
                )
        if labels.get("environment"):
            if project is None:
                raise ServiceError(
                    f"{where}.labels.environment: needs a project label.",
                    code="unknown_environment",
                )
            environment = project.environments.filter(name=labels["environment"]).first()
            if environment is None:
                raise ServiceError(
                    f"{where}.labels.environment: {project.slug} has no environment "
                    f"{labels['environment']!r}.",
                    code="unknown_environment",
                )
        out.append(
            Incoming(
                status=status,
                rule=rule,
                labels=labels,
                annotations=annotations,
                starts_at=starts_at,
                ends_at=ends_at,
                project=project,
                environment=environment,
            )
        )
    return out


def alertmanager_receive(*, data: Any) -> dict[str, int]:
    """Apply one Alertmanager notification; ServiceError (nothing stored) when malformed."""
    incoming = parse_payload(data)
    fired = resolved = 0
    with transaction.atomic():
        for a in incoming:
            if a.status == AlertStatus.FIRING:
                alert_fire(
                    rule=a.rule,
                    labels=a.labels,
                    severity=SEVERITIES.get(a.labels.get("severity", "").lower(), Severity.WARNING),
                    summary=a.annotations.get("summary")
                    or a.annotations.get("description")
                    or a.rule,
                    annotations=a.annotations,
                    project=a.project,
                    environment=a.environment,
                    source=AlertSource.ALERTMANAGER,
                    at=a.starts_at,
                )
                fired += 1
            else:
                fingerprint = alert_fingerprint(
                    rule=a.rule, labels=a.labels, project=a.project, environment=a.environment
                )
                if alert_resolve(fingerprint=fingerprint, at=a.ends_at, actor="alertmanager"):
                    resolved += 1
    return {"alerts": len(incoming), "fired": fired, "resolved": resolved}

"""Rules the control plane evaluates itself, every ``CONTROLPLANE_RULES_INTERVAL`` seconds
(the beat task ``monitoring.evaluate_rules``).

A rule is a function ``(now) -> iterable of Firing``: the label sets that are true now. Each
one fires (or stays firing, deduplicated by fingerprint); the rule's firing alerts it did not
yield this time resolve (``alert_resolve_missing``, within the rule's ``scope``). A rule that
raises is logged and its alerts are left as they were.

Register one with ``@rule("name")`` in a module listed in ``RULE_MODULES`` (imported on the
first evaluation), e.g. ``no_observations`` (checks) or ``service_down`` (service health)::

    @rule("promotion_waiting")
    def promotion_waiting(now):
        yield Firing(labels={...}, summary="...", project=p, environment=e)

Thresholds come from the project's ``monitor.alerts`` (the spec of the default branch's last
run, see :func:`monitor_alerts`), else from settings.
"""

import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Q
from django.utils import timezone

from apps.projects.models import Environment, Project

from .choices import Severity

logger = logging.getLogger(__name__)

#: Modules that register rules; each helper app adds its own.
RULE_MODULES: list[str] = ["apps.monitoring.rules", "apps.monitoring.health_rules"]


@dataclass(frozen=True)
class Firing:
    labels: dict[str, Any]
    summary: str
    severity: str = Severity.WARNING
    value: float | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    project: Project | None = None
    environment: Environment | None = None
    deployment: Any = None


@dataclass(frozen=True)
class Rule:
    name: str
    evaluate: Callable[[datetime], Iterable[Firing]]
    # Which firing alerts of the rule an evaluation speaks for (None: all of them).
    scope: Q | dict | None = None


REGISTRY: dict[str, Rule] = {}


def rule(name: str, *, scope: Q | dict | None = None):
    def register(fn: Callable[[datetime], Iterable[Firing]]):
        REGISTRY[name] = Rule(name=name, evaluate=fn, scope=scope)
        return fn

    return register


def registered() -> dict[str, Rule]:
    for module in RULE_MODULES:
        importlib.import_module(module)
    return REGISTRY


@dataclass
class Outcome:
    fired: int = 0
    resolved: int = 0
    errors: list[str] = field(default_factory=list)


def evaluate_rules(*, at: datetime | None = None, only: Iterable[str] | None = None) -> Outcome:
    from .services.alerts import alert_fire, alert_resolve_missing

    now = at or timezone.now()
    outcome = Outcome()
    wanted = set(only) if only is not None else None
    for name, r in registered().items():
        if wanted is not None and name not in wanted:
            continue
        seen = []
        try:
            for f in r.evaluate(now):
                alert = alert_fire(
                    rule=name,
                    labels=f.labels,
                    severity=f.severity,
                    summary=f.summary,
                    annotations=f.annotations,
                    value=f.value,
                    project=f.project,
                    environment=f.environment,
                    deployment=f.deployment,
                    at=now,
                )
                seen.append(alert.fingerprint)
                outcome.fired += 1
        except Exception:  # noqa: BLE001 - one broken rule must not stop the others
            # Its alerts stay as they were: an evaluation that did not finish says nothing
            # about what is no longer true.
            logger.exception("rule %s failed", name)
            outcome.errors.append(name)
            continue
        outcome.resolved += len(
            alert_resolve_missing(rule=name, seen_fingerprints=seen, scope=r.scope, at=now)
        )
    return outcome


# --- thresholds -----------------------------------------------------------------------------


def monitor_alerts() -> dict[int, dict[str, Any]]:
    """``monitor.alerts`` of every project's spec (the default branch's latest prepared run),
    by project id; one query."""
    from apps.pipelines.models import PipelineRun

    runs = PipelineRun.objects.filter(environment=None, ref=F("project__default_branch")).exclude(
        spec={}
    )
    if connection.vendor == "postgresql":
        rows = (
            runs.order_by("project_id", "-number")
            .distinct("project_id")
            .values_list("project_id", "spec__raw__monitor__alerts")
        )
    else:  # no DISTINCT ON: the latest number per project, then their specs
        latest = runs.values("project_id").annotate(n=Max("number")).values_list("project_id", "n")
        rows = [
            (
                pid,
                runs.filter(project_id=pid, number=n)
                .values_list("spec__raw__monitor__alerts", flat=True)
                .first(),
            )
            for pid, n in latest
        ]
    return {pid: alerts for pid, alerts in rows if isinstance(alerts, dict)}


def _seconds(value: Any) -> int | None:
    """``24h`` / ``30m`` / a number of seconds → seconds; None for anything else."""
    from apps.projects.spec.parser import DURATION_UNITS

    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and len(value) > 1 and value[-1] in DURATION_UNITS:
        try:
            return int(value[:-1]) * DURATION_UNITS[value[-1]]
        except ValueError:
            return None
    return None


# --- the rules of the control plane itself ---------------------------------------------------


@rule("webhook_failures")
def webhook_failures(now: datetime) -> Iterator[Firing]:
    """A project's last N webhook deliveries all failed (refused, unreadable or errored): its
    Git server's hook is misconfigured, or the secret changed. N: ``monitor.alerts.
    webhook_failures`` or ``CONTROLPLANE_ALERT_WEBHOOK_FAILURES``; 0 turns it off."""
    from apps.webhooks.choices import DeliveryStatus
    from apps.webhooks.models import WebhookDelivery

    failed = {DeliveryStatus.REJECTED, DeliveryStatus.INVALID, DeliveryStatus.ERROR}
    configured = monitor_alerts()
    since = now - timedelta(days=settings.ALERT_WEBHOOK_FAILURES_LOOKBACK_DAYS)
    active = (
        WebhookDelivery.objects.filter(received_at__gte=since, project__isnull=False)
        .values_list("project_id", flat=True)
        .distinct()
    )
    for project in Project.objects.filter(pk__in=active):
        value = configured.get(project.pk, {}).get("webhook_failures")
        n = settings.ALERT_WEBHOOK_FAILURES if value is None else value
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            continue
        last = list(
            WebhookDelivery.objects.filter(project=project, received_at__lte=now)
            .order_by("-received_at", "-id")
            .values_list("status", "detail", "provider")[:n]
        )
        if len(last) < n or any(status not in failed for status, _d, _p in last):
            continue
        _status, detail, provider = last[0]
        yield Firing(
            labels={},
            project=project,
            summary=f"The last {n} webhook deliveries of {project.slug} failed: {detail}",
            value=float(n),
            annotations={"provider": provider, "last_detail": detail},
        )


@rule("promotion_waiting")
def promotion_waiting(now: datetime) -> Iterator[Firing]:
    """A promotion has waited for approval longer than ``monitor.alerts.promotion_waiting``
    (or ``CONTROLPLANE_ALERT_PROMOTION_WAITING_HOURS``); one alert per promotion."""
    from apps.releases.choices import PromotionStatus
    from apps.releases.models import Promotion

    configured = monitor_alerts()
    default = int(settings.ALERT_PROMOTION_WAITING_HOURS * 3600)
    shortest = min(
        [default]
        + [
            s
            for a in configured.values()
            if (s := _seconds(a.get("promotion_waiting"))) is not None and s > 0
        ]
    )
    if shortest <= 0:
        return
    waiting = Promotion.objects.filter(
        status=PromotionStatus.PENDING, created__lte=now - timedelta(seconds=shortest)
    ).select_related("environment__project", "release")
    for p in waiting:
        project = p.environment.project
        value = configured.get(project.pk, {}).get("promotion_waiting")
        limit = default if value is None else _seconds(value)
        if not limit or limit <= 0 or now - p.created < timedelta(seconds=limit):
            continue
        hours = (now - p.created).total_seconds() / 3600
        yield Firing(
            labels={"release": p.release.version, "promotion": str(p.pk)},
            project=project,
            environment=p.environment,
            summary=(
                f"Promotion of {p.release.version} to {p.environment.name} has waited "
                f"{hours:.1f} h for approval"
            ),
            value=round(hours, 2),
            annotations={"url": p.get_absolute_url()},
        )

"""Service health: a probe of every deployed environment's service, and the rules that turn the
probes into alerts (``service_down``, ``error_rate``, ``latency_p95``, ``cpu``, ``memory``).
See docs/monitoring-rollback.md.

One probe of one environment (:func:`service_probe`):

* the health check: ``GET <url><health path>`` answering 2xx, as the deployers check it;
* the service's ``/metrics`` (Prometheus text format, ``prometheus_client.parser``): the share
  of 5xx answers in ``model_requests_total{code}`` and the p95 of the
  ``model_request_duration_seconds`` histogram, both over what changed since the previous
  probe (the raw counters are kept in ``ServiceHealth.state``; a counter that went down is a
  restart and counts from zero). Requests to the health check and ``/metrics`` are left out;
* CPU (share of one core, over the interval) and memory (resident MiB): from the docker
  engine's container stats for docker deployments, from ``/proc`` for the process group of a
  process deployment (the deployer's ``status()`` says which container or pid serves).

The result is one :class:`~apps.monitoring.models.ServiceHealth` row per environment (the
latest probe plus a bounded history), rewritten by each probe. The rules read those rows only:
evaluating them costs a query, not a request to every service.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.core.processes import stat_fields
from apps.projects.models import Environment
from apps.releases.choices import DeploymentStatus
from apps.releases.deployers import DeployError, get_deployer
from apps.releases.deployers.health import reachable
from apps.releases.models import Deployment

from .choices import Severity
from .models import ServiceHealth

logger = logging.getLogger(__name__)

RULES = ("service_down", "error_rate", "latency_p95", "cpu", "memory")
HISTORY = 120  # probes kept on the row (an hour at the default 30 s)
PROBE_TIMEOUT = 3.0  # seconds for the health check, and again for /metrics
PROBE_WORKERS = 8  # services probed at once
MAX_METRICS_BYTES = 2 * 1024 * 1024
# A service is down after this many failed health checks in a row (one may be a blip).
DOWN_AFTER_PROBES = 2
# Fewer requests than this since the previous probe: no error rate or p95 (1 of 1 is not 100 %).
MIN_REQUESTS = 5
# Rows older than this are not judged (the probe task is not running): no alert from old news.
STALE_AFTER = timedelta(minutes=5)
# Thresholds when the spec's ``monitor.alerts`` names none; None: the rule is off by default.
DEFAULTS: dict[str, float | None] = {
    "error_rate": 0.05,
    "latency_p95_ms": None,
    "cpu": None,
    "memory_mb": None,
}
REQUESTS_METRIC = "model_requests_total"
DURATION_METRIC = "model_request_duration_seconds_bucket"
NOT_TRAFFIC = ("/healthz", "/health", "/metrics")


@dataclass
class Probe:
    """What one probe measured (the fields of ``ServiceHealth``)."""

    up: bool
    url: str
    health_message: str = ""
    requests: int | None = None
    error_rate: float | None = None
    p95_ms: float | None = None
    metrics_message: str = ""
    cpu: float | None = None
    memory_mb: float | None = None
    resources_message: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    def summary(self, at: datetime) -> dict[str, Any]:
        return {
            "at": at.isoformat(),
            "deployment_id": self.state.get("deployment_id"),
            "up": self.up,
            "requests": self.requests,
            "error_rate": self.error_rate,
            "p95_ms": self.p95_ms,
            "cpu": self.cpu,
            "memory_mb": self.memory_mb,
        }


# --- reading /metrics ----------------------------------------------------------------------


def parse_metrics(text: str, *, exclude: Iterable[str] = NOT_TRAFFIC) -> dict[str, Any]:
    """The raw counters of a ``/metrics`` page: ``requests`` and ``errors`` (5xx) summed over
    endpoints, and the latency histogram's cumulative ``buckets`` ``[[le, count], ...]``
    summed per bound. Samples of endpoints in ``exclude`` are left out. Raises ValueError on
    text that is not the Prometheus format."""
    skip = set(exclude)
    total = errors = 0.0
    buckets: dict[float, float] = {}
    seen_requests = seen_histogram = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            seen_requests = seen_requests or sample.name == REQUESTS_METRIC
            if sample.labels.get("endpoint") in skip:
                continue
            if sample.name == REQUESTS_METRIC:
                total += sample.value
                if str(sample.labels.get("code", "")).startswith("5"):
                    errors += sample.value
            elif sample.name == DURATION_METRIC:
                seen_histogram = True
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    result: dict[str, Any] = {}
    if seen_requests:
        result.update(requests=total, errors=errors)
    if seen_histogram:
        # JSON has no infinity: the last bound is kept as Prometheus writes it, "+Inf".
        result["buckets"] = [
            ["+Inf" if math.isinf(le) else le, count] for le, count in sorted(buckets.items())
        ]
    return result


def quantile(q: float, buckets: list[list[float]]) -> float | None:
    """``histogram_quantile`` of cumulative ``[[le, count], ...]`` (sorted, +Inf last): linear
    inside the bucket the rank falls in; the highest finite bound when it falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        le = float(bound)
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def interval_figures(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Requests, error rate and p95 (ms) between two raw readings of :func:`parse_metrics`. A
    counter lower than before is a restart: the interval counts from zero."""
    out: dict[str, Any] = {"requests": None, "error_rate": None, "p95_ms": None}
    if "requests" in current:
        total, errors = current["requests"], current["errors"]
        if "requests" in previous and total >= previous["requests"]:
            total, errors = total - previous["requests"], errors - previous.get("errors", 0.0)
        out["requests"] = int(round(total))
        if total >= MIN_REQUESTS:
            out["error_rate"] = round(max(errors, 0.0) / total, 6)
    if "buckets" in current:
        now = current["buckets"]
        before = {float(le): c for le, c in previous.get("buckets", [])}
        delta = [[le, c - before.get(float(le), 0.0)] for le, c in now]
        restarted = set(before) != {float(le) for le, _ in now} or any(d < 0 for _, d in delta)
        if before and restarted:
            delta = [list(b) for b in now]  # a restart (or other buckets): all of it is new
        if delta and delta[-1][1] >= MIN_REQUESTS:
            p95 = quantile(0.95, delta)
            out["p95_ms"] = round(p95 * 1000, 3) if p95 is not None else None
    return out


# --- CPU and memory ------------------------------------------------------------------------


def process_group_usage(pgid: int, proc: Path = Path("/proc")) -> dict[str, float] | None:
    """CPU seconds (user + system) and resident bytes of every process in the group ``pgid``
    (a process deployment runs in its own session: the shell and the server it started).
    None when no process of the group runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0.0
    found = False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat.read_text())
        except (OSError, ValueError):
            continue
        if int(fields[2]) != pgid or fields[0] == "Z":
            continue
        found = True
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * page
    return {"cpu_seconds": cpu, "rss_bytes": rss} if found else None


def docker_usage(container_id: str) -> dict[str, float] | None:
    """CPU seconds and memory in use (without the page cache) of a container, from the docker
    engine's stats (one read, no streaming)."""
    import docker
    from docker.errors import DockerException, NotFound

    try:
        client = docker.from_env()
    except DockerException:
        return None
    try:
        stats = client.containers.get(container_id).stats(stream=False, one_shot=True)
    except (NotFound, DockerException, requests.RequestException, OSError):
        return None
    finally:
        client.close()
    total = (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage")
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if total is None or usage is None:
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    return {"cpu_seconds": total / 1e9, "rss_bytes": max(usage - (cache or 0), 0)}


def _resources(environment: Environment, status: Mapping[str, Any]) -> tuple[str, dict | None]:
    """(what was measured, its usage) for the deployer's status of the environment."""
    if environment.deployer == "process" and status.get("pid"):
        pid = int(status["pid"])
        return f"pid:{pid}", process_group_usage(pid)
    if environment.deployer == "docker" and status.get("container"):
        container = str(status["container"])
        return f"container:{container}", docker_usage(container)
    return "", None


# --- one probe -----------------------------------------------------------------------------


def service_url(environment: Environment, deployment: Deployment | None) -> str:
    """Where the service answers: what its deployment reported, else the environment's
    service URL, else its port on the loopback."""
    if deployment is not None and deployment.url:
        return deployment.url.rstrip("/")
    if environment.service_url:
        return environment.service_url.rstrip("/")
    if environment.service_port:
        host = reachable((environment.target or {}).get("host") or "127.0.0.1")
        return f"http://{host}:{environment.service_port}"
    return ""


def _get(url: str) -> tuple[int | None, str, str]:
    """(status, body, error) of one GET, the body capped at ``MAX_METRICS_BYTES``."""
    try:
        with requests.get(
            url, timeout=PROBE_TIMEOUT, stream=True, headers={"User-Agent": "controlplane-probe"}
        ) as response:
            body = response.raw.read(MAX_METRICS_BYTES, decode_content=True)
            return response.status_code, body.decode("utf-8", "replace"), ""
    except requests.RequestException as exc:
        return None, "", f"{exc.__class__.__name__}: {exc}"[:300]


def service_probe(
    *, environment: Environment, deployment: Deployment | None, previous: Mapping[str, Any]
) -> Probe:
    """Probe the service once. ``previous`` is the last probe's ``state`` (its raw counters);
    the figures are over the interval since then. Never raises for a service's faults."""
    base = service_url(environment, deployment)
    if not base:
        return Probe(up=False, url="", health_message="The environment has no service URL or port.")
    path = environment.health_check_path or "/healthz"
    status, _body, error = _get(base + path)
    probe = Probe(up=status is not None and 200 <= status < 300, url=base)
    if not probe.up:
        probe.health_message = (error or f"{path} answered HTTP {status}")[:300]
    state: dict[str, Any] = {
        "at": time.time(),
        "deployment_id": deployment.pk if deployment else None,
    }
    same_release = previous.get("deployment_id") == state["deployment_id"]
    before = previous if same_release else {}

    status, body, error = _get(base + "/metrics")
    if status == 200:
        try:
            counters = parse_metrics(body, exclude={*NOT_TRAFFIC, path})
        except (ValueError, KeyError, TypeError) as exc:
            probe.metrics_message = f"/metrics is not in the Prometheus format: {exc}"[:300]
        else:
            state["metrics"] = counters
            figures = interval_figures(before.get("metrics") or {}, counters)
            probe.requests = figures["requests"]
            probe.error_rate = figures["error_rate"]
            probe.p95_ms = figures["p95_ms"]
            if not counters:
                probe.metrics_message = f"/metrics has no {REQUESTS_METRIC}."
    else:
        probe.metrics_message = (error or f"/metrics answered HTTP {status}")[:300]

    try:
        deployer_status = get_deployer(environment.deployer).status(
            project=environment.project.slug, environment=environment.name
        )
    except (DeployError, OSError) as exc:
        deployer_status = {"error": str(exc)}
    target, usage = _resources(environment, deployer_status)
    if usage is None:
        if target:
            probe.resources_message = f"{target} is not running or cannot be read"
        elif environment.deployer in ("process", "docker"):
            error = deployer_status.get("error") or "the deployer reports nothing running"
            probe.resources_message = f"not measured: {error}"[:300]
        else:
            probe.resources_message = f"not measured for the {environment.deployer} deployer"
    else:
        state.update(target=target, **usage)
        probe.memory_mb = round(usage["rss_bytes"] / (1024 * 1024), 2)
        if before.get("target") == target and "cpu_seconds" in before:
            elapsed = state["at"] - before["at"]
            used = usage["cpu_seconds"] - before["cpu_seconds"]
            if elapsed > 0 and used >= 0:
                probe.cpu = round(used / elapsed, 4)
    probe.state = state
    return probe


@transaction.atomic
def service_health_record(
    *, environment: Environment, deployment: Deployment | None, probe: Probe, at: datetime
) -> ServiceHealth:
    """Write the probe on the environment's ServiceHealth row (created on the first probe),
    its figures appended to the bounded history. Telemetry, not an action: no audit row (the
    alerts the rules fire from it are audited)."""
    row, _ = ServiceHealth.objects.select_for_update().get_or_create(environment=environment)
    row.deployment = deployment
    row.checked_at = at
    for name in (
        "up",
        "url",
        "health_message",
        "requests",
        "error_rate",
        "p95_ms",
        "metrics_message",
        "cpu",
        "memory_mb",
        "resources_message",
        "state",
    ):
        setattr(row, name, getattr(probe, name))
    row.history = [*(row.history or []), probe.summary(at)][-HISTORY:]
    row.save()
    return row


def deployed_environments() -> list[tuple[Environment, Deployment]]:
    """Every environment something serves in, with the deployment that serves it."""
    serving = Deployment.objects.filter(
        environment=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED
    ).order_by("-finished_at", "-pk")
    envs = list(
        Environment.objects.select_related("project")
        .annotate(serving_id=Subquery(serving.values("pk")[:1]))
        .filter(serving_id__isnull=False)
    )
    deployments = Deployment.objects.select_related("release__pipeline_run").in_bulk(
        [e.serving_id for e in envs]
    )
    return [(e, deployments[e.serving_id]) for e in envs if e.serving_id in deployments]


def probe_environment(*, environment: Environment, deployment: Deployment | None) -> ServiceHealth:
    """Probe one environment's service now and record it."""
    rows = ServiceHealth.objects.filter(environment=environment)
    previous = rows.values_list("state", flat=True).first()
    probe = service_probe(environment=environment, deployment=deployment, previous=previous or {})
    return service_health_record(
        environment=environment, deployment=deployment, probe=probe, at=timezone.now()
    )


def probe_services() -> int:
    """Probe every deployed environment's service (the ``monitoring.probe_services`` task),
    up to ``PROBE_WORKERS`` at once: a service that does not answer costs its timeouts, not
    everyone's. The requests run in threads; the rows are written here. Returns how many
    were probed."""
    targets = deployed_environments()
    if not targets:
        return 0
    previous = dict(
        ServiceHealth.objects.filter(environment__in=[e for e, _ in targets]).values_list(
            "environment_id", "state"
        )
    )
    count = 0
    with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(targets))) as pool:
        futures = {
            pool.submit(
                service_probe, environment=e, deployment=d, previous=previous.get(e.pk) or {}
            ): (e, d)
            for e, d in targets
        }
        for future in as_completed(futures):
            environment, deployment = futures[future]
            try:
                probe = future.result()
                service_health_record(
                    environment=environment, deployment=deployment, probe=probe, at=timezone.now()
                )
            except Exception:  # one environment's trouble must not stop the others' probes
                logger.exception("Probing the service of %s failed", environment)
                continue
            count += 1
    return count


# --- the rules -----------------------------------------------------------------------------


def _monitor_alerts(spec: Any) -> dict[str, Any]:
    """``monitor.alerts`` of a stored run spec: the spec as written (``raw``) first, then the
    parsed ``monitor`` block; {} when neither has a mapping there."""
    if not isinstance(spec, dict):
        return {}
    raw = spec.get("raw")
    for monitor in (
        (raw or {}).get("monitor") if isinstance(raw, dict) else None,
        spec.get("monitor"),
    ):
        alerts = monitor.get("alerts") if isinstance(monitor, dict) else None
        if isinstance(alerts, dict):
            return alerts
    return {}


def alert_thresholds(deployment: Deployment | None) -> dict[str, float | None]:
    """The spec's ``monitor.alerts`` of the serving release (its pipeline run's spec), read
    defensively: a value that is not a positive number, or ``false``, turns that rule off;
    absent, ``DEFAULTS``."""
    spec: Any = {}
    if deployment is not None and deployment.release.pipeline_run_id:
        spec = deployment.release.pipeline_run.spec or {}
    alerts = _monitor_alerts(spec)
    out: dict[str, float | None] = {}
    for key, default in DEFAULTS.items():
        value = alerts.get(key, default)
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        out[key] = float(number) if number is not None and number > 0 else None
    return out


def _down_streak(row: ServiceHealth) -> int:
    """Failed health checks in a row of the serving deployment (a failure of the release
    before it does not count against a new one)."""
    streak = 0
    for entry in reversed(row.history or []):
        if entry.get("up") or entry.get("deployment_id", row.deployment_id) != row.deployment_id:
            break
        streak += 1
    return streak


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0%}" if unit == "%" else f"{value:g} {unit}".strip()


def service_alerts(rule: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The alerts ``rule`` has firing now: one per environment whose latest probe breaks it,
    each the keyword arguments of ``alert_fire`` but the rule (``labels``, ``severity``,
    ``summary``, ``value``, ``annotations``, ``project``, ``environment``, ``deployment``)."""
    if rule not in RULES:
        raise ValueError(f"Unknown service rule {rule!r}.")
    now = now or timezone.now()
    rows = ServiceHealth.objects.select_related(
        "environment__project", "deployment__release__pipeline_run"
    ).filter(checked_at__gte=now - STALE_AFTER, deployment__isnull=False)
    firing = []
    for row in rows:
        limits = alert_thresholds(row.deployment)
        verdict = _judge(rule, row, limits)
        if verdict is None:
            continue
        value, limit, severity, summary = verdict
        env = row.environment
        firing.append(
            {
                # The release too: a new release breaking the rule is a new alert (one that
                # may roll it back), and the old one's resolves once it no longer serves.
                "labels": {
                    "project": env.project.slug,
                    "environment": env.name,
                    "release": row.deployment.release.version,
                },
                "severity": severity,
                "summary": f"{env.project.slug}/{env.name}: {summary}"[:300],
                "value": value,
                "annotations": {
                    "release": row.deployment.release.version,
                    "threshold": limit,
                    "url": row.url,
                    "checked_at": row.checked_at.isoformat(),
                },
                "project": env.project,
                "environment": env,
                "deployment": row.deployment,
            }
        )
    return firing


def _judge(
    rule: str, row: ServiceHealth, limits: Mapping[str, float | None]
) -> tuple[float, float | None, str, str] | None:
    """(value, threshold, severity, summary) when the row breaks the rule, else None."""
    if rule == "service_down":
        streak = _down_streak(row)
        if streak < DOWN_AFTER_PROBES:
            return None
        return float(streak), None, Severity.CRITICAL, f"service down ({row.health_message})"
    if rule == "error_rate":
        limit, value = limits["error_rate"], row.error_rate
        if limit is None or value is None or value <= limit:
            return None
        what = f"error rate {_fmt(value, '%')} of {row.requests} requests > {_fmt(limit, '%')}"
        return value, limit, Severity.CRITICAL, what
    if rule == "latency_p95":
        limit, value = limits["latency_p95_ms"], row.p95_ms
        if limit is None or value is None or value <= limit:
            return None
        return value, limit, Severity.WARNING, f"p95 latency {value:g} ms > {limit:g} ms"
    if rule == "cpu":
        limit, value = limits["cpu"], row.cpu
        if limit is None or value is None or value <= limit:
            return None
        return value, limit, Severity.WARNING, f"CPU {value:.0%} of a core > {limit:.0%}"
    limit, value = limits["memory_mb"], row.memory_mb
    if limit is None or value is None or value <= limit:
        return None
    return value, limit, Severity.WARNING, f"memory {value:g} MiB > {limit:g} MiB"

"""The control plane's Prometheus metrics (docs/monitoring-prometheus.md).

Two kinds, so that a scrape costs the same at 100 or 10 million runs:

- **Counters and histograms updated when something changes** (a run or job finishes, a
  deployment or promotion moves, a webhook delivery is written, an HTTP request or a Celery task
  ends), from the apps' existing signals (``metrics_receivers.py``). With
  ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn workers, Celery's prefork children), every process
  writes its own memory-mapped file in that folder and ``/metrics`` sums them.
- **Gauges of small sets read at scrape time** (``DatabaseCollector``): what is active now (runs
  and jobs not finished, queued jobs per queue and the oldest one's age, deployments pending or
  running, promotions waiting, alerts firing). Each is one grouped query filtered on a
  non-terminal status, which an index on ``status`` answers without reading the finished rows.

The drift gauges are set by the drift checks (``drift_scores_set``), in whichever process runs
them; in multiprocess mode they keep the most recent value written by any process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# The `_created` series double every counter's and histogram's lines for nothing a dashboard
# uses (multiprocess mode never writes them anyway).
disable_created_metrics()

# Histograms carry few labels on purpose: every label set costs a line per bucket in each
# scrape, so durations are per status (and environment name), counters per project.
# Seconds: jobs and pipelines last from a second to hours.
LONG_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
# Seconds: HTTP requests and most housekeeping tasks.
SHORT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))

# --- updated on transitions -----------------------------------------------------------------

RUNS_FINISHED = Counter(
    "controlplane_runs_finished",
    "Pipeline runs that reached a final status (succeeded, failed, canceled).",
    ["project", "status"],
)
PIPELINE_DURATION = Histogram(
    "controlplane_pipeline_duration_seconds",
    "Wall time of a pipeline run from its start to its final status.",
    ["status"],
    buckets=LONG_BUCKETS,
)
JOBS_FINISHED = Counter(
    "controlplane_jobs_finished",
    "Jobs that reached a final status (succeeded, failed, canceled, skipped).",
    ["kind", "status"],
)
JOB_DURATION = Histogram(
    "controlplane_job_duration_seconds",
    "Wall time of a job from its first start to its final status.",
    ["kind", "status"],
    buckets=LONG_BUCKETS,
)
DEPLOYMENTS = Counter(
    "controlplane_deployments",
    "Deployments that reached a final status (succeeded, failed, rolled_back, superseded).",
    ["project", "environment", "status"],
)
DEPLOYMENT_DURATION = Histogram(
    "controlplane_deployment_duration_seconds",
    "Wall time of a deployment from its start to its final status.",
    ["environment", "status"],
    buckets=LONG_BUCKETS,
)
PROMOTIONS = Counter(
    "controlplane_promotions",
    "Promotions that moved to a status (approved, rejected, expired, deployed, ...).",
    ["project", "environment", "status"],
)
WEBHOOK_DELIVERIES = Counter(
    "controlplane_webhook_deliveries",
    "Incoming webhook deliveries by provider and result (accepted, rejected, error, ...).",
    ["provider", "status"],
)
HTTP_REQUESTS = Counter(
    "controlplane_http_requests",
    "HTTP requests the control plane answered, by method, URL name and status code.",
    ["method", "view", "code"],
)
HTTP_DURATION = Histogram(
    "controlplane_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL name.",
    ["view"],
    buckets=SHORT_BUCKETS,
)
WORKER_TASKS = Counter(
    "controlplane_worker_tasks",
    "Celery tasks a worker finished, by task name and state (succeeded, failed, retried).",
    ["task", "state"],
)
WORKER_TASK_DURATION = Histogram(
    "controlplane_worker_task_duration_seconds",
    "Time a Celery task ran in a worker.",
    ["task"],
    buckets=SHORT_BUCKETS[:-1] + LONG_BUCKETS[3:],
)

# --- set by the drift checks (H5) -----------------------------------------------------------

DRIFT_SCORE = Gauge(
    "controlplane_drift_score",
    "The drift test's score of a feature in the latest check (p-value or distance, per test).",
    ["project", "environment", "model_version", "feature", "test"],
    multiprocess_mode="mostrecent",
)
COLUMN_DRIFT = Gauge(
    "controlplane_column_drift",
    "1 when the latest check found the feature drifted, else 0.",
    ["project", "environment", "model_version", "feature"],
    multiprocess_mode="mostrecent",
)
DATASET_DRIFT = Gauge(
    "controlplane_dataset_drift",
    "1 when the latest check found dataset drift (share of drifted features >= threshold).",
    ["project", "environment"],
    multiprocess_mode="mostrecent",
)
DRIFT_SHARE = Gauge(
    "controlplane_drift_share",
    "Share of the monitored features the latest check found drifted.",
    ["project", "environment"],
    multiprocess_mode="mostrecent",
)
DRIFT_CHECK_TIME = Gauge(
    "controlplane_drift_check_timestamp_seconds",
    "When the latest drift check of the environment ran (Unix time).",
    ["project", "environment"],
    multiprocess_mode="mostrecent",
)
MODEL_PERFORMANCE = Gauge(
    "controlplane_model_performance",
    "A performance metric of the serving model on labelled observations (latest check).",
    ["project", "environment", "model_version", "metric"],
    multiprocess_mode="mostrecent",
)


@dataclass(frozen=True)
class FeatureScore:
    """One feature's result in a drift check, as the gauges take it."""

    feature: str
    test: str
    score: float
    drifted: bool


def drift_scores_set(
    *,
    project: str,
    environment: str,
    model_version: str | int,
    scores: Iterable[FeatureScore],
    dataset_drift: bool,
    drift_share: float,
    performance: Mapping[str, float] | None = None,
    at: datetime | None = None,
) -> None:
    """Publish one drift check's results (called by the check once its rows are written).

    ``project`` is the project's slug, ``environment`` the environment's name. A feature that
    was monitored before but not now keeps its last value until ``drift_scores_clear``."""
    mv = str(model_version)
    for s in scores:
        DRIFT_SCORE.labels(project, environment, mv, s.feature, s.test).set(float(s.score))
        COLUMN_DRIFT.labels(project, environment, mv, s.feature).set(1.0 if s.drifted else 0.0)
    DATASET_DRIFT.labels(project, environment).set(1.0 if dataset_drift else 0.0)
    DRIFT_SHARE.labels(project, environment).set(float(drift_share))
    DRIFT_CHECK_TIME.labels(project, environment).set((at or timezone.now()).timestamp())
    for metric, value in (performance or {}).items():
        MODEL_PERFORMANCE.labels(project, environment, mv, metric).set(float(value))


def drift_scores_clear(
    *, project: str, environment: str, model_version: str | int, features: Iterable[tuple[str, str]]
) -> None:
    """Mark series of (feature, test) pairs no longer checked (e.g. of the model version that
    served before) as NaN: Prometheus stores the NaN, every comparison with it is false (no
    alert) and Grafana draws a gap. TRICKY: in multiprocess mode a series cannot be deleted
    from the other processes' files; NaN is how it stops counting."""
    mv = str(model_version)
    nan = float("nan")
    for feature, test in features:
        DRIFT_SCORE.labels(project, environment, mv, feature, test).set(nan)
        COLUMN_DRIFT.labels(project, environment, mv, feature).set(nan)


# --- read at scrape time --------------------------------------------------------------------


def _age(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0


class DatabaseCollector:
    """Gauges of what is active now, one grouped query each over rows in a non-terminal
    status (a handful however many runs the database holds)."""

    def describe(self) -> list:
        # Nothing up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # TRICKY: imported here, not at the top: metrics.py is imported by the apps' signal
        # receivers and the WSGI/Celery start-up before the app registry is ready.
        from apps.monitoring.choices import AlertStatus
        from apps.monitoring.models import Alert
        from apps.pipelines.choices import JOB_ACTIVE, RUN_ACTIVE, JobStatus
        from apps.pipelines.models import Job, PipelineRun
        from apps.pipelines.routing import route
        from apps.releases.choices import DEPLOYMENT_ACTIVE, PromotionStatus
        from apps.releases.models import Deployment, Promotion

        now = timezone.now()

        runs = GaugeMetricFamily(
            "controlplane_runs", "Pipeline runs not finished, by status.", labels=["status"]
        )
        counts = dict(
            PipelineRun.objects.filter(status__in=RUN_ACTIVE)
            .order_by()
            .values_list("status")
            .annotate(n=Count("id"))
        )
        for status in sorted(RUN_ACTIVE):
            runs.add_metric([status], counts.get(status, 0))
        yield runs

        jobs = GaugeMetricFamily(
            "controlplane_jobs", "Jobs not finished, by status and kind.", labels=["status", "kind"]
        )
        depth = GaugeMetricFamily(
            "controlplane_queue_depth",
            "Jobs queued and not yet claimed by a worker, per Celery queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "controlplane_queue_oldest_age_seconds",
            "How long the oldest queued job of the queue has waited (0 when none).",
            labels=["queue"],
        )
        per_queue: dict[str, list] = {}
        per_status_kind: dict[tuple[str, str], int] = {}
        rows = (
            Job.objects.filter(status__in=JOB_ACTIVE)
            .order_by()
            .values("status", "kind", "options__resources")
            .annotate(n=Count("id"), oldest=Min("queued_at"))
        )
        for row in rows:
            key = (row["status"], row["kind"])
            per_status_kind[key] = per_status_kind.get(key, 0) + row["n"]
            if row["status"] != JobStatus.QUEUED:
                continue
            resources = row["options__resources"]
            queue = route(kind=row["kind"], options={"resources": resources}).queue
            entry = per_queue.setdefault(queue, [0, None])
            entry[0] += row["n"]
            if row["oldest"] and (entry[1] is None or row["oldest"] < entry[1]):
                entry[1] = row["oldest"]
        for (status, kind), n in sorted(per_status_kind.items()):
            jobs.add_metric([status, kind], n)
        from django.conf import settings

        for q in settings.CELERY_TASK_QUEUES:
            per_queue.setdefault(q.name, [0, None])
        for queue, (n, oldest) in sorted(per_queue.items()):
            depth.add_metric([queue], n)
            age.add_metric([queue], _age(oldest, now))
        yield jobs
        yield depth
        yield age

        deployments = GaugeMetricFamily(
            "controlplane_deployments_active",
            "Deployments pending or running, by status.",
            labels=["status"],
        )
        counts = dict(
            Deployment.objects.filter(status__in=DEPLOYMENT_ACTIVE)
            .order_by()
            .values_list("status")
            .annotate(n=Count("id"))
        )
        for status in sorted(DEPLOYMENT_ACTIVE):
            deployments.add_metric([status], counts.get(status, 0))
        yield deployments

        waiting = GaugeMetricFamily(
            "controlplane_promotions_waiting",
            "Promotions waiting for approval (at most one per environment).",
            labels=["project", "environment"],
        )
        waiting_age = GaugeMetricFamily(
            "controlplane_promotion_waiting_seconds",
            "How long the environment's pending promotion has waited for approval.",
            labels=["project", "environment"],
        )
        for row in (
            Promotion.objects.filter(status=PromotionStatus.PENDING)
            .order_by()
            .values("environment__project__slug", "environment__name")
            .annotate(n=Count("id"), oldest=Min("created"))
        ):
            labels = [row["environment__project__slug"], row["environment__name"]]
            waiting.add_metric(labels, row["n"])
            waiting_age.add_metric(labels, _age(row["oldest"], now))
        yield waiting
        yield waiting_age

        alerts = GaugeMetricFamily(
            "controlplane_alerts_firing", "Alerts firing now, by severity.", labels=["severity"]
        )
        counts = dict(
            Alert.objects.filter(status=AlertStatus.FIRING)
            .order_by()
            .values_list("severity")
            .annotate(n=Count("id"))
        )
        from apps.monitoring.choices import Severity

        for severity in Severity.values:
            alerts.add_metric([severity], counts.get(severity, 0))
        yield alerts


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape_registry(*, database: bool = True) -> CollectorRegistry:
    """What ``/metrics`` exports: every process's counters (multiprocess mode) or this
    process's, plus the database gauges."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    if database:
        registry.register(DatabaseCollector())
    return registry


class _ProcessMetrics:
    """This process's metrics from the default registry (single-process mode)."""

    def collect(self):
        return REGISTRY.collect()


def render(*, database: bool = True) -> bytes:
    """The text exposition of ``scrape_registry``."""
    started = time.perf_counter()
    body = generate_latest(scrape_registry(database=database))
    SCRAPE_SECONDS.observe(time.perf_counter() - started)
    return body


SCRAPE_SECONDS = Histogram(
    "controlplane_metrics_scrape_duration_seconds",
    "Time to build the /metrics answer (the previous scrapes; this one is not in it yet).",
    buckets=SHORT_BUCKETS,
)

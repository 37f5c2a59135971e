"""The CM loop's rows: ingest tokens, observation and label batches (the rows themselves are
Parquet files, `store.py`), reference profiles, drift checks, alerts and silences."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.projects.models import Environment, Project
from apps.releases.models import Deployment
from apps.training.models import DatasetVersion, ModelVersion

from .choices import AlertSource, AlertStatus, CheckStatus, ColumnKind, ReferenceSource, Severity

INGEST_TOKEN_PREFIX = "cpi_"  # noqa: S105 - a public marker, not a secret


class IngestToken(models.Model):
    """Lets a deployed service post observations and labels to one environment, and nothing
    else. Only its SHA-256 is stored; the value is shown once."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="ingest_tokens"
    )
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment_id", "-created"]

    def __str__(self) -> str:
        return f"{self.environment}: {self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> str:
        return INGEST_TOKEN_PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ObservationBatch(models.Model):
    """One accepted batch of observations: its rows are one Parquet file under
    ``CONTROLPLANE_OBSERVATION_DIR``, in the folder of its time window."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="observation_batches"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The window (UTC, `CONTROLPLANE_OBSERVATION_WINDOW` long) the batch's first row falls in.
    window_start = models.DateTimeField()
    first_at = models.DateTimeField(help_text="The earliest observation's timestamp.")
    last_at = models.DateTimeField(help_text="The latest observation's timestamp.")
    rows = models.PositiveIntegerField()
    path = models.CharField(max_length=500, help_text="Relative to the observation directory.")
    size_bytes = models.BigIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["environment_id", "-first_at"]
        indexes = [models.Index(fields=["environment", "last_at", "first_at"])]

    def __str__(self) -> str:
        return f"{self.environment}: {self.rows} observations at {self.first_at:%Y-%m-%d %H:%M}"


class LabelBatch(models.Model):
    """Ground truth that arrived later, by request id: one Parquet file (request_id, label,
    labelled_at), joined to the observations when a check reads a window."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="label_batches"
    )
    window_start = models.DateTimeField()
    rows = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["environment_id", "-received_at"]
        indexes = [models.Index(fields=["environment", "received_at"])]

    def __str__(self) -> str:
        return f"{self.environment}: {self.rows} labels"


class Reference(models.Model):
    """What "no drift" looks like for one model version in one environment: the rows of its
    training dataset (lineage) or of the spec's ``monitor.reference``, stored as one Parquet
    file, with each column's kind (inferred, or overridden in the spec)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    source = models.CharField(max_length=16, choices=ReferenceSource.choices)
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    spec_path = models.CharField(max_length=500, blank=True)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the reference file.")
    path = models.CharField(max_length=500)
    rows = models.PositiveIntegerField()
    # {"column": "numeric" | "categorical"}; the prediction column included when present.
    columns = models.JSONField(default=dict)
    # The target column (labels) and the prediction column, as the spec names them.
    target = models.CharField(max_length=100, blank=True)
    prediction = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment_id", "-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "model_version", "fingerprint"],
                name="reference_unique_content",
            )
        ]

    def __str__(self) -> str:
        return f"{self.environment}: reference of {self.model_version or 'the spec'}"


class DriftCheck(models.Model):
    """One check of one window of observations against the reference."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="drift_checks"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reference = models.ForeignKey(
        Reference, null=True, blank=True, on_delete=models.SET_NULL, related_name="checks"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField(default=0)
    reference_rows = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    dataset_drift = models.BooleanField(default=False)
    drift_share = models.FloatField(default=0.0, help_text="Share of columns that drifted.")
    drift_share_threshold = models.FloatField(default=0.5)
    drifted_columns = models.JSONField(default=list, blank=True)
    # {"test", "score", "threshold", "drifted"} of the prediction column; empty: none logged.
    prediction_drift = models.JSONField(default=dict, blank=True)
    # Once labels exist: {"labelled_rows", "accuracy", "f1", "roc_auc"} or {"mae", "rmse"}.
    performance = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["environment_id", "-window_end"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "window_start", "window_end"],
                name="driftcheck_once_per_window",
            )
        ]
        indexes = [models.Index(fields=["environment", "-window_end"])]

    def __str__(self) -> str:
        return f"{self.environment}: {self.status} at {self.window_end:%Y-%m-%d %H:%M}"


class ColumnDrift(models.Model):
    """One column's verdict in a check: the test, its score against its threshold, and the
    data quality counts; the two histograms the monitoring page draws."""

    check_run = models.ForeignKey(DriftCheck, on_delete=models.CASCADE, related_name="columns")
    column = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ColumnKind.choices)
    test = models.CharField(max_length=32)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    drifted = models.BooleanField(default=False)
    missing_share = models.FloatField(default=0.0)
    out_of_range = models.PositiveIntegerField(default=0)
    new_categories = models.PositiveIntegerField(default=0)
    # {"edges" | "categories": [...], "reference": [...], "current": [...]} (shares).
    histogram = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["check_run_id", "column"]
        constraints = [
            models.UniqueConstraint(
                fields=["check_run", "column"], name="columndrift_unique_column"
            )
        ]

    def __str__(self) -> str:
        return f"{self.column}: {self.test}={self.score} ({'drift' if self.drifted else 'ok'})"


class Alert(models.Model):
    """One firing of one alert (a fingerprint of its labels). It fires, may be acknowledged,
    and resolves; the same fingerprint firing again later is a new row."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    source = models.CharField(max_length=16, choices=AlertSource.choices)
    # The rule's name ("dataset_drift", "service_down", or the Prometheus alertname).
    rule = models.CharField(max_length=100, db_index=True)
    fingerprint = models.CharField(max_length=64, db_index=True)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(
        max_length=16, choices=AlertStatus.choices, default=AlertStatus.FIRING, db_index=True
    )
    summary = models.CharField(max_length=300, blank=True)
    value = models.FloatField(null=True, blank=True)
    # What it is about, when a row of ours: a drift check, a deployment (rollback).
    drift_check = models.ForeignKey(
        DriftCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    starts_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Notification bookkeeping: the group it was sent in and when, for the repeat interval.
    group_key = models.CharField(max_length=200, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notified_count = models.PositiveIntegerField(default=0)
    # When its resolve was told (the dispatcher tells it once, if its firing was told).
    resolved_notified_at = models.DateTimeField(null=True, blank=True)
    # The silence that held its last notification back, if any.
    silenced_by = models.ForeignKey(
        "Silence", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [
            # Deduplication: one firing row per fingerprint.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status=AlertStatus.FIRING),
                name="alert_one_firing_per_fingerprint",
            )
        ]
        indexes = [
            models.Index(fields=["project", "status", "-starts_at"]),
            models.Index(fields=["environment", "-starts_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.rule} ({self.status})"


class Silence(models.Model):
    """Holds back notifications of the alerts its matchers match, from ``starts_at`` to
    ``ends_at``. Matchers: ``[{"name": label, "op": "=", "value": v}, ...]``, all must match."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    matchers = models.JSONField()
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    expired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at", "-id"]
        indexes = [models.Index(fields=["project", "ends_at"])]

    def __str__(self) -> str:
        return f"silence {self.pk} until {self.ends_at:%Y-%m-%d %H:%M}"

    def is_active(self, at=None) -> bool:
        at = at or timezone.now()
        return self.starts_at <= at < self.ends_at


class RetrainRequest(models.Model):
    """A drift that asked for retraining, and what became of it: the run it started, or why
    none was started (cooldown, daily cap, too few rows). The cooldown and cap read these."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    drift_check = models.ForeignKey(DriftCheck, on_delete=models.CASCADE, related_name="+")
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run = models.ForeignKey(
        "pipelines.PipelineRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    skipped_reason = models.CharField(max_length=300, blank=True)
    # The drift as the promotion page shows it: {"window", "drift_share", "drifted_columns",
    # "columns": [{"column", "test", "score", "threshold", "drifted"}], "dataset": {"name",
    # "version", "rows_added"}, "appended_until"} (apps/monitoring/retrain.py).
    evidence = models.JSONField(default=dict, blank=True)
    # The training data with the drifted window appended, when one was made.
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return (
            f"{self.environment}: retrain {'run ' + str(self.run_id) if self.run_id else 'skipped'}"
        )


class ServiceHealth(models.Model):
    """The latest probe of an environment's service (``services_health.py``), one row per
    environment, rewritten by each probe: whether it answers its health check, the error rate
    and p95 latency since the previous probe (from its ``/metrics``), and its CPU and memory.
    ``state`` keeps the raw counters the next probe subtracts; ``history`` the last
    ``HEALTH_HISTORY`` probes' figures (oldest first) for the monitoring page: bounded."""

    environment = models.OneToOneField(
        Environment, on_delete=models.CASCADE, related_name="service_health"
    )
    # The deployment that served when probed (its release is what was measured).
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checked_at = models.DateTimeField(default=timezone.now)
    up = models.BooleanField(default=False)
    url = models.CharField(max_length=500, blank=True)
    health_message = models.CharField(max_length=300, blank=True)
    # Over the interval since the previous probe; None: no requests (or no /metrics) then.
    requests = models.PositiveIntegerField(null=True, blank=True)
    error_rate = models.FloatField(null=True, blank=True, help_text="Share of 5xx answers.")
    p95_ms = models.FloatField(null=True, blank=True)
    metrics_message = models.CharField(max_length=300, blank=True)
    cpu = models.FloatField(null=True, blank=True, help_text="Share of one core.")
    memory_mb = models.FloatField(null=True, blank=True)
    resources_message = models.CharField(max_length=300, blank=True)
    state = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["environment_id"]

    def __str__(self) -> str:
        return f"{self.environment}: {'up' if self.up else 'down'} at {self.checked_at:%H:%M:%S}"

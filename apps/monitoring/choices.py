"""Statuses and kinds of the CM loop (docs/monitoring.md)."""

from django.db import models


class ColumnKind(models.TextChoices):
    NUMERIC = "numeric", "Numeric"
    CATEGORICAL = "categorical", "Categorical"


class CheckStatus(models.TextChoices):
    OK = "ok", "No drift"
    DRIFT = "drift", "Drift"
    # Too few rows in the window (or no reference): nothing was decided.
    INSUFFICIENT = "insufficient", "Not enough data"
    ERROR = "error", "Error"


class ReferenceSource(models.TextChoices):
    LINEAGE = "lineage", "Training dataset of the serving model version"
    SPEC = "spec", "monitor.reference in the spec"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


# An alert fires, and resolves; a resolved fingerprint that fires again is a new Alert row.
ALERT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    AlertStatus.FIRING: (AlertStatus.RESOLVED,),
    AlertStatus.RESOLVED: (),
}


class AlertSource(models.TextChoices):
    # Evaluated by the control plane (apps/monitoring/rules.py).
    CONTROLPLANE = "controlplane", "Control plane"
    # Posted by Alertmanager to /integrations/alertmanager/ (a Prometheus rule).
    ALERTMANAGER = "alertmanager", "Alertmanager"


class MatchOp(models.TextChoices):
    EQUAL = "=", "equals"
    NOT_EQUAL = "!=", "does not equal"
    REGEX = "=~", "matches"
    NOT_REGEX = "!~", "does not match"

"""Reads for the monitoring pages: the environment's monitoring page and the promotion page's
drift section. Each is a fixed number of queries whatever the number of checks or features
(tests/monitoring/test_views.py counts them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Case, IntegerField, Q, Value, When

from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.projects.models import Environment
from apps.training.models import ModelVersion

from .choices import AlertStatus
from .models import Alert, ColumnDrift, DriftCheck, RetrainRequest, ServiceHealth
from .services_health import RULES as SERVICE_RULES  # the service-health panel's rules

# How many of the latest checks the charts draw (at `every: 15m`, one day).
SERIES_CHECKS = 96
ALERTS_SHOWN = 20
RETRAINS_SHOWN = 5
# Performance keys worth a line; anything else numeric in DriftCheck.performance is drawn too.
PERFORMANCE_SKIP = ("labelled_rows",)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None  # NaN, inf → gap


def _side(raw: Any, key: str) -> float:
    value = raw.get(key) if isinstance(raw, dict) else None
    return _float_or_none(value) or 0.0


def _histogram(raw: Any) -> dict | None:
    """The histogram of a ColumnDrift (the engine's, docs/drift.md) in the shape the page
    draws: a label per bar and both sides' shares. Numeric: a bar per bin between the
    reference's min and max, plus "below"/"above" bars when current values fell outside;
    categorical: the top categories, plus "other" for the rest. None when missing or
    malformed (an older row, a test that stores none): the page then says so."""
    if not isinstance(raw, dict):
        return None
    ref, cur = raw.get("reference"), raw.get("current")
    if not isinstance(ref, list) or not isinstance(cur, list) or len(ref) != len(cur) or not ref:
        return None
    ref = [_float_or_none(v) or 0.0 for v in ref]
    cur = [_float_or_none(v) or 0.0 for v in cur]
    if isinstance(raw.get("categories"), list) and len(raw["categories"]) == len(ref):
        labels = [str(c) for c in raw["categories"]]
        other = raw.get("other")
        if _side(other, "reference") or _side(other, "current"):
            labels.append("other")
            ref.append(_side(other, "reference"))
            cur.append(_side(other, "current"))
        new = [str(c) for c in raw.get("new") or ()] if isinstance(raw.get("new"), list) else []
        return {"labels": labels, "reference": ref, "current": cur, "new": new}
    edges = raw.get("edges")
    if not isinstance(edges, list) or len(edges) != len(ref) + 1:
        return None
    edges = [_float_or_none(e) for e in edges]
    if None in edges:
        return None
    labels = [f"{a:.4g}…{b:.4g}" for a, b in zip(edges, edges[1:], strict=False)]
    below, above = raw.get("below"), raw.get("above")
    if _side(below, "current") or _side(below, "reference"):
        labels.insert(0, f"< {edges[0]:.4g}")
        ref.insert(0, _side(below, "reference"))
        cur.insert(0, _side(below, "current"))
    if _side(above, "current") or _side(above, "reference"):
        labels.append(f"> {edges[-1]:.4g}")
        ref.append(_side(above, "reference"))
        cur.append(_side(above, "current"))
    return {"labels": labels, "edges": edges, "reference": ref, "current": cur}


def drift_series(*, checks: list[DriftCheck]) -> dict:
    """The charts' data, oldest first: x is each check's window end (epoch seconds); one score
    line per feature with its latest threshold; the dataset drift share; each performance
    metric. A check without a feature or a metric leaves a gap (None)."""
    index = {c.pk: i for i, c in enumerate(checks)}
    n = len(checks)
    features: dict[str, dict] = {}
    rows = (
        ColumnDrift.objects.filter(check_run_id__in=list(index))
        .order_by("column", "check_run_id")
        .values_list("check_run_id", "column", "score", "threshold", "drifted", "test")
    )
    for check_id, column, score, threshold, drifted, test in rows:
        f = features.setdefault(
            column, {"score": [None] * n, "drifted": [False] * n, "threshold": None, "test": ""}
        )
        i = index[check_id]
        f["score"][i] = _float_or_none(score)
        f["drifted"][i] = bool(drifted)
        # The latest check's threshold and test are the ones drawn (checks are oldest first).
        f["threshold"], f["test"] = _float_or_none(threshold), test
    performance: dict[str, list] = {}
    for i, c in enumerate(checks):
        for key, value in (c.performance or {}).items() if isinstance(c.performance, dict) else ():
            if key in PERFORMANCE_SKIP or _float_or_none(value) is None:
                continue
            performance.setdefault(key, [None] * n)[i] = _float_or_none(value)
    return {
        "t": [int(c.window_end.timestamp()) for c in checks],
        "status": [c.status for c in checks],
        "drift_share": [_float_or_none(c.drift_share) for c in checks],
        "drift_share_threshold": _float_or_none(checks[-1].drift_share_threshold)
        if checks
        else None,
        "features": features,
        "performance": performance,
    }


def service_health(*, environment: Environment) -> dict:
    """The service-health panel: the latest probe of the service (``ServiceHealth``, one row
    per environment, written by services_health.py; None when never probed) and the service
    rules' state here: firing or not, with the latest alert's value. Two queries."""
    probe = ServiceHealth.objects.filter(environment=environment).first()
    latest: dict[str, Alert] = {}
    for alert in (
        Alert.objects.filter(environment=environment, rule__in=SERVICE_RULES)
        .order_by("rule", "-starts_at", "-id")
        .distinct("rule")
    ):
        latest[alert.rule] = alert
    rules = [
        {
            "rule": rule,
            "alert": latest.get(rule),
            "firing": rule in latest and latest[rule].status == AlertStatus.FIRING,
        }
        for rule in SERVICE_RULES
    ]
    return {"probe": probe, "rules": rules}


def environment_monitoring(*, environment: Environment, limit: int = SERIES_CHECKS) -> dict:
    """Everything the environment's monitoring page shows, in seven queries: the latest
    checks (with their model versions), their column scores (not their histograms), the
    latest check's columns with histograms, the environment's alerts (firing first), the
    service's latest probe and the service rules' latest alerts, the latest retrain
    requests."""
    checks = list(
        DriftCheck.objects.filter(environment=environment)
        .select_related("model_version")
        .order_by("-window_end", "-id")[:limit]
    )
    checks.reverse()
    latest = checks[-1] if checks else None
    columns = []
    if latest is not None:
        for col in ColumnDrift.objects.filter(check_run=latest).order_by("-drifted", "column"):
            col.chart = _histogram(col.histogram)
            columns.append(col)
    alerts = list(
        Alert.objects.filter(environment=environment)
        .annotate(
            firing_first=Case(
                When(status=AlertStatus.FIRING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("firing_first", "-starts_at", "-id")[:ALERTS_SHOWN]
    )
    retrains = list(
        RetrainRequest.objects.filter(environment=environment)
        .select_related("run", "run__project")
        .order_by("-created", "-id")[:RETRAINS_SHOWN]
    )
    return {
        "checks": checks,
        "latest": latest,
        "columns": columns,
        "series": drift_series(checks=checks),
        "histograms": {c.column: c.chart for c in columns if c.chart},
        "alerts": alerts,
        "firing": sum(a.status == AlertStatus.FIRING for a in alerts),
        "health": service_health(environment=environment),
        "retrains": retrains,
    }


def latest_check(*, environment: Environment) -> DriftCheck | None:
    return (
        DriftCheck.objects.filter(environment=environment)
        .select_related("model_version")
        .order_by("-window_end", "-id")
        .first()
    )


def _iso(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _retrain_cause(retrain: RetrainRequest) -> tuple[dict, list[dict]]:
    """The drift that asked for a retrain: the snapshot the retrain kept
    (``RetrainRequest.evidence``, docs/monitoring.md) where there is one, else its check's
    rows as they are now. Either way the same keys, for the template."""
    check = retrain.drift_check
    evidence = getattr(retrain, "evidence", None)
    evidence = evidence if isinstance(evidence, dict) else {}
    window = evidence.get("window") if isinstance(evidence.get("window"), list) else []
    cause = {
        "environment": check.environment,
        "check": check,
        "window_start": (_iso(window[0]) if window else None) or check.window_start,
        "window_end": (_iso(window[-1]) if window else None) or check.window_end,
        "rows": evidence.get("rows", check.rows),
        "reference_rows": check.reference_rows,
        "drift_share": _float_or_none(evidence.get("drift_share", check.drift_share)) or 0.0,
        "drift_share_threshold": _float_or_none(
            evidence.get("drift_share_threshold", check.drift_share_threshold)
        ),
        "drifted_columns": evidence.get("drifted_columns", check.drifted_columns) or [],
        "dataset": evidence.get("dataset") if isinstance(evidence.get("dataset"), dict) else None,
    }
    columns = [
        {
            "column": str(c.get("column", "")),
            "test": str(c.get("test", "")),
            "score": _float_or_none(c.get("score")),
            "threshold": _float_or_none(c.get("threshold")),
            "drifted": bool(c.get("drifted")),
        }
        for c in evidence.get("columns") or ()
        if isinstance(c, dict)
    ]
    if not columns:
        columns = list(
            ColumnDrift.objects.filter(check_run=check)
            .order_by("-drifted", "column")
            .values("column", "test", "score", "threshold", "drifted")
        )
    columns.sort(key=lambda c: (not c["drifted"], c["column"]))
    return cause, columns


def promotion_drift(*, release, environment: Environment) -> dict:
    """The promotion page's drift section: the target environment's latest check, and when
    the release was built by a retrain that monitoring started (trigger "monitor"), the drift
    that asked for it — the RetrainRequest pointing at the release's run or its model
    version's, with the columns' tests, scores and thresholds. Five queries at most; every
    part may be missing."""
    latest = latest_check(environment=environment)
    latest_drifted = []
    if latest is not None:
        latest_drifted = list(
            ColumnDrift.objects.filter(check_run=latest, drifted=True)
            .only("column", "test", "score", "threshold", "drifted", "check_run_id")
            .order_by("column")
        )
    cause: dict | None = None
    cause_columns: list[dict] = []
    # The retrain's run built the release, or trained its model version (a later run may
    # have packaged it): either one points back at the RetrainRequest.
    runs = Q(pk__in=[]) if release.pipeline_run_id is None else Q(run_id=release.pipeline_run_id)
    if release.model_version_id is not None:
        runs |= Q(
            run_id__in=ModelVersion.objects.filter(pk=release.model_version_id).values(
                "pipeline_run_id"
            )
        )
    retrain = (
        RetrainRequest.objects.filter(runs, run__isnull=False)
        .select_related("drift_check", "drift_check__environment", "run", "run__project")
        .order_by("-created", "-id")
        .first()
    )
    run = retrain.run if retrain else None
    if retrain is None and release.pipeline_run_id is not None:
        # No request row (an older loop, or one deleted): the run's own trigger still says
        # monitoring started it, and why.
        run = (
            PipelineRun.objects.select_related("project")
            .filter(pk=release.pipeline_run_id, trigger=Trigger.MONITOR)
            .first()
        )
    if retrain is not None:
        cause, cause_columns = _retrain_cause(retrain)
    return {
        "environment": environment,
        "latest": latest,
        "latest_drifted": latest_drifted,
        "retrain": retrain,
        "cause": cause,
        "cause_columns": cause_columns,
        "run": run,
    }

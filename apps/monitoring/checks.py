"""The drift and performance checks of the CM loop (docs/monitoring.md).

Which environments are checked: those with a serving release (a succeeded deployment) whose
spec, at the commit it serves (``Environment.pipeline_commit_sha``, else the release's), has a
``monitor:`` block. Every 30 s the beat task ``monitoring.run_due_checks`` finds the windows
that are due (:func:`due_checks`) and sends ``monitoring.check_environment`` on the ``monitor``
queue for each; one check (:func:`run_check`) reads the reference (``reference_for``), the
window's observations (``store.read_window``), runs the engine (``drift``), stores the
DriftCheck and its ColumnDrift rows (``drift_check_record``), fires or resolves the
``dataset_drift``, ``column_drift`` and ``performance`` alerts, and on a dataset drift with
``on_drift: retrain`` asks :mod:`retrain` for a run.

Windows are aligned to multiples of ``monitor.every`` (UTC): the window ending at ``end``
covers ``[end - window, end)``. A window is checked once (the DriftCheck unique constraint), so
a message sent twice is harmless. ``no_observations`` (a rule of ``rules.py``) is here too.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.db import transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from apps.pipelines import git
from apps.pipelines.specs import SpecUnavailable, spec_at
from apps.projects.models import Environment, Project
from apps.projects.spec import MonitorSpec
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.training.models import ModelVersion

from . import store
from .choices import CheckStatus, Severity
from .drift import ColumnConfig, DatasetResult, column_drift, dataset_drift, infer_kind, performance
from .models import DriftCheck, ObservationBatch, Reference
from .rules import Firing, rule
from .services.checks import CheckOutcome, drift_check_record

logger = logging.getLogger(__name__)

DRIFT_RULES = ("dataset_drift", "column_drift", "performance")
# Parsed monitor blocks by (project id, commit sha): a commit's spec never changes.
_SPEC_CACHE: dict[tuple[int, str], MonitorSpec | None] = {}
_SPEC_CACHE_SIZE = 512
_SPEC_WARNED: set[tuple[int, str]] = set()


# --- which environments, which windows -------------------------------------------------------


@dataclass(frozen=True)
class Monitored:
    environment: Environment
    monitor: MonitorSpec
    commit_sha: str
    model_version_id: int | None
    serving_since: datetime | None


def monitor_spec(project: Project, sha: str) -> MonitorSpec | None:
    """The ``monitor:`` block of the spec at ``sha`` (None: none, or the spec cannot be read;
    a spec that cannot be read now is tried again next time)."""
    key = (project.pk, sha)
    if key in _SPEC_CACHE:
        return _SPEC_CACHE[key]
    try:
        git.mirror_update(project, want=sha)  # a worker whose mirror lacks the commit fetches
        _info, spec = spec_at(project, sha=sha)
    except (git.GitError, subprocess.TimeoutExpired, SpecUnavailable) as exc:
        # Tried again at every look (it may be fetched later), said once per commit.
        log = logger.debug if key in _SPEC_WARNED else logger.warning
        _SPEC_WARNED.add(key)
        log("Monitoring %s at %s: %s", project, sha[:12], exc)
        return None
    if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
        _SPEC_CACHE.clear()
    _SPEC_CACHE[key] = spec.monitor
    return spec.monitor


def monitored_environments(environment_id: int | None = None) -> list[Monitored]:
    """Every environment (or the one of ``environment_id``) with a serving release whose spec
    has a monitor block. One query; each commit's spec is read once per process."""
    serving = Deployment.objects.filter(
        environment=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED
    ).order_by("-finished_at", "-pk")
    environments = (
        Environment.objects.annotate(
            serving_commit=Subquery(serving.values("release__commit_sha")[:1]),
            serving_model_version=Subquery(serving.values("release__model_version_id")[:1]),
            serving_since=Subquery(serving.values("finished_at")[:1]),
        )
        .filter(serving_commit__isnull=False)
        .exclude(project__repository_url="")
        .select_related("project")
        .order_by("pk")
    )
    if environment_id is not None:
        environments = environments.filter(pk=environment_id)
    found = []
    for env in environments:
        sha = env.pipeline_commit_sha or env.serving_commit
        monitor = monitor_spec(env.project, sha)
        if monitor is not None:
            found.append(Monitored(env, monitor, sha, env.serving_model_version, env.serving_since))
    return found


def window_at(now: datetime, monitor: MonitorSpec) -> tuple[datetime, datetime]:
    """The last window due at ``now``: it ends at the last multiple of ``every`` at least
    ``MONITOR_CHECK_DELAY`` ago (observations arrive in batches, a little late)."""
    every = monitor.every_seconds
    epoch = int(now.timestamp()) - settings.MONITOR_CHECK_DELAY_SECONDS
    end = datetime.fromtimestamp(epoch - epoch % every, tz=UTC)
    return end - timedelta(seconds=monitor.window_seconds), end


@dataclass(frozen=True)
class Due:
    environment_id: int
    window_start: datetime
    window_end: datetime


def due_checks(now: datetime | None = None) -> list[Due]:
    """The windows that are due and not checked yet, one per monitored environment."""
    now = now or timezone.now()
    candidates = [(m, *window_at(now, m.monitor)) for m in monitored_environments()]
    if not candidates:
        return []
    done = set(
        DriftCheck.objects.filter(
            environment_id__in=[m.environment.pk for m, _s, _e in candidates],
            window_end__gte=min(end for _m, _s, end in candidates),
        ).values_list("environment_id", "window_start", "window_end")
    )
    return [
        Due(m.environment.pk, start, end)
        for m, start, end in candidates
        if (m.environment.pk, start, end) not in done
    ]


# --- one check -------------------------------------------------------------------------------


def run_check(
    *, environment_id: int, window_start: datetime, window_end: datetime
) -> DriftCheck | None:
    """Check one window of one environment, store it, alert, and retrain on drift. None when
    the window was checked already or the environment is no longer monitored."""
    if DriftCheck.objects.filter(
        environment_id=environment_id, window_start=window_start, window_end=window_end
    ).exists():
        return None
    monitored = next(iter(monitored_environments(environment_id)), None)
    if monitored is None:
        return None
    environment, monitor = monitored.environment, monitored.monitor
    model_version = (
        ModelVersion.objects.filter(pk=monitored.model_version_id).first()
        if monitored.model_version_id
        else None
    )
    from .reference import reference_for

    started = time.monotonic()
    reference = None
    try:
        reference = reference_for(environment, model_version)
        outcome = evaluate(
            environment=environment,
            monitor=monitor,
            reference=reference,
            model_version=model_version,
            window_start=window_start,
            window_end=window_end,
        )
    except Exception as exc:  # noqa: BLE001 - a check that fails is stored as an error
        logger.exception("Drift check of %s failed", environment)
        outcome = CheckOutcome(status=CheckStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    check = drift_check_record(
        environment=environment,
        window_start=window_start,
        window_end=window_end,
        outcome=outcome,
        model_version=model_version,
        reference=reference,
    )
    if check is None:
        return None
    try:
        publish_metrics(check)
    except Exception:  # noqa: BLE001 - gauges must not keep the alerts and the retrain back
        logger.exception("Could not publish the drift gauges of %s", environment)
    alert = check_alerts(check=check, monitor=monitor)
    if check.status in (CheckStatus.OK, CheckStatus.DRIFT):
        # What the check fired is told now, not at the dispatcher's next beat (RULES_INTERVAL).
        from .tasks import dispatch_alerts_task

        transaction.on_commit(dispatch_alerts_task.delay, robust=True)  # beat's pass is the net
    if check.status == CheckStatus.DRIFT and monitor.on_drift == "retrain":
        from .retrain import drift_retrain

        drift_retrain(check=check, monitor=monitor, alert=alert)
    return check


def evaluate(
    *,
    environment: Environment,
    monitor: MonitorSpec,
    reference: Reference | None,
    model_version: ModelVersion | None,
    window_start: datetime,
    window_end: datetime,
) -> CheckOutcome:
    """What one window looks like next to the reference (no writes)."""
    from .reference import reference_table

    if reference is None:
        return CheckOutcome(status=CheckStatus.INSUFFICIENT, error="No reference data.")
    ref = reference_table(reference)
    features = check_features(monitor, reference, ref)
    target = monitor.target or reference.target
    prediction = monitor.prediction or reference.prediction or "prediction"
    current = store.read_window(
        environment_id=environment.pk,
        start=window_start,
        end=window_end,
        columns=features,
        with_labels=bool(target),
    )
    current = serving_rows(current, model_version)
    rows = current.num_rows if current is not None else 0
    base = {"rows": rows, "reference_rows": ref.num_rows}
    if rows < monitor.min_rows:
        return CheckOutcome(
            status=CheckStatus.INSUFFICIENT,
            error=f"{rows} observations in the window; monitor.min_rows is {monitor.min_rows}.",
            drift_share_threshold=monitor.drift_share,
            **base,
        )
    kinds = {**reference.columns}
    configs = [column_config(monitor, name, kinds.get(name)) for name in features]
    result: DatasetResult = dataset_drift(
        {c.name: column_values(ref, c.name, c.kind) for c in configs},
        {
            c.name: column_values(current, c.name, c.kind)
            for c in configs
            if c.name in current.column_names
        },
        configs,
        share=monitor.drift_share,
    )
    return CheckOutcome(
        status=CheckStatus.DRIFT if result.dataset_drift else CheckStatus.OK,
        columns=result.columns,
        dataset_drift=result.dataset_drift,
        drift_share=result.drift_share,
        drift_share_threshold=result.share_threshold,
        drifted_columns=list(result.drifted_columns),
        prediction_drift=_prediction_drift(monitor, ref, current, prediction, kinds),
        performance=_performance(monitor, current, prediction) if target else {},
        **base,
    )


def check_features(monitor: MonitorSpec, reference: Reference, ref: pa.Table) -> list[str]:
    """``monitor.features``, else every reference column but the target and the prediction."""
    if monitor.features:
        missing = [f for f in monitor.features if f not in ref.column_names]
        if missing:
            raise ValueError(f"monitor.features not in the reference: {', '.join(missing)}")
        return list(monitor.features)
    skip = {
        monitor.target,
        reference.target,
        monitor.prediction,
        reference.prediction,
        *store.RESERVED,
    }
    return [c for c in ref.column_names if c and c not in skip]


def column_config(monitor: MonitorSpec, name: str, inferred: str | None) -> ColumnConfig:
    """The column's kind (spec, else the reference's), test and threshold (spec, else the
    defaults); a default test that does not fit the column's kind is left to the engine."""
    kind, test, threshold = monitor.column_settings(name)
    kind = kind or inferred
    try:
        return ColumnConfig(name=name, kind=kind, test=test, threshold=threshold)
    except ValueError:
        return ColumnConfig(name=name, kind=kind)


def column_values(table: pa.Table, name: str, kind: str | None):
    """A column as the engine takes it: float64 with NaN for numeric, strings for categorical."""
    column = table.column(name)
    if kind is None:
        kind = infer_kind(column.combine_chunks())
    if kind == "categorical":
        return pc.cast(column, pa.string()).combine_chunks()
    return pc.cast(column, pa.float64()).to_numpy().astype(np.float64, copy=False)


def serving_rows(table: pa.Table | None, model_version: ModelVersion | None) -> pa.Table | None:
    """The rows of the serving model version (those that name none count as its)."""
    if table is None or model_version is None or "model_version_id" not in table.column_names:
        return table
    ids = table.column("model_version_id")
    return table.filter(pc.or_kleene(pc.is_null(ids), pc.equal(ids, model_version.pk)))


def labelled_rows(table: pa.Table) -> pa.Table:
    """The rows whose label arrived (a null or NaN label did not)."""
    label = table.column(store.LABEL)
    keep = pc.is_valid(label)
    if pa.types.is_floating(label.type):
        keep = pc.and_(keep, pc.invert(pc.is_nan(label)))
    return table.filter(keep)


def _prediction_drift(monitor, ref: pa.Table, current: pa.Table, prediction: str, kinds) -> dict:
    if prediction not in ref.column_names or prediction not in current.column_names:
        return {}
    config = column_config(monitor, prediction, kinds.get(prediction))
    result = column_drift(
        column_values(ref, prediction, config.kind),
        column_values(current, prediction, config.kind),
        config,
    )
    return {
        "test": result.test,
        "score": result.score,
        "threshold": result.threshold,
        "drifted": result.drifted,
    }


def _performance(monitor: MonitorSpec, current: pa.Table, prediction: str) -> dict:
    """Metrics of the rows whose label arrived; empty when none did."""
    if store.LABEL not in current.column_names or prediction not in current.column_names:
        return {}
    labelled = labelled_rows(current)
    if labelled.num_rows == 0:
        return {}
    y_true = labelled.column(store.LABEL).to_numpy(zero_copy_only=False)
    y_pred = labelled.column(prediction).to_numpy(zero_copy_only=False)
    y_score = None
    if monitor.task == "classification" and pa.types.is_floating(
        labelled.schema.field(prediction).type
    ):
        # A probability of the positive class: its score, and the class at 0.5.
        scores = y_pred.astype(np.float64)
        if np.nanmin(scores) >= 0 and np.nanmax(scores) <= 1 and np.any(scores % 1 != 0):
            y_score, y_pred = scores, (scores >= 0.5).astype(np.int64)
    result = performance(y_true, y_pred, y_score, task=monitor.task)
    return {**result, "labelled_rows": labelled.num_rows}


def publish_metrics(check: DriftCheck) -> None:
    """The check's scores as Prometheus gauges (``metrics.drift_scores_set``); a check that
    decided nothing publishes nothing."""
    if check.status not in (CheckStatus.OK, CheckStatus.DRIFT):
        return
    from .metrics import FeatureScore, drift_scores_set

    environment = check.environment
    drift_scores_set(
        project=environment.project.slug,
        environment=environment.name,
        model_version=check.model_version_id or "",
        scores=[
            FeatureScore(feature=c.column, test=c.test, score=c.score, drifted=c.drifted)
            for c in check.columns.all()
            if c.score is not None
        ],
        dataset_drift=check.dataset_drift,
        drift_share=check.drift_share,
        performance={
            k: v
            for k, v in check.performance.items()
            if k in ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
            and isinstance(v, int | float)
        },
        at=check.created,
    )


# --- alerts ----------------------------------------------------------------------------------


def check_alerts(*, check: DriftCheck, monitor: MonitorSpec):
    """Fire what the check found and resolve what it no longer finds; a check that decided
    nothing (too few rows, an error) leaves the alerts as they are. Returns the
    ``dataset_drift`` alert when it fired."""
    from .services.alerts import alert_fire, alert_resolve_missing

    if check.status not in (CheckStatus.OK, CheckStatus.DRIFT):
        return None
    environment = check.environment
    window = f"{check.window_start:%Y-%m-%d %H:%M}–{check.window_end:%H:%M} UTC"
    seen: dict[str, list[str]] = {name: [] for name in DRIFT_RULES}
    drift_alert = None
    columns = {c.column: c for c in check.columns.all()}
    if check.dataset_drift:
        drift_alert = alert_fire(
            rule="dataset_drift",
            labels={},
            severity=Severity.WARNING,
            summary=(
                f"Data drift in {environment.name}: {len(check.drifted_columns)} of "
                f"{len(columns)} columns drifted ({check.drift_share:.0%}) in {window}: "
                + ", ".join(check.drifted_columns)
            ),
            value=check.drift_share,
            environment=environment,
            drift_check=check,
            annotations={"drifted_columns": ", ".join(check.drifted_columns), "window": window},
        )
        seen["dataset_drift"].append(drift_alert.fingerprint)
    for name in check.drifted_columns:
        column = columns.get(name)
        score = column.score if column else None
        alert = alert_fire(
            rule="column_drift",
            labels={"feature": name},
            severity=Severity.INFO,
            summary=(
                f"{name} drifted in {environment.name} ({column.test} {score:.4g} vs "
                f"{column.threshold:.4g}) in {window}"
                if column and score is not None
                else f"{name} drifted in {environment.name} in {window}"
            ),
            value=score,
            environment=environment,
            drift_check=check,
        )
        seen["column_drift"].append(alert.fingerprint)
    rules = ["dataset_drift", "column_drift"]
    bound = monitor.alerts.performance
    value = check.performance.get(bound.metric) if bound else None
    if bound and value is not None:
        rules.append("performance")
        if bound.breached(value):
            limit = f"below {bound.below}" if bound.below is not None else f"above {bound.above}"
            alert = alert_fire(
                rule="performance",
                labels={"metric": bound.metric},
                severity=Severity.CRITICAL,
                summary=(
                    f"{bound.metric} {value:.3f} is {limit} in {environment.name} over "
                    f"{check.performance.get('labelled_rows', 0)} labelled rows in {window}"
                ),
                value=value,
                environment=environment,
                drift_check=check,
            )
            seen["performance"].append(alert.fingerprint)
    for name in rules:
        alert_resolve_missing(
            rule=name, seen_fingerprints=seen[name], scope={"environment": environment}
        )
    return drift_alert


# --- no observations -------------------------------------------------------------------------


@rule("no_observations")
def no_observations(now: datetime) -> Iterator[Firing]:
    """A monitored environment with ``monitor.alerts.no_observations`` whose service sent no
    observation for that long (counted from its deployment when it never sent one)."""
    watched = [m for m in monitored_environments() if m.monitor.alerts.no_observations_seconds]
    if not watched:
        return
    last = dict(
        ObservationBatch.objects.filter(environment_id__in=[m.environment.pk for m in watched])
        .values("environment_id")
        .annotate(last=Max("last_at"))
        .values_list("environment_id", "last")
    )
    for m in watched:
        limit = timedelta(seconds=m.monitor.alerts.no_observations_seconds)
        since = last.get(m.environment.pk) or m.serving_since
        if since is None or now - since < limit:
            continue
        silent = now - since
        yield Firing(
            labels={},
            severity=Severity.WARNING,
            summary=(
                f"No observations from {m.environment.name} for {_duration(silent)} "
                f"(monitor.alerts.no_observations: {m.monitor.alerts.no_observations})"
            ),
            value=round(silent.total_seconds(), 1),
            project=m.environment.project,
            environment=m.environment,
            annotations={"last_observation": last[m.environment.pk].isoformat()}
            if m.environment.pk in last
            else {"last_observation": "never"},
        )


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"

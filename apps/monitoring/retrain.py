"""The closed loop: a dataset drift with ``monitor.on_drift: retrain`` starts the retrain
pipeline on the drifted data (docs/monitoring.md).

:func:`drift_retrain` applies ``monitor.retrain``'s limits (cooldown, daily cap, labelled rows
in the window), appends the drifted window's labelled rows to the serving model's training
dataset as a new dataset version (training's ``dataset_version_record``), and starts the
pipeline (``pipeline_start(trigger=MONITOR)``) in the drifted environment, at the commit
serving there. Either way a RetrainRequest row says what happened; it keeps the drift
evidence (which columns drifted, their tests, scores and thresholds, the window, the rows
added), which the promotion page of the release the run makes shows.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.exceptions import ServiceError
from apps.core.services import audit_log
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.pipelines.triggers import pipeline_start
from apps.projects.models import Environment
from apps.projects.spec import MonitorSpec, ParamError
from apps.training import datafiles
from apps.training.models import DatasetVersion, ModelVersion
from apps.training.profile import profile as profile_of
from apps.training.selectors import dataset_newest_real
from apps.training.services import dataset_version_record

from . import store
from .models import Alert, DriftCheck, RetrainRequest

logger = logging.getLogger(__name__)

ACTOR = "monitor"


class RetrainSkipped(Exception):
    """Why no run is started; the message goes on the RetrainRequest."""


def drift_retrain(
    *,
    check: DriftCheck,
    monitor: MonitorSpec,
    alert: Alert | None = None,
    now: datetime | None = None,
) -> RetrainRequest:
    """Start the retrain of a drifted check, or record why not. One RetrainRequest per call."""
    now = now or timezone.now()
    environment = check.environment
    policy = monitor.retrain
    evidence = drift_evidence(check)
    run = version = None
    skipped = ""
    with transaction.atomic():
        # Two drifted checks of one environment at once: one decides after the other.
        Environment.objects.select_for_update().filter(pk=environment.pk).first()
        try:
            _within_limits(environment, monitor, now)
            # A savepoint: a run that cannot start takes its appended dataset version with it.
            with transaction.atomic():
                version, added = _append_window(check, monitor)
                evidence["dataset"] = {
                    "name": version.dataset.name,
                    "version": version.version,
                    "rows_added": added,
                    "rows": version.rows,
                }
                evidence["appended_until"] = check.window_end.isoformat()
                run = _start(check, monitor, evidence)
        except RetrainSkipped as exc:
            skipped, version = str(exc), None
        request = RetrainRequest.objects.create(
            environment=environment,
            drift_check=check,
            alert=alert,
            run=run,
            skipped_reason=skipped[:300],
            evidence=evidence,
            dataset_version=version,
        )
        audit_log(
            actor=ACTOR,
            action="retrain.started" if run else "retrain.skipped",
            obj=request,
            project_id=environment.project_id,
            reason=skipped or (run.trigger_detail if run else ""),
            data={
                "environment_id": environment.pk,
                "drift_check": check.pk,
                "run": run.pk if run else None,
                "pipeline": policy.pipeline,
                "drifted_columns": list(check.drifted_columns),
            },
        )
    return request


def drift_evidence(check: DriftCheck) -> dict[str, Any]:
    """What the drift was: the window, the share, and each column's test, score, threshold
    and verdict (drifted ones first)."""
    columns = sorted(check.columns.all(), key=lambda c: (not c.drifted, c.column))
    return {
        "drift_check": check.pk,
        "window": [check.window_start.isoformat(), check.window_end.isoformat()],
        "rows": check.rows,
        "drift_share": check.drift_share,
        "drift_share_threshold": check.drift_share_threshold,
        "drifted_columns": list(check.drifted_columns),
        "columns": [
            {
                "column": c.column,
                "test": c.test,
                "score": c.score,
                "threshold": c.threshold,
                "drifted": c.drifted,
            }
            for c in columns
        ],
        "model_version": check.model_version_id,
        "performance": dict(check.performance),
    }


def reason_of(check: DriftCheck, evidence: dict[str, Any]) -> str:
    """The run's ``trigger_detail``: e.g. "drift: f1 (psi 0.31 ≥ 0.1), f3 (ks 0.002 ≤ 0.05) in
    production 10:00–11:00 UTC; +480 labelled rows → features v4"."""
    parts = []
    for column in evidence["columns"]:
        if column["drifted"]:
            score = "–" if column["score"] is None else f"{column['score']:.3g}"
            parts.append(f"{column['column']} ({column['test']} {score})")
    window = f"{check.window_start:%Y-%m-%d %H:%M}–{check.window_end:%H:%M} UTC"
    text = f"drift: {', '.join(parts)} in {check.environment.name} {window}"
    dataset = evidence.get("dataset")
    if dataset:
        text += (
            f"; +{dataset['rows_added']} labelled rows → {dataset['name']} v{dataset['version']}"
        )
    return text[:500]


def _within_limits(environment: Environment, monitor: MonitorSpec, now: datetime) -> None:
    policy = monitor.retrain
    started = RetrainRequest.objects.filter(environment=environment, run__isnull=False)
    last = started.order_by("-created").values_list("created", flat=True).first()
    if last is not None and now - last < timedelta(seconds=policy.cooldown_seconds):
        raise RetrainSkipped(
            f"Cooldown: the last retrain started at {last:%Y-%m-%d %H:%M} UTC "
            f"(monitor.retrain.cooldown {policy.cooldown})."
        )
    today = started.filter(created__gt=now - timedelta(days=1)).count()
    if today >= policy.max_per_day:
        raise RetrainSkipped(
            f"Daily cap: {today} retrains in the last 24 hours "
            f"(monitor.retrain.max_per_day {policy.max_per_day})."
        )


def training_dataset(model_version: ModelVersion | None, target: str) -> DatasetVersion | None:
    """The dataset version the model was trained on that holds ``target`` (the most columns
    first when several do)."""
    if model_version is None:
        return None
    versions = [
        v
        for v in model_version.trained_on.select_related("dataset")
        if not v.synthetic and any(c.get("name") == target for c in v.columns)
    ]
    versions.sort(key=lambda v: (-len(v.columns), v.pk))
    return versions[0] if versions else None


def _append_window(check: DriftCheck, monitor: MonitorSpec) -> tuple[DatasetVersion, int]:
    """A new version of the training dataset: its newest real version with the drifted
    window's labelled rows after it (those no earlier retrain appended)."""
    reference = check.reference
    target = monitor.target or (reference.target if reference else "")
    if not target:
        raise RetrainSkipped(
            "No monitor.target: the window's labels cannot join the training data."
        )
    trained_on = training_dataset(check.model_version, target)
    if trained_on is None:
        raise RetrainSkipped(
            f"The serving model version has no training dataset with column '{target}' "
            "(no lineage) to append the drifted window to."
        )
    project = check.environment.project
    base = dataset_newest_real(project=project, name=trained_on.dataset.name) or trained_on
    rows = _window_rows(check, base, target, monitor)
    if rows.num_rows < monitor.retrain.min_rows:
        raise RetrainSkipped(
            f"{rows.num_rows} labelled rows in the drifted window "
            f"(monitor.retrain.min_rows {monitor.retrain.min_rows})."
        )
    with tempfile.TemporaryDirectory(prefix="cp-retrain-") as folder:
        path = Path(folder) / f"{base.dataset.name}{Path(base.path).suffix}"
        _write_appended(Path(base.path), rows, path)
        description = datafiles.describe(path)
        stored = datafiles.store(path, settings.DATASET_DIR, within=folder)
    version = dataset_version_record(
        project=project,
        name=base.dataset.name,
        description=description.to_dict(),
        path=str(stored),
        profile=profile_of(stored, description=description),
        # The retrain run is started here: the dataset's own triggers would start it twice.
        announce=False,
        actor=ACTOR,
    )
    return version, rows.num_rows


def _window_rows(
    check: DriftCheck, base: DatasetVersion, target: str, monitor: MonitorSpec
) -> pa.Table:
    """The window's labelled rows of the serving model version, in the columns (and types)
    of the training data: the label as ``target``, a feature it lacks as nulls."""
    from .checks import labelled_rows, serving_rows

    schema = datafiles.describe(base.path).schema
    start = check.window_start
    previous = (
        RetrainRequest.objects.filter(environment=check.environment, dataset_version__isnull=False)
        .order_by("-created")
        .values_list("evidence", flat=True)
        .first()
    )
    if previous and previous.get("appended_until"):
        start = max(start, datetime.fromisoformat(previous["appended_until"]))
    features = [f.name for f in schema if f.name != target]
    table = store.read_window(
        environment_id=check.environment_id,
        start=start,
        end=check.window_end,
        columns=features,
        with_labels=True,
    )
    table = serving_rows(table, check.model_version)
    if table is None:
        return schema.empty_table()
    table = labelled_rows(table)
    columns = []
    for field in schema:
        name = store.LABEL if field.name == target else field.name
        if name in table.column_names:
            columns.append(pc.cast(table.column(name), field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _write_appended(source: Path, rows: pa.Table, out: Path) -> None:
    """``source``'s rows then ``rows``, in ``source``'s format, one batch in memory at a time."""
    description = datafiles.describe(source)
    batches = datafiles.read_batches(source, description)
    if description.format == "parquet":
        with pq.ParquetWriter(out, rows.schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
            writer.write_table(rows)
        return
    options = pcsv.WriteOptions(delimiter=description.delimiter)
    with pcsv.CSVWriter(out, rows.schema, write_options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
        writer.write_table(rows)


def _start(check: DriftCheck, monitor: MonitorSpec, evidence: dict[str, Any]) -> PipelineRun:
    environment = check.environment
    try:
        run = pipeline_start(
            project=environment.project,
            pipeline=monitor.retrain.pipeline,
            actor=ACTOR,
            trigger=Trigger.MONITOR,
            reason=reason_of(check, evidence),
            environment=environment,
        )
    except (ServiceError, ParamError) as exc:
        raise RetrainSkipped(f"The retrain pipeline could not start: {exc}") from exc
    if run is None:
        raise RetrainSkipped(
            f"Pipeline '{monitor.retrain.pipeline}' is still running (concurrency: skip)."
        )
    return run


def retrain_request_of(run: PipelineRun | int | None) -> RetrainRequest | None:
    """The drift that started ``run`` (its evidence), if a drift did."""
    if run is None:
        return None
    run_id = run if isinstance(run, int) else run.pk
    return (
        RetrainRequest.objects.select_related("drift_check", "dataset_version__dataset")
        .filter(run_id=run_id)
        .first()
    )

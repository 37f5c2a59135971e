"""Recording a drift check: the DriftCheck row and its ColumnDrift rows, with its audit row,
in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from apps.core.services import audit_log
from apps.projects.models import Environment
from apps.training.models import ModelVersion

from ..choices import CheckStatus
from ..models import ColumnDrift, DriftCheck, Reference


@dataclass
class CheckOutcome:
    """What one check found, as :func:`drift_check_record` stores it. ``columns`` are the
    engine's ``ColumnResult`` objects (or anything with their fields)."""

    status: str
    rows: int = 0
    reference_rows: int = 0
    columns: Sequence[Any] = ()
    dataset_drift: bool = False
    drift_share: float = 0.0
    drift_share_threshold: float = 0.5
    drifted_columns: list[str] = field(default_factory=list)
    prediction_drift: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    duration_ms: int = 0


def drift_check_record(
    *,
    environment: Environment,
    window_start: datetime,
    window_end: datetime,
    outcome: CheckOutcome,
    model_version: ModelVersion | None = None,
    reference: Reference | None = None,
    actor: Any = "monitor",
) -> DriftCheck | None:
    """Store one check of the window [``window_start``, ``window_end``) of ``environment``.
    A window is checked once: None when a check of it exists already (the unique
    constraint decides between two workers)."""
    if outcome.status not in CheckStatus.values:
        raise ValueError(f"unknown check status {outcome.status!r}")
    try:
        with transaction.atomic():
            check = DriftCheck.objects.create(
                environment=environment,
                model_version=model_version,
                reference=reference,
                window_start=window_start,
                window_end=window_end,
                rows=outcome.rows,
                reference_rows=outcome.reference_rows,
                status=outcome.status,
                dataset_drift=outcome.dataset_drift,
                drift_share=outcome.drift_share,
                drift_share_threshold=outcome.drift_share_threshold,
                drifted_columns=list(outcome.drifted_columns),
                prediction_drift=_plain(outcome.prediction_drift),
                performance=_plain(outcome.performance),
                error=outcome.error[:5000],
                duration_ms=outcome.duration_ms,
            )
            ColumnDrift.objects.bulk_create(
                [
                    ColumnDrift(
                        check_run=check,
                        column=c.column[:100],
                        kind=c.kind,
                        test=c.test,
                        score=_finite(c.score),
                        threshold=c.threshold,
                        drifted=bool(c.drifted),
                        missing_share=float(c.missing_share or 0.0),
                        out_of_range=int(c.out_of_range or 0),
                        new_categories=int(c.new_categories or 0),
                        histogram=_plain(c.histogram or {}),
                    )
                    for c in outcome.columns
                ]
            )
            audit_log(
                actor=actor,
                action="drift_check.recorded",
                obj=check,
                project_id=environment.project_id,
                to_state=check.status,
                reason=outcome.error[:1000],
                data={
                    "environment_id": environment.pk,
                    "window": [window_start.isoformat(), window_end.isoformat()],
                    "rows": check.rows,
                    "drifted_columns": check.drifted_columns,
                    "drift_share": check.drift_share,
                    "model_version": model_version.pk if model_version else None,
                },
            )
    except IntegrityError:
        if DriftCheck.objects.filter(
            environment=environment, window_start=window_start, window_end=window_end
        ).exists():
            return None
        raise
    return check


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _plain(value: Any) -> Any:
    """JSON-able: NaN and infinities (which PostgreSQL's jsonb refuses) become None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value

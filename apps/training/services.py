"""Writes to the model registry: registering a model version (its metrics split from its params
and tags, the datasets it was trained and evaluated on, the per-step series its job logged),
storing series points as a job logs them, and moving an environment's alias."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.services import audit_log
from apps.pipelines.models import Job, PipelineRun
from apps.projects.models import Environment, Project

from .metricsfile import split_metrics
from .models import DatasetVersion, MetricPoint, ModelAlias, ModelVersion

KEY_MAX = 100  # MetricPoint.key


@transaction.atomic
def model_version_register(
    *,
    project: Project,
    run: PipelineRun | None,
    name: str,
    artifact_digest: str,
    commit_sha: str = "",
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    job: Job | None = None,
    trained_on: Iterable[DatasetVersion] = (),
    evaluated_on: Iterable[DatasetVersion] = (),
    artifact_uri: str = "",
    dataset_fingerprint: str = "",
    actor: Any = "pipeline",
) -> ModelVersion:
    """The registry entry of a trained model: the same artifact digest is the same model
    version (a rebuild of one commit makes no new version); else the next version of
    ``name`` in ``project``.

    ``metrics`` is what the job's metrics file held, in either shape (see
    :mod:`apps.training.metricsfile`): seeds, library versions and hashes in it end up in
    ``params`` and ``tags``, never among the scores. The series points ``job`` logged while it
    ran are attached to the new version."""
    name = name or "model"
    existing = ModelVersion.objects.filter(
        project=project, name=name, artifact_digest=artifact_digest
    ).first()
    if existing is not None:
        return existing
    split = split_metrics(metrics, params=params, tags=tags)
    # Lock the newest version so two registrations cannot both take the next number.
    last = (
        ModelVersion.objects.select_for_update()
        .filter(project=project, name=name)
        .order_by("-version")
        .first()
    )
    model_version = ModelVersion.objects.create(
        project=project,
        name=name,
        version=(last.version + 1) if last else 1,
        pipeline_run=run,
        job=job,
        commit_sha=commit_sha,
        metrics=split.metrics,
        params=split.params,
        tags=split.tags,
        artifact_uri=artifact_uri,
        artifact_digest=artifact_digest,
        dataset_fingerprint=dataset_fingerprint,
    )
    trained_on, evaluated_on = list(trained_on), list(evaluated_on)
    if trained_on:
        model_version.trained_on.set(trained_on)
    if evaluated_on:
        model_version.evaluated_on.set(evaluated_on)
    points = 0
    if job is not None:
        points = MetricPoint.objects.filter(job=job, model_version=None).update(
            model_version=model_version
        )
    audit_log(
        actor=actor,
        action="model_version.registered",
        obj=model_version,
        project_id=project.pk,
        data={
            "name": name,
            "version": model_version.version,
            "digest": artifact_digest,
            "job": job.pk if job else None,
            "trained_on": [d.pk for d in trained_on],
            "evaluated_on": [d.pk for d in evaluated_on],
            "series_points": points,
        },
    )
    return model_version


def _at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return timezone.now()
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    return timezone.now()


def metric_points_record(*, job_id: int, points: Iterable[Mapping[str, Any]]) -> int:
    """Store the per-step points a running job logged (``pipelines.signals.job_metrics_logged``,
    checked by the executor: a key, an integer step, a finite value). One bulk insert; they
    belong to the job's model version at once when it is registered already, else when it is.

    No audit row: these are telemetry sent with each heartbeat, like the heartbeat itself."""
    model_version_id = (
        ModelVersion.objects.filter(job_id=job_id).values_list("pk", flat=True).first()
    )
    rows = [
        MetricPoint(
            job_id=job_id,
            model_version_id=model_version_id,
            key=str(p["key"])[:KEY_MAX],
            step=int(p["step"]),
            value=float(p["value"]),
            at=_at(p.get("at")),
        )
        for p in points
    ]
    MetricPoint.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


@transaction.atomic
def model_alias_move(
    *, environment: Environment, model_version: ModelVersion, actor: Any
) -> ModelAlias:
    """Point ``<model name>@<environment>`` at ``model_version``: what serves there now. Called
    by the deployment that put a release carrying the model in service (and by its rollback),
    nothing else; each move is audited with the version it replaced."""
    alias = (
        ModelAlias.objects.select_for_update()
        .filter(
            project_id=model_version.project_id,
            model_name=model_version.name,
            environment=environment,
        )
        .first()
    )
    previous = alias.model_version_id if alias else None
    if alias is not None and previous == model_version.pk:
        return alias
    if alias is None:
        alias = ModelAlias.objects.create(
            project_id=model_version.project_id,
            model_name=model_version.name,
            environment=environment,
            model_version=model_version,
        )
    else:
        alias.model_version = model_version
        alias.save(update_fields=["model_version", "modified"])
    audit_log(
        actor=actor,
        action="model_alias.moved",
        obj=alias,
        project_id=model_version.project_id,
        data={
            "model": model_version.name,
            "environment": environment.name,
            "from_version_id": previous,
            "to_version_id": model_version.pk,
            "to_version": model_version.version,
        },
    )
    return alias

"""Writes to the model registry and the dataset versions: registering a model version (its
metrics split from its params and tags, its lineage, the per-step series its job logged) and
its gate verdict, storing series points as a job logs them, moving an environment's alias,
recording dataset versions."""

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.services import audit_log
from apps.pipelines.choices import JobKind, JobStatus
from apps.pipelines.models import Job, PipelineRun
from apps.pipelines.triggers import pipelines_on_dataset
from apps.projects.models import Environment, Project

from .metricsfile import split_metrics
from .models import Dataset, DatasetVersion, GateVerdict, MetricPoint, ModelAlias, ModelVersion

logger = logging.getLogger(__name__)
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


def train_job_record(*, job: Job) -> ModelVersion | None:
    """The registry entry of a succeeded train job's model, and its gate verdict when the job
    ran a gate. Called when the job finished (``job_finished``) and again by releases before
    making a release from the run: idempotent (the same digest is the same version, a version
    has one verdict). None for any other job."""
    model = (job.result or {}).get("model")
    if job.kind != JobKind.TRAIN or job.status != JobStatus.SUCCEEDED or not model:
        return None
    run = job.run
    with transaction.atomic():
        model_version = model_version_register(
            project=run.project,
            run=run,
            job=job,
            name=model.get("name") or "model",
            commit_sha=run.commit_sha,
            metrics=model.get("metrics") or {},
            params=model.get("params") or {},
            tags=model.get("tags") or {},
            artifact_uri=f"artifact:{model.get('path', '')}",
            artifact_digest=model["digest"],
        )
        gate = job.result.get("gate")
        _model_version_lineage(model_version, job, eval_dataset=(gate or {}).get("dataset"))
        if gate:
            gate_verdict_record(model_version=model_version, job=job, gate=gate)
    return model_version


def _model_version_lineage(
    model_version: ModelVersion, job: Job, *, eval_dataset: str | None
) -> None:
    """The dataset versions the job consumed: the gate's evaluation dataset is what the model
    was evaluated on, every other one what it was trained on."""
    consumed = (job.result or {}).get("consumed") or {}
    if not consumed:
        return
    versions = DatasetVersion.objects.filter(
        dataset__project_id=model_version.project_id,
        dataset__name__in=list(consumed),
    ).select_related("dataset")
    wanted = {(name, info.get("fingerprint")) for name, info in consumed.items()}
    trained, evaluated = [], []
    for version in versions:
        if (version.dataset.name, version.fingerprint) not in wanted:
            continue
        (evaluated if version.dataset.name == eval_dataset else trained).append(version)
    model_version.trained_on.add(*trained)
    model_version.evaluated_on.add(*evaluated)


@transaction.atomic
def gate_verdict_record(
    *,
    model_version: ModelVersion,
    job: Job | None,
    gate: Mapping[str, Any],
    actor: Any = "pipeline",
) -> GateVerdict:
    """The champion/challenger decision on ``model_version`` as the job computed it
    (``job.result["gate"]``): both metric sets, the champion, the dataset version evaluated
    on (by the data's fingerprint), pass or fail and why. One per model version."""
    existing = GateVerdict.objects.filter(model_version=model_version).first()
    if existing is not None:
        return existing
    project = model_version.project
    champion_id = (gate.get("champion") or {}).get("id")
    champion = ModelVersion.objects.filter(project=project, pk=champion_id).first()
    evaluated_on = None
    if gate.get("dataset") and gate.get("data_digest"):
        evaluated_on = DatasetVersion.objects.filter(
            dataset__project=project,
            dataset__name=gate["dataset"],
            fingerprint=gate["data_digest"].removeprefix("sha256:"),
        ).first()
    verdict = GateVerdict.objects.create(
        model_version=model_version,
        job=job,
        environment=Environment.objects.filter(
            project=project, name=gate.get("environment") or "production"
        ).first(),
        champion=champion,
        metric=gate["metric"],
        direction=gate.get("direction") or "max",
        min_delta=float(gate.get("min_delta") or 0.0),
        relative=bool(gate.get("relative")),
        guards=dict(gate.get("guards") or {}),
        candidate_metrics=dict(gate.get("candidate_metrics") or {}),
        champion_metrics=dict(gate.get("champion_metrics") or {}),
        passed=bool(gate.get("passed")),
        reason=gate.get("reason") or "",
        evaluated_on=evaluated_on,
    )
    if evaluated_on is not None:
        model_version.evaluated_on.add(evaluated_on)
    audit_log(
        actor=actor,
        action="gate_verdict.recorded",
        obj=verdict,
        project_id=project.pk,
        reason=verdict.reason,
        data={
            "model_version": model_version.version,
            "champion": champion.version if champion else None,
            "metric": verdict.metric,
            "passed": verdict.passed,
        },
    )
    return verdict


# --- datasets --------------------------------------------------------------------------------


def dataset_version_record(
    *,
    project: Project,
    name: str,
    description: Mapping[str, Any],
    path: str,
    profile: Mapping[str, Any] | None = None,
    run: PipelineRun | None = None,
    job: Job | None = None,
    synthetic: bool = False,
    announce: bool = True,
    actor: Any = "pipeline",
) -> DatasetVersion:
    """Record a content of dataset ``name`` (created if needed): ``description`` is what
    ``datafiles.describe`` found (fingerprint, rows, columns, size_bytes, format), ``path``
    the stored copy. The same fingerprint is the same version — the existing one is returned,
    nothing is written. A new real version (``announce``) starts, after commit, the
    pipelines whose ``on_dataset`` lists the dataset."""
    fingerprint = description["fingerprint"]
    with transaction.atomic():
        dataset = _dataset_locked(project, name)
        existing = dataset.versions.filter(fingerprint=fingerprint).first()
        if existing is not None:
            return existing
        last = dataset.versions.order_by("-version").values_list("version", flat=True).first()
        version = DatasetVersion.objects.create(
            dataset=dataset,
            version=(last or 0) + 1,
            fingerprint=fingerprint,
            rows=description.get("rows"),
            columns=[dict(c) for c in description.get("columns", [])],
            profile=dict(profile or {}),
            size_bytes=description.get("size_bytes") or 0,
            format=description["format"],
            path=str(path),
            synthetic=synthetic,
            run=run,
            job=job,
        )
        audit_log(
            actor=actor,
            action="dataset_version.recorded",
            obj=version,
            project_id=project.pk,
            data={
                "dataset": name,
                "version": version.version,
                "fingerprint": fingerprint,
                "synthetic": synthetic,
                "run": run.pk if run else None,
                "job": job.pk if job else None,
            },
        )
        if announce and not synthetic:
            transaction.on_commit(lambda: _dataset_version_announce(version, actor))
    return version


def _dataset_locked(project: Project, name: str) -> Dataset:
    """The dataset row, created if needed, locked: two jobs recording versions of one dataset
    at once take successive numbers."""
    try:
        with transaction.atomic():
            Dataset.objects.get_or_create(project=project, name=name)
    except IntegrityError:  # created by someone else meanwhile
        pass
    return Dataset.objects.select_for_update().get(project=project, name=name)


def _dataset_version_announce(version: DatasetVersion, actor: Any) -> None:
    """Start the pipelines that run on a new version of this dataset (``on_dataset``). After
    commit: a failure to start them is logged and leaves the recorded version as it is."""
    try:
        pipelines_on_dataset(
            project=version.dataset.project,
            dataset=version.dataset.name,
            version_label=f"v{version.version}",
            actor=actor,
        )
    except Exception:
        logger.exception("Could not start the pipelines on a new version of %s", version)


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

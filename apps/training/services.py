"""Writes to the model registry."""

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from apps.core.services import audit_log
from apps.pipelines.models import PipelineRun
from apps.projects.models import Project

from .models import ModelVersion


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
    artifact_uri: str = "",
    dataset_fingerprint: str = "",
    actor: Any = "pipeline",
) -> ModelVersion:
    """The registry entry of a trained model: the same artifact digest is the same model
    version (a rebuild of one commit makes no new version); else the next version of
    ``name`` in ``project``."""
    name = name or "model"
    existing = ModelVersion.objects.filter(
        project=project, name=name, artifact_digest=artifact_digest
    ).first()
    if existing is not None:
        return existing
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
        commit_sha=commit_sha,
        metrics=dict(metrics or {}),
        params=dict(params or {}),
        artifact_uri=artifact_uri,
        artifact_digest=artifact_digest,
        dataset_fingerprint=dataset_fingerprint,
    )
    audit_log(
        actor=actor,
        action="model_version.registered",
        obj=model_version,
        project_id=project.pk,
        data={"name": name, "version": model_version.version, "digest": artifact_digest},
    )
    return model_version

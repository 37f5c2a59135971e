from django.db import models

from apps.core.models import TimeStampedModel
from apps.pipelines.models import PipelineRun
from apps.projects.models import Project


class ModelVersion(TimeStampedModel):
    """A trained model in the registry: what it was trained on, how it scored, where it lies."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=100, default="model")
    version = models.PositiveIntegerField(help_text="Sequential per project and name.")
    pipeline_run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    commit_sha = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    dataset_fingerprint = models.CharField(max_length=128, blank=True)
    artifact_uri = models.CharField(max_length=500, blank=True)
    artifact_digest = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["project_id", "name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="model_version_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name} v{self.version}"

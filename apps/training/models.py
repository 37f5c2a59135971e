from django.db import models
from django.urls import reverse

from apps.core.models import TimeStampedModel
from apps.pipelines.models import Job, PipelineRun
from apps.projects.models import Environment, Project


class Dataset(models.Model):
    """A named dataset of a project: what jobs declare they ``produce`` and ``consume``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=63)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="dataset_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("training:dataset", args=[self.project.slug, self.name])


class DatasetFormat(models.TextChoices):
    CSV = "csv", "CSV"
    PARQUET = "parquet", "Parquet"


class DatasetVersion(models.Model):
    """One content of a dataset, stored content-addressed: the same bytes are the same version
    (``fingerprint`` is the SHA-256 of the file), whichever run produced them."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField(help_text="Sequential per dataset.")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the file's bytes.")
    rows = models.BigIntegerField(null=True, blank=True)
    columns = models.JSONField(default=list, blank=True, help_text='[{"name", "type"}, …]')
    profile = models.JSONField(
        default=dict, blank=True, help_text="Per-column ranges and category sets; never rows."
    )
    size_bytes = models.BigIntegerField(default=0)
    format = models.CharField(max_length=16, choices=DatasetFormat.choices)
    path = models.CharField(max_length=500, help_text="The stored copy (content-addressed).")
    synthetic = models.BooleanField(
        default=False, help_text="Generated from the real dataset's profile (dev): no real rows."
    )
    run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "fingerprint"], name="dataset_version_unique_content"
            ),
            models.UniqueConstraint(
                fields=["dataset", "version"], name="dataset_version_unique_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.version}"


class ModelVersion(TimeStampedModel):
    """A trained model in the registry: what it was trained on, how it scored, where it lies."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=100, default="model")
    version = models.PositiveIntegerField(help_text="Sequential per project and name.")
    pipeline_run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    commit_sha = models.CharField(max_length=64, blank=True)
    # The numbers the model is judged by; seeds, library versions and hashes are params or tags.
    metrics = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    dataset_fingerprint = models.CharField(max_length=128, blank=True)
    trained_on = models.ManyToManyField(DatasetVersion, blank=True, related_name="trained_models")
    evaluated_on = models.ManyToManyField(
        DatasetVersion, blank=True, related_name="evaluated_models"
    )
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

    def get_absolute_url(self) -> str:
        return reverse(
            "training:version",
            kwargs={"slug": self.project.slug, "name": self.name, "version": self.version},
        )


class MetricPoint(models.Model):
    """One point of a per-step series a job logged while it trained (loss by epoch, say)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metric_points")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="series"
    )
    key = models.CharField(max_length=100)
    step = models.BigIntegerField()
    value = models.FloatField()
    at = models.DateTimeField()

    class Meta:
        ordering = ["job_id", "key", "step"]
        indexes = [models.Index(fields=["job", "key", "step"])]

    def __str__(self) -> str:
        return f"{self.key}[{self.step}] = {self.value}"


class ModelAlias(TimeStampedModel):
    """Which version of a model serves in an environment (production's champion, staging's).
    Moved only by deployments, audited."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_aliases")
    model_name = models.CharField(max_length=100)
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="model_aliases"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="aliases"
    )

    class Meta:
        ordering = ["project_id", "model_name", "environment__order"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "model_name", "environment"], name="model_alias_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.environment.name} → v{self.model_version.version}"


class GateVerdict(models.Model):
    """The champion/challenger gate's decision on one candidate: both evaluated on the same
    dataset in the same job, compared on the primary metric and the guards."""

    model_version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, related_name="gate_verdict"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    champion = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metric = models.CharField(max_length=100)
    direction = models.CharField(max_length=3, default="max")
    min_delta = models.FloatField(default=0.0)
    relative = models.BooleanField(default=False)
    guards = models.JSONField(default=dict, blank=True)
    candidate_metrics = models.JSONField(default=dict, blank=True)
    champion_metrics = models.JSONField(default=dict, blank=True)
    passed = models.BooleanField()
    reason = models.TextField(blank=True)
    evaluated_on = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.model_version}: {'passed' if self.passed else 'failed'}"

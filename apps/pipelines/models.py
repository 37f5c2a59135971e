from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.core.models import TimeStampedModel
from apps.projects.models import Project

from .choices import JOB_TERMINAL, RUN_TERMINAL, JobKind, JobStatus, Runner, RunStatus, Trigger


def wall_time(start: datetime | None, end: datetime | None) -> timedelta | None:
    """``end - start``, up to now while there is no end; never negative (clocks of two
    hosts may disagree by a little)."""
    if start is None:
        return None
    return max((end or timezone.now()) - start, timedelta(0))


class PipelineRun(TimeStampedModel):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField(help_text="Sequential per project.")
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    ref = models.CharField(max_length=255, blank=True, help_text="Branch or tag name.")
    commit_sha = models.CharField(max_length=64, blank=True, db_index=True)
    commit_message = models.TextField(blank=True)
    commit_author = models.CharField(max_length=200, blank=True)
    commit_author_email = models.EmailField(blank=True)
    commit_url = models.URLField(max_length=500, blank=True)
    spec = models.JSONField(default=dict, blank=True, help_text="The parsed pipeline spec.")
    error_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Which pipeline of the spec: "" is the push pipeline (`jobs:`), else a name under
    # `pipelines:`; with what parameters, and who or what started it beyond `trigger`.
    pipeline = models.CharField(max_length=63, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    trigger_detail = models.CharField(
        max_length=500, blank=True, help_text="The schedule, dataset version or reason."
    )
    environment = models.ForeignKey(
        "projects.Environment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_runs",
        help_text="The environment whose variables and pipeline version the run uses.",
    )
    schedule = models.ForeignKey(
        "pipelines.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    # Its jobs get protected variables: a run of a protected ref whose commit is on that ref,
    # decided when the run is prepared; never a run of inline jobs (docs/secrets.md).
    protected = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="run_unique_number"),
        ]
        indexes = [
            models.Index(fields=["project", "status"]),
            models.Index(fields=["ref"]),
            # The build history's order and its keyset pages (apps/core/paging.py).
            models.Index(fields=["created", "id"], name="run_history_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} #{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("pipelines:run", kwargs={"slug": self.project.slug, "number": self.number})

    @property
    def is_terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    @property
    def duration(self) -> timedelta | None:
        """Wall time from the first start to the end (running: up to now)."""
        return wall_time(self.started_at, self.finished_at if self.is_terminal else None)


class Job(TimeStampedModel):
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.SCRIPT)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    needs = models.JSONField(default=list, blank=True, help_text="Names of jobs that come first.")
    runner = models.CharField(max_length=16, choices=Runner.choices, default=Runner.LOCAL)
    image = models.CharField(max_length=300, blank=True)
    script = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="Kind-specific settings.")
    timeout_seconds = models.PositiveIntegerField(default=3600)
    attempt = models.PositiveSmallIntegerField(default=1)
    max_attempts = models.PositiveSmallIntegerField(default=2)
    # Who runs it now: set when a worker claims it under the row lock.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    # Last time a message for it was sent to the broker (the sweeper re-sends after a while).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    log_size = models.BigIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, help_text="Kind-specific outcome.")
    # The step cache: the key of what the job computes from (spec, input trees, parameters,
    # upstream outputs) and, on a hit, the earlier job whose outputs it reused.
    cache_key = models.CharField(max_length=64, blank=True, db_index=True)
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the running attempt started, so that whoever finds it lost (the reaper, the worker
    # of the next attempt) can end it: {"host", "groups": [{"pgid", "start"}], "containers":
    # [{"id", "engine"}]} (apps/pipelines/orphans.py). Emptied when the attempt ends.
    processes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="job_unique_name_per_run"),
        ]
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"{self.run} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse(
            "pipelines:job",
            kwargs={"slug": self.run.project.slug, "number": self.run.number, "job": self.name},
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in JOB_TERMINAL

    @property
    def duration(self) -> timedelta | None:
        """Wall time from the first attempt's start to the end (running: up to now); each
        attempt's own is in ``apps.pipelines.attempts``."""
        return wall_time(self.started_at, self.finished_at if self.is_terminal else None)


class Artifact(models.Model):
    """A file a job declared in its spec, kept after the workspace is gone."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    path = models.CharField(max_length=500, help_text="Relative to the workspace.")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "path"]
        constraints = [
            models.UniqueConstraint(fields=["job", "path"], name="artifact_unique_path"),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.path}"

    @property
    def file_path(self):
        from pathlib import Path

        from django.conf import settings

        return Path(settings.ARTIFACT_DIR) / str(self.job.run_id) / str(self.job_id) / self.path


class Schedule(TimeStampedModel):
    """A pipeline run on a cron or an interval, synced from the spec's ``schedules:``.

    Fired by django-celery-beat through its ``periodic_task``; ``last_fire_at`` is the scheduled
    fire time last served, so fires missed while workers or beat were down start one catch-up
    run, not one per fire.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=63)
    pipeline = models.CharField(max_length=63, blank=True, help_text='"": the push pipeline.')
    environment = models.ForeignKey(
        "projects.Environment",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
    )
    cron = models.CharField(max_length=100, blank=True)
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    params = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(default=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_fire_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    commit_sha = models.CharField(
        max_length=64, blank=True, help_text="The spec version it was synced from."
    )

    class Meta:
        ordering = ["project_id", "name", "environment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "environment"],
                name="schedule_unique_per_environment",
            ),
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=models.Q(environment__isnull=True),
                name="schedule_unique_per_project",
            ),
        ]

    def __str__(self) -> str:
        where = f"@{self.environment.name}" if self.environment_id else ""
        return f"{self.project.slug} {self.name}{where}"

"""Statuses and the transition tables of PipelineRun and Job: the only place they are defined."""

from django.db import models

from controlplane.celery import CeleryQueue


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED}),
    # A job of a finished run is retried: the run runs again.
    RunStatus.SUCCEEDED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELED: frozenset({RunStatus.RUNNING}),
}
RUN_ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED})
RUN_TIMESTAMPS = {RunStatus.RUNNING: "started_at", **{s: "finished_at" for s in RUN_TERMINAL}}


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    SKIPPED = "skipped", "Skipped"


JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.PENDING: frozenset({JobStatus.QUEUED, JobStatus.CANCELED, JobStatus.SKIPPED}),
    # queued → failed: the job could not start (e.g. its runner is not allowed here).
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.FAILED}),
    # running → queued: a new attempt after the worker running it was lost (the reaper).
    # running → skipped: the job found it had nothing to check (in_image with no image).
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELED,
            JobStatus.QUEUED,
            JobStatus.SKIPPED,
        }
    ),
    # Retry: a finished job runs again as a new attempt; the jobs after it go back to pending.
    JobStatus.SUCCEEDED: frozenset({JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED, JobStatus.PENDING}),
    JobStatus.SKIPPED: frozenset({JobStatus.QUEUED, JobStatus.PENDING}),
}
JOB_ACTIVE = frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING})
JOB_TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED}
)
JOB_TIMESTAMPS = {
    JobStatus.QUEUED: "queued_at",
    JobStatus.RUNNING: "started_at",
    **{s: "finished_at" for s in JOB_TERMINAL},
}


class Trigger(models.TextChoices):
    PUSH = "push", "Push"
    TAG = "tag", "Tag push"
    MANUAL = "manual", "Manual"
    API = "api", "API"
    SCHEDULE = "schedule", "Schedule"
    RERUN = "rerun", "Re-run"
    DATASET = "dataset", "New dataset version"
    MONITOR = "monitor", "Monitoring"


class Concurrency(models.TextChoices):
    """What a new run of a named pipeline does while another run of it is active."""

    SKIP = "skip", "Skip the new run"
    QUEUE = "queue", "Queue it"
    CANCEL_PREVIOUS = "cancel_previous", "Cancel the previous run"


class JobKind(models.TextChoices):
    TEST = "test", "Test"
    SCRIPT = "script", "Script"
    REPRODUCIBILITY = "reproducibility", "Reproducibility check"
    BUILD = "build", "Build"
    DEPLOY = "deploy", "Deploy"
    TRAIN = "train", "Train"
    MONITOR = "monitor", "Monitor"


JOB_KIND_QUEUE: dict[str, CeleryQueue] = {
    JobKind.TEST: CeleryQueue.TEST,
    JobKind.SCRIPT: CeleryQueue.TEST,
    JobKind.REPRODUCIBILITY: CeleryQueue.TEST,
    JobKind.BUILD: CeleryQueue.BUILD,
    JobKind.DEPLOY: CeleryQueue.DEPLOY,
    JobKind.TRAIN: CeleryQueue.TRAIN,
    JobKind.MONITOR: CeleryQueue.MONITOR,
}


class Runner(models.TextChoices):
    LOCAL = "local", "Local process"
    DOCKER = "docker", "Docker container"
    KUBERNETES = "kubernetes", "Kubernetes Job"

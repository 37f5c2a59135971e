from django.conf import settings
from rest_framework import serializers

from apps.projects.models import Project

from ..choices import JobKind, Runner
from ..models import Artifact, Job, PipelineRun


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["path", "size", "sha256", "created", "download_url"]

    def get_download_url(self, obj) -> str:
        from django.urls import reverse

        run = obj.job.run
        return reverse(
            "pipelines:artifact", args=[run.project.slug, run.number, obj.job.name, obj.path]
        )


class _DurationMixin:
    def get_duration_seconds(self, obj) -> float | None:
        """Wall time from the first start to the end (running: up to now)."""
        duration = obj.duration
        return duration.total_seconds() if duration is not None else None


class JobSerializer(_DurationMixin, serializers.ModelSerializer):
    run = serializers.PrimaryKeyRelatedField(read_only=True)
    artifacts = ArtifactSerializer(many=True, read_only=True)
    project = serializers.CharField(source="run.project.slug", read_only=True)
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "run",
            "project",
            "name",
            "kind",
            "status",
            "needs",
            "runner",
            "image",
            "script",
            "timeout_seconds",
            "attempt",
            "max_attempts",
            "worker",
            "heartbeat_at",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "exit_code",
            "error_message",
            "log_size",
            "result",
            "artifacts",
            "cache_key",
            "cached_from",
        ]
        read_only_fields = fields


class RunSerializer(_DurationMixin, serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    jobs = JobSerializer(many=True, read_only=True)
    created_by = serializers.StringRelatedField()
    duration_seconds = serializers.SerializerMethodField()
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "project",
            "number",
            "status",
            "pipeline",
            "params",
            "trigger",
            "trigger_detail",
            "environment",
            "protected",
            "schedule",
            "ref",
            "commit_sha",
            "commit_message",
            "commit_author",
            "commit_url",
            "error_message",
            "created_by",
            "created",
            "started_at",
            "finished_at",
            "duration_seconds",
            "rerun_of",
            "jobs",
        ]
        read_only_fields = fields


class InlineJobSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind = serializers.ChoiceField(choices=JobKind.choices, default=JobKind.SCRIPT)
    needs = serializers.ListField(
        child=serializers.CharField(max_length=63), default=list, max_length=100
    )
    runner = serializers.ChoiceField(choices=Runner.choices, default=Runner.LOCAL)
    image = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=Job._meta.get_field("image").max_length,
    )
    script = serializers.ListField(
        child=serializers.CharField(max_length=64 * 1024), allow_empty=False, max_length=1000
    )
    timeout = serializers.IntegerField(min_value=1, max_value=86400, default=3600)
    retries = serializers.IntegerField(min_value=0, max_value=5, default=1)


class RunCreateSerializer(serializers.Serializer):
    """Trigger a run by hand: of a branch, tag or commit of the project's repository (its
    `.controlplane.yml` is read at that commit), or of an inline pipeline given as ``jobs``."""

    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    ref = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=PipelineRun._meta.get_field("ref").max_length,
    )
    commit_sha = serializers.RegexField(
        r"^([0-9a-f]{7,64})?$", required=False, allow_blank=True, default=""
    )
    jobs = InlineJobSerializer(many=True, required=False, max_length=settings.INLINE_JOBS_MAX)

    def validate(self, attrs):
        if not attrs.get("jobs"):
            if not attrs["project"].repository_url:
                raise serializers.ValidationError(
                    {"jobs": "The project has no repository: give the pipeline as `jobs`."}
                )
            if not attrs.get("ref") and not attrs.get("commit_sha"):
                attrs["ref"] = attrs["project"].default_branch
        return attrs


class PipelineStartSerializer(serializers.Serializer):
    """Start a named pipeline: its typed parameters (checked against the pipeline's `params`
    at the commit it will run) and, optionally, the environment whose variables and pipeline
    version it runs with."""

    params = serializers.DictField(required=False, default=dict)
    environment = serializers.CharField(required=False, allow_blank=True, default="", max_length=50)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=400)

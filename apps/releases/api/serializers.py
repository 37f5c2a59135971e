from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.projects.api.serializers import EnvironmentSerializer
from apps.projects.models import Environment

from .. import selectors
from ..models import Approval, Deployment, Promotion, Release


class ReleaseSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_version = serializers.StringRelatedField()
    is_blocked = serializers.BooleanField(read_only=True)

    class Meta:
        model = Release
        fields = [
            "id",
            "project",
            "version",
            "pipeline_run",
            "commit_sha",
            "ref",
            "bundle_digest",
            "image_ref",
            "image_digest",
            "model_version",
            "evidence",
            "created",
            "is_blocked",
            "blocked_at",
            "blocked_reason",
        ]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    release = serializers.SlugRelatedField(slug_field="version", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    project = serializers.CharField(source="environment.project.slug", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "project",
            "release",
            "environment",
            "status",
            "deployer",
            "is_rollback",
            "previous",
            "created",
            "started_at",
            "finished_at",
            "error_message",
            "details",
        ]
        read_only_fields = fields


class ApprovalSerializer(serializers.ModelSerializer):
    user = serializers.StringRelatedField()

    class Meta:
        model = Approval
        fields = ["user", "decision", "comment", "channel", "created"]
        read_only_fields = fields


class PromotionSerializer(serializers.ModelSerializer):
    release = serializers.SlugRelatedField(slug_field="version", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    project = serializers.CharField(source="environment.project.slug", read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    requested_by = serializers.StringRelatedField()

    class Meta:
        model = Promotion
        fields = [
            "id",
            "project",
            "release",
            "environment",
            "status",
            "required_approvals",
            "approvals",
            "requested_by",
            "created",
            "expires_at",
            "decided_at",
            "finished_at",
            "reason",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class BlockSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=4000)


class ServingSerializer(serializers.Serializer):
    """What serves an environment now: its last succeeded deployment."""

    deployment = serializers.IntegerField()
    release = serializers.CharField(help_text="Release version.")
    release_id = serializers.IntegerField()
    since = serializers.DateTimeField(allow_null=True, help_text="When that deployment finished.")
    status = serializers.CharField()


class EnvironmentWithServingSerializer(EnvironmentSerializer):
    serving = serializers.SerializerMethodField()

    class Meta(EnvironmentSerializer.Meta):
        fields = [*EnvironmentSerializer.Meta.fields, "serving"]

    @extend_schema_field(ServingSerializer(allow_null=True))
    def get_serving(self, environment: Environment) -> dict | None:
        if not hasattr(environment, "serving_deployment_id"):
            # Just created or updated: not read through the annotated list.
            environment = selectors.with_serving(Environment.objects.filter(pk=environment.pk))[0]
        if environment.serving_deployment_id is None:
            return None
        return {
            "deployment": environment.serving_deployment_id,
            "release": environment.serving_release_version,
            "release_id": environment.serving_release_id,
            "since": environment.serving_since,
            "status": environment.serving_status,
        }


class RollbackSerializer(serializers.Serializer):
    release = serializers.PrimaryKeyRelatedField(
        queryset=Release.objects.none(),
        help_text="Id of a release that served this environment before.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def __init__(self, *args, environment: Environment | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if environment is not None:
            # Only the environment's project: another project's id reads as "does not exist".
            self.fields["release"].queryset = Release.objects.filter(
                project_id=environment.project_id
            )


class DeploySerializer(serializers.Serializer):
    environment = serializers.PrimaryKeyRelatedField(
        queryset=Environment.objects.none(), help_text="Id of an environment of the project."
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def __init__(self, *args, release: Release | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if release is not None:
            self.fields["environment"].queryset = Environment.objects.filter(
                project_id=release.project_id
            )


class ServiceErrorSerializer(serializers.Serializer):
    """A refusal from a service (apps.core.api.exceptions)."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False, help_text="Absent on a plain role refusal.")

from rest_framework import serializers

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

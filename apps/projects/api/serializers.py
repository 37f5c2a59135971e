from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rest_framework import serializers

from ..models import Environment, FreezeWindow, Project


class FreezeWindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = FreezeWindow
        fields = ["id", "cron", "duration", "reason"]


class EnvironmentSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    freeze_windows = FreezeWindowSerializer(many=True, read_only=True)

    class Meta:
        model = Environment
        fields = [
            "id",
            "project",
            "name",
            "order",
            "auto_deploy",
            "required_approvals",
            "approver_role",
            "allow_self_approval",
            "approval_ttl",
            "deployer",
            "service_port",
            "service_url",
            "health_check_path",
            "health_check_timeout",
            "target",
            "synthetic_data",
            "rollback_on",
            "rollback_watch",
            "freeze_windows",
            "created",
            "modified",
        ]
        read_only_fields = ["created", "modified"]

    def validate_rollback_on(self, value):
        """Alert rule names (docs/monitoring-rollback.md), e.g. ["service_down", "error_rate"]."""
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise serializers.ValidationError("Give a list of alert rule names.")
        return list(dict.fromkeys(v.strip() for v in value))


class ProjectSerializer(serializers.ModelSerializer):
    environments = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    # Write-only: secrets are never sent back.
    webhook_secret = serializers.CharField(write_only=True, required=False, allow_blank=True)
    webhook_signing_token = serializers.CharField(write_only=True, required=False, allow_blank=True)
    git_api_token = serializers.CharField(write_only=True, required=False, allow_blank=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "repository_url",
            "default_branch",
            "release_branch",
            "git_provider",
            "branch_filter",
            "tag_filter",
            "git_api_url",
            "git_repository",
            "max_concurrent_runs",
            "timezone",
            "webhook_secret",
            "webhook_signing_token",
            "git_api_token",
            "environments",
            "created",
            "modified",
        ]
        read_only_fields = ["created", "modified"]
        extra_kwargs = {"slug": {"required": False}}

    def validate_timezone(self, value: str) -> str:
        """An IANA name (Europe/Paris): the time zone of schedules that name none. Schedules
        take a change at the next run of the default branch, which syncs them."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise serializers.ValidationError(f"Unknown time zone '{value}'.") from exc
        return value

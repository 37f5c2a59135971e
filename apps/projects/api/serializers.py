from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Environment, FreezeWindow, Project, Variable

#: A project's description (a text column): a few paragraphs, not a document.
MAX_DESCRIPTION = 10_000


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
    webhook_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000
    )
    webhook_signing_token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000
    )
    git_api_token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000
    )

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
            "protected_refs",
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
        extra_kwargs = {
            "slug": {"required": False},
            "description": {"max_length": MAX_DESCRIPTION},
        }

    def validate_timezone(self, value: str) -> str:
        """An IANA name (Europe/Paris): the time zone of schedules that name none. Schedules
        take a change at the next run of the default branch, which syncs them."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise serializers.ValidationError(f"Unknown time zone '{value}'.") from exc
        return value


@extend_schema_field(serializers.CharField(allow_null=True, allow_blank=True, max_length=65536))
class _VariableValueField(serializers.CharField):
    """A variable's value: a string to write; read back as null when the variable is secret
    (typed so in the schema; null is still refused on writes)."""


class VariableSerializer(serializers.ModelSerializer):
    """A project's variable. The value of a secret one is never sent back (``value`` is
    null). Setting a key that exists in the same scope replaces it."""

    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    environment = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="An environment's name: only its runs and deployments get the variable. "
        "Empty: every run and deployment of the project.",
    )
    value = _VariableValueField(allow_blank=True, max_length=65536, trim_whitespace=False)

    class Meta:
        model = Variable
        fields = [
            "id",
            "project",
            "environment",
            "key",
            "value",
            "is_secret",
            "protected",
            "created",
            "modified",
        ]
        read_only_fields = ["created", "modified"]
        # The pair is unique per scope, but a set replaces: no unique-together check here.
        validators: list = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["environment"] = instance.environment.name if instance.environment_id else ""
        if instance.is_secret:
            data["value"] = None
        return data

    def validate(self, attrs):
        name = attrs.get("environment") or ""
        attrs["environment"] = None
        if name:
            env = attrs["project"].environments.filter(name=name).first()
            if env is None:
                raise serializers.ValidationError(
                    {"environment": f"The project has no environment '{name}'."}
                )
            attrs["environment"] = env
        return attrs

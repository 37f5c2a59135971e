from rest_framework import serializers

from apps.projects.models import Project

from ..choices import Event
from ..models import NotificationDelivery, NotificationTarget, SlackIdentity


class NotificationTargetSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", queryset=Project.objects.all())
    # Write-only: the secret is never sent back; ``has_secret`` says whether one is set.
    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, max_length=500
    )
    has_secret = serializers.SerializerMethodField()
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), required=False, max_length=50
    )
    created_by = serializers.StringRelatedField()

    class Meta:
        model = NotificationTarget
        fields = [
            "id",
            "project",
            "name",
            "kind",
            "destination",
            "secret",
            "has_secret",
            "events",
            "min_severity",
            "enabled",
            "created_by",
            "created",
            "modified",
        ]
        read_only_fields = ["created_by", "created", "modified"]

    def get_has_secret(self, obj) -> bool:
        return bool(obj.secret)

    def validate(self, attrs):
        instance = self.instance
        if instance is not None:
            for name in ("project", "kind"):
                if name in attrs and attrs[name] != getattr(instance, name):
                    raise serializers.ValidationError({name: "Cannot be changed."})
        return attrs


class NotificationDeliverySerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "uuid",
            "project",
            "target",
            "kind",
            "event",
            "event_id",
            "object_type",
            "object_id",
            "object_repr",
            "status",
            "attempts",
            "response_code",
            "error",
            "payload",
            "recipients",
            "slack_channel",
            "slack_ts",
            "created",
            "last_attempt_at",
            "sent_at",
        ]
        read_only_fields = fields


class SlackIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = SlackIdentity
        fields = ["slack_user_id", "team_id", "created"]
        read_only_fields = ["created"]
        # Uniqueness is the service's to check (a 409 naming no other account).
        extra_kwargs = {"slack_user_id": {"validators": []}}


class SlackIdentityLinkSerializer(serializers.Serializer):
    """Step one names the Slack user (a code is sent to it); step two gives the code back."""

    slack_user_id = serializers.CharField(max_length=32, required=False)
    team_id = serializers.CharField(max_length=32, required=False, allow_blank=True)
    code = serializers.CharField(max_length=16, required=False)
    detail = serializers.CharField(read_only=True)

    def validate(self, attrs):
        if not attrs.get("code") and not attrs.get("slack_user_id"):
            raise serializers.ValidationError(
                "Give slack_user_id (to be sent a code) or code (the one Slack sent you)."
            )
        return attrs

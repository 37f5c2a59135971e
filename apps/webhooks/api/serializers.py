from rest_framework import serializers

from ..models import WebhookDelivery


class DeliverySerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    run = serializers.SerializerMethodField()
    can_redeliver = serializers.BooleanField(read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "project",
            "provider",
            "hook_id",
            "delivery_id",
            "event",
            "status",
            "detail",
            "http_status",
            "ref",
            "commit_sha",
            "run",
            "awaiting_run",
            "received_at",
            "redelivery_of",
            "can_redeliver",
        ]
        read_only_fields = fields

    def get_run(self, obj) -> dict | None:
        """The run the delivery started: ``{"id", "number", "url"}``."""
        if obj.run_id is None:
            return None
        return {"id": obj.run_id, "number": obj.run.number, "url": obj.run.get_absolute_url()}


class DeliveryDetailSerializer(DeliverySerializer):
    redelivered_by = serializers.StringRelatedField()

    class Meta(DeliverySerializer.Meta):
        fields = [
            *DeliverySerializer.Meta.fields,
            "redelivered_by",
            "response_body",
            "headers",
            "payload",
            "body_sha256",
            "body_size",
            "remote_addr",
        ]
        read_only_fields = fields

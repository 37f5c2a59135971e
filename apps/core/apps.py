from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from controlplane.celery import ensure_broker_folders

        ensure_broker_folders()

        # Model JSON columns get the API's null-checking JSONField (apps/core/api/fields.py).
        from django.db import models
        from rest_framework import serializers

        from apps.core.api.fields import JSONField

        serializers.ModelSerializer.serializer_field_mapping[models.JSONField] = JSONField

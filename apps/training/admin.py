from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin

from .models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Registered by training.services.model_version_register; a release points at it."""

    list_display = ["__str__", "commit_sha", "created"]
    list_filter = ["project", "name"]
    search_fields = ["commit_sha", "artifact_digest"]

from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin

from .models import Dataset, DatasetVersion, GateVerdict, ModelAlias, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Registered by training.services.model_version_register; a release points at it."""

    list_display = ["__str__", "commit_sha", "created"]
    list_filter = ["project", "name"]
    search_fields = ["commit_sha", "artifact_digest"]


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "created"]
    list_filter = ["project"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Recorded from the jobs that produce them; the same content is the same version."""

    list_display = ["__str__", "fingerprint", "rows", "size_bytes", "synthetic", "created"]
    list_filter = ["dataset__project", "synthetic"]
    search_fields = ["fingerprint"]


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Moved only by deployments."""

    list_display = ["__str__", "modified"]


@admin.register(GateVerdict)
class GateVerdictAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "metric", "passed", "created"]
    list_filter = ["passed"]

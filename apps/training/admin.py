from django.contrib import admin

from .models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "commit_sha", "created"]
    list_filter = ["project", "name"]
    search_fields = ["commit_sha", "artifact_digest"]

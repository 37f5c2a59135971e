from django.contrib import admin

from .models import Approval, Deployment, Promotion, Release


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["__str__", "commit_sha", "image_digest", "created", "blocked_at"]
    list_filter = ["project"]
    search_fields = ["version", "commit_sha", "image_digest"]

    def get_readonly_fields(self, request, obj=None):
        # Releases are immutable once made; blocking goes through the UI/API service.
        if obj is None:
            return []
        return [f.name for f in self.model._meta.fields]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "deployer", "started_at", "finished_at"]
    list_filter = ["status", "environment__project"]
    readonly_fields = ["status", "started_at", "finished_at"]


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    readonly_fields = ["user", "decision", "comment", "channel", "created"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Promotion)
class PromotionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "required_approvals", "expires_at"]
    list_filter = ["status", "environment__project"]
    readonly_fields = ["status", "decided_at", "finished_at"]
    inlines = [ApprovalInline]


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = ["promotion", "user", "decision", "channel", "created"]
    readonly_fields = ["promotion", "user", "decision", "comment", "channel", "created"]

"""Releases, deployments, promotions and approvals are read-only in the admin: each changes
only through its service (state machine, approval rules, audit row), never by a form."""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin

from .models import Approval, Deployment, Promotion, Release


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "commit_sha", "image_digest", "created", "blocked_at"]
    list_filter = ["project"]
    search_fields = ["version", "commit_sha", "image_digest"]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "status", "deployer", "started_at", "finished_at"]
    list_filter = ["status", "environment__project"]


class ApprovalInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Approval
    extra = 0


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "status", "required_approvals", "expires_at"]
    list_filter = ["status", "environment__project"]
    inlines = [ApprovalInline]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["promotion", "user", "decision", "channel", "created"]

from django.contrib import admin

from .models import CommitStatusReport, RejectedDeliveryCount, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is written by the receivers only (redeliver from the UI or the API)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "provider",
        "project",
        "event",
        "status",
        "http_status",
        "ref",
        "run",
        "remote_addr",
    ]
    list_filter = ["status", "provider", "project"]
    search_fields = ["delivery_id", "commit_sha", "ref"]
    date_hierarchy = "received_at"
    list_select_related = ["project", "run", "run__project"]


@admin.register(CommitStatusReport)
class CommitStatusReportAdmin(ReadOnlyAdmin):
    list_display = ["run", "provider", "state", "reported_at", "http_status", "attempts"]
    list_filter = ["provider", "state"]
    list_select_related = ["run", "run__project"]


@admin.register(RejectedDeliveryCount)
class RejectedDeliveryCountAdmin(ReadOnlyAdmin):
    """Unverified requests counted per source and minute (the ledger keeps a few rows each)."""

    list_display = ["minute", "provider", "slug", "project", "remote_addr", "count", "not_stored"]
    list_filter = ["provider", "project"]
    search_fields = ["slug", "remote_addr"]

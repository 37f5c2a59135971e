from django.contrib import admin

from .models import AuditEvent, WorkerPing


class ReadOnlyAdminMixin:
    """View only, even for superusers: these rows change through services (state machines,
    audited) or never, so the admin must not add, change or delete them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit log is append-only, also here."""

    list_display = ["created", "actor_label", "action", "object_repr", "from_state", "to_state"]
    list_filter = ["action", "content_type"]
    search_fields = ["object_repr", "actor_label", "reason"]
    date_hierarchy = "created"


@admin.register(WorkerPing)
class WorkerPingAdmin(admin.ModelAdmin):
    list_display = ["created", "worker", "answered_at"]
    readonly_fields = ["created", "worker", "answered_at", "requested_by"]

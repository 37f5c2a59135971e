from django.contrib import admin

from .models import NotificationDelivery, NotificationTarget, SlackIdentity


@admin.register(NotificationTarget)
class NotificationTargetAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "kind", "destination", "min_severity", "enabled", "created"]
    list_filter = ["kind", "enabled", "project"]
    search_fields = ["name", "destination", "project__slug"]
    list_select_related = ["project"]
    # The webhook secret is set through the API (write-only there); never shown here.
    exclude = ["secret"]
    readonly_fields = ["created_by", "created", "modified", "has_secret"]

    @admin.display(boolean=True)
    def has_secret(self, obj):
        return bool(obj.secret)


@admin.register(SlackIdentity)
class SlackIdentityAdmin(admin.ModelAdmin):
    list_display = ["slack_user_id", "team_id", "user", "created"]
    search_fields = ["slack_user_id", "user__username", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    """The ledger is written by the tasks only."""

    list_display = [
        "created",
        "project",
        "event",
        "kind",
        "object_repr",
        "status",
        "attempts",
        "response_code",
    ]
    list_filter = ["status", "kind", "event", "project"]
    search_fields = ["uuid", "object_repr", "error"]
    date_hierarchy = "created"
    list_select_related = ["project", "target"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

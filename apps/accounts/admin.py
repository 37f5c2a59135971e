from django.contrib import admin

from .models import ApiToken, Membership


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "expires_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_hash", "prefix", "created", "last_used_at"]
    search_fields = ["name", "user__username", "prefix"]

    def has_add_permission(self, request):
        return False  # created with `manage.py create_api_token` so the value can be shown once

from django.contrib import admin

from .models import Job, PipelineRun, Schedule


class JobInline(admin.TabularInline):
    model = Job
    extra = 0
    fields = ["name", "kind", "status", "attempt", "worker", "started_at", "finished_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "trigger", "ref", "commit_sha", "created"]
    list_filter = ["status", "trigger", "project"]
    search_fields = ["commit_sha", "ref", "commit_message", "commit_author"]
    # Statuses change only through the services (transition table + audit row).
    readonly_fields = ["status", "started_at", "finished_at", "number"]
    inlines = [JobInline]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "status", "attempt", "worker", "heartbeat_at"]
    list_filter = ["status", "kind", "runner"]
    readonly_fields = [
        "status",
        "attempt",
        "worker",
        "heartbeat_at",
        "queued_at",
        "enqueued_at",
        "started_at",
        "finished_at",
        "exit_code",
        "log_size",
    ]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """Synced from the spec's ``schedules:``; paused and resumed from the pipelines page."""

    list_display = ["__str__", "pipeline", "cron", "every_seconds", "paused", "last_fire_at"]
    list_filter = ["project", "paused"]
    readonly_fields = ["periodic_task", "last_fire_at", "last_run", "commit_sha"]

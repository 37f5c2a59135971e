from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.pipelines.signals import run_status_changed

        from .receivers import report_commit_status_on_run_change

        run_status_changed.connect(
            report_commit_status_on_run_change, dispatch_uid="webhooks.commit_status"
        )

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from apps.monitoring.signals import alert_status_changed, alerts_notify
        from apps.pipelines.signals import run_status_changed
        from apps.releases.signals import (
            approval_recorded,
            deployment_status_changed,
            promotion_reminder,
            promotion_status_changed,
        )

        from . import receivers

        run_status_changed.connect(
            receivers.on_run_status_changed, dispatch_uid="notifications.run_status"
        )
        promotion_status_changed.connect(
            receivers.on_promotion_status_changed, dispatch_uid="notifications.promotion_status"
        )
        promotion_reminder.connect(
            receivers.on_promotion_reminder, dispatch_uid="notifications.promotion_reminder"
        )
        approval_recorded.connect(
            receivers.on_approval_recorded, dispatch_uid="notifications.approval_recorded"
        )
        deployment_status_changed.connect(
            receivers.on_deployment_status_changed,
            dispatch_uid="notifications.deployment_status",
        )
        alerts_notify.connect(
            receivers.on_alerts_notify, dispatch_uid="notifications.alerts_notify"
        )
        alert_status_changed.connect(
            receivers.on_alert_status_changed, dispatch_uid="notifications.alert_status"
        )

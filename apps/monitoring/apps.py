from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from apps.releases.signals import deployment_status_changed

        from . import (
            metrics_receivers,  # noqa: F401 - connects the metrics' receivers
            receivers,
            rollback,
            signals,
        )

        deployment_status_changed.connect(
            receivers.on_deployment_status_changed, dispatch_uid="monitoring.ingest_token"
        )
        # An alert that starts firing may roll its environment back (docs/monitoring-rollback.md).
        signals.alert_status_changed.connect(
            rollback.on_alert_status_changed, dispatch_uid="monitoring.rollback"
        )

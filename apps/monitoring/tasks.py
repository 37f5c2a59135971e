from celery import shared_task

from . import services_health


@shared_task(name="monitoring.probe_services", ignore_result=True)
def probe_services_task() -> int:
    """Probe every deployed environment's service (health, /metrics, CPU and memory)."""
    return services_health.probe_services()

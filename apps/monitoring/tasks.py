from celery import shared_task

from . import dispatch, rules, services_health
from .services.ingest import observations_prune


@shared_task(name="monitoring.prune_observations", ignore_result=True)
def prune_observations_task() -> dict:
    """Daily: observations and labels older than the retention, files and rows."""
    return observations_prune()


@shared_task(
    name="monitoring.evaluate_rules", ignore_result=True, soft_time_limit=60, time_limit=90
)
def evaluate_rules_task() -> dict:
    """The control plane's rules, then one dispatcher pass (which also notices silences that
    ended: nothing else would tell the alerts they held back)."""
    try:
        outcome = rules.evaluate_rules()
    finally:
        notices = dispatch.dispatch()
    return {
        "fired": outcome.fired,
        "resolved": outcome.resolved,
        "errors": outcome.errors,
        "notices": len(notices),
    }


@shared_task(
    name="monitoring.dispatch_alerts", ignore_result=True, soft_time_limit=60, time_limit=90
)
def dispatch_alerts_task() -> int:
    """A dispatcher pass now (after Alertmanager posted), not at the next beat."""
    return len(dispatch.dispatch())


@shared_task(name="monitoring.probe_services", ignore_result=True)
def probe_services_task() -> int:
    """Probe every deployed environment's service (health, /metrics, CPU and memory)."""
    return services_health.probe_services()

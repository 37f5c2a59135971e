import logging

from celery import shared_task
from django.core.cache import cache
from django.utils.dateparse import parse_datetime

from controlplane.celery import CeleryQueue

from . import checks, dispatch, rules, services_health
from .services.ingest import observations_prune

logger = logging.getLogger(__name__)

# A due window's message is sent again after this long if its check has not been stored
# (the message was lost, or the worker died): until then beat's next passes do not resend it.
CHECK_RESEND_SECONDS = 300


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


@shared_task(
    name="monitoring.run_due_checks", ignore_result=True, soft_time_limit=60, time_limit=90
)
def run_due_checks_task() -> int:
    """Every 30 s (beat): one message on the monitor queue per environment whose window is due."""
    sent = 0
    for due in checks.due_checks():
        start, end = due.window_start.isoformat(), due.window_end.isoformat()
        if cache.add(f"monitoring:check:{due.environment_id}:{end}", 1, CHECK_RESEND_SECONDS):
            check_environment_task.apply_async(
                args=(due.environment_id, start, end), queue=CeleryQueue.MONITOR
            )
            sent += 1
    return sent


@shared_task(
    name="monitoring.check_environment", ignore_result=True, soft_time_limit=900, time_limit=960
)
def check_environment_task(environment_id: int, window_start: str, window_end: str) -> int | None:
    check = checks.run_check(
        environment_id=environment_id,
        window_start=parse_datetime(window_start),
        window_end=parse_datetime(window_end),
    )
    return check.pk if check else None


@shared_task(
    name="monitoring.build_reference", ignore_result=True, soft_time_limit=600, time_limit=660
)
def build_reference_task(environment_id: int, model_version_id: int | None) -> int | None:
    """The reference of a model version that started serving (``receivers.reference_prepare``)."""
    from apps.projects.models import Environment
    from apps.training.models import ModelVersion

    from .reference import ReferenceError, reference_for

    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is None:
        return None
    model_version = (
        ModelVersion.objects.filter(pk=model_version_id).first() if model_version_id else None
    )
    try:
        reference = reference_for(environment, model_version)
    except ReferenceError as exc:
        # Not retried: the check stores the same error where the page shows it.
        logger.warning("No reference for %s / %s: %s", environment, model_version_id, exc)
        return None
    return reference.pk if reference else None

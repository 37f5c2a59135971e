from celery import shared_task

from .services.ingest import observations_prune


@shared_task(name="monitoring.prune_observations", ignore_result=True)
def prune_observations_task() -> dict:
    """Daily: observations and labels older than the retention, files and rows."""
    return observations_prune()

"""training's reactions to the pipelines signals (connected in ``TrainingConfig.ready``)."""

from apps.pipelines.signals import job_metrics_logged

from .services import metric_points_record


def store_metric_points(sender, *, job_id: int, points: list, **kwargs) -> None:
    """The per-step points a running job logged since the last heartbeat."""
    if points:
        metric_points_record(job_id=job_id, points=points)


def connect() -> None:
    job_metrics_logged.connect(store_metric_points, dispatch_uid="training.store_metric_points")

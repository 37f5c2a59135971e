from celery import shared_task

from .services import worker_ping_answer


@shared_task(name="core.worker_ping", ignore_result=True)
def worker_ping_task(ping_id: int) -> None:
    worker_ping_answer(ping_id=ping_id, worker=worker_ping_task.request.hostname or "worker")

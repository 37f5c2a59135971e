from celery import shared_task

from . import services


@shared_task(name="releases.expire_promotions", ignore_result=True)
def expire_promotions_task() -> int:
    return services.promotion_expire_due()

from celery import shared_task

from . import services


@shared_task(name="releases.expire_promotions", ignore_result=True)
def expire_promotions_task() -> int:
    return services.promotion_expire_due()


@shared_task(name="releases.remind_promotions", ignore_result=True)
def remind_promotions_task() -> int:
    return services.promotion_remind_due()


@shared_task(name="releases.run_deployment", ignore_result=True)
def run_deployment_task(deployment_id: int) -> None:
    services.deployment_execute(deployment_id=deployment_id)


@shared_task(name="releases.sweep_deployments", ignore_result=True)
def sweep_deployments_task() -> dict:
    return services.deployment_sweep()


@shared_task(name="releases.supervise_services", ignore_result=True)
def supervise_services_task() -> list:
    """Restart services of the process deployer whose process died."""
    from .deployers.process import ProcessDeployer

    return ProcessDeployer().supervise()


@shared_task(name="releases.prune_deploy_files", ignore_result=True)
def prune_deploy_files_task() -> dict:
    """Delete process-deployer releases and virtualenvs no service uses (keeping a few)."""
    from .deployers.process import prune

    return prune()

"""The two state machines of the releases app (deployments, promotions) and what follows a
change once it commits: the signals, and the next deployment waiting for the environment."""

from apps.core.services import StateMachine

from ..choices import (
    DEPLOYMENT_TIMESTAMPS,
    DEPLOYMENT_TRANSITIONS,
    PROMOTION_TIMESTAMPS,
    PROMOTION_TRANSITIONS,
    DeploymentStatus,
)
from ..models import Deployment, Promotion
from ..signals import deployment_status_changed, promotion_status_changed


def enqueue_deployment(deployment_id: int) -> None:
    """Send a deployment to a worker (call it after commit)."""
    # TRICKY: tasks imports the services package; importing it at the top would be a cycle.
    from ..tasks import run_deployment_task

    run_deployment_task.delay(deployment_id)


def enqueue_next_pending(environment_id: int) -> None:
    """Send the oldest pending deployment of the environment to a worker, if there is one."""
    nxt = (
        Deployment.objects.filter(environment_id=environment_id, status=DeploymentStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if nxt is not None:
        enqueue_deployment(nxt)


def _deployment_changed(deployment: Deployment) -> None:
    deployment_status_changed.send(
        sender=Deployment,
        deployment=deployment,
        from_status=deployment._previous_state,
        to_status=deployment.status,
    )
    if deployment.is_terminal:
        # The environment's lock is free: start what waits for it.
        enqueue_next_pending(deployment.environment_id)


def _promotion_changed(promotion: Promotion) -> None:
    promotion_status_changed.send(
        sender=Promotion,
        promotion=promotion,
        from_status=promotion._previous_state,
        to_status=promotion.status,
    )


deployment_transition: StateMachine[Deployment] = StateMachine(
    "deployment",
    DEPLOYMENT_TRANSITIONS,
    DEPLOYMENT_TIMESTAMPS,
    lambda deployment: deployment.environment.project_id,
    _deployment_changed,
)
promotion_transition: StateMachine[Promotion] = StateMachine(
    "promotion",
    PROMOTION_TRANSITIONS,
    PROMOTION_TIMESTAMPS,
    lambda promotion: promotion.environment.project_id,
    _promotion_changed,
)

"""Monitoring's answers to other apps' signals (connected in apps.py)."""

import logging

from apps.releases.choices import DeploymentStatus

logger = logging.getLogger(__name__)


def on_deployment_status_changed(sender, deployment, from_status, to_status, **_kwargs) -> None:
    """A deployment starts: its service gets CONTROLPLANE_INGEST_URL and an ingest token
    (CONTROLPLANE_INGEST_TOKEN, a secret variable of the environment). Sent after the
    RUNNING transition commits and before the deployer reads the variables."""
    if to_status != DeploymentStatus.RUNNING:
        return
    from .services.ingest import ingest_token_ensure

    try:
        ingest_token_ensure(environment=deployment.environment)
    except Exception:
        # Monitoring must not fail a deploy: the service then runs without telemetry.
        logger.exception("No ingest token for deployment %s", deployment.pk)

"""Monitoring's answers to other apps' signals (connected in apps.py)."""

import logging

from apps.releases.choices import DeploymentStatus

logger = logging.getLogger(__name__)


def on_deployment_status_changed(sender, deployment, from_status, to_status, **_kwargs) -> None:
    """A deployment starts: its service gets CONTROLPLANE_INGEST_URL and an ingest token
    (CONTROLPLANE_INGEST_TOKEN, a secret variable of the environment). Sent after the
    RUNNING transition commits and before the deployer reads the variables."""
    if to_status == DeploymentStatus.SUCCEEDED:
        try:
            reference_prepare(deployment)
        except Exception:
            # The first batch (or the first check) builds it then.
            logger.exception("Could not ask for the reference of deployment %s", deployment.pk)
        return
    if to_status != DeploymentStatus.RUNNING:
        return
    from .services.ingest import ingest_token_ensure

    try:
        ingest_token_ensure(environment=deployment.environment)
    except Exception:
        # Monitoring must not fail a deploy: the service then runs without telemetry.
        logger.exception("No ingest token for deployment %s", deployment.pk)


def reference_prepare(deployment) -> None:
    """A monitored release now serves: its reference is built on the monitor queue after the
    commit, so the service's first observation batch finds it (else that request would build
    it, reading the whole training data)."""
    from django.db import transaction

    from controlplane.celery import CeleryQueue

    from .reference import monitor_settings
    from .tasks import build_reference_task

    release = deployment.release
    run = release.pipeline_run if release.pipeline_run_id else None
    if not monitor_settings(run.spec if run else None):
        return
    args = (deployment.environment_id, release.model_version_id)
    transaction.on_commit(
        lambda: build_reference_task.apply_async(args=args, queue=CeleryQueue.MONITOR),
        robust=True,
    )

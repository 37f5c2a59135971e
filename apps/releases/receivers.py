"""Reactions of the releases app to other apps' signals (thin: they call services)."""

import logging

from apps.pipelines.choices import RunStatus

from .services import release_from_run

logger = logging.getLogger(__name__)


def release_from_succeeded_run(sender, *, run, to_status, **kwargs) -> None:
    # Sent after the run's transition committed (pipelines.signals.run_status_changed).
    if to_status != RunStatus.SUCCEEDED:
        return
    try:
        release_from_run(run=run)
    except Exception:
        # Nothing was made (one transaction); the run stays succeeded, and the reaction can be
        # run again (re-running the pipeline makes a new run, and its release).
        logger.exception("Could not make a release from run %s", run)

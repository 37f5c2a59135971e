"""Reactions of the releases app to other apps' signals (thin: they call services)."""

import logging

from apps.pipelines.choices import RunStatus
from apps.projects.services import environments_from_spec

from .services import release_advance, release_create_from_run

logger = logging.getLogger(__name__)


def release_from_succeeded_run(sender, *, run, to_status, **kwargs) -> None:
    if to_status != RunStatus.SUCCEEDED:
        return
    try:
        release = release_create_from_run(run=run)
        if release is not None:
            # Environments the spec names and the project lacks are created (never changed).
            environments_from_spec(project=run.project, spec=run.spec, actor="pipeline")
            release_advance(release=release)  # first environment: deploy or ask
    except Exception:
        # The run stays succeeded; the release can be made again by re-running the pipeline.
        logger.exception("Could not make a release from run %s", run)

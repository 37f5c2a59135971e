"""Reactions to other apps' signals (connected in :class:`WebhooksConfig.ready`)."""

from typing import Any

from . import services


def report_commit_status_on_run_change(sender: Any, run, **kwargs: Any) -> None:
    """``pipelines.signals.run_status_changed`` (sent after commit): tell the Git server."""
    services.commit_status_enqueue(run=run)

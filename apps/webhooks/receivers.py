"""Reactions to other apps' signals (connected in :class:`WebhooksConfig.ready`)."""

from typing import Any

from .commit_status import commit_status_enqueue


def report_commit_status_on_run_change(sender: Any, run, **kwargs: Any) -> None:
    """``pipelines.signals.run_status_changed`` (sent after commit): tell the Git server."""
    commit_status_enqueue(run=run)

"""Signals the pipelines app sends. Apps to the right (webhooks, notifications, releases)
listen; pipelines never imports them."""

from django.dispatch import Signal

#: Sent after commit whenever a run changes status. kwargs: ``run`` (PipelineRun),
#: ``from_status``, ``to_status``.
run_status_changed = Signal()

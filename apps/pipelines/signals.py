"""Signals the pipelines app sends. Apps to the right (webhooks, notifications, releases)
listen; pipelines never imports them."""

from django.dispatch import Signal

#: Sent after commit whenever a run changes status. kwargs: ``run`` (PipelineRun),
#: ``from_status``, ``to_status``.
run_status_changed = Signal()

#: Sent after commit whenever a job reaches a terminal status (succeeded, failed, canceled,
#: skipped), from its transition (the worker's ``job_finish``, the reaper, a cancel). kwargs:
#: ``job`` (with ``status``, ``result``). How training registers a train job's model and gate
#: verdict once the job succeeded.
job_finished = Signal()

#: Sent in the worker after the checkout, before the job's script runs. kwargs: ``job``,
#: ``workspace`` (Path), ``log`` (LogWriter), ``env`` (the job's environment: a receiver may
#: add variables, e.g. where it placed a dataset the job consumes). A receiver raises
#: ``JobStepError`` to fail the job with its message. How training places datasets and the
#: champion model without pipelines importing training.
job_setup = Signal()

#: Sent in the worker after the job's script succeeded, before its artifacts are collected.
#: kwargs: ``job``, ``workspace``, ``log``, ``env`` and ``run_command`` (a callable
#: ``run_command(script: list[str], env: dict | None = None) -> RunOutcome`` that runs more
#: commands in the same workspace and runner, e.g. a gate's evaluation). A receiver returns a
#: dict merged into ``job.result`` or raises ``JobStepError`` to fail the job.
job_script_succeeded = Signal()

#: Sent in the worker (heartbeat thread) with the per-step metric points a job appended to
#: ``$CONTROLPLANE_METRICS_LOG`` since the last beat. kwargs: ``job_id``, ``points`` (a list of
#: ``{"key", "step", "value", "at"}``).
job_metrics_logged = Signal()


class JobStepError(Exception):
    """A receiver of ``job_setup`` or ``job_script_succeeded`` fails the job with this message
    (a dataset that cannot be read, a train job that wrote no model)."""

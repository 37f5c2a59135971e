"""Every write to runs and jobs, by noun. Tasks and views call these; nothing else changes a
status.

- ``scheduling``: the run and job state machines, what follows a committed change (a queued
  job's message, a finished run's listeners), moving a run on (:func:`run_advance`) and the
  lock order every writer keeps;
- ``runs``: starting, preparing, re-running, cancelling and failing runs;
- ``jobs``: a job on a worker (claim, heartbeat, processes, finish and the next job handed
  over) and a person's retry.

Import from here (``from apps.pipelines.services import job_finish``); the modules are where
to read and change the code.
"""

from .jobs import (
    job_cache_key_record,
    job_claim,
    job_finish,
    job_heartbeat,
    job_processes_clear,
    job_processes_record,
    job_retry,
)
from .runs import (
    _send_prepare,
    jobs_from_spec,
    run_cancel,
    run_create,
    run_fail,
    run_prepare,
    run_request,
    run_rerun,
)
from .scheduling import (
    _lock_job,
    _send_job,
    job_transition,
    run_advance,
    run_start_waiting,
    run_transition,
)

__all__ = [
    "_lock_job",
    "_send_job",
    "_send_prepare",
    "job_cache_key_record",
    "job_claim",
    "job_finish",
    "job_heartbeat",
    "job_processes_clear",
    "job_processes_record",
    "job_retry",
    "job_transition",
    "jobs_from_spec",
    "run_advance",
    "run_cancel",
    "run_create",
    "run_fail",
    "run_prepare",
    "run_request",
    "run_rerun",
    "run_start_waiting",
    "run_transition",
]

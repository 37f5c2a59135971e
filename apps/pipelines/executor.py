"""Run one claimed job on this worker: workspace, scrubbed environment, log, heartbeats.

Called by the ``pipelines.run_job`` task after :func:`services.job_claim` succeeded.
"""

import logging
import os
import shutil
import socket
import threading
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from apps.projects.selectors import job_variables

from . import services
from .choices import JobStatus
from .logs import LogWriter, log_path
from .models import Job
from .runners import RunRequest, get_runner

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_environment(job: Job, variables: dict[str, str]) -> dict[str, str]:
    """What a job sees: a few harmless host variables, the CI variables, the project's.

    The worker's own environment (DATABASE_URL, DJANGO_SECRET_KEY, broker URLs, keys) is
    never passed on.
    """
    env = {k: os.environ[k] for k in settings.JOB_ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    run = job.run
    env.update(
        {
            "CI": "true",
            "CONTROLPLANE": "true",
            "CONTROLPLANE_PROJECT": run.project.slug,
            "CONTROLPLANE_RUN_NUMBER": str(run.number),
            "CONTROLPLANE_JOB_NAME": job.name,
            "CONTROLPLANE_JOB_ATTEMPT": str(job.attempt),
            "CONTROLPLANE_COMMIT_SHA": run.commit_sha,
            "CONTROLPLANE_REF": run.ref,
        }
    )
    env.update(variables)
    env.update({str(k): str(v) for k, v in job.options.get("variables", {}).items()})
    return env


def execute_job(job: Job) -> Job:
    worker = job.worker
    variables, secrets = job_variables(project=job.run.project)
    workspace = Path(settings.WORKSPACE_DIR) / str(job.run.project_id) / f"job-{job.pk}"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True, exist_ok=True)
    log = LogWriter(log_path(job.pk, job.run_id), secrets=secrets)
    if job.attempt > 1:
        log.line(f"attempt {job.attempt} of {job.max_attempts}")
    log.line(f"job {job.name} ({job.kind}) on {worker}, runner {job.runner}")
    cancel = threading.Event()
    stop = threading.Event()
    heartbeat = threading.Thread(
        target=_heartbeat_loop, args=(job.pk, worker, log, cancel, stop), daemon=True
    )
    heartbeat.start()
    outcome = None
    error = ""
    try:
        if job.runner not in settings.RUNNERS_ALLOWED:
            error = f"Runner '{job.runner}' is not allowed on this worker."
        else:
            outcome = get_runner(job.runner).run(
                RunRequest(
                    script=list(job.script),
                    workspace=workspace,
                    env=job_environment(job, variables),
                    timeout=job.timeout_seconds,
                    log=log,
                    cancel=cancel,
                    image=job.image,
                )
            )
            if outcome.timed_out:
                error = f"Timed out after {job.timeout_seconds}s."
            elif outcome.canceled:
                error = "Canceled."
            elif outcome.exit_code != 0:
                error = f"Exited with code {outcome.exit_code}."
    except Exception as exc:
        logger.exception("Job %s crashed in the runner", job.pk)
        error = f"Runner error: {exc}"
    finally:
        stop.set()
        heartbeat.join(timeout=5)
    log.line(error or "job succeeded")
    log.close()
    shutil.rmtree(workspace, ignore_errors=True)
    return services.job_finish(
        job_id=job.pk,
        worker=worker,
        succeeded=not error,
        exit_code=outcome.exit_code if outcome else None,
        error_message=error,
        log_size=log.bytes_written,
    )


def _heartbeat_loop(job_id, worker, log, cancel, stop) -> None:
    interval = settings.JOB_HEARTBEAT_INTERVAL
    while not stop.wait(interval):
        try:
            status = services.job_heartbeat(
                job_id=job_id, worker=worker, log_size=log.bytes_written
            )
        except Exception:
            logger.exception("Heartbeat of job %s failed; will retry", job_id)
            continue
        finally:
            close_old_connections()
        if status == JobStatus.CANCELED:
            cancel.set()
    connection.close()  # this thread's own connection

"""Runs executed by a real Celery worker process on the test stack (Redis in CI)."""

import os
import signal
import time
from datetime import timedelta

import pytest

from apps.pipelines import services, sweeper
from apps.pipelines.choices import RUN_TERMINAL, JobStatus, RunStatus
from apps.pipelines.logs import log_path
from apps.pipelines.models import PipelineRun
from apps.projects.services import variable_set

from .worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker():
    started = []

    def start(**kwargs):
        w = WorkerProcess(**kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def finished(run: PipelineRun, timeout: float = 90) -> PipelineRun:
    return wait_for(lambda: (r := PipelineRun.objects.get(pk=run.pk)).is_terminal and r, timeout)


def kill_worker_mid_job(worker: WorkerProcess, pidfile) -> None:
    """Once the job wrote its process id: kill -9 the worker, as a crash or the OOM killer
    would. The job's own process group outlives it; clean that up here."""
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60)
    worker.kill()
    os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def log_of(run: PipelineRun, name: str) -> str:
    job = run.jobs.get(name=name)
    return log_path(job.pk, job.run_id).read_text()


def test_worker_runs_a_dag_with_secrets_masked_and_env_scrubbed(project, admin_user, worker):
    worker()
    variable_set(
        project=project, key="TOKEN", value="tok-9f8e7d6c5b", is_secret=True, actor=admin_user
    )
    variable_set(project=project, key="GREETING", value="hello", actor=admin_user)
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "first",
                "kind": "test",
                "script": ['echo "$GREETING from $CONTROLPLANE_JOB_NAME"'],
            },
            {
                "name": "env",
                "kind": "test",
                "needs": ["first"],
                "script": ["echo token=$TOKEN", "env | sort"],
            },
            {"name": "build", "kind": "build", "needs": ["first"], "script": ["echo built"]},
        ],
    )
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED, [
        (j.name, j.status, j.error_message) for j in run.jobs.all()
    ]
    assert "hello from first" in log_of(run, "first")
    env_log = log_of(run, "env")
    assert "token=********" in env_log
    assert "tok-9f8e7d6c5b" not in env_log
    for leaked in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CONTROLPLANE_TEST_TMP"):
        assert leaked not in env_log
    jobs = {j.name: j for j in run.jobs.all()}
    assert jobs["env"].started_at >= jobs["first"].finished_at
    assert jobs["build"].log_size == len(log_of(run, "build").encode())


def test_failing_job_fails_the_run_and_skips_what_needs_it(project, admin_user, worker):
    worker()
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "test",
                "kind": "test",
                "retries": 0,
                "script": ["echo 'FAILED tests/test_model.py::test_accuracy'", "exit 3"],
            },
            {"name": "deploy", "kind": "deploy", "needs": ["test"], "script": ["echo never"]},
        ],
    )
    run = finished(run)
    jobs = {j.name: j for j in run.jobs.all()}
    assert run.status == RunStatus.FAILED
    assert jobs["test"].status == JobStatus.FAILED
    assert jobs["test"].exit_code == 3
    assert "FAILED tests/test_model.py::test_accuracy" in log_of(run, "test")
    assert jobs["deploy"].status == JobStatus.SKIPPED


def test_cancel_kills_the_whole_process_group(project, admin_user, worker, tmp_path):
    worker()
    pidfile = tmp_path / "child.pid"
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "slow",
                "kind": "test",
                "script": [f"sleep 300 & echo $! > {pidfile}", "wait"],
            },
        ],
    )
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60)
    child = int(pidfile.read_text())
    services.run_cancel(run=run, actor=admin_user)

    def child_gone():
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(child_gone, 30)
    run = finished(run)
    assert run.status == RunStatus.CANCELED
    assert run.jobs.get().status == JobStatus.CANCELED


def test_timeout_fails_the_job(project, admin_user, worker):
    worker()
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {"name": "hang", "kind": "test", "timeout": 1, "retries": 0, "script": ["sleep 60"]},
        ],
    )
    run = finished(run)
    job = run.jobs.get()
    assert job.status == JobStatus.FAILED
    assert job.error_message == "Timed out after 1s."


def test_killed_worker_job_is_retried_by_the_reaper(project, admin_user, worker, tmp_path):
    """kill -9 of the worker mid-job: the reaper, run by beat on its schedule, re-queues it
    and another worker finishes it, well within 2 minutes."""
    pidfile = tmp_path / "job.pid"
    first = worker()
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "train",
                "kind": "test",
                "retries": 1,
                "script": [
                    f'if [ "$CONTROLPLANE_JOB_ATTEMPT" = 1 ]; then echo $$ > {pidfile}; '
                    "sleep 300; fi",
                    "echo finished on attempt $CONTROLPLANE_JOB_ATTEMPT",
                ],
            },
        ],
    )
    kill_worker_mid_job(first, pidfile)
    killed_at = time.monotonic()
    # A new worker with beat: the reaper runs every 2 s, a heartbeat older than 5 s is lost.
    worker(
        beat=True,
        extra_env={"CONTROLPLANE_REAPER_INTERVAL": "2", "CONTROLPLANE_JOB_HEARTBEAT_TIMEOUT": "5"},
    )
    run = wait_for(lambda: (r := PipelineRun.objects.get(pk=run.pk)).is_terminal and r, 120)
    assert time.monotonic() - killed_at < 120
    assert run.status == RunStatus.SUCCEEDED
    job = run.jobs.get()
    assert job.attempt == 2
    assert "finished on attempt 2" in log_of(run, "train")
    from apps.core.models import AuditEvent

    reasons = AuditEvent.objects.filter(actor_label="reaper").values_list("reason", flat=True)
    assert any("Worker lost" in r for r in reasons)


def test_out_of_attempts_fails_with_worker_lost(project, admin_user, worker, settings, tmp_path):
    settings.JOB_HEARTBEAT_TIMEOUT = timedelta(seconds=3)
    pidfile = tmp_path / "job.pid"
    first = worker()
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {
                "name": "once",
                "kind": "test",
                "retries": 0,
                "script": [f"echo $$ > {pidfile}", "sleep 300"],
            },
        ],
    )
    kill_worker_mid_job(first, pidfile)
    wait_for(lambda: sweeper.job_reap_lost() == 1, 30, interval=0.5)
    run = PipelineRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.FAILED
    assert run.jobs.get().error_message == "worker lost"
    assert run.status in RUN_TERMINAL


def test_sweeper_resends_jobs_whose_message_was_lost(project, admin_user, worker):
    from django.utils import timezone

    from controlplane.celery import app

    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[
            {"name": "lost", "kind": "test", "script": ["echo found"]},
        ],
    )
    # The broker loses the message (restart without persistence, say) before any worker runs.
    assert app.control.purge() >= 1
    worker()
    assert run.jobs.get().status == JobStatus.QUEUED
    assert sweeper.job_sweep_unclaimed() == 0  # not stale yet
    later = timezone.now() + timedelta(minutes=5)
    assert sweeper.job_sweep_unclaimed(now=later) == 1
    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED


def test_cache_is_kept_between_runs_and_artifacts_are_stored(project, admin_user, worker):
    worker()
    jobs = [
        {
            "name": "fill",
            "kind": "test",
            "script": [
                "mkdir -p .cache/deps out",
                "[ -f .cache/deps/seen ] && echo warm || echo cold",
                "echo run >> .cache/deps/seen",
                "wc -l < .cache/deps/seen > out/count.txt",
            ],
            "options": {"cache": [".cache/deps"], "artifacts": ["out/*.txt"]},
        }
    ]
    first = finished(services.run_create(project=project, actor=admin_user, jobs=jobs))
    second = finished(services.run_create(project=project, actor=admin_user, jobs=jobs))
    assert "cold" in log_of(first, "fill") and "warm" in log_of(second, "fill")
    artifact = second.jobs.get().artifacts.get()
    assert artifact.path == "out/count.txt"
    assert artifact.file_path.read_text().strip() == "2"
    assert artifact.size == 2


def test_artifact_paths_cannot_escape_the_workspace(project, admin_user, worker):
    worker()
    run = finished(
        services.run_create(
            project=project,
            actor=admin_user,
            jobs=[
                {
                    "name": "evil",
                    "kind": "test",
                    "retries": 0,
                    "script": ["true"],
                    "options": {"cache": ["../../etc"]},
                }
            ],
        )
    )
    job = run.jobs.get()
    assert job.status == JobStatus.FAILED
    assert "outside the workspace" in job.error_message

"""Durations are wall time from the first start to the end (running: up to now), never
negative; a retried job's page lists each attempt with its start, end, duration, outcome."""

import re
import time
from datetime import timedelta

import pytest

from apps.pipelines import services, sweeper
from apps.pipelines.attempts import job_attempts
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.models import Job, PipelineRun

pytestmark = pytest.mark.django_db

PAUSE = 0.05


def _attempt(job: Job, *, succeeded: bool) -> Job:
    assert services.job_claim(job_id=job.pk, worker="w") is not None
    time.sleep(PAUSE)
    return services.job_finish(job_id=job.pk, worker="w", succeeded=succeeded, exit_code=0)


@pytest.fixture
def retried(project, admin_user):
    """A run whose only job failed, was retried, and succeeded on its second attempt."""
    run = services.run_create(
        project=project, actor=admin_user, jobs=[{"name": "train", "script": ["true"]}]
    )
    job = run.jobs.get()
    _attempt(job, succeeded=False)
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.FAILED
    time.sleep(PAUSE)
    services.job_retry(job=job, actor=admin_user)
    return run, job


def _seconds(html: str, label: str) -> float:
    m = re.search(rf"<dt>{label}</dt><dd>(-?[0-9.]+) s", html)
    assert m, html
    return float(m.group(1))


def test_a_retried_job_running_again_has_positive_durations(retried):
    run, job = retried
    services.job_claim(job_id=job.pk, worker="w")  # attempt 2 runs
    time.sleep(PAUSE)
    run.refresh_from_db()
    job.refresh_from_db()
    # The run covers both attempts and the time between them, up to now.
    assert run.duration >= timedelta(seconds=3 * PAUSE)
    assert job.duration >= timedelta(seconds=3 * PAUSE)
    attempts = job_attempts(job)
    assert [a.outcome for a in attempts] == [JobStatus.FAILED, JobStatus.RUNNING]
    assert attempts[1].finished_at is None
    assert timedelta(0) < attempts[1].duration < job.duration


def test_a_retried_job_shows_both_attempts_and_a_run_duration_covering_them(
    retried, client, admin_user
):
    run, job = retried
    _attempt(job, succeeded=True)
    run.refresh_from_db()
    job.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    first, second = job_attempts(job)
    assert (first.number, first.outcome, second.number, second.outcome) == (
        1,
        JobStatus.FAILED,
        2,
        JobStatus.SUCCEEDED,
    )
    assert first.finished_at <= second.started_at
    assert first.duration >= timedelta(seconds=PAUSE)
    assert second.duration >= timedelta(seconds=PAUSE)
    # Both attempts and the pause between them (the audit rows' times and the stamps differ
    # by a little, so not compared to the microsecond).
    assert run.duration > first.duration + second.duration
    assert job.duration >= timedelta(seconds=3 * PAUSE)  # both attempts and the pause
    assert job.duration > first.duration + second.duration

    client.force_login(admin_user)
    page = client.get(job.get_absolute_url()).content.decode()
    table = page.split('id="attempts"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\d)</td>.*?</tr>", table)
    assert rows == ["1", "2"]
    assert "failed" in table and "succeeded" in table
    assert _seconds(page, "Duration") >= 3 * PAUSE
    assert "over 2 attempts" in page
    run_page = client.get(run.get_absolute_url()).content.decode()
    assert _seconds(run_page, "Duration") >= 3 * PAUSE
    api = client.get(f"/api/v1/runs/{run.pk}/").json()
    assert api["duration_seconds"] >= 3 * PAUSE
    assert api["jobs"][0]["duration_seconds"] >= 3 * PAUSE


def test_a_job_the_reaper_requeued_lists_the_lost_attempt(project, admin_user):
    run = services.run_create(
        project=project, actor=admin_user, jobs=[{"name": "train", "script": ["true"]}]
    )
    job = run.jobs.get()
    job = services.job_claim(job_id=job.pk, worker="w")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=job.started_at - timedelta(hours=1))
    assert sweeper.job_reap_lost() == 1
    _attempt(Job.objects.get(pk=job.pk), succeeded=True)
    lost, done = job_attempts(job)
    assert (lost.outcome_label, lost.badge) == ("worker lost", JobStatus.FAILED)
    assert "Worker lost" in lost.reason
    assert done.outcome == JobStatus.SUCCEEDED


def test_durations_are_never_negative(project, admin_user):
    run = services.run_create(
        project=project, actor=admin_user, jobs=[{"name": "a", "script": ["true"]}]
    )
    job = run.jobs.get()
    assert job.duration is None and run.duration is None  # not started
    services.job_claim(job_id=job.pk, worker="w")
    job.refresh_from_db()
    # A worker whose clock is ahead stamped an end before the start: 0, not negative.
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, finished_at=job.started_at - timedelta(seconds=5)
    )
    assert Job.objects.get(pk=job.pk).duration == timedelta(0)

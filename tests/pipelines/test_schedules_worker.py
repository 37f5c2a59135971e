"""Schedules with real processes: beat sends the fire messages, a worker starts the runs and
runs their jobs. Fires missed while the workers were down start one catch-up run; pausing
stops a schedule; parameters and an environment's variables and release commit reach the job."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.pipelines import schedules, triggers
from apps.pipelines.choices import JobStatus, Trigger
from apps.pipelines.models import Job, PipelineRun, Schedule
from apps.pipelines.specs import spec_at
from apps.pipelines.tasks import fire_schedule_task
from apps.projects.services import variable_set

from .ctrepo import ct_repo
from .test_worker import finished, log_of
from .worker import ROOT, WorkerProcess, database_url, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TICK = "tick:\n  pipeline: features\n  every: 3s\n  params: {rows: 7}\n"
EVERY_MINUTE = 'minutely:\n  pipeline: features\n  cron: "* * * * *"\n'
DEV = 'envtick:\n  pipeline: features\n  cron: "0 0 1 1 *"\n  environments: [dev]\n'


@pytest.fixture
def processes():
    started = []

    def start(process):
        started.append(process.start())
        return process

    yield start
    for process in reversed(started):
        process.stop()


class BeatProcess(WorkerProcess):
    """celery beat alone, with the database scheduler, as `docker compose` runs it."""

    def start(self) -> "BeatProcess":
        from django.conf import settings

        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
            "DATABASE_URL": database_url(),
            "CONTROLPLANE_TEST_TMP": str(Path(settings.JOB_LOG_DIR).parent),
            "LOG_LEVEL": "INFO",
        }
        self.log = Path(settings.JOB_LOG_DIR).parent / f"beat-{time.monotonic_ns()}.log"
        self._fh = open(self.log, "ab")  # noqa: SIM115
        schedule_file = self.log.with_suffix(".db")
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "controlplane", "beat", "-s", str(schedule_file),
             "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
            cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self


def waiting_messages() -> int:
    """Messages in the default queue nobody consumed yet (Redis, or the embedded broker)."""
    from amqp.exceptions import ChannelError

    from controlplane.celery import app

    with app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare("default", passive=True).message_count
        except ChannelError:  # Redis: an empty queue is no queue
            return 0


@pytest.fixture
def setup(project, tmp_path):
    def make(schedule_text: str, version: str = "one"):
        repo = ct_repo(
            tmp_path / f"r{time.monotonic_ns()}", schedules=schedule_text, version=version
        )
        project.repository_url = repo.url
        project.save()
        info, spec = spec_at(project)
        schedules.schedules_sync(project=project, spec=spec, commit_sha=info["sha"])
        return repo

    return make


def scheduled_runs():
    return PipelineRun.objects.filter(trigger=Trigger.SCHEDULE).order_by("number")


def test_beat_fires_the_schedule_its_job_starts_and_pausing_stops_it(
    project, setup, processes, admin_user
):
    setup(TICK)
    processes(WorkerProcess(concurrency=2, beat=True))
    first_job = wait_for(
        lambda: (
            Job.objects.filter(run__trigger=Trigger.SCHEDULE, started_at__isnull=False)
            .select_related("run")
            .first()
        ),
        60,
    )
    run = finished(first_job.run)
    assert run.status == "succeeded" and run.schedule.name == "tick"
    assert "rows=7 region=eu full=false" in log_of(run, "prepare")
    assert run.trigger_detail.startswith("schedule tick at ")
    # Pausing stops it: nothing fires after the pause is committed, whatever beat sends.
    schedules.schedule_pause(schedule=run.schedule, actor=admin_user)
    count = scheduled_runs().count()
    time.sleep(7)  # two fire times and more
    assert scheduled_runs().count() == count


def test_fire_messages_queued_while_workers_were_down_start_one_run(project, setup, processes):
    setup(EVERY_MINUTE)
    minutely = Schedule.objects.get(name="minutely")
    # The last fire served was three minutes ago: beat sent three messages nobody consumed.
    Schedule.objects.filter(pk=minutely.pk).update(
        last_fire_at=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3)
    )
    for _ in range(3):
        fire_schedule_task.delay(minutely.pk)
    assert waiting_messages() >= 3
    processes(WorkerProcess(concurrency=2))
    run = finished(wait_for(lambda: scheduled_runs().first(), 30))
    wait_for(lambda: waiting_messages() == 0, 30)
    assert scheduled_runs().count() == 1 and run.status == "succeeded"
    minutely.refresh_from_db()
    assert minutely.last_fire_at == timezone.now().replace(second=0, microsecond=0) or (
        timezone.now().second < 2  # the minute turned while we looked
    )


def test_beat_up_workers_down_across_two_fire_times_one_catch_up_run(project, setup, processes):
    setup(TICK)
    processes(BeatProcess())
    # Beat sends a fire every 3 s; no worker consumes them for two fire times and more.
    wait_for(lambda: waiting_messages() >= 2, 30, interval=0.25)
    assert not PipelineRun.objects.exists()
    processes(WorkerProcess(concurrency=2))
    first = wait_for(lambda: scheduled_runs().first(), 30)
    queued_fires_done = first.created + timedelta(seconds=1.5)  # the next fire is ≥ 2 s later
    time.sleep(max((queued_fires_done - timezone.now()).total_seconds(), 0))
    assert scheduled_runs().filter(created__lte=queued_fires_done).count() == 1
    assert finished(first).status == "succeeded"


def test_a_manual_run_gets_its_params_as_variables(project, setup, processes, admin_user):
    setup("")
    processes(WorkerProcess(concurrency=1))
    run = triggers.pipeline_start(
        project=project,
        pipeline="features",
        actor=admin_user,
        trigger=Trigger.MANUAL,
        params={"rows": 42, "region": "us", "full": True},
    )
    run = finished(run)
    assert run.status == "succeeded"
    assert "rows=42 region=us full=true" in log_of(run, "prepare")


def test_an_environment_schedule_runs_its_release_commit_with_its_variables(
    project, setup, processes, admin_user
):
    repo = setup(DEV)
    released = repo.head
    repo.commit("Version two", {"VERSION": "two\n"})
    dev = project.environments.get(name="dev")
    dev.pipeline_commit_sha = released
    dev.save()
    variable_set(
        project=project, key="TARGET", value="dev-cluster", environment=dev, actor=admin_user
    )
    variable_set(project=project, key="TARGET", value="everywhere", actor=admin_user)
    schedules.schedules_sync_environment(environment=dev)
    envtick = Schedule.objects.get(name="envtick", environment=dev)
    processes(WorkerProcess(concurrency=1))
    Schedule.objects.filter(pk=envtick.pk).update(last_fire_at=timezone.now() - timedelta(days=400))
    run = finished(schedules.schedule_fire(schedule_id=envtick.pk))
    assert run.status == "succeeded" and run.commit_sha == released
    log = log_of(run, "prepare")
    assert "version=one" in log and "version=two" not in log  # the release's scripts
    assert "target=dev-cluster" in log  # the environment's variable wins
    assert run.jobs.get().status == JobStatus.SUCCEEDED

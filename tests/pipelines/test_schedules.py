"""Schedules as services: synced from the spec (rows and beat entries), fired once per fire time
however many messages come, caught up once after downtime, swept when beat was silent, paused
and resumed, their next fire times. The worker and beat processes: test_schedules_worker.py."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import PeriodicTask

from apps.core.models import AuditEvent
from apps.pipelines import schedules, services
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun, Schedule
from apps.pipelines.specs import spec_at

from .ctrepo import ct_repo

pytestmark = pytest.mark.django_db

SCHEDULES = """\
tick:
  pipeline: features
  every: 2s
  params: {rows: 7}
paris:
  pipeline: features
  cron: "30 6 * * 1-5"
  timezone: Europe/Paris
envtick:
  pipeline: features
  every: 5s
  environments: [dev, production]
"""


@pytest.fixture
def repo(tmp_path):
    return ct_repo(tmp_path, schedules=SCHEDULES)


@pytest.fixture
def git_project(project, repo):
    project.repository_url = repo.url
    project.save()
    return project


def sync(project, environment=None, sha=""):
    info, spec = spec_at(
        project, sha=sha or (environment.pipeline_commit_sha if environment else "")
    )
    return schedules.schedules_sync(
        project=project, spec=spec, commit_sha=info["sha"], environment=environment
    )


def test_sync_makes_rows_and_beat_entries(git_project, repo):
    rows = sync(git_project)
    names = sorted((r.name, r.environment.name if r.environment else None) for r in rows)
    assert names == [
        ("envtick", "dev"),
        ("envtick", "production"),
        ("nightly", None),
        ("paris", None),
        ("tick", None),
    ]
    tick = Schedule.objects.get(name="tick")
    assert (tick.pipeline, tick.every_seconds, tick.params, tick.commit_sha) == (
        "features",
        2,
        {"rows": 7},
        repo.head,
    )
    task = tick.periodic_task
    assert task.task == "pipelines.fire_schedule" and json.loads(task.args) == [tick.pk]
    assert task.interval.every == 2 and task.crontab is None and task.enabled
    paris = Schedule.objects.get(name="paris")
    crontab = paris.periodic_task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "30",
        "6",
        "1-5",
        "Europe/Paris",
    )
    nightly = Schedule.objects.get(name="nightly")
    assert nightly.pipeline == "" and nightly.timezone == "UTC"  # the project's time zone


def test_sync_updates_deletes_and_keeps_pause(git_project, repo, admin_user):
    sync(git_project)
    tick = Schedule.objects.get(name="tick")
    schedules.schedule_pause(schedule=tick, actor=admin_user)
    task_id = Schedule.objects.get(name="paris").periodic_task_id
    spec = repo.read(".controlplane.yml").replace("every: 2s", "every: 3s")
    spec = spec.replace('  paris:\n    pipeline: features\n    cron: "30 6 * * 1-5"\n', "")
    spec = spec.replace("    timezone: Europe/Paris\n", "")
    repo.commit("Fewer schedules", {".controlplane.yml": spec})
    sync(git_project)
    tick.refresh_from_db()
    assert tick.every_seconds == 3 and tick.paused and not tick.periodic_task.enabled
    assert not Schedule.objects.filter(name="paris").exists()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_an_environment_with_a_release_commit_syncs_from_it(git_project, repo):
    sync(git_project)
    dev = git_project.environments.get(name="dev")
    dev.pipeline_commit_sha = repo.head
    dev.save()
    spec = repo.read(".controlplane.yml").replace("environments: [dev, production]", "every: 9s")
    spec = spec.replace("  envtick:\n    pipeline: features\n    every: 5s\n    every: 9s\n", "")
    repo.commit("No environment schedules on the head", {".controlplane.yml": spec})
    sync(git_project)  # the head: production follows it, dev does not
    assert list(
        Schedule.objects.filter(name="envtick").values_list("environment__name", flat=True)
    ) == ["dev"]
    schedules.schedules_sync_environment(environment=dev)  # dev's release still has it
    assert (
        Schedule.objects.get(name="envtick", environment=dev).commit_sha == dev.pipeline_commit_sha
    )


def test_cron_fires_once_per_fire_time_and_catches_up_once(git_project, admin_user):
    sync(git_project)
    paris = Schedule.objects.get(name="paris")
    zone = ZoneInfo("Europe/Paris")
    # Workers were down Monday and Tuesday 06:30; three messages come on Tuesday at 07:00.
    Schedule.objects.filter(pk=paris.pk).update(
        last_fire_at=datetime(2026, 11, 27, 6, 30, tzinfo=zone)  # Friday's fire was served
    )
    now = datetime(2026, 12, 1, 7, 0, tzinfo=zone)
    runs = [schedules.schedule_fire(schedule_id=paris.pk, now=now) for _ in range(3)]
    assert runs[0] is not None and runs[1:] == [None, None]
    paris.refresh_from_db()
    assert paris.last_fire_at == datetime(2026, 12, 1, 6, 30, tzinfo=zone)
    assert paris.last_run == runs[0]
    run = runs[0]
    assert (run.trigger, run.schedule, run.pipeline) == (Trigger.SCHEDULE, paris, "features")
    assert run.trigger_detail == "schedule paris at 2026-12-01 06:30:00 CET"
    # The next fire time starts the next run.
    later = datetime(2026, 12, 2, 6, 30, 1, tzinfo=zone)
    assert schedules.schedule_fire(schedule_id=paris.pk, now=later) is not None


def test_interval_fires_once_per_interval(git_project):
    sync(git_project)
    tick = Schedule.objects.get(name="tick")
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    first = schedules.schedule_fire(schedule_id=tick.pk, now=t0)
    assert first.params == {"rows": 7, "region": "eu", "full": False}
    assert schedules.schedule_fire(schedule_id=tick.pk, now=t0 + timedelta(seconds=0.2)) is None
    assert schedules.schedule_fire(schedule_id=tick.pk, now=t0 + timedelta(seconds=2)) is not None
    assert PipelineRun.objects.filter(schedule=tick).count() == 2


def test_paused_schedules_do_not_fire_and_resume_starts_nothing(git_project, admin_user):
    sync(git_project)
    tick = Schedule.objects.get(name="tick")
    schedules.schedule_pause(schedule=tick, actor=admin_user)
    assert not PeriodicTask.objects.get(pk=tick.periodic_task_id).enabled
    assert schedules.schedule_fire(schedule_id=tick.pk) is None
    schedules.schedule_resume(schedule=tick, actor=admin_user)
    assert PeriodicTask.objects.get(pk=tick.periodic_task_id).enabled
    assert schedules.schedule_fire(schedule_id=tick.pk) is None  # right after resuming
    actions = AuditEvent.objects.filter(object_id=str(tick.pk)).values_list("action", flat=True)
    assert {"schedule.paused", "schedule.resumed"} <= set(actions)
    assert not PipelineRun.objects.exists()


def test_next_five_fire_times_in_the_schedule_time_zone(git_project):
    sync(git_project)
    paris = Schedule.objects.get(name="paris")
    fires = schedules.next_fires(paris, now=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))  # a Friday
    assert [f.strftime("%a %d %H:%M %Z") for f in fires] == [
        "Mon 07 06:30 CET",
        "Tue 08 06:30 CET",
        "Wed 09 06:30 CET",
        "Thu 10 06:30 CET",
        "Fri 11 06:30 CET",
    ]
    tick = Schedule.objects.get(name="tick")
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert schedules.next_fires(tick, 2, now=now) == [
        now + timedelta(seconds=2),
        now + timedelta(seconds=4),
    ]


def test_the_sweeper_fires_what_beat_did_not(git_project):
    sync(git_project)
    tick = Schedule.objects.get(name="tick")
    now = datetime.now(UTC)
    Schedule.objects.filter(pk=tick.pk).update(last_fire_at=now - timedelta(seconds=1))
    Schedule.objects.exclude(pk=tick.pk).update(paused=True)
    assert schedules.schedules_sweep(now=now) == 0  # not due yet
    assert schedules.schedules_sweep(now=now + timedelta(seconds=10)) == 1  # beat was silent
    assert schedules.schedules_sweep(now=now + timedelta(seconds=10)) == 0


def test_an_environment_schedule_runs_at_its_release_commit(git_project, repo):
    released = repo.head
    repo.commit("Next version", {"VERSION": "two\n"})
    dev = git_project.environments.get(name="dev")
    dev.pipeline_commit_sha = released
    dev.save()
    sync(git_project, environment=dev)
    envtick = Schedule.objects.get(name="envtick", environment=dev)
    run = schedules.schedule_fire(schedule_id=envtick.pk)
    assert run.commit_sha == released and run.environment == dev


def test_preparing_a_default_branch_run_syncs_the_schedules(
    git_project, admin_user, django_capture_on_commit_callbacks
):
    from apps.pipelines.commits import Commit

    with django_capture_on_commit_callbacks(execute=False):
        run = services.run_request(
            project=git_project, actor=admin_user, commit=Commit(ref="main"), send_prepare=False
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.run_prepare(run_id=run.pk)
    assert Schedule.objects.filter(project=git_project, name="tick").exists()


def test_a_sync_with_nothing_changed_writes_nothing_beat_would_reload(git_project):
    sync(git_project)
    stamps = dict(PeriodicTask.objects.values_list("pk", "date_changed"))
    modified = dict(Schedule.objects.values_list("pk", "modified"))
    sync(git_project)
    assert dict(PeriodicTask.objects.values_list("pk", "date_changed")) == stamps
    assert dict(Schedule.objects.values_list("pk", "modified")) == modified


def test_the_sweeper_removes_beat_entries_whose_schedule_is_gone(git_project):
    sync(git_project)
    tick = Schedule.objects.get(name="tick")
    task_id = tick.periodic_task_id
    Schedule.objects.filter(pk=tick.pk).delete()  # as a project deletion cascades
    assert PeriodicTask.objects.filter(pk=task_id).exists()
    schedules.schedules_sweep()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
    assert PeriodicTask.objects.filter(task="pipelines.fire_schedule").count() == 4


def test_a_run_of_an_older_commit_does_not_roll_the_schedules_back(
    git_project, repo, admin_user, django_capture_on_commit_callbacks
):
    from apps.pipelines.commits import Commit

    old = repo.head
    spec = repo.read(".controlplane.yml").replace("every: 2s", "every: 4s")
    new = repo.commit("Slower tick", {".controlplane.yml": spec})

    def prepare(sha):
        run = services.run_request(
            project=git_project,
            actor=admin_user,
            commit=Commit(sha=sha, ref="main"),
            send_prepare=False,
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.run_prepare(run_id=run.pk)

    prepare(new)
    assert Schedule.objects.get(name="tick").every_seconds == 4
    prepare(old)  # e.g. a re-run of last week's commit
    tick = Schedule.objects.get(name="tick")
    assert (tick.every_seconds, tick.commit_sha) == (4, new)


def test_a_deployment_moves_the_environment_schedules_to_its_release(
    git_project, repo, django_capture_on_commit_callbacks
):
    from apps.releases.services.deployments import _now_serving
    from tests.factories import DeploymentFactory, ReleaseFactory

    released = repo.head
    dev = git_project.environments.get(name="dev")
    deployment = DeploymentFactory(
        release=ReleaseFactory(project=git_project, commit_sha=released), environment=dev
    )
    with django_capture_on_commit_callbacks(execute=True):
        _now_serving(deployment)  # what a deployment that succeeded does
    dev.refresh_from_db()
    assert dev.pipeline_commit_sha == released
    row = Schedule.objects.get(name="envtick", environment=dev)
    assert row.commit_sha == released and row.periodic_task.enabled

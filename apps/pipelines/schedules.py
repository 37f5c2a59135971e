"""Scheduled runs: `schedules:` of `.controlplane.yml` as Schedule rows, each fired by a
django-celery-beat PeriodicTask that sends ``pipelines.fire_schedule(schedule_id)``.

Exactly once per fire time, whatever the broker did: :func:`schedule_fire` locks the Schedule
row and starts a run only when the latest fire time due is after ``last_fire_at`` (the fire
time last served), then records it. Fire messages that piled up while the workers were down
start ONE catch-up run; the sweeper (:func:`schedules_sweep`, every ``SWEEPER_INTERVAL``) fires
schedules that are overdue because beat itself was down or a message was lost.

Intervals (``every``) count from the last fire served: a fire is due once ``every`` seconds
(less a little slack for the jitter of message delivery) have passed since it.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from apps.core.exceptions import ServiceError
from apps.core.services import audit_log
from apps.projects.models import Environment, Project
from apps.projects.spec import ParamError, PipelineSpec, ScheduleSpec

from . import git
from .choices import Trigger
from .models import PipelineRun, Schedule
from .specs import spec_at

logger = logging.getLogger(__name__)

FIRE_TASK = "pipelines.fire_schedule"
# How much earlier than `every` a fire message may come and still fire (delivery jitter).
INTERVAL_SLACK = 1.0
CRON_EARLY = timedelta(seconds=1)
# The sweeper leaves a due fire this long to beat before it fires it itself.
SWEEP_GRACE = timedelta(seconds=2)


# --- fire times ------------------------------------------------------------------------------


def _zone(schedule: Schedule) -> ZoneInfo:
    return ZoneInfo(schedule.timezone or "UTC")


def _slack(schedule: Schedule) -> timedelta:
    return timedelta(seconds=min(schedule.every_seconds * 0.5, INTERVAL_SLACK))


def latest_due(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    """The latest fire time at or before ``now`` (cron, in the schedule's time zone), or for
    an interval ``now`` when ``every`` has passed since the last fire served; None if none."""
    now = now or timezone.now()
    if schedule.cron:
        # A message beat sends a hair before the fire time (clocks, rounding) serves it.
        local = (now + CRON_EARLY).astimezone(_zone(schedule))
        return croniter(schedule.cron, local).get_prev(datetime).astimezone(ZoneInfo("UTC"))
    last = schedule.last_fire_at
    every = timedelta(seconds=schedule.every_seconds or 1)
    if last is None or now >= last + every - _slack(schedule):
        return now
    return None


def next_fires(schedule: Schedule, count: int = 5, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times, in the schedule's time zone (for the pipelines page)."""
    now = now or timezone.now()
    zone = _zone(schedule)
    if schedule.cron:
        it = croniter(schedule.cron, now.astimezone(zone))
        return [it.get_next(datetime) for _ in range(count)]
    every = timedelta(seconds=schedule.every_seconds or 1)
    start = max((schedule.last_fire_at or now) + every, now)
    return [(start + i * every).astimezone(zone) for i in range(count)]


def _is_new_fire(schedule: Schedule, due: datetime | None) -> bool:
    return due is not None and (schedule.last_fire_at is None or due > schedule.last_fire_at)


# --- firing ----------------------------------------------------------------------------------


def schedule_fire(*, schedule_id: int, now: datetime | None = None) -> PipelineRun | None:
    """Serve the schedule's latest due fire time once: start its run (``pipeline_start``,
    trigger schedule) unless that fire time was served already. Safe to call any number of
    times for one fire time: duplicate and late messages start nothing."""
    from .triggers import pipeline_start

    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("project", "environment")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or schedule.paused:
            return None
        now = now or timezone.now()
        due = latest_due(schedule, now)
        if not _is_new_fire(schedule, due):
            return None
        local = due.astimezone(_zone(schedule))
        detail = f"schedule {schedule.name} at {local:%Y-%m-%d %H:%M:%S %Z}"
        run = None
        try:
            run = pipeline_start(
                project=schedule.project,
                pipeline=schedule.pipeline,
                actor=f"schedule:{schedule.name}",
                trigger=Trigger.SCHEDULE,
                params=schedule.params,
                reason=detail,
                environment=schedule.environment,
                schedule=schedule,
            )
        except (ServiceError, ParamError) as exc:
            # Served all the same: retrying every message would not make the spec valid.
            logger.warning("Schedule %s could not start a run: %s", schedule, exc)
            audit_log(
                actor=f"schedule:{schedule.name}",
                action="schedule.fire_failed",
                obj=schedule,
                project_id=schedule.project_id,
                reason=str(getattr(exc, "message", exc))[:1000],
            )
        schedule.last_fire_at = due
        schedule.last_run = run or schedule.last_run
        schedule.save(update_fields=["last_fire_at", "last_run", "modified"])
    return run


def schedules_sweep(*, now: datetime | None = None) -> int:
    """Fire schedules whose due fire time beat should have sent a while ago and nobody served
    (beat was down, or its message was lost). Returns how many started a run."""
    now = now or timezone.now()
    # Beat entries whose schedule is gone (its project was deleted) would fire for nothing.
    linked = Schedule.objects.filter(periodic_task__isnull=False).values("periodic_task")
    PeriodicTask.objects.filter(task=FIRE_TASK).exclude(pk__in=linked).delete()
    started = 0
    for schedule in Schedule.objects.filter(paused=False):
        if schedule.cron:
            due = latest_due(schedule, now - SWEEP_GRACE)
        else:
            since = schedule.last_fire_at or schedule.created
            every = timedelta(seconds=schedule.every_seconds or 1)
            due = now if now - SWEEP_GRACE >= since + every else None
        if _is_new_fire(schedule, due) and schedule_fire(schedule_id=schedule.pk, now=now):
            logger.warning("Fired overdue schedule %s (beat did not)", schedule)
            started += 1
    return started


# --- the spec → rows ------------------------------------------------------------------------


def _wanted(
    project: Project, spec: PipelineSpec, environment: Environment | None
) -> dict[tuple[str, int | None], tuple[ScheduleSpec, Environment | None]]:
    """(name, environment id) → the entry and its environment, for the rows this sync owns:
    one environment's (its release's spec), or the project-level ones plus those of the
    environments that record no release commit (they run the default branch)."""
    wanted: dict[tuple[str, int | None], tuple[ScheduleSpec, Environment | None]] = {}
    by_name = {e.name: e for e in project.environments.all()}
    for entry in spec.schedules.values():
        if not entry.environments:
            if environment is None:
                wanted[(entry.name, None)] = (entry, None)
            continue
        for name in entry.environments:
            env = by_name.get(name)
            if env is None:
                logger.warning("Schedule %s: %s has no environment %s", entry.name, project, name)
            elif (environment is None and not env.pipeline_commit_sha) or (
                environment is not None and env.pk == environment.pk
            ):
                wanted[(entry.name, env.pk)] = (entry, env)
    return wanted


def _owned(project: Project, environment: Environment | None):
    rows = Schedule.objects.filter(project=project).select_related("periodic_task")
    if environment is not None:
        return rows.filter(environment=environment)
    return rows.filter(environment__isnull=True) | rows.filter(environment__pipeline_commit_sha="")


@transaction.atomic
def schedules_sync(
    *,
    project: Project,
    spec: PipelineSpec,
    commit_sha: str,
    environment: Environment | None = None,
    actor: Any = "scheduler",
) -> list[Schedule]:
    """Create, update and delete Schedule rows (and their PeriodicTasks) to match ``spec``.

    ``environment`` None: the default branch's spec — project-level schedules, and those of
    environments that record no ``pipeline_commit_sha``; else that environment's schedules from
    the spec of the release serving there. A paused schedule stays paused."""
    wanted = _wanted(project, spec, environment)
    kept = []
    for row in _owned(project, environment):
        if (row.name, row.environment_id) not in wanted:
            _delete(row, actor)
    for (name, env_id), (entry, env) in wanted.items():
        tz = entry.timezone or project.timezone or "UTC"
        values = {
            "pipeline": entry.pipeline,
            "cron": entry.cron or "",
            "every_seconds": entry.every_seconds,
            "timezone": tz,
            "params": dict(entry.params),
            "commit_sha": commit_sha,
        }
        row = Schedule.objects.filter(project=project, name=name, environment_id=env_id).first()
        if row is None:
            row = Schedule(project=project, name=name, environment=env, **values)
            if row.cron:  # a new cron schedule waits for its next fire time
                row.last_fire_at = latest_due(row)
            row.save()
            audit_log(
                actor=actor,
                action="schedule.created",
                obj=row,
                project_id=project.pk,
                data={**values, "environment": env.name if env else None},
            )
        else:
            timing = (row.cron, row.every_seconds, row.timezone)
            changed = [name for name, value in values.items() if getattr(row, name) != value]
            for name in changed:
                setattr(row, name, values[name])
            if timing != (row.cron, row.every_seconds, row.timezone) and row.cron:
                row.last_fire_at = latest_due(row)
                changed.append("last_fire_at")
            if changed:
                row.save(update_fields=[*changed, "modified"])
        _periodic_task_save(row)
        kept.append(row)
    return kept


def schedules_sync_from_run(*, project: Project, spec: PipelineSpec, commit_sha: str) -> None:
    """After a run of the default branch was prepared: sync from its spec, unless the commit
    is older than the one the schedules were synced from (a re-run, or a run of an old commit
    asked for by sha). Never fails the run: an error is logged, the next run syncs again."""
    try:
        if not spec.schedules and not Schedule.objects.filter(project=project).exists():
            return  # nothing to create and nothing to delete (most pushes of most projects)
        synced = (
            Schedule.objects.filter(project=project, environment__isnull=True)
            .exclude(commit_sha__in=("", commit_sha))
            .values_list("commit_sha", flat=True)
            .first()
        )
        if synced and _is_ancestor(project, commit_sha, synced):
            return
        schedules_sync(project=project, spec=spec, commit_sha=commit_sha)
    except Exception:
        logger.exception("Could not sync the schedules of %s at %s", project, commit_sha[:12])


def _is_ancestor(project: Project, older: str, newer: str) -> bool:
    result = git.git(
        "merge-base", "--is-ancestor", older, newer, cwd=git.mirror_path(project), check=False
    )
    return result.returncode == 0


def schedules_sync_environment(*, environment: Environment, actor: Any = "scheduler") -> None:
    """The environment's ``pipeline_commit_sha`` changed (a release now serves there): its
    schedules follow the spec of that commit (none recorded: the default branch head's).
    ``releases`` calls this after the deployment that switched the environment."""
    project = environment.project
    info, spec = spec_at(project, sha=environment.pipeline_commit_sha)
    schedules_sync(
        project=project,
        spec=spec,
        commit_sha=info["sha"],
        environment=environment if environment.pipeline_commit_sha else None,
        actor=actor,
    )


def schedules_follow_environment(*, environment: Environment) -> None:
    """:func:`schedules_sync_environment` for a caller that must not fail (a deployment that
    succeeded, after commit): an error is logged; the next deployment syncs again."""
    if not environment.project.repository_url:
        return
    try:
        schedules_sync_environment(environment=environment, actor="deployer")
    except Exception:
        logger.exception("Could not sync the schedules of %s", environment)


def _delete(row: Schedule, actor: Any) -> None:
    audit_log(actor=actor, action="schedule.deleted", obj=row, project_id=row.project_id)
    if row.periodic_task_id:
        row.periodic_task.delete()
    row.delete()


def _periodic_task_save(row: Schedule) -> PeriodicTask:
    """The beat entry of a schedule: a crontab in its time zone or an interval; enabled
    exactly when the schedule is not paused. Saved one by one so beat sees the change."""
    timing: dict[str, Any] = {"crontab": None, "interval": None}
    if row.cron:
        minute, hour, day_of_month, month, day_of_week = row.cron.split()
        timing["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
            timezone=row.timezone,
        )
    else:
        timing["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=row.every_seconds, period=IntervalSchedule.SECONDS
        )
    wanted = {
        "task": FIRE_TASK,
        "args": json.dumps([row.pk]),
        "queue": "default",
        "enabled": not row.paused,
        "description": f"{row} ({row.cron or f'every {row.every_seconds}s'})",
        **timing,
    }
    task = row.periodic_task or PeriodicTask(name=f"pipelines.schedule:{row.pk}")
    # TRICKY: only the fields that changed, and only when some did: a whole-row save would
    # write back a stale `last_run_at` beat keeps there, and any save makes beat reload every
    # entry (runs of the default branch sync the schedules each time).
    changed = [name for name, value in wanted.items() if getattr(task, name) != value]
    for name in changed:
        setattr(task, name, wanted[name])
    if task.pk is None:
        task.save()
    elif changed:  # PeriodicTask.save() clears last_run_at of a disabled entry: keep that
        extra = ["last_run_at"] if "enabled" in changed else []
        task.save(update_fields=[*changed, *extra, "date_changed"])
    if row.periodic_task_id != task.pk:
        Schedule.objects.filter(pk=row.pk).update(periodic_task=task)
        row.periodic_task = task
    return task


# --- pause and resume -----------------------------------------------------------------------


@transaction.atomic
def schedule_pause(*, schedule: Schedule, actor: Any, paused: bool = True) -> Schedule:
    """Stop (or with ``paused=False`` resume) a schedule; its beat entry follows. Resuming
    starts nothing by itself: the fire times missed while paused are not caught up."""
    schedule = Schedule.objects.select_for_update(of=("self",)).get(pk=schedule.pk)
    if schedule.paused == paused:
        return schedule
    schedule.paused = paused
    if not paused:
        schedule.last_fire_at = latest_due(schedule) if schedule.cron else timezone.now()
    schedule.save(update_fields=["paused", "last_fire_at", "modified"])
    _periodic_task_save(schedule)
    audit_log(
        actor=actor,
        action="schedule.paused" if paused else "schedule.resumed",
        obj=schedule,
        project_id=schedule.project_id,
        from_state="active" if paused else "paused",
        to_state="paused" if paused else "active",
    )
    return schedule


def schedule_resume(*, schedule: Schedule, actor: Any) -> Schedule:
    return schedule_pause(schedule=schedule, actor=actor, paused=False)

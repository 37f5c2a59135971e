"""beat killed with SIGKILL for several intervals of a schedule, twice: while it is down nothing
fires (it sends the fire messages and the sweepers' too); when it is back the schedule catches
up at once with one run, and no fire time is served twice — beat re-sending what it believes
it missed and the schedules sweeper firing the same overdue slot start one run between them.

An interval schedule (every 2 s) has no minute boundaries to race: slots are counted from the
last fire served, so the test does not depend on when in a minute it runs."""

import time
from datetime import timedelta

import pytest

from apps.pipelines import schedules
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun, Schedule
from apps.pipelines.specs import spec_at
from tests.pipelines.ctrepo import ct_repo

from .workers import Figures, beat, report, wait_until, worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EVERY = 2
TICK = f"tick:\n  pipeline: features\n  every: {EVERY}s\n  params: {{rows: 3}}\n"
OUTAGES = (8.0, 6.0)  # seconds beat stays dead: 4 and 3 intervals
UP = 6.0  # seconds it runs between outages


def scheduled():
    return list(PipelineRun.objects.filter(trigger=Trigger.SCHEDULE).order_by("created"))


def test_beat_killed_for_several_intervals_catches_up_once(project, procs, tmp_path):
    started = time.monotonic()
    repo = ct_repo(tmp_path / "repo", schedules=TICK)
    project.repository_url = repo.url
    project.max_concurrent_runs = 20
    project.save()
    info, spec = spec_at(project)
    schedules.schedules_sync(project=project, spec=spec, commit_sha=info["sha"])
    tick = Schedule.objects.get(name="tick")
    procs(worker("default,test,build,train", concurrency=2))
    up_since = time.time()
    windows = []  # (beat up from, up to)
    for outage in OUTAGES:
        b = procs(beat())
        up_since = time.time()
        time.sleep(UP)
        b.kill()
        down_at = time.time()
        windows.append((up_since, down_at))
        time.sleep(outage)
    b = procs(beat())
    back_at = time.time()
    windows.append((back_at, None))
    caught_up = wait_until(lambda: any(r.created.timestamp() > back_at for r in scheduled()), 15)
    time.sleep(UP)
    b.stop()
    end_at = time.time()
    runs = scheduled()
    assert wait_until(
        lambda: all(r.is_terminal for r in PipelineRun.objects.filter(trigger=Trigger.SCHEDULE)),
        60,
    )

    times = [r.created.timestamp() for r in runs]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # While beat was dead (a second after the kill, for messages already sent): no run.
    outage_spans = [(w[1] + 1, n[0]) for w, n in zip(windows, windows[1:], strict=False)]
    during_outage = sum(any(lo < t < hi for lo, hi in outage_spans) for t in times)
    # Catch-up after each restart: the first run after it, seconds.
    catch_up = []
    for lo, _hi in windows[1:]:
        after = [t - lo for t in times if t > lo]
        catch_up.append(round(min(after), 1) if after else None)
    # A fire time served twice: two runs closer than an interval (less the slack allowed for
    # the jitter of message delivery, schedules.INTERVAL_SLACK).
    duplicated = sum(g < EVERY - schedules.INTERVAL_SLACK for g in gaps)
    up_seconds = sum(((hi or end_at) - lo) for lo, hi in windows)
    tick.refresh_from_db()
    figures = Figures(
        "beat killed for several intervals (twice)",
        faults={"kill_9_beat": len(OUTAGES), "intervals_down": int(sum(OUTAGES) // EVERY)},
        expected={"runs": f"<={int(up_seconds // EVERY) + len(OUTAGES) + 1}"},
        recorded={"runs": len(runs)},
        completed={"runs": sum(r.is_terminal for r in runs)},
        lost=0 if all(c is not None and c <= 5 for c in catch_up) else 1,
        duplicated=duplicated,
        stuck=sum(not r.is_terminal for r in runs),
        notes={
            "runs_while_down": during_outage,
            "catch_up_s": catch_up,
            "min_gap_s": round(min(gaps), 2) if gaps else None,
        },
        seconds=time.monotonic() - started,
    )
    report(figures)
    assert caught_up, figures.line()
    assert during_outage == 0 and duplicated == 0, figures.line()
    assert figures.lost == 0 and figures.stuck == 0, figures.line()
    assert len(runs) >= len(windows) * 2, figures.line()  # it fired while beat was up
    assert len(runs) <= int(up_seconds // EVERY) + len(OUTAGES) + 1, figures.line()
    assert tick.last_fire_at >= runs[-1].created - timedelta(seconds=1)
